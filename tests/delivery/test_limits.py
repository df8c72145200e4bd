"""Connection limits and throttles under load, measured at the remote: the sink records every
connection with the number of sessions open at that moment and every message's arrival
time. Each sink answers the end of data after `hold` seconds, so connections overlap.

- max_outbound_connections per domain and in a Host stanza (per MX address),
  server_max_outbound_connections globally and in a Binding;
- outbound_throttle_messages "N/S": one token bucket per defining scope, shared by every
  queue that inherits it (conf.ref.outbound_throttle_messages).
"""

from ecmta.tests.delivery.helpers import domain_port, wait_for

SENDER = "alice@sender.test"
LOAD = ("max_recipients_per_batch = 1\nconnection_allocation_aggressiveness = high\n"
        "idle_timeout = 0\n")


def rcpts(domain: str, n: int, prefix: str = "u") -> list[str]:
    return [f"{prefix}{i}@{domain}" for i in range(n)]


def assert_no_failures(a):
    assert not a.records("T"), a.records("T")
    assert not a.records("P"), a.records("P")


def test_max_outbound_connections_per_domain(mta, sink):
    s = sink(hold=0.4)
    a = mta(glob=LOAD, tail=domain_port("conn.test", s.port, "  max_outbound_connections = 3\n"))
    a.send(SENDER, rcpts("conn.test", 15))
    s.wait_messages(15, timeout=30)
    a.wait_records("D", 15)
    assert s.max_concurrent() == 3, [e["concurrent"] for e in s.events("connect")]
    assert_no_failures(a)


def test_max_outbound_connections_in_a_host_stanza_spans_domains(mta, sink):
    """lim1.test and lim2.test share the MX mx.shared.test: its Host stanza allows 2
    connections to it in all, though each domain may open 10."""
    s = sink(hold=0.4)
    a = mta(glob=LOAD + "max_outbound_connections = 10",
            tail=domain_port("lim1.test", s.port) + domain_port("lim2.test", s.port) +
            'Host "mx.shared.test" {\n  max_outbound_connections = 2\n}\n')
    a.send(SENDER, rcpts("lim1.test", 8))
    a.send(SENDER, rcpts("lim2.test", 8))
    s.wait_messages(16, timeout=40)
    a.wait_records("D", 16)
    assert s.max_concurrent() == 2, [e["concurrent"] for e in s.events("connect")]
    assert_no_failures(a)


def test_server_max_outbound_connections_global(mta, sink):
    s = sink(hold=0.4)
    a = mta(glob=LOAD + "server_max_outbound_connections = 3",
            tail=domain_port("conn.test", s.port) + domain_port("many.test", s.port) +
            domain_port("slow.test", s.port))
    for d in ("conn.test", "many.test", "slow.test"):
        a.send(SENDER, rcpts(d, 5))
    s.wait_messages(15, timeout=40)
    a.wait_records("D", 15)
    assert s.max_concurrent() == 3, [e["concurrent"] for e in s.events("connect")]
    assert_no_failures(a)


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


def test_server_max_outbound_connections_in_a_binding(mta, sink):
    """Inside a Binding it limits that binding (conf.ref.server_max_outbound_connections):
    b1's mail to two domains uses one connection at a time; the default binding is free."""
    s_b1 = sink(hold=0.3)
    s_def = sink(hold=0.3)
    a = mta(glob=LOAD,
            tail=domain_port("conn.test", s_b1.port) + domain_port("many.test", s_b1.port) +
            domain_port("slow.test", s_def.port) +
            'Binding "b1" {\n  server_max_outbound_connections = 1\n}\n'
            'scriptlet "scriptlet" {\n  script "pick" {\n    source = "policy/pick"\n  }\n}\n',
            files={"policy/pick.lua": LUA_B1})
    a.send(SENDER, rcpts("conn.test", 4, "b1x") + rcpts("many.test", 4, "b1y"))
    a.send(SENDER, rcpts("slow.test", 6, "d"))
    s_b1.wait_messages(8, timeout=40)
    s_def.wait_messages(6, timeout=40)
    assert s_b1.max_concurrent() == 1, [e["concurrent"] for e in s_b1.events("connect")]
    assert s_def.max_concurrent() >= 2, [e["concurrent"] for e in s_def.events("connect")]
    assert_no_failures(a)


