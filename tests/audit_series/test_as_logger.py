"""as_logger in a real daemon (log_interval = 1): a scriptlet counts messages per address in
audit series and reports a series' count in its MAIL FROM reply ("2.1.0 seen N"); the
journal files in base_dir are checked for their names, header and lines, for the reset
after each file (the counts of all files add up to what was sent, and the series reads 0
after a file), for series_include/series_exclude, for a reload that removes the stanza;
and inbound_audit's log_dir journal of series defined with serialize = true (no reset)."""

import os
import re
import time
from datetime import datetime, timezone

from ecmta.tests.audit_series.helpers import start, wait_for

POLICY = """\
require("msys.core");
require("msys.audit_series");
local mod = {};
function mod:init()
  msys.audit_series.define("msgs", "cidr", 300, 2, {serialize = SERIALIZE})
  msys.audit_series.define("conns", "cidr", 300, 2)
  return true
end
function mod:validate_connect(ac, vctx)
  msys.audit_series.add("conns")
  return msys.core.VALIDATE_CONT
end
function mod:validate_mailfrom(from, ac, vctx)
  local which = from:match("<probe%-(%a+)@") or "msgs"
  vctx:set_code(250, "2.1.0 seen " .. msys.audit_series.count(which))
  return msys.core.VALIDATE_DONE
end
function mod:validate_data_spool(msg, ac, vctx)
  msys.audit_series.add("msgs", ac)
  return msys.core.VALIDATE_CONT
end
msys.registerModule("series", mod);
"""

NAME = re.compile(r"^(?P<series>[a-z]+)\.(?P<stamp>\d{14})(?:\.\d+)?$")
HEADER = re.compile(r"^# audit_series (?P<name>\S+) type=cidr interval=300 windows=2 "
                    r"start=(?P<start>\S+) end=(?P<end>\S+)$")


def policy(serialize: bool = False) -> str:
    return POLICY.replace("SERIALIZE", "true" if serialize else "false")


def journal(directory: str) -> list[tuple[str, list[str]]]:
    """(file name, lines) of the journal files, oldest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if name.startswith("."):             # a file being written (hidden, then renamed)
            continue
        with open(os.path.join(directory, name)) as fh:
            out.append((name, fh.read().splitlines()))
    return sorted(out, key=lambda item: (HEADER.match(item[1][0]).group("end"), item[0]))


def iso(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def check_file(name: str, lines: list[str], series: str) -> dict:
    m = NAME.match(name)
    assert m and m.group("series") == series, name
    h = HEADER.match(lines[0])
    assert h and h.group("name") == series, lines[0]
    start, end = iso(h.group("start")), iso(h.group("end"))
    assert start <= end and abs(end - time.time()) < 60
    assert m.group("stamp") == time.strftime("%Y%m%d%H%M%S", time.gmtime(end))
    counts = {}
    for line in lines[1:]:
        key, count = line.split("\t")
        counts[key] = int(count)
    return counts


def seen(m, which: str = "msgs", source: str = "127.0.0.1") -> int:
    with m.smtp(source) as s:
        code, text = s.mail(f"probe-{which}@client.test")
    assert code == 250, text
    return int(text.decode().rsplit(" ", 1)[1])


def test_a_file_per_interval_then_the_series_is_reset(daemon_factory):
    tail = ('as_logger {\n  log_interval = 1\n  base_dir = "$home/aslog"\n'
            '  series_include = ( "^msgs$" )\n}\n')
    m = start(daemon_factory, policy(), tail)
    base = m.path("aslog")
    for source in ("127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.1"):
        assert m.send(source)[0] == 250
    sent = {"127.0.0.1": 3, "127.0.0.2": 1}

    def complete():
        files = journal(base)
        total: dict = {}
        for name, lines in files:
            for k, v in check_file(name, lines, "msgs").items():
                total[k] = total.get(k, 0) + v
        # every count journaled exactly once, and a file written after the last count
        return total == sent and len(files[-1][1]) == 1 and files
    files = wait_for(complete, what=f"journal files adding up to {sent} in {base}")
    # reset: nothing was added since the last file, so the series is empty now
    assert seen(m) == 0
    # series_include: conns is not journaled, so never reset (5 connections from 127.0.0.1
    # so far, this probe's included)
    assert seen(m, "conns") == 5 and all(n.startswith("msgs.") for n in os.listdir(base))
    # consecutive periods: each file starts where the previous one ended
    bounds = [HEADER.match(lines[0]).group("start", "end") for _, lines in files]
    assert all(bounds[i][1] == bounds[i + 1][0] for i in range(len(bounds) - 1))
    wait_for(lambda: not [n for n in os.listdir(base) if n.endswith(".tmp")],
             what="no temporary file left behind")


def test_series_exclude_and_a_reload_that_removes_the_stanza(daemon_factory):
    stanza = ('as_logger {\n  log_interval = 1\n  base_dir = "aslog"\n'
              '  series_include_default = all\n  series_exclude = ( "^ms" )\n}\n')
    m = start(daemon_factory, policy(), stanza)
    base = m.path("aslog")                  # relative base_dir: under the state directory
    assert m.send()[0] == 250
    wait_for(lambda: any(lines[1:] == ["127.0.0.1\t1"] for _, lines in journal(base)),
             what="a conns file with the first connection")
    files = wait_for(lambda: (lambda fs: fs if fs[-1][1][1:] == [] else None)(journal(base)),
                     what="a conns file of a quiet second after it (reset)")
    assert all(name.startswith("conns.") for name, _ in files)
    assert seen(m) == 1                      # msgs is excluded: never reset
    m.d.config_body = m.d.config_body.replace(stanza, "")
    m.d.write_config()
    assert m.d.ok("config reload") == ""
    settled = len(journal(base))             # the stopped journal wrote its last file
    before = seen(m, "conns")
    time.sleep(2.5)
    assert len(journal(base)) == settled
    assert seen(m, "conns") == before + 1    # no longer reset


def test_serialize_journals_to_log_dir_without_reset(daemon_factory):
    tail = 'inbound_audit {\n  log_dir = "$home/serial"\n  maintenance_interval = 1\n}\n'
    m = start(daemon_factory, policy(serialize=True), tail)
    base = m.path("serial")
    assert m.send("127.0.0.1")[0] == 250
    assert m.send("127.0.0.2")[0] == 250
    want = {"127.0.0.1": 1, "127.0.0.2": 1}
    files = wait_for(lambda: (lambda fs: fs if len([f for f in fs if check_file(*f, "msgs") == want]) >= 2
                              else None)(journal(base)), what="two files with both counts")
    assert all(name.startswith("msgs.") for name, _ in files)     # conns: serialize = false
    assert seen(m) == 1                                           # not reset
