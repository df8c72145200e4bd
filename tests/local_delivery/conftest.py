import pytest

from ecmta.tests.local_delivery.helpers import start


@pytest.fixture(scope="module")
def mta():
    """One daemon for a test module (tests use distinct recipients); the queue service is
    skipped so spooled messages stay in the spool for inspection."""
    m = start()
    try:
        yield m
    finally:
        try:
            m.d.stop(timeout=15)
        finally:
            m.d.cleanup()
