"""Sans-IO SMTP client talking to ecmta's own SMTPServer machine in memory: pipelined and
one-at-a-time sessions give the same outcomes; STARTTLS, XCLIENT, DSN, SIZE, BDAT and
connection reuse seen from the server's side."""
import pytest

from ecmta.actors.mail import DsnParams
from ecmta.tests.transports.test_smtp_client_helpers import BODY, Link, txn
from ecmta.tests.transports.test_smtp_server_helpers import ALL_EXTENSIONS
from ecmta.transports import smtp_client as C
from ecmta.transports.smtp_client import (
    CLOSED, DELIVERED, IDLE, PERMANENT, TRANSIENT, ClientOptions, Transaction)
from ecmta.transports.smtp_replies import Reply
from ecmta.transports.smtp_server import (
    DataChunk, DataEnd, DataStart, Helo, MailFrom, RcptTo, Rset, StartTLSInjection, XClient)

NO_PIPELINING = tuple(e for e in ALL_EXTENSIONS if e != "PIPELINING")


def rcpt_policy(ev):
    local = ev.address.localpart
    if local.startswith("bad"):
        return Reply(550, "5.1.1", f"{local} unknown")
    if local.startswith("later"):
        return Reply(451, "4.3.0", "try later")
    if local.startswith("bye"):
        return Reply(421, "4.3.2", "going away")
    return None


def mail_policy(ev):
    if ev.address.localpart == "refused":
        return Reply(553, "5.7.1", "sender refused")
    return None


POLICY = {RcptTo: rcpt_policy, MailFrom: mail_policy}

SCENARIOS = [
    ("s@example.org", ["ok@example.net"]),
    ("s@example.org", ["ok@example.net", "bad1@example.net", "later@example.net", "ok2@x.net"]),
    ("s@example.org", ["bad@example.net", "later@example.net"]),
    ("refused@example.org", ["ok@example.net", "ok2@example.net"]),
    ("s@example.org", ["ok@example.net"]),
    ("s@example.org", ["ok@example.net", "bye@example.net", "ok3@example.net"]),
]


def run_scenarios(extensions, pipelining=True):
    link = Link(ClientOptions(ehlo_hostname="c.example", pipelining=pipelining),
                policy=POLICY, smtp_extensions=extensions)
    assert link.run() is IDLE
    results = []
    for sender, rcpts in SCENARIOS:
        if link.cli.closed:
            break
        outs = link.deliver(txn(*rcpts, sender=sender))
        results.append([(o.rcpt, o.status, o.code, o.text, o.stage) for o in outs])
    return results, link


def test_pipelined_and_unpipelined_give_the_same_outcomes():
    piped, plink = run_scenarios(ALL_EXTENSIONS)
    plain, slink = run_scenarios(NO_PIPELINING)
    off, olink = run_scenarios(ALL_EXTENSIONS, pipelining=False)
    assert piped == plain == off
    assert plink.cli.pipelining and not slink.cli.pipelining and not olink.cli.pipelining
    # Spot checks of what the scenarios mean.
    assert piped[1] == [
        ("ok@example.net", DELIVERED, 250, "250 2.0.0 OK", 9),
        ("bad1@example.net", PERMANENT, 550, "550 5.1.1 bad1 unknown", 4),
        ("later@example.net", TRANSIENT, 451, "451 4.3.0 try later", 4),
        ("ok2@x.net", DELIVERED, 250, "250 2.0.0 OK", 9)]
    assert [o[1:] for o in piped[3]] == [(PERMANENT, 553, "553 5.7.1 sender refused", 2)] * 2
    assert [o[1] for o in piped[5]] == [TRANSIENT] * 3 and piped[5][0][3].startswith("421")
    assert plink.cli.closed and slink.cli.closed
    # Pipelining batches the commands: fewer writes.
    assert len(plink.wire) < len(slink.wire)


def test_rset_after_unfinished_transaction_reaches_the_server():
    link = Link(policy=POLICY)
    link.run()
    link.deliver(txn("bad@example.net"))
    assert not link.server.of(Rset)
    outs = link.deliver(txn("ok@example.net"))
    assert outs[0].status == DELIVERED and len(link.server.of(Rset)) == 1
    assert len(link.server.of(DataEnd)) == 1


def test_many_transactions_on_one_connection():
    link = Link()
    link.run()
    for i in range(50):
        body = BODY + f"message {i}\r\n".encode()
        assert link.deliver(txn(f"r{i}@example.net"), body)[0].status == DELIVERED
    assert len(link.server.of(DataEnd)) == 50 and not link.server.of(Rset)
    assert link.cli.transactions == 50


def test_ehlo_refused_by_server_falls_back_to_helo():
    link = Link(policy={Helo: lambda ev: Reply(502, "5.5.1", "no EHLO")
                        if ev.verb == "EHLO" else None})
    assert link.run() is IDLE
    assert [h.verb for h in link.server.of(Helo)] == ["EHLO", "HELO"]
    assert link.deliver(txn())[0].status == DELIVERED


