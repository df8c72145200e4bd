"""The queue console layouts against the pages' own example output (console_commands.*),
values substituted: every line byte for byte. No daemon: the formatting functions get the
example's numbers directly (the live tests check where the numbers come from)."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace as NS

import pytest

from ecmta.console import cmd_queue as CQ
from ecmta.console import cmd_queue_admin as CA
from ecmta.console import cmd_queue_base as CB
from ecmta.console import cmd_queue_outbound as CO
from ecmta.console.registry import ConsoleError

# console_commands.active, verbatim
DOC_ACTIVE = """\
Domain:                         c4.com  C:  0  A:    104  D:     0  S:    47
Domain:                    dellnet.com  C:  0  A:    102  D:   460  S:  1540
Domain:                  earthlink.com  C: 60  A:    315  D:   192  S:  1957
Domain:                    iopener.net  C:  0  A:    124  D:   200  S:   860
Domain:                        jps.net  C: 29  A:    114  D:   471  S:  2561
Domain:                         pa.net  C: 30  A:    119  D:    31  S:   274
Domain:                   peoplepc.com  C:  0  A:    473  D:  1262  S:  7758
Domain:                 sprintmail.com  C: 32  A:    120  D:    71  S:   898
Domain:                   xoommail.com  C:  0  A:    102  D:     0  S:    55
Domain:                      yesic.com  C:  0  A:    124  D:     0  S:    56
                                Total:  C: 616  A:  22965  D: 34427  S:1954767"""


def _stat(domain, c, a, d, s, binding="default", group="default", **kw):
    return dict(domain=domain, connections=c, active=a, delayed=d, sent=s, binding=binding,
                group=group, deliveries=0, failures=0, **kw)


def _fillers(column: int, amount: int, rest: list[int]) -> list[dict]:
    """Domains at or below the threshold (100 in the column) that make up the Total row."""
    rows = []
    i = 0
    while amount > 0:
        vals = [0, 0, 0, 0]
        vals[column] = min(100, amount)
        amount -= vals[column]
        rows.append(_stat(f"filler{i:04d}.example", *vals))
        i += 1
    for k in range(4):
        if k != column:
            rows[0][("connections", "active", "delayed", "sent")[k]] += rest[k]
    return rows


def test_active_and_total_rows_match_the_page():
    rows = []
    for line in DOC_ACTIVE.splitlines()[:-1]:
        parts = line.split()
        rows.append(_stat(parts[1], int(parts[3]), int(parts[5]), int(parts[7]), int(parts[9])))
    listed = CB.sums([[r["connections"], r["active"], r["delayed"], r["sent"]] for r in rows])
    total = [616, 22965, 34427, 1954767]
    rest = [t - n for t, n in zip(total, listed)]
    rows += _fillers(1, rest[1], rest)        # every other domain has at most 100 active
    assert CB.threshold_report(rows, 1, 100) == DOC_ACTIVE


def test_delayed_rows_match_the_page():
    doc = """\
Domain:                   mailcity.com  C:  0  A:      9  D:  1169  S: 16838
Domain:                   peoplepc.com  C:  0  A:    575  D:  1180  S:  7735
Domain:                       sina.com  C:  3  A:      1  D:  1232  S:  1069
                                Total:  C: 532  A:  22692  D: 34915  S:1953716"""
    rows = [_stat("mailcity.com", 0, 9, 1169, 16838), _stat("peoplepc.com", 0, 575, 1180, 7735),
            _stat("sina.com", 3, 1, 1232, 1069)]
    total = [532, 22692, 34915, 1953716]
    listed = [3, 585, 3581, 25642]
    rest = [t - n for t, n in zip(total, listed)]
    rows += _fillers(2, rest[2], rest)
    assert \
        CB.threshold_report(rows, 2, 1000) == doc


def test_rows_of_several_bindings_add_up_per_domain():
    rows = [_stat("a.example", 1, 2, 3, 4, binding="b1"), _stat("a.example", 1, 1, 1, 1, binding="b2")]
    assert CB.threshold_report(rows, 1, 0).splitlines()[0] == \
        "Domain:                      a.example  C:  2  A:      3  D:     4  S:     5"


def test_domain_all_matches_the_page():
    doc = """\
