"""Who is notified: RFC 3461 NOTIFY, the null-sender rule, mdn_failures_notify and the
multi-recipient policy-rejection option."""

from __future__ import annotations

import pytest

from ecmta.actors.dsn import bounce_recipient, policy_rejection_recipients, should_bounce
from ecmta.actors.mail import DsnParams
from ecmta.tests.dsn.helpers import rcpt

S = "alice@example.com"


@pytest.mark.parametrize("notify,kind,delay_cfg,expect", [
    ((), "failure", False, True),                      # absent NOTIFY = FAILURE (+ maybe DELAY)
    (("FAILURE",), "failure", False, True),
    (("SUCCESS",), "failure", False, False),           # NOTIFY without FAILURE
    (("DELAY",), "failure", False, False),
    (("SUCCESS", "DELAY"), "failure", False, False),
    (("NEVER",), "failure", False, False),
    (("never",), "failure", False, False),             # keywords are case-insensitive
    (("failure",), "failure", False, True),
    ((), "delay", False, False),                       # absent NOTIFY: generate_delay_dsn decides
    ((), "delay", True, True),
    (("DELAY",), "delay", False, False),               # the operator switched delay DSNs off
    (("DELAY",), "delay", True, True),                 # the sender asked for it
    (("FAILURE",), "delay", True, False),              # NOTIFY given without DELAY
    (("FAILURE", "DELAY"), "delay", True, True),
    (("NEVER",), "delay", True, False),
    ((), "success", True, False),
    (("SUCCESS",), "success", False, True),
])
def test_notify_rules(notify, kind, delay_cfg, expect):
    assert should_bounce(S, notify, kind, generate_delay_dsn=delay_cfg) is expect


@pytest.mark.parametrize("notify", [(), ("FAILURE",), ("DELAY",), ("SUCCESS",), ("NEVER",)])
@pytest.mark.parametrize("kind", ["failure", "delay", "success"])
def test_null_sender_never_gets_a_dsn(notify, kind):
    assert should_bounce("", notify, kind, generate_delay_dsn=True) is False


def test_generate_bounces_false_suppresses_failures_only():
    assert should_bounce(S, ("FAILURE",), "failure", generate_bounces=False) is False
    assert should_bounce(S, (), "failure", generate_bounces=False) is False
    assert should_bounce(S, ("DELAY",), "delay", generate_bounces=False, generate_delay_dsn=True) is True


def test_unknown_kind():
    with pytest.raises(ValueError):
        should_bounce(S, (), "relayed")


def test_bounce_recipient_for_a_real_sender():
    assert bounce_recipient(S, (), "bob@example.org") == S
    assert bounce_recipient(S, ("NEVER",), "bob@example.org") is None
    assert bounce_recipient(S, ("SUCCESS",), "bob@example.org",
                            mdn_failures_notify="pm@example.net") is None
    assert bounce_recipient(S, (), "bob@example.org", generate_bounces=False) is None


def test_bounce_recipient_for_a_null_sender():
    assert bounce_recipient("", (), "bob@example.org") is None            # Momentum skips it
    assert bounce_recipient("", (), "bob@example.org",
                            mdn_failures_notify="pm@example.net") == "pm@example.net"
    # The postmaster copy is the operator's: the missing sender's NOTIFY does not apply.
    assert bounce_recipient("", ("NEVER",), "bob@example.org",
                            mdn_failures_notify="pm@example.net") == "pm@example.net"
    assert bounce_recipient("", (), "bob@example.org", generate_bounces=False,
                            mdn_failures_notify="pm@example.net") is None


def test_notice_to_mdn_failures_notify_does_not_loop():
    # The notice itself fails to the postmaster mailbox: no notice of the notice.
    assert bounce_recipient("", (), "PM@example.net", mdn_failures_notify="pm@example.net") is None


def test_policy_rejection_recipients():
    rejected = [rcpt("a@example.org"), rcpt("b@example.org", dsn=DsnParams(notify=("NEVER",))),
                rcpt("c@example.org", dsn=DsnParams(notify=("SUCCESS",)))]
    assert [r.rcptto for r in policy_rejection_recipients(S, rejected, 2)] == ["a@example.org"]
    assert policy_rejection_recipients(S, rejected, 0) == []        # all refused: SMTP said so
    assert policy_rejection_recipients(S, rejected, 2, enabled=False) == []
    assert policy_rejection_recipients("", rejected, 2) == []
