"""include / readonly_include: files, directories, search order, read-only marks, cycles."""

import os

from ecmta.config import load_config
from ecmta.tests.config.util import errors_of, where, write


def test_include_file_relative_to_including_file(tmp_path):
    write(tmp_path, "conf/pools.conf", 'ThreadPool "extra" {\n  Concurrency = 3\n}\n')
    main = write(tmp_path, "conf/ecelerity.conf", 'include "pools.conf"\npidfile = "p"\n')
    cfg = load_config(main)
    v = cfg.get("threadpool extra", "concurrency")
    assert v.value == 3 and v.file == str(tmp_path / "conf" / "pools.conf") and v.line == 2
    assert [os.path.basename(f.path) for f in cfg.sources.files] == ["ecelerity.conf", "pools.conf"]
    assert not any(f.readonly for f in cfg.sources.files)


def test_include_inside_a_scope(tmp_path):
    write(tmp_path, "io.conf", "Concurrency = 12\n")
    main = write(tmp_path, "main.conf", 'ThreadPool "IO" {\n  include = io.conf\n}\n')
    cfg = load_config(main)
    assert cfg.get("threadpool IO", "concurrency").value == 12
    assert cfg.sources.files[1].context == (("threadpool", "io"),)


def test_include_directory_alphabetical_skips_dotfiles_and_subdirs(tmp_path):
    write(tmp_path, "d/20-b.conf", "pidfile = b\n")
    write(tmp_path, "d/10-a.conf", "pidfile = a\nThreadPool A { Concurrency = 1 }\n")
    write(tmp_path, "d/.hidden.conf", "this is not even valid\n")
    write(tmp_path, "d/sub/x.conf", "also not valid\n")
    main = write(tmp_path, "main.conf", f'include "{tmp_path}/d"\n')
    cfg = load_config(main)
    assert [os.path.basename(f.path) for f in cfg.sources.files] == ["main.conf", "10-a.conf", "20-b.conf"]
    assert cfg.get((), "pidfile").value == "b"          # later file wins
    assert cfg.find("threadpool A") is not None


def test_search_path_from_environment_then_default(tmp_path, monkeypatch):
    write(tmp_path, "s1/only-here.conf", "pidfile = s1\n")
    write(tmp_path, "s2/only-here.conf", "pidfile = s2\n")
    write(tmp_path, "s2/second.conf", "pidfile = second\n")
    main = write(tmp_path, "etc/main.conf", 'include "only-here.conf"\n')
    monkeypatch.setenv("EC_CONF_SEARCH_PATH", f"{tmp_path}/s1:{tmp_path}/s2")
    assert load_config(main).get((), "pidfile").value == "s1"
    main2 = write(tmp_path, "etc/main2.conf", 'include "second.conf"\n')
    assert load_config(main2).get((), "pidfile").value == "second"
    # The including file's directory comes first.
    write(tmp_path, "etc/only-here.conf", "pidfile = local\n")
    assert load_config(main).get((), "pidfile").value == "local"


def test_default_search_path_is_momentums(monkeypatch):
    from ecmta.config.loader import DEFAULT_SEARCH_PATH, search_path
    monkeypatch.delenv("EC_CONF_SEARCH_PATH", raising=False)
    assert search_path() == list(DEFAULT_SEARCH_PATH) == [
        "/opt/msys/ecelerity/etc", "/opt/msys/ecelerity/etc/conf/global", "/opt/msys/ecelerity/etc/conf/default"]


def test_readonly_include_and_twice_included_are_read_only(tmp_path):
    write(tmp_path, "ro.conf", "pidfile = ro\n")
    write(tmp_path, "twice.conf", "timestampformat = t\n")
    write(tmp_path, "rw.conf", "# writable\n")
    main = write(tmp_path, "main.conf", 'readonly_include "ro.conf"\ninclude "twice.conf"\n'
                                       'include "rw.conf"\ninclude "twice.conf"\n')
    cfg = load_config(main)
    marks = {(os.path.basename(f.path), f.readonly, f.reason) for f in cfg.sources.files}
    assert marks == {("main.conf", False, ""), ("ro.conf", True, "included with readonly_include"),
                     ("twice.conf", True, "included more than once"), ("rw.conf", False, "")}


def test_files_included_by_a_readonly_file_stay_writable(tmp_path):
    # conf.overview 15.1.2: foo.conf is read-only, bar.conf (included from it) is not.
    write(tmp_path, "bar.conf", "# bar\n")
    write(tmp_path, "foo.conf", 'Domain yahoo.com {\n  include "bar.conf"\n}\n')
    main = write(tmp_path, "main.conf", 'readonly_include "foo.conf"\n')
    cfg = load_config(main)
    ro = {os.path.basename(f.path): f.readonly for f in cfg.sources.files}
    assert ro == {"main.conf": False, "foo.conf": True, "bar.conf": False}


