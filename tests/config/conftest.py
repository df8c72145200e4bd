import pytest


@pytest.fixture(autouse=True)
def _no_search_path(monkeypatch, tmp_path):
    # Keep /opt/msys/... of the test machine out of include resolution.
    monkeypatch.setenv("EC_CONF_SEARCH_PATH", str(tmp_path / "search-path-unused"))
