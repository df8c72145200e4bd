"""Delay DSNs (delay_dsn module, generate_delay_dsn, its own schedule) and default_binding."""

import smtplib
import time

import pytest

from ecmta.tests.delivery.helpers import WAIT, domain_port, make_message, parse_mail, wait_for

SENDER = "alice@sender.test"


def test_delay_dsn_reaches_the_sender_on_its_own_schedule(mta):
    """generate_delay_dsn with a 1 s schedule: while down.test stays unreachable the sender
    gets RFC 3464 warnings (Action: delayed) on the notices' schedule, not the retries'."""
    b = mta(hostname="b.ecmta.test", relay='"sender.test"',
            tail='Domain "sender.test" {\n  suspend_delivery = true\n}\n')
    a = mta(glob='generate_delay_dsn = true\ndelay_dsn_retry_interval = 1\n'
                 'delay_dsn_max_retry_interval = 1\nretry_interval = 60\n',
            tail='delay_dsn "d1" { }\n' + domain_port("sender.test", b.port))
    a.send(SENDER, ["x@down.test"], subject="slow one")
    a.wait_records("T", 1)
    notices = wait_for(lambda: len(b.spooled()) >= 2 and b.spooled(), what="two delay DSNs at B")
    for m in notices[:2]:
        assert (m.mailfrom, m.rcptto) == ("", SENDER)
        dsn = parse_mail(m.body)
        assert dsn.get_content_type() == "multipart/report"
        text = m.body.decode("utf-8", "replace")
        assert "Action: delayed" in text and "Final-Recipient: rfc822; x@down.test" in text
    # one retry (retry_interval 60) but several notices: the schedules are independent
    assert len(a.records("T")) == 1
    ok, out = a.console("delay_dsn:d1 show pending events")
    assert ok and "1 pending events" in out and "x@down.test" in out
    ok, out = a.console("delay_dsn:nope show pending events")
    assert not ok and "No delay_dsn instance named 'nope'" in out


def test_no_delay_dsn_without_the_module_or_for_notify_never(mta):
    b = mta(hostname="b.ecmta.test", relay='"sender.test"',
            tail='Domain "sender.test" {\n  suspend_delivery = true\n}\n')
    a = mta(glob='generate_delay_dsn = true\ndelay_dsn_retry_interval = 1\nretry_interval = 60\n',
            tail=domain_port("sender.test", b.port))        # no delay_dsn stanza
    a.send(SENDER, ["x@down.test"])
    a.wait_records("T", 1)
    c = mta(glob='generate_delay_dsn = true\ndelay_dsn_retry_interval = 1\nretry_interval = 60\n',
            tail='delay_dsn { }\n' + domain_port("sender.test", b.port))
    c.send(SENDER, ["x@down.test"], rcpt_options=["NOTIFY=NEVER"])
    c.wait_records("T", 1)
    time.sleep(3)
    assert b.spooled() == []


def test_default_binding_none_refuses_with_451(mta):
    a = mta(glob="default_binding = none\n")
    with smtplib.SMTP("127.0.0.1", a.port, timeout=WAIT) as s:
        with pytest.raises(smtplib.SMTPDataError) as info:
            s.sendmail(SENDER, ["x@sink.test"], make_message(SENDER, "x@sink.test"))
    assert info.value.smtp_code == 451 and b"default_binding = none" in info.value.smtp_error
    assert a.records("R") == []


def test_default_binding_suspended_holds_default_mail(mta, sink):
    s = sink()
    a = mta(glob="default_binding = suspended\n", tail=domain_port("sink.test", s.port))
    a.send(SENDER, ["x@sink.test"])
    ok, out = a.console("mailq")
    assert ok and "sink.test" in out
    time.sleep(2)
    assert a.records("D") == [] and len(a.spooled()) == 1
