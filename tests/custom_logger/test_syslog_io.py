"""syslog_io (modules.syslog_io): syslog:// destinations, their datagrams, the syslog(3)
path in a pool, and the page's example (ec_logger's paniclog to syslog)."""

import os
import re
import shutil
import socket
import sys
import tempfile
import types

import pytest

from ecmta.config import load_config_text
from ecmta.loggers import syslog_io as S
from ecmta.tests.custom_logger.helpers import start


def test_parse_the_pages_uri_and_defaults():
    d = S.parse("syslog://?facility=mail&priority=error")
    assert (d.facility, d.priority, d.pri, d.ident, d.socket) == (2, 3, 19, "ecelerity", "")
    assert S.parse("syslog://").pri == 2 * 8 + 3                     # mail, error
    assert S.parse("syslog://?priority=info&facility=LOCAL7").pri == 23 * 8 + 6
    assert S.parse("syslog:///?facility=log_daemon&priority=log_warning").pri == 3 * 8 + 4


def test_parse_refuses_what_syslog_does_not_have():
    for bad, why in (("syslog://?facility=nowhere", "facility"), ("syslog://?priority=loud", "priority"),
                     ("syslog://host/x", "no path"), ("syslog://?facility=mail&tag=x", "unknown parameter"),
                     ("file:///x", "not a syslog")):
        with pytest.raises(ValueError, match=why):
            S.parse(bad, "paniclog")


def test_syslog_io_stanza_sets_ident_facility_and_socket():
    cfg = load_config_text('syslog_io {\n  ident = "mta"\n  default_facility = "local2"\n  socket = "/tmp/s"\n}\n')
    d = S.parse("syslog://?priority=notice", "mainlog", cfg)
    assert (d.ident, d.facility, d.priority, d.socket) == ("mta", 18, 5, "/tmp/s")
    S.configure(cfg)
    try:
        assert S.parse("syslog://").ident == "mta"
    finally:
        S.configure(load_config_text(""))
    assert S.parse("syslog://").ident == "ecelerity"


def test_datagram_is_what_syslog3_sends():
    d = S.SyslogDestination(2, 3, "ecelerity")
    got = S.datagram(d, "a line\nwith a break", now=0, pid=77).decode()
    assert re.fullmatch(r"<19>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ecelerity\[77\]: a line with a break", got)


def test_write_syslog_uses_openlog_once_and_the_priority(monkeypatch):
    calls = []
    fake = types.SimpleNamespace(LOG_PID=1, openlog=lambda *a: calls.append(("open", a)),
                                 syslog=lambda *a: calls.append(("log", a)))
    monkeypatch.setitem(sys.modules, "syslog", fake)
    monkeypatch.setattr(S, "_opened", [None])
    S.write_syslog("ident1", 19, ["one", "two"])
    S.write_syslog("ident1", 19, ["three"])
    assert calls == [("open", ("ident1", 1)), ("log", (19, "one")), ("log", (19, "two")), ("log", (19, "three"))]


def test_the_pages_example_ec_logger_paniclog_to_syslog(daemon_factory, servers):
    """Example 71.97: ec_logger paniclog = "syslog://?facility=mail&priority=error"; the
    paniclog lines arrive as datagrams (syslog_io's socket) at mail.err."""
    sockdir = tempfile.mkdtemp(prefix="ecsl", dir="/tmp")
    path = os.path.join(sockdir, "log")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(path)
    rx.settimeout(20)
    try:
        tail = (f'syslog_io {{\n  socket = "{path}"\n}}\n'
                # a switch without a format: a paniclog line to look for
                'custom_logger "c" {\n  log_receptions = on\n  mainlog = "$home/log/c"\n}\n')
        m = start(daemon_factory, servers, tail, ec_logger=(
            'ec_logger "ec_logger1" {\n  mainlog = "$home/log/mainlog.ec"\n'
            '  paniclog = "syslog://?facility=mail&priority=error"\n}'))
        want = 'custom_logger "c": log_receptions is on but reception_format is not set'
        while True:
            text = rx.recv(65536).decode()
            if want in text:
                break
        assert re.fullmatch(r"<19>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ecelerity\[\d+\]: \d+:custom_logger: "
                            + re.escape(want) + ".*", text), text
        assert m.d.ok("reopen logs") is not None
    finally:
        rx.close()
        shutil.rmtree(sockdir, ignore_errors=True)
