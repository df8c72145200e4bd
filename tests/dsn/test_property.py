"""Whatever the reply, subject, ENVID or ORCPT hold, the notice stays well-formed:
it parses without defects, keeps CRLF and the 998-octet limit, and its report follows
the RFC 3464 grammar with exactly one block per recipient."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecmta.actors.dsn import render_delay_dsn, render_failure_dsn
from ecmta.actors.mail import DsnParams
from ecmta.tests.dsn.helpers import HOST, MSG_ID, T0, check_lines, ds_blocks, parse, raw_parts, rcpt

texts = st.text(max_size=1500)
local = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x2FF,
                              blacklist_characters='<>@"\\()[],;: '), min_size=1, max_size=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replies=st.lists(texts, min_size=1, max_size=3), subject=texts, envid=texts,
       orcpt=st.one_of(st.none(), texts.map(lambda t: "rfc822;" + t)), user=local,
       inline=st.sampled_from(["none", "headers", "all"]),
       ret=st.sampled_from([None, "FULL", "HDRS"]), delayed=st.booleans(),
       body=st.binary(max_size=3000))
def test_any_input_gives_a_well_formed_notice(replies, subject, envid, orcpt, user, inline, ret,
                                               delayed, body):
    rs = [rcpt(f"{user}{i}@example.org", reply, remote_mta="mx.example.org" if i else "",
               dsn=DsnParams(orcpt=orcpt), last_attempt=T0)
          for i, reply in enumerate(replies)]
    subj = subject.encode("utf-8", "surrogatepass").replace(b"\r", b" ").replace(b"\n", b" ")
    original = b"From: a@example.com\r\nSubject: " + subj + b"\r\n\r\n" + body
    render = render_delay_dsn if delayed else render_failure_dsn
    data = render(mailfrom="alice@example.com", recipients=rs, hostname=HOST, original=original,
                  inline_original=inline, ret=ret, envid=envid or None, arrival_date=T0,
                  msg_id=MSG_ID, now=T0)
    check_lines(data)
    msg = parse(data)
    assert msg.get_content_type() == "multipart/report"
    # Our own parts are clean; the returned original may be as broken as it came in.
    assert not msg.defects
    for part in list(msg.iter_parts())[:2]:
        assert not part.defects
    assert msg["Subject"].startswith("Delivery delayed: " if delayed else "Undeliverable: ")
    parts = raw_parts(data)
    assert 2 <= len(parts) <= 3
    blocks = ds_blocks(parts[1][1].decode("utf-8"))
    assert len(blocks) == len(rs) + 1
    assert all(b["action"] == ("delayed" if delayed else "failed") for b in blocks[1:])
