"""Nothing accepted is lost across a SIGKILL, and queue state survives restarts.

- SIGKILL while the remote holds the end of data: the message is still spooled (marked
  `delivering`), is delivered again after the restart (at-least-once: its delivery was
  never recorded) and the paniclog says "was being delivered when ecelerity stopped" for it
  and only for it.
- Retries, next attempt, last code and binding are in the spool (ec_show) and drive the
  queue after a restart: the T lines' retries go on counting, the next attempt is not
  brought forward, the binding's source address is still used.
"""

import re
import time

from ecmta.tests.delivery.helpers import domain_port, wait_for

SENDER = "alice@sender.test"
STOPPED = "was being delivered when ecelerity stopped"


def spool_by_rcpt(a) -> dict:
    return {m.rcptto: m for m in a.spooled()}


def test_sigkill_during_delivery_delivers_again_after_restart(mta, sink):
    s = sink(hold=[60, 0])                      # the first end of data is never answered
    q = sink(rcpt={"wait@state.test": ["451 4.3.0 later"]})
    a = mta(glob="retry_interval = 30",
            tail=domain_port("crash.test", s.port) + domain_port("state.test", q.port))
    a.send(SENDER, ["wait@state.test"])         # queued, delayed: not being delivered
    a.wait_records("T", 1)
    a.send(SENDER, ["x@crash.test"], subject="in flight")
    wait_for(lambda: s.events("data_end"), what="the body at the remote")
    wait_for(lambda: spool_by_rcpt(a)["x@crash.test"].state == "delivering",
             what="the delivering mark on disk")
    assert not a.records("D")
    a.d.kill()

    # offline: both messages are in the spool
    spooled = spool_by_rcpt(a)
    assert set(spooled) == {"x@crash.test", "wait@state.test"}
    assert spooled["x@crash.test"].state == "delivering"
    shown = a.ec_show("-n")
    assert shown.returncode == 0 and re.search(r"\b2\b", shown.stdout), shown

    a.d.start()
    [d] = a.wait_records("D", 1)
    [r] = [r for r in a.records("R") if r["rl"] == "x"]
    assert (d["id"], d["domain"], d["retries"]) == (r["id"], "crash.test", "0")
    assert len([e for e in s.events("rcpt") if e["addr"] == "x@crash.test"]) == 2
    wait_for(lambda: set(spool_by_rcpt(a)) == {"wait@state.test"}, what="the delivered one removed")
    stopped = [ln for ln in a.paniclog() if STOPPED in ln]
    assert len(stopped) == 1 and r["id"] in stopped[0] and "x@crash.test" in stopped[0], \
        (a.paniclog(), a.d.stderr()[-3000:])


def test_sigkill_after_acceptance_before_any_attempt_loses_nothing(mta, sink):
    """Messages accepted (250) while delivery is suspended, then SIGKILL: all are delivered
    after a restart without the suspension, none twice, none reported as in flight."""
    s = sink()
    a = mta(tail=domain_port("many.test", s.port, "  suspend_delivery = true\n"))
    n = 20
    a.send_many(SENDER, [f"m{i}@many.test" for i in range(n)])
    assert len(a.spooled()) == n
    a.d.kill()
    a.d.config_body = a.d.config_body.replace("  suspend_delivery = true\n", "")
    a.d.start()
    s.wait_messages(n)
    a.wait_records("D", n)
    got = sorted(r for m in s.messages() for r in m["rcpts"])
    assert got == sorted(f"m{i}@many.test" for i in range(n))
    wait_for(lambda: not a.spooled(), what="the spool to empty")
    assert not [ln for ln in a.paniclog() if STOPPED in ln]


LUA_B1 = """\
require("msys.core");
require("msys.extended.message");
local mod = {};
function mod:validate_set_binding(msg)
  if string.find(msg:rcptto(), "^b1") then
    msg:binding("b1");
  end
  return msys.core.VALIDATE_CONT;
end
msys.registerModule("pick", mod);
"""