def test_unwritable_file_is_read_only(tmp_path):
    path = write(tmp_path, "inc.conf", "pidfile = x\n")
    main = write(tmp_path, "main.conf", 'include "inc.conf"\n')
    os.chmod(path, 0o444)
    try:
        cfg = load_config(main)
        inc = cfg.sources.files[1]
        if os.access(path, os.W_OK):     # running as root: the mode does not stop writes
            assert not inc.readonly
        else:
            assert inc.readonly and inc.reason == "not writable"
    finally:
        os.chmod(path, 0o644)


def test_missing_include_names_the_include_line(tmp_path):
    main = write(tmp_path, "main.conf", 'pidfile = x\n\ninclude "nowhere.conf"\n')
    errs = errors_of(main)
    assert where(errs) == [("main.conf", 3)]
    assert "included file 'nowhere.conf' not found" in errs[0].message
    assert str(tmp_path / "nowhere.conf") in errs[0].message


def test_include_cycle_is_an_error(tmp_path):
    write(tmp_path, "a.conf", 'pidfile = a\ninclude "b.conf"\n')
    write(tmp_path, "b.conf", 'pidfile = b\ninclude "a.conf"\n')
    main = write(tmp_path, "main.conf", 'include "a.conf"\n')
    errs = errors_of(main)
    assert where(errs) == [("b.conf", 2)]
    assert errs[0].message.startswith("include cycle: ")
    assert errs[0].message.endswith(f"{tmp_path}/a.conf -> {tmp_path}/b.conf -> {tmp_path}/a.conf")


def test_self_include_is_a_cycle(tmp_path):
    main = write(tmp_path, "main.conf", 'include "main.conf"\n')
    assert "include cycle" in errors_of(main)[0].message


def test_errors_in_included_files_name_that_file(tmp_path):
    write(tmp_path, "inc.conf", "pidfile = x\n\nbogus_option = 1\n")
    write(tmp_path, "syntax.conf", 'pidfile = "open\n')
    main = write(tmp_path, "main.conf", 'include "inc.conf"\ninclude "syntax.conf"\nalso_bogus = 2\n')
    errs = errors_of(main)
    assert where(errs) == [("syntax.conf", 1), ("inc.conf", 3), ("main.conf", 3)]


def test_unsupported_scheme(tmp_path):
    main = write(tmp_path, "main.conf", 'include "http://example.com/x.conf"\n')
    assert "only file:// and persist://" in errors_of(main)[0].message
    write(tmp_path, "f.conf", "pidfile = f\n")
    main = write(tmp_path, "main2.conf", f'include "file://{tmp_path}/f.conf"\n')
    assert load_config(main).get((), "pidfile").value == "f"


def test_local_changes_file_is_loaded_last(tmp_path):
    lcf = write(tmp_path, "local_changes.conf", "pidfile = from-local\n")
    main = write(tmp_path, "main.conf", f'Local_Changes_File = "{lcf}"\npidfile = from-main\n')
    cfg = load_config(main)
    assert cfg.get((), "pidfile").value == "from-local"
    assert cfg.sources.local_changes.path == lcf and cfg.sources.local_changes_path == lcf


def test_local_changes_file_may_not_be_an_included_file(tmp_path):
    inc = write(tmp_path, "inc.conf", "pidfile = x\n")
    main = write(tmp_path, "main.conf", f'include "inc.conf"\nLocal_Changes_File = "{inc}"\n')
    errs = errors_of(main)
    assert where(errs) == [("main.conf", 2)] and "may not be the main configuration file" in errs[0].message


def test_missing_local_changes_file_is_fine(tmp_path):
    main = write(tmp_path, "main.conf", f'Local_Changes_File = "{tmp_path}/lc.conf"\n')
    cfg = load_config(main)
    assert cfg.sources.local_changes is None and cfg.sources.local_changes_path == f"{tmp_path}/lc.conf"


def test_text_sources_do_not_include_from_the_working_directory(tmp_path, monkeypatch):
    from ecmta.config import ConfigError, load_config_text
    write(tmp_path, "here.conf", "pidfile = here\n")
    monkeypatch.chdir(tmp_path)
    try:
        load_config_text('include "here.conf"\n', "mem.conf")
        raise AssertionError("included a file relative to the working directory")
    except ConfigError as exc:
        assert exc.errors[0].line == 1 and "not found" in exc.errors[0].message


def test_special_files_are_not_included(tmp_path):
    main = write(tmp_path, "main.conf", 'include "/dev/null"\n')
    errs = errors_of(main)
    assert where(errs) == [("main.conf", 1)] and "not a regular file" in errs[0].message
