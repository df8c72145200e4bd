"""The example stanzas of modules.maildir and modules.pipe_transport pass validate_config;
option spellings and values as the pages write them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ecmta.actors import local_delivery as ld
from ecmta.config import ConfigError, load_config_text

MAILDIR_EXAMPLE = """\
maildir "maildir1" {
  basedir = "/var/tmp/popbase"
  dirmode = 775
  filemode = 664
  create_users = true
  domain_in_path = true
  all_domains = false
  domains = ( "example.com"
            "another.example.com")
}
"""
PIPE_EXAMPLE = """\
pipe_transport "pipe_transport1"
{
   program_name  = "/bin/cat"
   output_file = "/var/log/ecelerity/pipe.stdout"
   error_file = "/var/log/ecelerity/pipe.stderr"
   domain =  ( "example.com" "another.example.com" )
   code = [
     "0" = "250 ok"
   ]
}
"""
PIPE_CODES = """\
pipe_transport "qmail" {
  program_name = "/usr/bin/qmail-command"
  domain = "q.example.com"
  code = [
        100 = "550 command failed"
        111 = "450 try again later"
]
}
"""


@pytest.mark.parametrize("text", [MAILDIR_EXAMPLE, PIPE_EXAMPLE, PIPE_CODES,
                                  MAILDIR_EXAMPLE + PIPE_EXAMPLE + PIPE_CODES])
def test_page_examples_pass_validate_config(tmp_path, text):
    conf = tmp_path / "ecelerity.conf"
    conf.write_text(text)
    res = subprocess.run([sys.executable, "-m", "ecmta.cli.validate_config", "-c", str(conf)],
                         capture_output=True, text=True, timeout=60)
    assert (res.returncode, res.stdout, res.stderr) == (0, "Configuration valid\n", "")


def test_both_spellings_of_the_page_are_accepted():
    cfg = load_config_text('maildir "m" {\n  basedir = "/b"\n  createusers = true\n'
                           '  domain = ( "a.test" )\n  domains = ( "b.test" )\n}\n')
    t = ld.Router(cfg, "/state").targets[0]
    assert t.createusers and t.domains == {"a.test", "b.test"} and t.basedir == "/b"


def test_router_reads_the_examples():
    cfg = load_config_text(MAILDIR_EXAMPLE + PIPE_EXAMPLE + PIPE_CODES)
    r = ld.Router(cfg, "/state")
    m, p, q = r.targets
    assert (m.module, m.name, m.dirmode, m.filemode, m.createusers, m.domain_in_path, m.all_domains) == \
        ("maildir", "maildir1", 0o775, 0o664, True, True, False)
    assert m.domains == {"example.com", "another.example.com"}
    assert r.target("Example.COM.") is m            # first stanza in config order wins
    assert r.target("q.example.com") is q and r.target("other.test") is None
    assert p.argv == ("/bin/cat",) and p.output_file == "/var/log/ecelerity/pipe.stdout"
    assert p.codes[0].code == 250 and p.codes[0].text == "ok"
    assert q.codes[100].code == 550 and q.codes[111].text == "try again later"
    assert q.output_file == "/dev/null" and q.error_file == "/dev/null" and q.timeout == 300


@pytest.mark.parametrize("text, error", [
    ('maildir "m" {\n  dirmode = abc\n}\n', "bad value for option 'dirmode'"),
    ('maildir "m" {\n  create_user = true\n}\n', "unknown option 'create_user'"),
    ('pipe_transport "p" {\n  code = "250 ok"\n}\n', "bad value for option 'code'"),
    ('pipe_transport "p" {\n  all_domains = true\n}\n', "unknown option 'all_domains'"),
])
def test_bad_stanzas_are_config_errors(text, error):
    with pytest.raises(ConfigError, match=error):
        load_config_text(text)


@pytest.mark.parametrize("stanza, problem", [
    ('maildir "m" {\n  domain = "a.test"\n}\n', "basedir is not set"),
    ('maildir "m" {\n  basedir = "/b"\n  dirmode = 789\n}\n', "expected an octal file mode"),
    ('pipe_transport "p" {\n  domain = "a.test"\n}\n', "program_name is not set"),
    ('pipe_transport "p" {\n  program_name = "/bin/cat"\n  code = [ x = "250 ok" ]\n}\n', "code entry"),
    ('pipe_transport "p" {\n  program_name = "/bin/cat"\n  code = [ 1 = "ok" ]\n}\n', "code entry"),
])
def test_run_time_problems_are_named(stanza, problem):
    t = ld.Router(load_config_text(stanza), "/state").targets[0]
    assert problem in t.problem
