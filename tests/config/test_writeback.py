"""config writeback: where console changes land (conf.overview 15.1.2,
conf.ref.local_changes_file/only), formatting kept, and the round trip back."""

import os

from ecmta.config import ConfigManager, load_config
from ecmta.tests.config.util import write

IO = (("ThreadPool", "IO"),)
YAHOO = (("Domain", "yahoo.com"),)


def read(tmp_path, name):
    return open(os.path.join(str(tmp_path), name), encoding="utf-8").read()


def values(cfg):
    """scope key path -> {option: typed value}, ignoring order and locations."""
    return {s.key_path(): {k: v.value for k, v in s.options.items()} for s in cfg.root.walk()}


def manager(path):
    return ConfigManager(path, allow_unbuilt=True)


def test_replace_in_place_keeps_comments_and_layout(tmp_path):
    main = write(tmp_path, "ecelerity.conf", """
    # main configuration
    pidfile = "ecelerity.pid"   # the pid

    ThreadPool "IO" {
      Concurrency = 20    # twenty threads
      /* a C comment */
    }
    """)
    before = read(tmp_path, "ecelerity.conf")
    m = manager(main)
    m.set(IO, "concurrency", "35")
    assert m.writeback() == []
    assert read(tmp_path, "ecelerity.conf") == before.replace("Concurrency = 20 ", "Concurrency = 35 ")
    assert m.changes == []
    assert load_config(main).get(IO, "concurrency").value == 35


def test_first_writable_file_of_the_scope_instance(tmp_path):
    # The conf.overview example: foo.conf is read-only, so new Domain yahoo.com options
    # and replaced ones go to bar.conf (included inside it), not to baz.conf.
    write(tmp_path, "foo.conf", 'Domain yahoo.com {\n  Gateway = "server.yahoo.com"\n  include "bar.conf"\n}\n')
    write(tmp_path, "bar.conf", "# bar\n")
    write(tmp_path, "baz.conf", "# baz\n")
    main = write(tmp_path, "ecelerity.conf", 'readonly_include "foo.conf"\ninclude "baz.conf"\n')
    m = manager(main)
    m.set(YAHOO, "gateway", '"server2.yahoo.com"')
    m.set(YAHOO, "max_outbound_connections", "5")
    assert m.writeback() == []
    assert read(tmp_path, "bar.conf") == '# bar\nGateway = "server2.yahoo.com"\nMax_Outbound_Connections = 5\n'
    assert read(tmp_path, "foo.conf").count("server.yahoo.com") == 1      # read-only: untouched
    assert read(tmp_path, "baz.conf") == "# baz\n"
    cfg = load_config(main, allow_unbuilt=True)
    assert cfg.get(YAHOO, "gateway").value == "server2.yahoo.com"
    assert cfg.get(YAHOO, "gateway").file == str(tmp_path / "bar.conf")


def test_new_option_goes_inside_the_existing_stanza(tmp_path):
    main = write(tmp_path, "ecelerity.conf", """
    Control_Listener {
      Listen "/tmp/a" {}
      Listen "/tmp/b" {
        File_Mode = 0600
      }
    }
    """)
    m = manager(main)
    listen_a = (("Control_Listener", None), ("Listen", "/tmp/a"))
    listen_b = (("Control_Listener", None), ("Listen", "/tmp/b"))
    m.set(listen_a, "file_mode", "0644")
    m.set(listen_b, "listen_backlog", "100")
    m.writeback()
    assert read(tmp_path, "ecelerity.conf") == (
        'Control_Listener {\n'
        '  Listen "/tmp/a" {\n'
        '    File_Mode = 0644\n'
        '  }\n'
        '  Listen "/tmp/b" {\n'
        '    File_Mode = 0600\n'
        '    Listen_Backlog = 100\n'
        '  }\n'
        '}\n')


