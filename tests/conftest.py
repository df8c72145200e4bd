import pytest

from ecmta.tests.harness import Daemon  # noqa: F401  (re-exported for test modules)


@pytest.fixture
def daemon_factory():
    """Start real daemons; every one started is stopped and cleaned up after the test."""
    made = []

    def make(config_body: str = "", **kw) -> Daemon:
        d = Daemon(config_body, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        try:
            d.stop(timeout=15)
        except Exception:
            pass
        d.cleanup()