def arrival_times(sinks) -> list[float]:
    return sorted(m["t"] for s in sinks for m in s.messages())


def assert_rate(times, n: int, seconds: float) -> None:
    """Token bucket "n/seconds" (burst n): between the i-th and j-th arrival at most
    n + elapsed * n/seconds messages can pass (one of slack for the clock edges)."""
    rate = n / seconds
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            passed = j - i + 1
            assert passed <= n + (times[j] - times[i]) * rate + 1, \
                (i, j, times[j] - times[i], [round(t - times[0], 2) for t in times])


def test_outbound_throttle_messages_is_shared_by_the_defining_scope(mta, sink):
    """Global "3/1": two domains (two queues, two sinks) share one bucket: 12 messages
    need at least (12 - 3) / 3 = 3 s in all, and their merged arrivals keep the rate."""
    s1, s2 = sink(), sink()
    a = mta(glob=LOAD + 'outbound_throttle_messages = "3/1"',
            tail=domain_port("thr.test", s1.port) + domain_port("many.test", s2.port))
    a.send(SENDER, rcpts("thr.test", 6) + rcpts("many.test", 6))
    wait_for(lambda: len(s1.messages()) + len(s2.messages()) >= 12, 30, what="12 messages")
    times = arrival_times([s1, s2])
    assert times[-1] - times[0] >= 2.7, [round(t - times[0], 2) for t in times]
    assert_rate(times, 3, 1)
    assert_no_failures(a)


def test_outbound_throttle_messages_per_domain_scope_is_per_domain(mta, sink):
    """The same "3/1" written in each Domain stanza: two buckets, so each domain keeps the
    rate on its own while together they go twice as fast as the shared bucket."""
    s1, s2 = sink(), sink()
    thr = '  outbound_throttle_messages = "3/1"\n'
    a = mta(glob=LOAD, tail=domain_port("thr.test", s1.port, thr) + domain_port("many.test", s2.port, thr))
    a.send(SENDER, rcpts("thr.test", 6) + rcpts("many.test", 6))
    wait_for(lambda: len(s1.messages()) + len(s2.messages()) >= 12, 30, what="12 messages")
    for s in (s1, s2):
        t = arrival_times([s])
        assert t[-1] - t[0] >= 0.7, [round(x - t[0], 2) for x in t]
        assert_rate(t, 3, 1)
    both = arrival_times([s1, s2])
    assert both[-1] - both[0] < 2.5, [round(t - both[0], 2) for t in both]
    assert_no_failures(a)


def test_queues_waiting_for_a_server_connection_slot_start_when_one_frees(mta, sink):
    """With server_max_outbound_connections = 1 three domains take turns; a queue refused a
    connection starts as soon as one closes, not at its next maintainer scan (15 s here)."""
    s = sink(hold=0.2)
    a = mta(glob=LOAD + "server_max_outbound_connections = 1\ndelayed_queue_scan_interval = 15",
            tail=domain_port("conn.test", s.port) + domain_port("many.test", s.port) +
            domain_port("slow.test", s.port))
    for d in ("conn.test", "many.test", "slow.test"):
        a.send(SENDER, rcpts(d, 2))
    s.wait_messages(6, timeout=12)
    assert s.max_concurrent() == 1
    assert_no_failures(a)


def test_outbound_throttle_connections(mta, sink):
    """"2/1" connections: one message per connection (max_deliveries_per_connection = 1),
    8 messages: the connects keep the rate (burst 2, then 2 a second)."""
    s = sink()
    a = mta(glob=LOAD + 'max_deliveries_per_connection = 1\noutbound_throttle_connections = "2/1"',
            tail=domain_port("thr.test", s.port))
    a.send(SENDER, rcpts("thr.test", 8))
    s.wait_messages(8, timeout=30)
    times = sorted(e["t"] for e in s.events("connect"))
    assert len(times) == 8
    assert times[-1] - times[0] >= 2.7, [round(t - times[0], 2) for t in times]
    assert_rate(times, 2, 1)
    assert_no_failures(a)
