import pytest

from ecmta.loggers import jlog as J


@pytest.fixture(autouse=True)
def no_descriptor_left_open():
    """Every reader, writer and tool closes what it opened (the shared descriptor table)."""
    before = set(J._table)
    yield
    left = [(f.path, f.refcnt) for key, f in J._table.items() if key not in before]
    assert not left, f"jlog files left open: {left}"
