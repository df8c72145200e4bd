"""`show inbound` and `count` (console_commands.show_inbound, console_commands.count): the
documented layouts (checked against the doc's own example output), then live sessions of a
real daemon in known states, seen through the control socket and ec_console."""

from __future__ import annotations

import re

import pytest

from ecmta.console.cmd_inbound import count_lines, show_inbound_lines
from ecmta.tests.reception.helpers import start_mta, wait_for

# console_commands.count, verbatim
DOC_COUNT_16_32 = """\
      1                 216.200.0.0/16
      1                                 216.200.145.35/32
      1                 216.220.0.0/16
      1                                 216.220.128.9/32
      1                 216.237.0.0/16
      1                                 216.237.12.147/32
      5                 217.117.0.0/16
      5                                 217.117.146.233/32"""
DOC_PEERS = ["216.200.145.35", "216.220.128.9", "216.237.12.147"] + ["217.117.146.233"] * 5


def test_count_layout_matches_the_documented_example():
    lines = count_lines(list(reversed(DOC_PEERS)), "outbound", "16-32")
    assert lines[0] == "Displaying 'outbound' from /16 to /32"
    assert "\n".join(lines[1:]) == DOC_COUNT_16_32
    assert count_lines(DOC_PEERS, "outbound", "217.117.146.233/32") == ["5 sessions"]
    assert count_lines(["127.0.0.1"], "SMTP", "32") == [
        "Displaying 'SMTP' from /32 to /32",
        "      1                                 127.0.0.1/32"]


def test_count_specs():
    peers = ["10.1.2.3", "10.1.2.4", "10.9.0.1", "192.0.2.1", "2001:db8::1", "2001:db8::2"]
    assert count_lines(peers, "SMTP", "10.0.0.0/8") == ["3 sessions"]
    assert count_lines(peers, "SMTP", "10.1.2.3") == ["1 sessions"]
    assert count_lines(peers, "SMTP", "2001:db8::/32") == ["2 sessions"]
    assert count_lines(peers, "SMTP", "8") == [
        "Displaying 'SMTP' from /8 to /8",
        "      3         10.0.0.0/8",
        "      1         192.0.0.0/8",
        "      2         2000::/8"]
    assert count_lines([], "SMTP", "24-32") == ["Displaying 'SMTP' from /24 to /32"]
    from ecmta.console.registry import ConsoleError
    for bad in ("32-16", "999", "nonsense", "10.0.0.0/99"):
        with pytest.raises(ConsoleError):
            count_lines(peers, "SMTP", bad)


def test_show_inbound_layout():
    rows = [{"fd": 31, "peer": "::1:40000", "local": "[::1]:25", "state": "data", "for": 2.5},
            {"fd": 23, "peer": "127.0.0.1:47741", "local": "127.0.0.1:25",
             "state": "awaiting rcptto", "for": 0.264}]
    assert show_inbound_lines(rows) == [
        "23: [inbound/esmtp_message_factory] IPv4 127.0.0.1:47741 awaiting rcptto (for 0.264s)",
        "31: [inbound/esmtp_message_factory] IPv6 [::1]:40000 data (for 2.500s)"]


# -- against a running daemon ---------------------------------------------------------------------

SHOW_RE = re.compile(r"^(\d+): \[inbound/esmtp_message_factory\] IPv4 (127\.0\.0\.\d+):(\d+) "
                     r"(.+) \(for (\d+\.\d{3})s\)$")


def _rows(m):
    text = m.ok("show inbound")
    rows = []
    for ln in text.splitlines():
        g = SHOW_RE.match(ln)
        assert g, f"not the show inbound layout: {ln!r}"
        rows.append(g.groups())
    return rows


def test_show_inbound_and_count_on_live_sessions(daemon_factory):
    m = start_mta(daemon_factory)
    assert m.ok("show inbound") == ""
    assert m.ok("count SMTP 32") == "Displaying 'SMTP' from /32 to /32"
    a = m.wire()                                     # awaiting ehlo
    b = m.wire()
    b.cmd("EHLO client.test")
    b.cmd("MAIL FROM:<a@sender.test>")               # awaiting rcptto
    c = m.wire(source="127.0.0.5")
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<a@sender.test>")
    c.cmd("RCPT TO:<x@example.com>")
    c.cmd("DATA")                                    # in the body
    rows = wait_for(lambda: (lambda r: r if len(r) == 3 else None)(_rows(m)))
    by_port = {int(r[2]): r for r in rows}
    states = {p: by_port[w.sock.getsockname()[1]][3] for p, w in (("a", a), ("b", b), ("c", c))}
    assert states == {"a": "awaiting ehlo", "b": "awaiting rcptto", "c": "data"}
    assert by_port[c.sock.getsockname()[1]][1] == "127.0.0.5"
    assert [int(r[0]) for r in rows] == sorted(int(r[0]) for r in rows)       # by fd
    assert all(0 <= float(r[4]) < 30 for r in rows)
    assert m.ok("count SMTP 32").splitlines() == [
        "Displaying 'SMTP' from /32 to /32",
        "      2                                 127.0.0.1/32",
        "      1                                 127.0.0.5/32"]
    assert m.ok("count SMTP 24-32").splitlines() == [
        "Displaying 'SMTP' from /24 to /32",
        "      3                         127.0.0.0/24",
        "      2                                 127.0.0.1/32",
        "      1                                 127.0.0.5/32"]
    assert m.ok("count SMTP 127.0.0.0/8") == "3 sessions"
    assert m.ok("count smtp 127.0.0.5") == "1 sessions"
    # through the ec_console executable as an operator would
    proc = m.d.ec_console("count SMTP 127.0.0.1/32")
    assert proc.returncode == 0 and "2 sessions" in proc.stdout
    for w in (a, b, c):
        w.close()
    assert wait_for(lambda: m.ok("show inbound") == "" or None)
    assert m.ok("count SMTP 127.0.0.0/8") == "0 sessions"


def test_count_and_show_inbound_errors(daemon_factory):
    m = start_mta(daemon_factory)
    for line, text in [("count", "usage: count"), ("count SMTP", "usage: count"),
                       ("count ECStream 32", "unknown connection type"),
                       ("count SMTP 40-8", "bad mask range"), ("count SMTP x.y", "is not an IP"),
                       ("show inbound now", "usage: show inbound")]:
        ok, out = m.console(line)
        assert not ok and text in out, (line, out)
