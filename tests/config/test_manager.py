"""ConfigManager: generations, reload, subscribers, console changes, transactions,
non-dynamic options."""

import pytest

from ecmta.config import Config, ConfigError, ConfigManager
from ecmta.tests.config.util import write

IO = (("ThreadPool", "IO"),)


@pytest.fixture
def conf(tmp_path):
    return write(tmp_path, "ecelerity.conf", 'pidfile = "a.pid"\nThreadPool "IO" {\n  Concurrency = 5\n}\n')


def test_generations_are_immutable_and_numbered(conf):
    m = ConfigManager(conf)
    first = m.current
    assert first.generation == 1
    with pytest.raises(TypeError):
        first.root.options["pidfile"] = None
    m.set(IO, "concurrency", "6")
    assert m.current.generation == 2 and m.current is not first
    assert first.get(IO, "concurrency").value == 5          # the old generation is unchanged
    assert m.current.get(IO, "concurrency").value == 6
    assert m.current.get(IO, "concurrency").file is None    # set from the console


def test_default_manager_uses_the_embedded_config():
    m = ConfigManager()
    assert m.current.get((), "pidfile").value == "ecelerity.pid"


def test_subscribers_get_every_new_generation(conf):
    m = ConfigManager(conf)
    seen = []
    unsubscribe = m.subscribe(lambda cfg: seen.append((cfg.generation, cfg.get(IO, "concurrency").value)))
    m.set(IO, "concurrency", "10")                           # `config set threadpool IO concurrency 10`
    m.reload()
    txn = m.begin()
    txn.set(IO, "concurrency", "7")
    assert seen == [(2, 10), (3, 5)]                         # nothing before commit
    m.commit(txn)
    assert seen[-1] == (4, 7)
    unsubscribe()
    m.set(IO, "concurrency", "8")
    assert len(seen) == 3


def test_a_failing_subscriber_does_not_stop_the_others(conf, monkeypatch):
    from ecmta.loggers import panic as panic_module
    logged = []
    monkeypatch.setattr(panic_module, "panic", lambda text, **kw: logged.append(text))
    m = ConfigManager(conf)
    got = []

    def broken(cfg):
        raise RuntimeError("boom")
    m.subscribe(broken)
    m.subscribe(got.append)
    result = m.reload()
    assert got == [result.config]
    assert len(result.problems) == 1 and "boom" in result.problems[0] and "boom" in logged[0]


def test_reload_picks_up_file_changes_and_drops_console_changes(conf, tmp_path):
    m = ConfigManager(conf)
    m.set(IO, "concurrency", "99")
    write(tmp_path, "ecelerity.conf", 'pidfile = "a.pid"\nThreadPool "IO" {\n  Concurrency = 8\n}\n')
    result = m.reload()
    assert isinstance(result.config, Config) and result.config is m.current
    assert m.current.get(IO, "concurrency").value == 8
    assert m.changes == [] and result.restart_needed == []


def test_failed_reload_keeps_the_running_generation(conf, tmp_path):
    m = ConfigManager(conf)
    before = m.current
    write(tmp_path, "ecelerity.conf", "ThreadPool IO {\n  Concurrency = many\n}\n")
    with pytest.raises(ConfigError) as info:
        m.reload()
    assert info.value.errors[0].line == 2 and "expected an integer" in info.value.errors[0].message
    assert m.current is before


def test_reload_from_an_alternate_path(conf, tmp_path):
    other = write(tmp_path, "other.conf", 'ThreadPool "IO" {\n  Concurrency = 3\n}\n')
    m = ConfigManager(conf)
    m.reload(other)
    assert m.current.get(IO, "concurrency").value == 3 and m.path == other


def test_non_dynamic_options_cannot_change_at_run_time(conf, tmp_path):
    m = ConfigManager(conf)
    with pytest.raises(ConfigError, match="Option 'Pidfile' is not dynamic"):
        m.set((), "pidfile", '"b.pid"')
    with pytest.raises(ConfigError, match="Option 'Backlog' in scope 'ThreadPool:IO:' is not dynamic"):
        m.set(IO, "backlog", "10")
    with pytest.raises(ConfigError, match="not dynamic"):
        m.unset((), "pidfile")
    # A reload applies the rest and keeps the running value of the non-dynamic option.
    write(tmp_path, "ecelerity.conf", 'pidfile = "b.pid"\nThreadPool "IO" {\n  Concurrency = 9\n  Backlog = 4\n}\n')
    result = m.reload()
    assert m.current.get(IO, "concurrency").value == 9
    assert m.current.get((), "pidfile").value == "a.pid"
    assert m.current.get(IO, "backlog") is None
    assert result.restart_needed == [
        "Option 'Backlog' in scope 'ThreadPool:IO:' changed; a restart is needed for the new value to take effect",
        "Option 'Pidfile' in scope 'global' changed; a restart is needed for the new value to take effect"]
    assert m.last_reload is result


