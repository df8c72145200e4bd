import shutil

import pytest

from ecmta.tests.console.control_harness import ServerProcess, sock_dir


@pytest.fixture
def sockdir():
    path = sock_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def server_factory():
    """Start control_server.py children; all are stopped after the test."""
    made = []

    def make(endpoints, **spec) -> ServerProcess:
        srv = ServerProcess(endpoints, **spec).start()
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.stop()