def test_unknown_scope_instance_goes_to_main_file_nested_in_existing_parent(tmp_path):
    main = write(tmp_path, "ecelerity.conf", 'Binding "b1" {\n  Max_Outbound_Connections = 3\n}\n')
    m = manager(main)
    m.set((("Binding", "b1"), ("Domain", "new.com")), "max_outbound_connections", "9")
    m.set((("Binding", "b1"), ("Domain", "new.com")), "message_expiration", "99")
    m.set((("ThreadPool", "CPU"),), "concurrency", "3")        # implicit pool: not in any file
    m.writeback()
    assert read(tmp_path, "ecelerity.conf") == (
        'Binding "b1" {\n'
        '  Max_Outbound_Connections = 3\n'
        '  Domain "new.com" {\n'
        '    Max_Outbound_Connections = 9\n'
        '    Message_Expiration = 99\n'
        '  }\n'
        '}\n'
        'ThreadPool "CPU" {\n'
        '  Concurrency = 3\n'
        '}\n')
    assert values(load_config(main, allow_unbuilt=True)) == values(m.current)


def test_local_changes_file_gets_new_scope_instances(tmp_path):
    lcf = str(tmp_path / "local_changes.conf")
    main = write(tmp_path, "ecelerity.conf", f'Local_Changes_File = "{lcf}"\nThreadPool "IO" {{\n}}\n')
    m = manager(main)
    m.set(IO, "concurrency", "12")                       # instance defined in main: goes there
    m.set((("Domain", "x.com"),), "max_outbound_connections", "2")   # nowhere: Local_Changes_File
    m.writeback()
    assert read(tmp_path, "local_changes.conf") == 'Domain "x.com" {\n  Max_Outbound_Connections = 2\n}\n'
    assert "Concurrency = 12" in read(tmp_path, "ecelerity.conf")
    cfg = load_config(main, allow_unbuilt=True)
    assert cfg.get((("Domain", "x.com"),), "max_outbound_connections").file == lcf
    # A second writeback edits the now-existing local file in place.
    m2 = manager(main)
    m2.set((("Domain", "x.com"),), "max_outbound_connections", "4")
    m2.writeback()
    assert read(tmp_path, "local_changes.conf") == 'Domain "x.com" {\n  Max_Outbound_Connections = 4\n}\n'


def test_local_changes_only_sends_everything_there(tmp_path):
    lcf = str(tmp_path / "lc.conf")
    main = write(tmp_path, "ecelerity.conf",
                 f'Local_Changes_File = "{lcf}"\nLocal_Changes_Only = true\nThreadPool "IO" {{\n  Concurrency = 5\n}}\n')
    before = read(tmp_path, "ecelerity.conf")
    m = manager(main)
    m.set(IO, "concurrency", "6")
    m.writeback()
    assert read(tmp_path, "ecelerity.conf") == before
    assert read(tmp_path, "lc.conf") == 'ThreadPool "IO" {\n  Concurrency = 6\n}\n'
    assert load_config(main).get(IO, "concurrency").value == 6


def test_read_only_everything_gives_the_virtual_file_warning(tmp_path):
    write(tmp_path, "inc.conf", 'ThreadPool "IO" {\n  Concurrency = 5\n}\n')
    main = write(tmp_path, "ecelerity.conf", 'readonly_include "inc.conf"\n')
    m = manager(main)
    m.sources.main.readonly = True          # as if the main file were not writable
    m.set(IO, "concurrency", "6")
    warnings = m.writeback()
    assert len(warnings) == 1
    assert warnings[0].startswith("Warning: not all portions of the configuration could be saved")
    assert warnings[0].endswith('ThreadPool "IO" {\n  Concurrency = 6\n}')
    assert m.changes            # kept for a later writeback once a Local_Changes_File exists
    assert read(tmp_path, "inc.conf") == 'ThreadPool "IO" {\n  Concurrency = 5\n}\n'


def test_unset_removes_lines_and_scopes(tmp_path):
    main = write(tmp_path, "ecelerity.conf", """
    pidfile = "p"
    Binding "gone" {
      Max_Outbound_Connections = 1
    }
    Binding "stays" {
      Max_Outbound_Connections = 2  # keep
      Message_Expiration = 3
    }
    """)
    m = manager(main)
    m.unset((("Binding", "gone"),))
    m.unset((("Binding", "stays"),), "message_expiration")
    m.writeback()
    assert read(tmp_path, "ecelerity.conf") == (
        'pidfile = "p"\n'
        'Binding "stays" {\n'
        '  Max_Outbound_Connections = 2  # keep\n'
        '}\n')