Domain summary:
Domain:                    macbook.lan  C:  0  A:      0  D:     8  S:     0
Domain:                      yahoo.com  C:  1  A:      1  D:     0  S:     1
Totals: C:   1  A:      1  D:     8  S:     1"""
    rows = {"yahoo.com": [1, 1, 0, 1], "macbook.lan": [0, 0, 8, 0]}
    assert "\n".join(CQ.domain_all_lines(rows)) == doc


def test_mailq_matches_the_page():
    doc = """\
Group/Binding                                       Domain      AQ      DQ
--------------------------------------------------------------------------
default/default                                  yahoo.com      11       0
default/gmail                                    gmail.com      25       5
default/#mmove                                   gmail.com       0       0"""
    lines = [CQ.MAILQ_HEADER, CQ.MAILQ_RULE, CQ.mailq_row("default", "default", "yahoo.com", 11, 0),
             CQ.mailq_row("default", "gmail", "gmail.com", 25, 5),
             CQ.mailq_row("default", "#mmove", "gmail.com", 0, 0)]
    assert "\n".join(lines) == doc
    # long names keep a space between the columns
    assert CQ.mailq_row("g" * 30, "b" * 20, "d" * 20, 1, 2) == \
        f"{'g' * 30}/{'b' * 20} {'d' * 20}       1       2"


def test_mailq_order_and_limit():
    stats = [_stat("z.example", 0, 1, 0, 0), _stat("a.example", 0, 2, 0, 0, binding="b"),
             _stat("m.example", 0, 3, 0, 0), _stat("a.example", 0, 4, 0, 0, group="g", binding="gb")]
    lines = CQ.mailq_lines([dict(s) for s in stats], 3)
    assert [ln.split()[:2] for ln in lines[2:]] == [
        ["default/default", "m.example"], ["default/default", "z.example"], ["default/b", "a.example"]]


def test_mailq_arguments():
    assert CQ.parse_mailq([]) == ([], [], 20)
    assert CQ.parse_mailq(["-d", "a.com", "b.com", "--binding", "x", "-l", "5"]) == \
        (["a.com", "b.com"], ["x"], 5)
    assert CQ.parse_mailq(["--domain", "a.com", "--limit", "1"]) == (["a.com"], [], 1)
    for bad in (["a.com"], ["-l"], ["-l", "x"], ["--frobnicate"]):
        with pytest.raises(ConsoleError):
            CQ.parse_mailq(bad)


def test_showqueue_matches_the_page():
    doc = """\
[active/default] B3/1D-18426-471AACF3 Created: 1070244212
  From: <sender@postalengine.com> To: <rcpt1@example.com>
[delayed/default] B3/79-18426-4A4BACF3 Created: 1070244212
  From: <sender@postalengine.com> To: <rcpt2@example.com>"""
    rows = [("active", "default", "B3/1D-18426-471AACF3", 1070244212.7, "sender@postalengine.com",
             "rcpt1@example.com"),
            ("delayed", "default", "B3/79-18426-4A4BACF3", 1070244212.2, "sender@postalengine.com",
             "rcpt2@example.com")]
    assert "\n".join(CQ.showqueue_lines(rows)) == doc
    assert CQ._limit_offset("100,0") == (100, 0)
    assert CQ._limit_offset("5") == (5, 0)
    with pytest.raises(ConsoleError):
        CQ._limit_offset("x,1")


def test_summary_matches_the_page():
    doc = """\
Summary Statistics
        Outbound Concurrency:    2248
        Inbound Concurrency:      90
        Active Domains:   35711
        Active Queue Size:   8793
        Delayed Queue Size: 263175
        Destaged Queue Size:      0
        Total Queue Size: 272334
        DNS A Queries: 565284
        DNS MX Queries: 243281
        Pending DNS Queries: 116
        Query Rate:   9.08 queries/second
        Successfully Delivered Messages: 2102439
        Failed Messages: 2508439
        Rejected Messages:      1
        Received Messages: 4883262
        Delivery Rate:  51.76 messages/second
        Reception Rate:  54.82 messages/second
        Statistics Last Reset:  89081 seconds
        Uptime:  89083 seconds"""
    v = dict(outbound=2248, inbound=90, domains=35711, active=8793, delayed=263175, destaged=0,
             total=272334, a_queries=565284, mx_queries=243281, pending=116, query_rate=9.08,
             delivered=2102439, failed=2508439, rejected=1, received=4883262,
             delivery_rate=51.76, reception_rate=54.82, since_reset=89081, uptime=89083)
    assert "\n".join(CQ.summary_lines(v)) == doc


