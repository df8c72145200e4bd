"""The bouncelog format (log_formats.bouncelog): the page's example lines rendered from
equivalent records, the field order, B/T lines and the switches, BC_SUBSCRIBE, user_string,
bounce_pattern; and, for any text, one line that parses back to the same fields."""

import string
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from ecmta.config import load_config_text
from ecmta.loggers import bounce_logger as BL
from ecmta.loggers import records

DOC_LINE = ("1064868656@91/6D-07914-E67BC044@00/00-03736-F4101B54@00/00-04532-A3456B54@B@"
            "johndoe@example.fict@info@postalengine.com@group-a@binding-a@21@24@1223@10.0.0.1@554 "
            "5.4.7 [internal] exceeded max time without delivery")
DOC_HEARTBEAT = "1251222268@@@@M1"
IDS = ("91/6D-07914-E67BC044", "00/00-03736-F4101B54", "00/00-04532-A3456B54")
FIELDS = ["ts", "msgid", "batchid", "connid", "type", "rcpt_local", "rcpt_domain", "sender_local",
          "sender_domain", "binding_group", "binding", "stage", "classification", "size",
          "remote_ip", "raw_response"]


def actor(switches=None, user_string=None, config=None):
    return BL.BounceLoggerActor("bounce_logger", {"bouncelog": None}, switches or {}, 0,
                                user_string, config)


def lines(a, rec):
    return [line for target, line in a.render(rec) if target == "bouncelog"]


def failure(permanent=True, response="554 5.4.7 [internal] exceeded max time without delivery",
            stage=21, **kw):
    base = dict(ts=1064868656, msg_id=IDS[0], batch_id=IDS[1], conn_id=IDS[2], domain="example.fict",
                bytes_sent=0, binding_group="group-a", binding="binding-a", stage=stage, retries=3,
                seconds=10.0, remote_ip="10.0.0.1", response=response, permanent=permanent,
                rcpt_local="johndoe", rcpt_domain="example.fict", sender_local="info",
                sender_domain="postalengine.com", size=1223)
    base.update(kw)
    return records.Failure(**base)


def oob(**kw):
    base = dict(ts=1064868656, msg_id=IDS[0], batch_id=IDS[1], conn_id=IDS[2],
                orig_rcpt="johndoe@example.fict", bounce_rcpt="info@postalengine.com",
                binding_group="group-a", binding="binding-a", classification=24, size=1223,
                remote_ip="10.0.0.1", response="554 5.4.7 [internal] exceeded max time without delivery")
    base.update(kw)
    return BL.OutOfBandBounce(**base)


# -- golden ---------------------------------------------------------------------------------------------
def test_the_page_example_from_an_out_of_band_record():
    assert lines(actor(), oob()) == [DOC_LINE]


def test_the_page_example_from_an_equivalent_failure_record():
    """Stage and reply as in the example; the classification (24) comes from the reply."""
    assert lines(actor(), failure()) == [DOC_LINE]


def test_the_page_heartbeat():
    assert BL.heartbeat_line(1251222268.9) == DOC_HEARTBEAT
    assert lines(actor(), BL._Heartbeat(1251222268)) == [DOC_HEARTBEAT]
    assert BL.parse_line(DOC_HEARTBEAT) == ["1251222268", "", "", "", "M1"]


def test_the_field_table():
    f = dict(zip(FIELDS, BL.parse_line(DOC_LINE)))
    assert f == {"ts": "1064868656", "msgid": IDS[0], "batchid": IDS[1], "connid": IDS[2], "type": "B",
                 "rcpt_local": "johndoe", "rcpt_domain": "example.fict", "sender_local": "info",
                 "sender_domain": "postalengine.com", "binding_group": "group-a",
                 "binding": "binding-a", "stage": "21", "classification": "24", "size": "1223",
                 "remote_ip": "10.0.0.1",
                 "raw_response": "554 5.4.7 [internal] exceeded max time without delivery"}


# -- B and T lines, switches ----------------------------------------------------------------------
def test_in_band_stage_and_classification_come_from_the_failure():
    [line] = lines(actor(), failure(stage=4, response="550 5.1.1 <johndoe@example.fict>: user unknown"))
    f = BL.parse_line(line)
    assert (f[4], f[11], f[12], f[15]) == ("B", "4", "10", "550 5.1.1 <johndoe@example.fict>: user unknown")


def test_transient_failures_are_t_lines_unless_switched_off():
    rec = failure(permanent=False, stage=4, response="451 4.7.1 Please try again later")
    [line] = lines(actor(), rec)
    assert BL.parse_line(line)[4:5] + BL.parse_line(line)[11:13] == ["T", "4", "70"]
    assert lines(actor({"log_transient_failures": False}), rec) == []
    assert lines(actor({"log_inband_bounces": False}), rec) == [line]


