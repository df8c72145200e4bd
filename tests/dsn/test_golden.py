"""Golden files: two typical bounces and a delay warning, byte for byte.

The date and id are fixed, so the output is stable. After an intended change of wording
or layout, regenerate with `ECMTA_UPDATE_GOLDEN=1 pytest tests/dsn/test_golden.py`, read
the diff, and commit the files with the change.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ecmta.actors.dsn import render_delay_dsn, render_failure_dsn
from ecmta.actors.mail import DsnParams
from ecmta.tests.dsn.helpers import GMAIL_550, HOST, MSG_ID, ORIGINAL, T0, check_lines, parse, rcpt

GOLDEN = Path(__file__).parent / "golden"


def remote_user_unknown() -> bytes:
    """A remote 550 5.1.1 (multi-line reply) for one recipient; ORCPT and ENVID given;
    headers inline (the default)."""
    r = rcpt("bob@example.org", GMAIL_550, remote_mta="mx.example.org", remote_ip="192.0.2.25",
             last_attempt=T0 + 60, log_id="12/34-01234-56789ABC",
             dsn=DsnParams(notify=("FAILURE",), orcpt="rfc822;bob@example.org"))
    return render_failure_dsn(mailfrom="alice@example.com", recipients=[r], hostname=HOST,
                              original=ORIGINAL, envid="QQ314159", arrival_date=T0,
                              msg_id=MSG_ID, now=T0 + 61)


def expired_full() -> bytes:
    """Two recipients given up after message_expiration (Momentum's internal 554 5.4.7);
    bounces_inline_original = all."""
    rs = [rcpt(addr, "554 5.4.7 [internal] exceeded max time without delivery",
               last_attempt=T0 + 7 * 86400 - 300, log_id=lid)
          for addr, lid in (("bob@example.org", "22/34-01234-56789ABC"),
                            ("carol@example.org", "32/34-01234-56789ABC"))]
    return render_failure_dsn(mailfrom="alice@example.com", recipients=rs, hostname=HOST,
                              original=ORIGINAL, inline_original="all", arrival_date=T0,
                              msg_id="AC/CD-00042-0000A0B6", now=T0 + 7 * 86400)


def delayed_greylisted() -> bytes:
    r = rcpt("bob@example.org", "451 4.7.1 Greylisted, please try again in 5 minutes",
             remote_mta="mx.example.org", remote_ip="192.0.2.25", last_attempt=T0 + 3000)
    return render_delay_dsn(mailfrom="alice@example.com", recipients=[r], hostname=HOST,
                            original=ORIGINAL, arrival_date=T0, will_retry_until=T0 + 7 * 86400,
                            msg_id="AD/CD-00042-0000A0B6", now=T0 + 3600)


CASES = {
    "failure_remote_user_unknown.eml": remote_user_unknown,
    "failure_expired_full.eml": expired_full,
    "delay_greylisted.eml": delayed_greylisted,
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name):
    data = CASES[name]()
    path = GOLDEN / name
    if os.environ.get("ECMTA_UPDATE_GOLDEN"):
        path.write_bytes(data)
    check_lines(data)
    assert parse(data).get_content_type() == "multipart/report"
    assert data == path.read_bytes(), f"{name} differs from the golden file"