DOC_BINDING_EXAMPLE = """\
Summary Statistics For Binding example
        Open Connections:       0
        Active Queue Size:      0
        Total Queue Size:      0
        Successfully Delivered Messages:    506
        Failed Messages:      0
        Received Messages:    506
        Resident Messages:      0
        Delivery Rate:   0.85 messages/second
        Reception Rate:   0.85 messages/second
        Uptime:    596 seconds"""

DOC_GROUP_TAIL = """\

********************************************
Summary Statistics For Binding Group group1
        Open Connections:       0
        Active Queue Size:      0
        Total Queue Size:      0
        Successfully Delivered Messages:   1000
        Failed Messages:      0
        Received Messages:   1000
        Incore Messages:      0
        Delivery Rate:   1.66 messages/second
        Reception Rate:   1.66 messages/second
        Uptime:    602 seconds"""


def test_binding_summary_blocks_match_the_page():
    v = dict(connections=0, active=0, total=0, delivered=506, failed=0, received=506, resident=0,
             delivery_rate=0.85, reception_rate=0.85, uptime=596)
    assert "\n".join(CQ.binding_block("Summary Statistics For Binding example", v)) == \
        DOC_BINDING_EXAMPLE
    g = dict(v, delivered=1000, received=1000, delivery_rate=1.66, reception_rate=1.66, uptime=602)
    tail = ["", "*" * 44] + CQ.binding_block("Summary Statistics For Binding Group group1", g,
                                              "Incore Messages")
    assert "\n".join(tail) == DOC_GROUP_TAIL
    # the rates are per second since the last reset, deliveries and permanent failures
    vals = CQ._values([{"active": 2, "delayed": 3, "resident": 4}], 1, 10, 5, 30, 10.0, 7)
    assert (vals["total"], vals["delivery_rate"], vals["reception_rate"], vals["resident"]) == \
        (5, 1.5, 3.0, 4)


def test_message_details_match_the_page():
    doc = """\
Message: 53/6B-18426-1AAEACF3
Message Type: full message
               Created: 2003-12-01 02:15:45
          Next Attempt: 2003-12-01 18:11:25
               Retries: 5
          Received Via: SMTP 10.0.0.103 (IPv4)
                Sender: sender-849629@senderdomain.com
             Recipient: someaddress@example.com
                  Code: 451 No valid hosts (too many connection failures)
                  Size: 11317"""

    def local(text):
        return time.mktime(time.strptime(text, "%Y-%m-%d %H:%M:%S"))
    e = NS(id="53/6B-18426-1AAEACF3", received_at=local("2003-12-01 02:15:45"),
           next_attempt=local("2003-12-01 18:11:25"), attempts=5, protocol="esmtp",
           peer_ip="10.0.0.103", mailfrom="sender-849629@senderdomain.com",
           rcptto="someaddress@example.com",
           code="451 No valid hosts (too many connection failures)", size=11317)
    assert "\n".join(CA.details_lines(e)) == doc
    # never tried: next attempt = arrival, no code; a bounce came in over `internal`
    e2 = NS(**(e.__dict__ | dict(next_attempt=0.0, code="", protocol="internal", peer_ip="127.0.0.1")))
    lines = CA.details_lines(e2)
    assert lines[3] == "          Next Attempt: 2003-12-01 02:15:45"
    assert lines[5] == "          Received Via: INTERNAL 127.0.0.1 (IPv4)"
    assert lines[8] == "                  Code:"


class _Sock:
    def __init__(self, fd):
        self.fd = fd

    def fileno(self):
        return self.fd


def _conn(fd, ip, stage=9, host="", domain=""):
    return NS(_sock=_Sock(fd), _cli=NS(stage=stage), remote=(ip, 25), mx_hostname=host,
              domain=domain)


def test_show_outbound_matches_the_page():
    doc = """\
36: [outbound/connection_handleconnect] exchange.opf.com IPv4 207.77.20.65
58: [outbound/connection_handleconnect] pe.net IPv4 64.38.64.3
61: [outbound/connection_handleconnect] mail.nctimes.net IPv4 206.171.125.194"""
    infos = [(_conn(61, "206.171.125.194", host="mail.nctimes.net"), "default", "default", "nctimes.net", 0),
             (_conn(36, "207.77.20.65", host="exchange.opf.com"), "default", "default", "opf.com", 0),
             (_conn(58, "64.38.64.3"), "default", "default", "pe.net", 0)]
    svc = NS(outbound=dict(enumerate(infos)))
    assert "\n".join(CO.show_outbound_lines(CO.open_connections(svc))) == doc


