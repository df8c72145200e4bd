"""Configuration of as_logger and inbound_audit: validate_config's file:line errors (a bad
regex, a bad series_include_default, inbound_audit's monitors not built, the singleton
rule), the values the modules read (defaults under the state directory, compiled
regexes, which series a plan selects), and intervals below one second refused at start."""

import subprocess
import sys

import pytest

from ecmta.config import load_config_text
from ecmta.loggers import as_logger
from ecmta.loggers.ec_logger import LogConfigError
from ecmta.policy.audit_series import Series
from ecmta.policy.audit_series_service import AuditConfigError, settings

GOOD = """\
as_logger
{
  log_interval = 60
  base_dir = "/var/log/eccluster/aslogger"
  series_include_default = "all"
  series_exclude = ( "spam$" "^other" )
}
inbound_audit
{
  serialize_dir = "/tmp/persist"
  log_dir = "/tmp/logs"
  maintenance_interval = "5 minutes"
}
"""


def validate(tmp_path, text: str):
    conf = tmp_path / "ecelerity.conf"
    conf.write_text(text)
    r = subprocess.run([sys.executable, "-m", "ecmta.cli.validate_config", "-c", str(conf)],
                       capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout.strip(), [line.replace(str(conf), "F") for line in r.stderr.splitlines()]


def test_the_pages_examples_are_valid(tmp_path):
    assert validate(tmp_path, GOOD) == (0, "Configuration valid", [])
    alt = ('as_logger {\n  log_interval = 60\n  series_include_default = none\n'
           '  series_include = ( "^keep-" "^myseries$" )\n}\ninbound_audit { }\n')
    assert validate(tmp_path, alt) == (0, "Configuration valid", [])


def test_errors_name_file_and_line(tmp_path):
    text = ('as_logger {\n  series_exclude = ( "ok" "spam(" )\n  series_include_default = some\n'
            '  log_dir = "/x"\n}\ninbound_audit {\n  monitors = ( "300,6" "1800,4" )\n}\n'
            'as_logger "named" { }\n')
    rc, out, err = validate(tmp_path, text)
    assert rc == 1 and out == ""
    assert err == [
        "F:2: bad value for option 'series_exclude': bad regular expression \"spam(\": "
        "missing ), unterminated subpattern at position 4",
        "F:3: bad value for option 'series_include_default': expected one of all, none; got \"some\"",
        "F:4: unknown option 'log_dir' in module 'as_logger'",
        "F:7: option 'monitors' is not available in this version",
        "F:9: module 'as_logger' is a singleton and takes no instance name",
    ]


def test_plan_values_and_defaults():
    cfg = load_config_text(GOOD, file="a.conf")
    p = as_logger.plan(cfg, "/state")
    assert (p.base_dir, p.log_interval, p.include_all, p.reset) == \
        ("/var/log/eccluster/aslogger", 60.0, True, True)
    assert [rx.pattern for rx in p.exclude] == ["spam$", "^other"]
    assert settings(cfg, "/state") == settings(cfg, "/other") and \
        settings(cfg, "/state").persist_dir == "/tmp/persist"
    assert settings(cfg, "/state").maintenance_interval == 300
    bare = load_config_text("as_logger { }\n", file="b.conf")
    p = as_logger.plan(bare, "/state")
    assert (p.base_dir, p.log_interval, p.include_all, p.include) == \
        ("/state/audit_series_logs", 60.0, False, ())
    s = settings(bare, "/state")
    assert (s.persist_dir, s.log_dir, s.maintenance_interval) == \
        ("/state/audit_series_persist", "/state/audit_series_logs", 300)
    assert as_logger.plan(load_config_text("", file="c.conf"), "/state") is None
    assert as_logger.plan(load_config_text("as_logger { enabled = false }\n", file="d.conf"),
                          "/state") is None


def test_plan_selection():
    def names(text):
        p = as_logger.plan(load_config_text(text, file="s.conf"), "/state")
        return [n for n in ("myseries", "keep-a", "rbl-spam", "other", "x")
                if p.selects(Series(n, "string", 60, 1))]
    assert names(GOOD) == ["myseries", "keep-a", "x"]
    assert names('as_logger { series_include = ( "^keep-" "^myseries$" ) }\n') == ["myseries", "keep-a"]
    # series_exclude applies only with "all", series_include only with "none"
    assert names('as_logger { series_exclude = ( "." ) }\n') == []
    assert names('as_logger { series_include_default = all\n series_include = ( "^x$" ) }\n') == \
        ["myseries", "keep-a", "rbl-spam", "other", "x"]


def test_intervals_below_one_second_are_refused():
    cfg = load_config_text('as_logger {\n  base_dir = "/x"\n  log_interval = 0\n}\n', file="i.conf")
    with pytest.raises(LogConfigError, match=r"^i.conf:3: as_logger: log_interval must be at least "
                                             r"1 second, not 0$"):
        as_logger.plan(cfg, "/state")
    cfg = load_config_text('inbound_audit {\n  maintenance_interval = -5\n}\n', file="m.conf")
    with pytest.raises(AuditConfigError, match=r"^m.conf:2: inbound_audit: maintenance_interval "
                                               r"must be at least 1 second, not -5$"):
        settings(cfg, "/state")


def test_the_daemon_refuses_to_start_with_log_interval_zero(daemon_factory):
    d = daemon_factory('as_logger {\n  log_interval = 0\n}\n')
    with pytest.raises(RuntimeError, match="log_interval must be at least 1 second"):
        d.start()