def test_unset_in_read_only_file_is_reported(tmp_path):
    write(tmp_path, "ro.conf", "Binding \"b\" {\n  Message_Expiration = 3\n}\n")
    main = write(tmp_path, "ecelerity.conf", 'readonly_include "ro.conf"\n')
    m = manager(main)
    m.unset((("Binding", "b"),), "message_expiration")
    (warning,) = m.writeback()
    assert "ro.conf:2 is in a read-only file (included with readonly_include)" in warning


def test_set_then_unset_scope_then_set_again(tmp_path):
    main = write(tmp_path, "ecelerity.conf", 'Binding "b" {\n  Message_Expiration = 3\n}\n')
    m = manager(main)
    m.set((("Binding", "b"),), "message_expiration", "4")
    m.unset((("Binding", "b"),))
    m.set((("Binding", "b"),), "max_outbound_connections", "7")
    m.writeback()
    assert read(tmp_path, "ecelerity.conf") == 'Binding "b" {\n  Max_Outbound_Connections = 7\n}\n'


def test_writeback_to_alternate_path_touches_nothing_else(tmp_path):
    write(tmp_path, "inc.conf", "Binding \"b\" {\n  Message_Expiration = 3\n}\n")
    main = write(tmp_path, "ecelerity.conf", 'include "inc.conf"\nThreadPool "IO" {\n  Concurrency = 5\n}\n')
    before_main, before_inc = read(tmp_path, "ecelerity.conf"), read(tmp_path, "inc.conf")
    m = manager(main)
    m.set(IO, "concurrency", "9")
    m.set((("Binding", "b"),), "message_expiration", "8")
    alt = str(tmp_path / "out" / "alt.conf")
    assert m.writeback(alt) == []
    assert (read(tmp_path, "ecelerity.conf"), read(tmp_path, "inc.conf")) == (before_main, before_inc)
    assert open(alt).read() == ('include "inc.conf"\nThreadPool "IO" {\n  Concurrency = 9\n}\n'
                                'Binding "b" {\n  Message_Expiration = 8\n}\n')
    assert m.changes                           # the real files still have to be written


def test_round_trip_after_transaction_commit(tmp_path):
    main = write(tmp_path, "ecelerity.conf", "# c\nThreadPool \"IO\" {\n  Concurrency = 5\n}\n")
    m = manager(main)
    txn = m.begin()
    txn.set(IO, "concurrency", "11")
    txn.set((("Domain", "d.com"), ), "max_outbound_connections", "1")
    m.commit(txn)
    m.writeback()
    assert values(load_config(main, allow_unbuilt=True)) == values(m.current)
    assert read(tmp_path, "ecelerity.conf").startswith("# c\n")


def test_from_scratch_commit_writes_the_whole_configuration(tmp_path):
    main = write(tmp_path, "ecelerity.conf", 'include "x.conf"\n')
    write(tmp_path, "x.conf", 'Binding "old" {\n}\n')
    m = manager(main)
    txn = m.begin(from_scratch=True)
    txn.set(IO, "concurrency", "7")
    m.commit(txn)
    m.writeback()
    assert read(tmp_path, "ecelerity.conf") == 'ThreadPool "IO" {\n  Concurrency = 7\n}\n'
    assert values(load_config(main)) == values(m.current)


def test_render_config_leaves_out_implicit_settings(tmp_path):
    main = write(tmp_path, "ecelerity.conf", 'pidfile = "a b"\nDomain "/re[.]x$/" {\n  Max_Outbound_Connections = 3\n}\n')
    m = manager(main)
    text = m.render()
    assert text == 'pidfile = "a b"\nDomain "/re[.]x$/" {\n  Max_Outbound_Connections = 3\n}\n'.replace(
        "pidfile", "Pidfile")
    assert values(load_config(write(tmp_path, "again.conf", text), allow_unbuilt=True)) == values(m.current)
