"""A real daemon: in-band bounces from a scripted 5xx server and from an unreachable host
(T lines, then the expiry B line) in the bouncelog; out-of-band bounces received for
bounce_domains (stage 21, pass and blackhole); custom_bounce_logger's user_string; the
heartbeat; a bad bounce_classifier_override refuses the configuration."""

import os
import smtplib
import time

import pytest

from ecmta.loggers import bounce_logger as BL
from ecmta.tests.bounce.helpers import ScriptedSMTP, bouncelog_lines, notice
from ecmta.tests.harness import wait_for
from ecmta.tests.harness import free_port

ID = r"[0-9A-F]{2}/[0-9A-F]{2}-\d{5}-[0-9A-F]{8}"

CONFIG = """\
spoolbase = "$home/spool"
hostname = "mta.ecmta.test"
relay_hosts = ( "127.0.0.0/8" )
generate_bounces = false
retry_interval = 1
max_retry_interval = 1
delayed_queue_scan_interval = 1
host_failure_retry = 0
connect_timeout = 2
idle_timeout = 1
bounce_domains = ( "bounces.test" "*.bounces.test" )
bounce_pattern = "^bounces-"
bounce_suppress_list = "postmaster@bounces.test"
ESMTP_Listener {
  SMTP_Extensions = ( "ENHANCEDSTATUSCODES" "PIPELINING" "8BITMIME" "SIZE" )
  Listen "127.0.0.1:$smtp" {
    context = [ foo = "listener-foo" ]
  }
}
Domain "reject.test" { gateway = "127.0.0.1:$scripted" }
Domain "closed.test" {
  gateway = "127.0.0.1:$closed"
  message_expiration = 4
}
Domain "bounces.test" { suspend_delivery = true }
Domain "bh.bounces.test" { bounce_behavior = "blackhole" }
ec_logger "ec_logger" {
  mainlog = "$home/log/mainlog.ec"
  rejectlog = "$home/log/rejectlog.ec"
  paniclog = "$home/log/paniclog.ec"
}
bounce_logger "bounce_logger" {
  bouncelog = "$home/log/bouncelog.ec"
  heartbeat = 1
}
custom_bounce_logger "custom_bounce_logger1" {
  bouncelog = "$home/log/bouncelog.cl"
  user_string = "%{vctx_conn:foo}"
  log_transient_failures = off
  heartbeat = 0
}
"""