def test_trace_smtp_list_matches_the_page(tmp_path):
    f = tmp_path / "smtp.log"
    f.write_bytes(b"x" * 29)
    doc = f"""\
[     1]  binding: *
           domain: problematic-domain.com
             file: {f} @ 29"""
    tracers = {1: {"binding": "*", "domain": "problematic-domain.com", "file": str(f)}}
    assert "\n".join(CO.trace_list_lines(tracers)) == doc


# -- domain <name>: the whole example of console_commands.domain -----------------------------------

DOC_DOMAIN = """\
Domain hotmail.com {
  max_outbound_connections = 20
}
Domain 'hotmail.com' has 4 MXs and a TTL of 1902 seconds
  [5 mx1.hotmail.com TTL:1902]
 *      [65.54.254.129] IPv4 (0.00ms con 10259.03ms dlv) 54.27s since failure
        [65.54.252.99] IPv4 (743.66ms con 11976.77ms dlv)
        [65.54.166.99] IPv4 (77.25ms con 11726.36ms dlv)
                (also used by email.msn.com pref 5)
                (also used by msn.com pref 5)
  [5 mx2.hotmail.com TTL:1902]
        [65.54.252.230] IPv4 (77.13ms con 9427.74ms dlv)
        [65.54.166.230] IPv4 (78.02ms con 10526.13ms dlv)
 =>     [65.54.254.145] IPv4 (77.34ms con 9957.49ms dlv)
                (also used by email.msn.com pref 5)
                (also used by msn.com pref 5)
  [5 mx3.hotmail.com TTL:1902]
        [65.54.167.5] IPv4 (77.30ms con 9198.22ms dlv)
 *      [65.54.254.140] IPv4 (0.00ms con 10567.53ms dlv) 89.27s since failure
        [65.54.253.99] IPv4 (78.24ms con 9187.18ms dlv)
                (also used by email.msn.com pref 5)
                (also used by msn.com pref 5)
  [5 mx4.hotmail.com TTL:1902]
        [65.54.254.151] IPv4 (6827.57ms con 10014.24ms dlv)
        [65.54.253.230] IPv4 (153.76ms con 10711.45ms dlv)
        [65.54.167.230] IPv4 (77.91ms con 9482.38ms dlv)
                (also used by email.msn.com pref 5)
                (also used by msn.com pref 5)
Domain has had 1 consecutive connection failures
Queue:
        Active:        212
        Delayed:       190
Deliveries:     10715
Failures:         612
Active Connections: 12
[ 1] FD:    174  IP:    65.54.252.99  State: reading confirmation (4615.39ms)
[ 2] FD:    270  IP:    65.54.252.99  State: reading confirmation (4605.68ms)
[ 3] FD:    171  IP:   65.54.254.129  State: reading confirmation (332.74ms)
[ 4] FD:    307  IP:    65.54.252.99  State: reading confirmation (3612.59ms)
[ 5] FD:    176  IP:   65.54.252.230  State: reading confirmation (6076.36ms)
[ 6] FD:    163  IP:   65.54.166.230  State: reading confirmation (4025.86ms)
[ 7] FD:     96  IP:   65.54.254.145  State: reading confirmation (5355.87ms)
[ 8] FD:    226  IP:   65.54.166.230  State: reading confirmation (2799.31ms)
[ 9] FD:    209  IP:   65.54.252.230  State: reading confirmation (4293.11ms)
[10] FD:    133  IP:   65.54.254.140  State: after RCPT TO (308.59ms)
[11] FD:    142  IP:     65.54.167.5  State: reading confirmation (3678.08ms)
[12] FD:    118  IP:   65.54.254.151  State: reading confirmation (960.39ms)"""


