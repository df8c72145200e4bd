"""msys.audit_series from a scriptlet in a real daemon: the policy defines its series in
init(), counts every connection (validate_connect, default key: the connected address) and
every message (validate_data_spool, key: the accept construct), and refuses MAIL FROM once
an address has sent LIMIT messages; clients connect from 127.0.0.1 and 127.0.0.2 with
smtplib. remove_item forgives an address; persist = true survives a restart."""

import json
import os

from ecmta.tests.audit_series.helpers import start

POLICY = """\
require("msys.core");
require("msys.audit_series");
local mod = {};
local LIMIT = 3
function mod:init()
  msys.audit_series.define("conns", "cidr", 300, 2)
  msys.audit_series.define("msgs", "cidr", 300, 2, {persist = PERSIST})
  msys.audit_series.define("senders", "string", 300, 2)
  return true
end
function mod:validate_connect(ac, vctx)
  msys.audit_series.add("conns")
  return msys.core.VALIDATE_CONT
end
function mod:validate_ehlo(helo, ac, vctx)
  if helo:find("forgive.test", 1, true) then msys.audit_series.remove_item("msgs") end
  return msys.core.VALIDATE_CONT
end
function mod:validate_mailfrom(from, ac, vctx)
  local sent = msys.audit_series.count("msgs", {key = ac, startv = 0, endv = 1})
  if sent >= LIMIT then
    vctx:set_code(550, ("5.7.1 %d messages in %d connections from here, %d from 127/8, %d by this sender")
      :format(sent, msys.audit_series.count("conns"), msys.audit_series.count("msgs", "/8"),
              msys.audit_series.count("senders", from:match("<(.*)>"))))
    return msys.core.VALIDATE_DONE
  end
  return msys.core.VALIDATE_CONT
end
function mod:validate_data_spool(msg, ac, vctx)
  msys.audit_series.add("msgs", ac)
  msys.audit_series.add("senders", {key = msg:mailfrom(), count = 1})
  return msys.core.VALIDATE_CONT
end
msys.registerModule("series", mod);
"""


def policy(persist: bool = False) -> str:
    return POLICY.replace("PERSIST", "true" if persist else "false")


def test_rejects_an_address_after_limit_messages(daemon_factory):
    m = start(daemon_factory, policy())
    for _ in range(3):
        assert m.send("127.0.0.1")[0] == 250
    code, text = m.send("127.0.0.1")
    assert (code, text) == (550, b"5.7.1 3 messages in 4 connections from here, 3 from 127/8, "
                                 b"3 by this sender")
    # another address has its own count; the /8 count and the sender's count include both
    assert m.send("127.0.0.2", sender="carol@client.test")[0] == 250
    code, text = m.send("127.0.0.1")
    assert (code, text) == (550, b"5.7.1 3 messages in 5 connections from here, 4 from 127/8, "
                                 b"3 by this sender")
    # remove_item (default key: this session's address) forgives 127.0.0.1 only
    assert m.send("127.0.0.1", helo="forgive.test")[0] == 250
    assert m.send("127.0.0.1")[0] == 250
    assert m.send("127.0.0.1")[0] == 250
    assert m.send("127.0.0.1")[0] == 550
    assert "scriptlet" not in m.d.paniclog()


def test_persisted_series_survives_a_restart(daemon_factory):
    tail = 'inbound_audit {\n  serialize_dir = "$home/persisted"\n}\n'
    m = start(daemon_factory, policy(persist=True), tail)
    for _ in range(3):
        assert m.send("127.0.0.1")[0] == 250
    assert m.send("127.0.0.2")[0] == 250
    assert m.d.stop() == 0
    path = m.path("persisted", "msgs.json")
    saved = json.load(open(path))
    counts = sorted((k, v) for items in saved["buckets"].values() for k, v in items)
    assert (saved["name"], saved["type"], counts) == ("msgs", "cidr", [("127.0.0.1", 3), ("127.0.0.2", 1)])
    assert sorted(os.listdir(m.path("persisted"))) == ["msgs.json"]     # conns, senders: not persisted

    m.d.start()
    code, text = m.send("127.0.0.1")
    assert code == 550 and text.startswith(b"5.7.1 3 messages in 1 connections from here, 4 from")
    assert m.send("127.0.0.2")[0] == 250
    assert m.send("127.0.0.2")[0] == 250
    assert m.send("127.0.0.2")[0] == 550


def test_without_persist_a_restart_starts_afresh(daemon_factory):
    m = start(daemon_factory, policy())
    for _ in range(3):
        assert m.send("127.0.0.1")[0] == 250
    assert m.d.stop() == 0
    assert not os.path.exists(m.path("audit_series_persist"))
    m.d.start()
    assert m.send("127.0.0.1")[0] == 250