@pytest.fixture
def scripted():
    made = []

    def make(**kw):
        s = ScriptedSMTP(**kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


@pytest.fixture
def mta(daemon_factory, scripted):
    s = scripted(rcpt_reply="550 5.1.1 <nobody@reject.test>: Recipient address rejected: User unknown")
    d = daemon_factory(CONFIG, ports={"smtp": free_port(), "scripted": s.port, "closed": free_port()})
    d.start()
    d.scripted = s
    return d


def send(d, mailfrom, rcpts, data):
    with smtplib.SMTP("127.0.0.1", d.ports["smtp"], local_hostname="client.test", timeout=20) as c:
        assert not c.sendmail(mailfrom, rcpts, data)


def records(d, name="bouncelog.ec", kind=None):
    out = []
    for line in bouncelog_lines(os.path.join(d.home, "log", name)):
        f = BL.parse_line(line)
        if f[4] == "M1":
            continue
        if kind is None or f[4] == kind:
            out.append(f)
    return out


MESSAGE = b"From: News <bounces-1-2@news.example>\r\nTo: x\r\nSubject: news\r\n\r\nhello\r\n"


def test_in_band_permanent_failure_is_a_b_line(mta):
    send(mta, "bounces-1-2@news.example", ["nobody@reject.test"], MESSAGE)
    [b] = wait_for(lambda: records(mta, kind="B"), what="a B line")
    assert len(b) == 16
    import re
    assert all(re.fullmatch(ID, x) for x in b[1:4]), b
    assert b[4:11] == ["B", "nobody", "reject.test", "bounces-1-2", "news.example", "default", "default"]
    assert (b[11], b[12], b[14]) == ("4", "10", "127.0.0.1")            # during RCPT TO, invalid recipient
    assert b[15] == "550 5.1.1 <nobody@reject.test>: Recipient address rejected: User unknown"
    assert int(b[13]) > 0
    # the same ids as the mainlog's P line
    main = bouncelog_lines(os.path.join(mta.home, "log", "mainlog.ec"))
    [p] = [ln for ln in main if ln.split("@")[4:5] == ["P"]]
    assert p.split("@")[1:4] == b[1:4]
    # custom_bounce_logger: the same record plus the connection context value
    [c] = wait_for(lambda: records(mta, "bouncelog.cl", "B"), what="the custom B line")
    assert c[:16] == b and c[16] == "listener-foo"


def test_unreachable_host_gives_t_lines_then_an_expiry_b_line(mta):
    send(mta, "bounces-3-4@news.example", ["someone@closed.test"], MESSAGE)
    [b] = wait_for(lambda: records(mta, kind="B"), timeout=30, what="the expiry B line")
    ts = records(mta, kind="T")
    assert ts, "no T line before the expiry"
    for t in ts:
        assert t[5:9] == ["someone", "closed.test", "bounces-3-4", "news.example"]
        assert (t[12], t[15]) == ("70", "451 4.4.1 [internal] No valid hosts (unable to make any connections)")
    assert b[5:7] == ["someone", "closed.test"]
    assert (b[11], b[12]) == ("0", "24")
    assert b[15].startswith("554 5.4.7 [internal] exceeded max")
    # custom_bounce_logger has log_transient_failures = off
    wait_for(lambda: records(mta, "bouncelog.cl", "B"), what="the custom B line")
    assert records(mta, "bouncelog.cl", "T") == []


def test_heartbeats(mta):
    path = os.path.join(mta.home, "log", "bouncelog.ec")
    beats = wait_for(lambda: [ln for ln in bouncelog_lines(path) if ln.endswith("@@@@M1")][:2] or None,
                     what="heartbeats")
    import re
    assert all(re.fullmatch(r"\d+@@@@M1", ln) for ln in beats)
    time.sleep(1.2)
    assert not [ln for ln in bouncelog_lines(os.path.join(mta.home, "log", "bouncelog.cl"))
                if ln.endswith("M1")]                       # heartbeat = 0


def test_out_of_band_dsn_passes_and_is_logged_with_stage_21(mta):
    data = notice("postfix_dsn.eml")
    send(mta, "", ["bounces-12-345@bounces.test"], data)
    [b] = wait_for(lambda: records(mta, kind="B"), what="the out-of-band B line")
    assert b[4:13] == ["B", "jane", "example.org", "bounces-12-345", "bounces.test", "default",
                       "default", "21", "10"]
    assert b[14] == "127.0.0.1" and int(b[13]) >= len(data)
    assert b[15] == ("550 5.1.1 <jane@example.org>: Recipient address rejected: "
                     "User unknown in local recipient table")
    # pass: it was received (R line) and stays queued for bounces.test
    main = bouncelog_lines(os.path.join(mta.home, "log", "mainlog.ec"))
    [r] = [ln for ln in main if ln.split("@")[4:5] == ["R"]]
    assert r.split("@")[1] == b[1] and r.split("@")[5:7] == ["bounces-12-345", "bounces.test"]


def test_blackholed_bounces_are_logged_and_discarded(mta):
    send(mta, "", ["bounces-9@bh.bounces.test"], notice("autoreply.eml"))
    [b] = wait_for(lambda: records(mta, kind="B"), what="the out-of-band B line")
    assert b[5:13] == ["jane", "example.org", "bounces-9", "bh.bounces.test", "default", "default",
                       "21", "60"]
    rejectlog = os.path.join(mta.home, "log", "rejectlog.ec")
    [rej] = wait_for(lambda: [ln for ln in bouncelog_lines(rejectlog) if "discarded by policy" in ln],
                     what="the rejectlog line")
    assert rej.endswith("5.7.1 [internal] discarded by policy") and "E=550" in rej
    main = bouncelog_lines(os.path.join(mta.home, "log", "mainlog.ec"))
    assert not [ln for ln in main if ln.split("@")[4:5] == ["R"]]     # nothing received


def test_what_is_not_a_bounce_or_not_a_bounce_address_passes_unlogged(mta):
    send(mta, "eve@example.com", ["bounces-5@bounces.test"], notice("plain.eml"))        # no notice
    send(mta, "", ["someone@bounces.test"], notice("postfix_dsn.eml"))                 # bounce_pattern
    send(mta, "", ["bounces-6@bh.bounces.test"], notice("subscribe.eml"))               # BC_SUBSCRIBE
    main = os.path.join(mta.home, "log", "mainlog.ec")
    wait_for(lambda: len([ln for ln in bouncelog_lines(main) if ln.split("@")[4:5] == ["R"]]) == 2,
             what="two R lines")
    rejectlog = os.path.join(mta.home, "log", "rejectlog.ec")
    wait_for(lambda: [ln for ln in bouncelog_lines(rejectlog) if "discarded by policy" in ln],
             what="the blackholed subscribe request")
    time.sleep(0.5)
    assert records(mta) == []


def test_a_bad_classifier_configuration_is_refused(daemon_factory):
    d = daemon_factory('bounce_classifier_override {\n  custom_classes = [ 10 = "mine" ]\n}\n'
                       'bounce_logger "b" { bouncelog = "$home/log/b.ec" }\n')
    with pytest.raises(RuntimeError, match="built-in class 'Invalid Recipient'"):
        d.start()


def test_a_bad_bounce_pattern_is_refused(daemon_factory):
    d = daemon_factory('bounce_pattern = "^bounces-(\\\\d+"\n'
                       'bounce_logger "b" { bouncelog = "$home/log/b.ec" }\n')
    with pytest.raises(RuntimeError, match="bounce_pattern .* not a valid regular expression"):
        d.start()


def test_config_reload_moves_the_bouncelog_and_keeps_the_old_one_on_error(mta):
    send(mta, "bounces-1-2@news.example", ["nobody@reject.test"], MESSAGE)
    wait_for(lambda: records(mta, kind="B"), what="the first B line")
    mta.config_body = CONFIG.replace("$home/log/bouncelog.ec", "$home/log/moved.ec")
    mta.write_config()
    assert mta.ok("config reload") == ""
    send(mta, "bounces-1-3@news.example", ["nobody@reject.test"], MESSAGE)
    [b] = wait_for(lambda: records(mta, "moved.ec", "B"), what="a B line in the new file")
    assert b[7] == "bounces-1-3" and len(records(mta, kind="B")) == 1
    # a refused configuration keeps the running loggers
    mta.config_body = CONFIG.replace("$home/log/bouncelog.ec", "$home/log/moved.ec").replace(
        'bounce_pattern = "^bounces-"', 'bounce_pattern = "("')
    mta.write_config()
    assert mta.ok("config reload").startswith(
        'logging: bounce_pattern = "(": not a valid regular expression')
    send(mta, "bounces-1-4@news.example", ["nobody@reject.test"], MESSAGE)
    wait_for(lambda: len(records(mta, "moved.ec", "B")) == 2, what="a second B line in the new file")