def test_queue_state_survives_a_sigkill(mta, sink):
    """Two failures (retries 0, 1), then SIGKILL once ec_show shows `Retries: 2`; after the
    restart the third attempt waits for the stored next attempt, is logged with retries 2
    on binding b1 and leaves from b1's bind_address."""
    addr = "b1stuck@state.test"
    s = sink(rcpt={addr: ["451 4.3.0 one", "451 4.3.0 two", "451 4.3.0 three", "250 2.1.5 ok"]})
    a = mta(glob="retry_interval = 1\nmax_retry_interval = 4",
            tail=domain_port("state.test", s.port) +
            'Binding "b1" {\n  bind_address = 127.0.0.2\n}\n'
            'scriptlet "scriptlet" {\n  script "pick" {\n    source = "policy/pick"\n  }\n}\n',
            files={"policy/pick.lua": LUA_B1})
    a.send(SENDER, [addr])
    a.wait_records("T", 2, timeout=20)

    def retries_two():
        out = a.ec_show("-s").stdout
        return out if "Retries: 2" in out else None
    shown = wait_for(retries_two, what="ec_show Retries: 2")
    assert "Code: 451 4.3.0 two" in shown, shown
    [m] = a.spooled()
    assert (m.attempts, m.binding, m.state, m.code) == (2, "b1", "delayed", "451 4.3.0 two")
    stored_next = m.next_attempt
    next_line = re.search(r"Next Attempt: (.*)", shown).group(1)
    assert next_line == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stored_next))
    a.d.kill()
    killed_at = time.time()

    a.d.start()
    ts = a.wait_records("T", 3, timeout=20)
    [d] = a.wait_records("D", 1, timeout=20)
    third = [e for e in s.events("rcpt") if e["addr"] == addr][2]
    assert third["t"] >= stored_next - 0.05, (third["t"] - killed_at, stored_next - killed_at)
    assert [t["retries"] for t in ts] == ["0", "1", "2"]
    assert {t["binding"] for t in ts} == {"b1"}
    assert (d["binding"], d["retries"]) == ("b1", "3")
    # the reception time survived too: seconds since reception span the restart
    [r] = a.records("R")
    assert float(d["seconds"]) >= int(d["ts"]) - int(r["ts"]) - 1
    assert d["size"] == r["size"] and (d["batch"], d["conn"]) == (r["batch"], r["conn"])
    conns = {c["conn"]: c["peer"] for c in s.events("connect")}
    assert {conns[e["conn"]] for e in s.events("rcpt")} == {"127.0.0.2"}
    assert not [ln for ln in a.paniclog() if STOPPED in ln]


def test_graceful_stop_keeps_the_queue(mta, sink):
    """SIGTERM with a delayed message: ecelerity stops, the message stays spooled with its
    state, and the next start delivers it when due."""
    addr = "later@retry.test"
    s = sink(rcpt={addr: ["451 4.3.0 later", "250 2.1.5 ok"]})
    a = mta(glob="retry_interval = 2", tail=domain_port("retry.test", s.port))
    a.send(SENDER, [addr])
    a.wait_records("T", 1)
    wait_for(lambda: (a.spooled() or [None])[0] and a.spooled()[0].attempts == 1,
             what="attempts 1 on disk")
    assert a.d.stop() == 0
    [m] = a.spooled()
    assert (m.attempts, m.state) == (1, "delayed")
    a.d.start()
    [d] = a.wait_records("D", 1, timeout=20)
    assert d["retries"] == "1"
    wait_for(lambda: not a.spooled(), what="the spool to empty")


def test_sigkill_under_load_loses_nothing_and_logs_every_redelivery(mta, sink):
    """30 messages over 3 connections, each end of data held 0.3 s; SIGKILL once about a
    third have arrived, restart: every recipient arrives, and each one that arrives twice
    is named by a "was being delivered when ecelerity stopped" paniclog line."""
    n = 30
    s = sink(hold=0.3)
    a = mta(glob="max_recipients_per_batch = 1\nconnection_allocation_aggressiveness = high\n"
                 "max_outbound_connections = 3",
            tail=domain_port("crash.test", s.port))
    rcpts = [f"load{i}@crash.test" for i in range(n)]
    a.send_many(SENDER, rcpts)
    wait_for(lambda: len(s.events("data_end")) >= n // 3, what="a third at the remote")
    a.d.kill()
    before = len(a.spooled())
    assert 0 < before < n
    a.d.start()
    wait_for(lambda: set(rcpts) <= {r for m in s.messages() for r in m["rcpts"]}, 30,
             what="every recipient at the remote")
    wait_for(lambda: not a.spooled(), what="the spool to empty")
    seen = {}
    for m in s.messages():
        for r in m["rcpts"]:
            seen[r] = seen.get(r, 0) + 1
    stopped = [ln for ln in a.paniclog() if STOPPED in ln]
    for r, count in seen.items():
        if count > 1:
            assert any(f" to {r} " in ln for ln in stopped), (r, count, stopped)
    # in flight: one message per connection, plus any whose removal was not yet durable
    assert len(stopped) <= 6, stopped
    # every message has a D line, before the kill or after the restart
    ds = a.records("D")
    ids = {r["id"] for r in a.records("R")}
    assert {d["id"] for d in ds} == ids
