import pytest

from ecmta.tests.queue_console.helpers import SmtpSink, start_qmta


@pytest.fixture
def qmta(daemon_factory):
    """qmta(glob=..., tail=..., ports={...}, files={...}) -> a started QMTA."""
    def make(**parts):
        return start_qmta(daemon_factory, **parts)
    return make


@pytest.fixture
def smtp_sink():
    """smtp_sink(port, *options) -> a running Postfix smtp-sink; killed after the test."""
    made = []

    def make(port: int, *options: str) -> SmtpSink:
        s = SmtpSink(port, *options)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()