def test_starttls_never_pipelined_after():
    """ecmta's server drops a client that pipelines after STARTTLS (reject policy)."""
    link = Link(ClientOptions(tls="required"), starttls_injection_policy="reject")
    assert link.run() is IDLE
    assert link.cli.tls and not link.server.of(StartTLSInjection)
    assert link.server.srv.tls
    assert link.deliver(txn())[0].status == DELIVERED


def test_xclient_reaches_the_server():
    link = Link(ClientOptions(xclient="required"))
    link.run()
    origin = {"NAME": "client.example", "ADDR": "203.0.113.5", "PORT": "1234",
              "HELO": "orig.example", "PROTO": "ESMTP"}
    outs = link.deliver(txn(xclient=origin))
    assert outs[0].status == DELIVERED
    xc = link.server.of(XClient)
    assert len(xc) == 1 and xc[0].attrs == origin
    assert link.server.srv.peer == ("203.0.113.5", 1234)
    assert len(link.server.of(Helo)) == 2                   # EHLO again after XCLIENT


def test_dsn_parameters_survive_the_trip():
    link = Link()
    link.run()
    t = Transaction("s@example.org",
                    [("r@example.net",
                      DsnParams(("SUCCESS", "DELAY"), "rfc822;Orig+x@example.net")),
                     ("q@example.net", DsnParams(("NEVER",)))],
                    ret="HDRS", envid="env id=1")
    assert [o.status for o in link.deliver(t)] == [DELIVERED, DELIVERED]
    mail = link.server.of(MailFrom)[0]
    assert (mail.params.ret, mail.params.envid, mail.params.size) == ("HDRS", "env id=1", len(BODY))
    r1, r2 = link.server.of(RcptTo)
    assert r1.notify == ("SUCCESS", "DELAY") and r1.orcpt == ("rfc822", "Orig+x@example.net")
    assert r2.notify == ("NEVER",) and r2.orcpt is None


def test_size_refused_at_mail_from():
    link = Link(max_message_size=100)
    link.run()
    o = link.deliver(txn(), BODY + b"x" * 200)[0]
    assert (o.status, o.code, o.stage) == (PERMANENT, 552, C.ST_MAIL)


def test_data_end_refusal():
    link = Link(policy={DataEnd: Reply(554, "5.7.1", "spam")})
    link.run()
    o = link.deliver(txn("a@example.net", "b@example.net"))
    assert [(x.status, x.text, x.stage) for x in o] == [(PERMANENT, "554 5.7.1 spam", 9)] * 2
    assert link.deliver(txn())[0].status == PERMANENT      # no RSET needed, still usable


def test_data_start_refusal_then_rset():
    link = Link(policy={DataStart: Reply(451, "4.3.0", "not now")})
    link.run()
    o = link.deliver(txn())[0]
    assert (o.status, o.stage) == (TRANSIENT, C.ST_DATA)
    link.server.policy.clear()
    assert link.deliver(txn())[0].status == DELIVERED
    assert len(link.server.of(Rset)) == 1


def test_bdat_to_server_exact_octets():
    link = Link(ClientOptions(chunking=True))
    link.run()
    body = b"Subject: x\r\n\r\n.dot\r\nbare\nlf and \r cr\r\n"
    assert link.deliver(txn(), body)[0].status == DELIVERED
    assert b"".join(e.data for e in link.server.events if isinstance(e, DataChunk)) == body


def test_server_quit_and_421_close():
    link = Link(policy={RcptTo: (Reply(421, "4.3.2", "shutting down"), True)})
    link.run()
    o = link.deliver(txn())[0]
    assert (o.status, o.code) == (TRANSIENT, 421) and link.cli.closed


@pytest.mark.parametrize("method", ["ESMTP", "SMTP"])
def test_quit_after_work(method):
    link = Link(ClientOptions(delivery_method=method))
    link.run()
    link.deliver(txn())
    link.cli.quit()
    assert link.run() is CLOSED and link.server.closed


def test_queued_transactions_through_the_server():
    link = Link(policy=POLICY)
    link.run()
    txns = [txn("ok@example.net" if i % 3 else "bad@example.net") for i in range(30)]
    for i, t in enumerate(txns):
        link.cli.send_mail(t, BODY + f"n={i}\r\n".encode())
    assert link.run() is IDLE
    done = [e for e in link.events if isinstance(e, C.TransactionDone)]
    assert [d.transaction for d in done] == txns
    assert [d.outcomes[0].status for d in done] == \
        [PERMANENT if i % 3 == 0 else DELIVERED for i in range(30)]
    assert len(link.server.of(DataEnd)) == 20
    # Body and next envelope share writes: far fewer writes than commands.
    assert len(link.wire) < 30 * 2