def test_non_dynamic_option_of_a_new_scope_is_taken(conf, tmp_path):
    m = ConfigManager(conf)
    write(tmp_path, "ecelerity.conf", 'pidfile = "a.pid"\nThreadPool "New" {\n  Backlog = 4\n}\n')
    result = m.reload()
    assert m.current.get("threadpool New", "backlog").value == 4 and result.restart_needed == []


def test_set_validates_like_the_file(conf):
    m = ConfigManager(conf)
    with pytest.raises(ConfigError, match="expected an integer"):
        m.set(IO, "concurrency", "lots")
    with pytest.raises(ConfigError, match="not valid in scope 'ThreadPool'"):
        m.set(IO, "file_mode", "0600")
    with pytest.raises(ConfigError, match="is not available in this version"):
        m.set((), "adaptive_enabled", "true")
    with pytest.raises(ConfigError, match="scope 'Listen' is not valid inside 'Global'"):
        m.set((("Listen", ":25"),), "enable", "true")
    assert m.current.generation == 1


def test_unset_option_scope_and_refusals(conf):
    m = ConfigManager(conf)
    r = m.unset(IO, "concurrency")
    assert r.value.value == 50 and r.value.file == "<builtin>"   # the implicit pool default
    with pytest.raises(ConfigError, match="is an implicit setting"):
        m.unset(IO, "concurrency")
    with pytest.raises(ConfigError, match="Unsetting the global scope is not supported"):
        m.unset(())
    m.set((("ThreadPool", "extra"),), "concurrency", "2")
    m.unset((("ThreadPool", "extra"),))
    assert m.current.find("threadpool extra") is None
    m.unset(IO)                                  # the implicit pool comes back with its default
    assert m.current.get(IO, "concurrency").value == 50
    with pytest.raises(ConfigError, match="Scope 'ThreadPool:nope:' does not exist"):
        m.unset((("ThreadPool", "nope"),))


def test_transactions_are_isolated_and_first_commit_wins(conf):
    m = ConfigManager(conf)
    a, b = m.begin(), m.begin()
    a.set(IO, "concurrency", "11", command="config set threadpool IO concurrency 11")
    b.set(IO, "concurrency", "22")
    assert a.config.get(IO, "concurrency").value == 11
    assert b.config.get(IO, "concurrency").value == 22
    assert m.current.get(IO, "concurrency").value == 5     # nothing live yet
    m.commit(a)
    assert m.current.get(IO, "concurrency").value == 11
    with pytest.raises(ConfigError, match="Commit failed"):
        m.commit(b)
    assert m.current.get(IO, "concurrency").value == 11
    with pytest.raises(ConfigError, match="transaction is over"):
        b.set(IO, "concurrency", "1")


def test_a_change_outside_a_transaction_also_beats_it(conf):
    m = ConfigManager(conf)
    t = m.begin()
    t.set(IO, "concurrency", "3")
    m.set(IO, "concurrency", "4")
    with pytest.raises(ConfigError, match="Commit failed"):
        m.commit(t)


def test_rollback_and_replay(conf):
    m = ConfigManager(conf)
    t = m.begin()
    t.set(IO, "concurrency", "3", command="config set threadpool IO concurrency 3")
    t.unset(IO, "concurrency")
    t.set((("ThreadPool", "acc pool"),), "concurrency", "2")
    assert t.replay() == ["config set threadpool IO concurrency 3", "config unset ThreadPool IO Concurrency",
                          'config set ThreadPool "acc pool" Concurrency 2']
    m.rollback(t)
    assert m.current.generation == 1 and not t.open


def test_begin_from_scratch_has_only_implicit_settings(conf):
    m = ConfigManager(conf)
    t = m.begin(from_scratch=True)
    d = t.config
    assert d.get((), "pidfile") is None
    assert len(d.scopes("threadpool")) == 8 and d.find("debug_flags") is not None
    assert d.get((), "timestampformat") is not None
    assert d.get(IO, "concurrency").value == 50
    t.set(IO, "concurrency", "6")
    m.commit(t)
    assert m.current.get(IO, "concurrency").value == 6
    # Pidfile is non-dynamic: the running value stays, and the commit says a restart is needed.
    assert m.current.get((), "pidfile").value == "a.pid"
    assert t.restart_needed == ["Option 'Pidfile' in scope 'global' changed; a restart is needed "
                                "for the new value to take effect"]


def test_reloading_the_embedded_default_keeps_it_read_only():
    m = ConfigManager()
    assert m.path.endswith("ecelerity.conf")
    m.reload()
    assert m.sources.main.readonly and m.sources.main.reason == "embedded default configuration"