def test_in_band_and_out_of_band_switches():
    assert lines(actor({"log_inband_bounces": False}), failure()) == []
    assert lines(actor({"log_inband_bounces": False}), oob()) == [DOC_LINE]
    assert lines(actor({"log_outofband_bounces": False}), oob()) == []
    assert lines(actor({"log_outofband_bounces": False}), failure()) == [DOC_LINE]
    kinds = BL._kinds(dict(BL.SWITCH_DEFAULTS, log_inband_bounces=False, log_transient_failures=False))
    assert kinds == (BL.OutOfBandBounce,)


def test_subscribe_requests_are_not_logged():
    assert lines(actor(), oob(classification=80)) == []
    assert lines(actor(), oob(classification=90)) != []


def test_null_sender_and_unknown_original_recipient():
    [line] = lines(actor(), oob(orig_rcpt="", classification=30, bounce_rcpt="b@bounces.example.com"))
    f = BL.parse_line(line)
    assert f[5:9] == ["", "", "b", "bounces.example.com"] and f[12] == "30"
    [line] = lines(actor(), failure(sender_local="", sender_domain=""))
    assert BL.parse_line(line)[7:9] == ["", ""]


# -- custom_bounce_logger ----------------------------------------------------------------------------
def test_user_string_is_appended_macro_expanded():
    a = actor(user_string="%{vctx_conn:foo}")
    [line] = lines(a, failure(ctx_conn={"foo": "bar@baz"}))
    f = BL.parse_line(line)
    assert len(f) == 17 and f[:16] == BL.parse_line(DOC_LINE) and f[16] == "bar@baz"
    assert line.endswith("@bar\\@baz")
    # several macros, literal text kept, unset values empty, control characters escaped
    a = actor(user_string="c=%{vctx_conn:a};m=%{vctx_mess:b};r=%{rcptto};x=%{vctx_conn:none}")
    [line] = lines(a, oob(ctx_conn={"a": "1\n2"}, ctx_mess={"b": "two"}))
    assert BL.parse_line(line)[16] == "c=1\n2;m=two;r=info@postalengine.com;x="
    assert "\n" not in line
    assert BL.uses_contexts("%{vctx_conn:foo}") and not BL.uses_contexts("%{rcptto}")


# -- bounce_pattern --------------------------------------------------------------------------------
def test_bounce_pattern_qualifies_in_band_senders():
    cfg = load_config_text('bounce_pattern = "^info@"\nDomain "other.fict" { bounce_pattern = "^x-" }\n')
    cfg_mgr = SimpleNamespace(current=cfg)
    a = actor(config=cfg_mgr)
    assert lines(a, failure()) == [DOC_LINE]
    assert lines(a, failure(sender_local="news")) == []
    assert lines(a, failure(domain="other.fict")) == []
    assert lines(a, failure(domain="other.fict", sender_local="x-1")) != []
    assert lines(actor(config=SimpleNamespace(current=load_config_text(""))), failure(sender_local="n")) != []


# -- one line, round trip ----------------------------------------------------------------------------
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=120) | \
    st.text(alphabet="@\\\n\r\t\x00\x1b\x7f \u00e9\u00ff" + string.ascii_letters, max_size=60) | \
    st.binary(max_size=60).map(lambda b: b.decode("utf-8", "surrogateescape"))


@settings(max_examples=300, deadline=None)
@given(rl=TEXT, rd=TEXT, sl=TEXT, sd=TEXT, group=TEXT, binding=TEXT, ip=TEXT, response=TEXT)
def test_any_text_stays_one_line_and_round_trips(rl, rd, sl, sd, group, binding, ip, response):
    rec = failure(rcpt_local=rl, rcpt_domain=rd, sender_local=sl, sender_domain=sd,
                  binding_group=group, binding=binding, remote_ip=ip, response=response)
    [line] = lines(actor(), rec)
    assert "\n" not in line and "\r" not in line
    line.encode("utf-8", "surrogateescape")          # what the writer does with it
    f = BL.parse_line(line)
    assert len(f) == 16
    assert (f[5], f[6], f[7], f[8], f[9], f[10], f[14], f[15]) == (rl, rd, sl, sd, group, binding, ip, response)


@settings(max_examples=200, deadline=None)
@given(value=TEXT, literal=st.text(alphabet="ab @\\\n", max_size=10))
def test_user_string_stays_on_the_line(value, literal):
    a = actor(user_string=literal + "%{vctx_conn:v}")
    [line] = lines(a, failure(ctx_conn={"v": value}))
    assert "\n" not in line and "\r" not in line
    assert BL.parse_line(line)[:16] == BL.parse_line(DOC_LINE)