def test_domain_command_layout_matches_the_page():
    from ecmta.config import load_config_text
    from ecmta.transports.routing import MXRecord, RouteResult, Target

    lines = DOC_DOMAIN.splitlines()
    times, failed_ago, targets, mxs, host = {}, {}, [], [], None
    shared = set()
    for ln in lines[4:28]:
        s = ln.strip()
        if s.startswith("[5 "):
            host = s[3:].split()[0]
            mxs.append(MXRecord(5, host, 1902))
        elif s.startswith("(also used"):
            shared.add(targets[-1].ip)
        else:
            ip = s.split("[", 1)[1].split("]", 1)[0]
            con = float(s.split("(", 1)[1].split("ms con")[0])
            dlv = float(s.split("ms con ", 1)[1].split("ms dlv")[0])
            times[ip] = [con, dlv]
            if "since failure" in s:
                failed_ago[ip] = float(s.split(") ")[1].split("s since")[0])
            targets.append(Target(host, ip, 25, 5, 1902))
    result = RouteResult(targets=tuple(targets), ttl=1902, source="mx", mxs=tuple(mxs))
    others = RouteResult(targets=tuple(Target("mx.msn", ip, 25, 5, 300) for ip in sorted(shared)),
                         ttl=300, source="mx")
    now = 1_000_000.0
    routes = {"hotmail.com": result, "email.msn.com": others, "msn.com": others}
    router = NS(domains=lambda: sorted(routes), entries=lambda d: [(None, routes[d], 1902)])
    cfg = load_config_text('Domain "hotmail.com" {\n  max_outbound_connections = 20\n}\n')
    ctx = NS(daemon=NS(router=router, config=NS(current=cfg)))
    outbound = {}
    for i, ln in enumerate(lines[35:]):
        fd = int(ln.split("FD:")[1].split()[0])
        ip = ln.split("IP:")[1].split()[0]
        state = ln.split("State: ")[1].rsplit(" (", 1)[0]
        ms = float(ln.rsplit("(", 1)[1].split("ms")[0])
        from ecmta.transports.smtp_client import STAGE_NAMES
        outbound[i] = (_conn(fd, ip, STAGE_NAMES.index(state)), "default", "default", "hotmail.com",
                       now - ms / 1000)
    # every reachable address has one open connection but .145: it is the next choice
    per_host = {t.ip: 1 for t in targets if t.ip != "65.54.254.145"}
    svc = NS(host_times=times, host_failed_until={ip: now + 60 for ip in failed_ago},
             host_failed_at={ip: now - ago for ip, ago in failed_ago.items()},
             per_host=per_host, outbound=outbound)
    got = CQ.config_block(cfg.find((("Domain", "hotmail.com"),)))
    got += CQ.route_lines(ctx, svc, "hotmail.com", result, 1902, now)
    got.append("Domain has had 1 consecutive connection failures")
    conns = CQ.connection_lines(svc, "hotmail.com", now)
    got += CQ.queue_part(212, 190, 10715, 612, len(conns)) + conns
    assert "\n".join(got) == DOC_DOMAIN


def test_domain_config_block_only_with_explicit_options():
    from ecmta.config import load_config_text
    cfg = load_config_text('Domain "bare.example" {\n}\n')
    assert CQ.config_block(cfg.find((("Domain", "bare.example"),))) == []
    assert CQ.config_block(None) == []


# -- spool_in on a message that is in the spool but in no queue ------------------------------------

def test_spool_in_reads_a_spooled_message_into_its_queue():
    loaded = NS(id="00/00-00001-00000001", routing_domain="", rcpt_domain="x.example")
    handed = []
    svc = NS(queues={}, recovered=handed.extend)
    spool = NS(store=object(), load=lambda msg_id: loaded)
    ctx = NS(daemon=NS(delivery=svc, spool=spool))
    assert CA.spool_in(ctx, ["00/00-00001-00000001"]) == \
        "Message 00/00-00001-00000001 read from the spool into the queue of x.example."
    assert handed == [loaded]
    with pytest.raises(ConsoleError, match="is not a message id"):
        CA.spool_in(ctx, ["nonsense"])

    def missing(msg_id):
        from ecmta.actors.spool_store import SpoolNotFoundError
        raise SpoolNotFoundError(msg_id)
    spool.load = missing
    with pytest.raises(ConsoleError, match="is not in the spool"):
        CA.spool_in(ctx, ["00/00-00001-00000002"])


def test_count_delegates_other_types_to_the_inbound_command():
    from ecmta.console.registry import COMMANDS
    assert COMMANDS[("count",)].handler is CO.count
    esmtp = NS(actor=object(), table=NS(sessions={1: NS(peer_ip="127.0.0.1")}))
    ctx = NS(daemon=NS(esmtp=esmtp))
    assert CO.count(ctx, ["SMTP", "127.0.0.1"]) == "1 sessions"
    assert os.path.exists(CO.__file__)
