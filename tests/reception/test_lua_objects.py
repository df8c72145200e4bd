"""The Lua objects through the real daemon: vctx (get/set/set_code/disconnect/tarpit are in
test_lua_phases; here add_recipient/remove_recipient/recipient_list), ac (esmtp_capability_add
/remove, inbound_session_count) and msg (header, mailfrom, rcptto, context_*, body, raw, text,
discard/code in test_lua_phases, routing_domain, binding, binding_group, get_message_size,
listener_addr, reception_peer, get_envelope2, id, conn_id, batch_id, priority).

Scripts follow the doc examples (lua.ref.*) and are switched on by the message Subject, the
recipient or a Listen `Context`, so one daemon serves the module. What a script sees goes
to the message context (stored in the spool with the message) or to the paniclog (print).
"""

from __future__ import annotations

import re

import pytest

from ecmta.tests.harness import free_port
from ecmta.tests.reception.helpers import Shared, local_port, queue_id, start_mta, wait_for

OBJ = r"""
require("msys.core");
require("msys.extended.message");
require("msys.extended.message_routing");
require("msys.extended.vctx");
local mod = {};
local C, M = msys.core.VCTX_CONN, msys.core.VCTX_MESS
local EM, EC = msys.core.ECMESS_CTX_MESS, msys.core.ECMESS_CTX_CONN

local function subject(msg)
  local h = msg:header("Subject")
  return h and h[1] or ""
end

-- lua.ref.vctx_add_recipient example 70.69, verbatim apart from the trigger
local function sum_table(tbl)
  if (tbl == nil) then
    return "";
  end
  local sum = "";
  for i=0,#tbl do
    sum = sum..tbl[i].." ";
  end
  return sum;
end

function mod:validate_rcptto(msg, str, accept, vctx)
  local lp = vctx:get(M, "rcptto_localpart")
  vctx:set(M, "rcptto_seen_" .. lp, msg:rcptto())
  if lp == "list-in-rcptto" then
    local ok = pcall(vctx.recipient_list, vctx)
    vctx:set(M, "list_in_rcptto_ok", tostring(ok))
  elseif lp == "route-batch" then
    msg:routing_domain("batch-route.test")
  end
  return msys.core.VALIDATE_CONT
end

function mod:validate_data(msg, accept, vctx)
  local s = subject(msg)
  if s == "add recipient" then
    vctx:add_recipient("mailfrom@messagesystems.com");
    local addrs = vctx:recipient_list();
    print ("validate_mailfrom:rcpts: "..sum_table(addrs));
  elseif s == "remove recipient" then
    vctx:remove_recipient("gone@example.com")
  elseif s == "replace recipients" then
    vctx:recipient_list({"r1@example.com", "r2@example.com"})
  elseif s == "headers" then
    local header_list = msg:header("X-Custom-Header");
    vctx:set(M, "first_custom", header_list[1])
    vctx:set(M, "custom_count", tostring(#header_list))
    msg:header("X-Deleted", "");
    msg:header("X-Custom-Header", "123456", "replace");
    msg:header("X-Added", "appended value");
    msg:header("X-Added", "prepended value", "prepend");
    msg:header("X-Added", "second appended", "append");
    msg:header("X-Utf8", "Grüße");
    vctx:set(M, "encoded_subject", msg:header("X-Encoded")[1])
  elseif s == "envelope" then
    vctx:set(M, "old_from", msg:mailfrom())
    msg:mailfrom("rewritten@sender.test")
    local ok = pcall(msg.rcptto, msg, "nope@example.com")
    vctx:set(M, "rcptto_set_in_data_ok", tostring(ok))
  elseif s == "body" then
    vctx:set(M, "old_body", msg:body())
    msg:body("replaced body\r\n.\r\n")
  elseif s == "raw" then
    vctx:set(M, "raw_len", tostring(#msg:raw()))
    msg:raw("Subject: raw replaced\r\nX-Raw: yes\r\n\r\nnew raw body\r\n")
  elseif s == "text" then
    local t = msg:text()
    vctx:set(M, "text_parts", tostring(#t))
    vctx:set(M, "text1", t[1])
    vctx:set(M, "text2", t[2])
  elseif s == "context" then
    -- lua.ref.msg_context_get example
    local val = 1
    msg:context_set(msys.core.ECMESS_CTX_MESS, 'key', val)
    local messval = msg:context_get(msys.core.ECMESS_CTX_MESS, 'key')
    vctx:set(M, "key_type", type(messval) .. ":" .. messval)
    msg:context_set(EC, "conn_key", "conn value")
    vctx:set(M, "exists", tostring(msg:context_exists(EM, "key")))
    local e, v = msg:context_exists_and_get(EM, "key")
    vctx:set(M, "exists_and_get", tostring(e) .. ":" .. tostring(v))
    msg:context_set(EM, "temp", "x")
    msg:context_delete(EM, "temp")
    vctx:set(M, "temp_after_delete", tostring(msg:context_exists(EM, "temp")))
    vctx:set(M, "missing", "[" .. msg:context_get(EM, "no_such_key") .. "]")
  elseif s == "addresses" then
    -- lua.ref.msg_listener_addr / msg_reception_peer examples
    print(msg:listener_addr('ip'));
    print(msg:listener_addr('port'));
    print(msg:listener_addr('all'));
    print(msg:listener_addr());
    print(msg:reception_peer('ip'));
    print(msg:reception_peer('port'));
    print(msg:reception_peer('all'));
    print(msg:reception_peer());
    -- lua.ref.msg.batch_id example
    print(msg.batch_id);
    vctx:set(M, "data_ids", tostring(msg.id) .. " " .. tostring(msg.batch_id) .. " " .. tostring(msg.conn_id))
    vctx:set(M, "size_in_data", tostring(msg:get_message_size()))
    vctx:set(M, "raw_in_data", tostring(#msg:raw()))
  end
  return msys.core.VALIDATE_CONT
end

function mod:validate_data_spool_each_rcpt(msg, accept, vctx)
  local s = subject(msg)
  if s == "each" then
    msg:context_set(EM, "each_ids", tostring(msg.id) .. " " .. tostring(msg.batch_id))
    local rcpt = msg:rcptto()
    if rcpt == "rename@example.com" then
      msg:rcptto("renamed@example.com")
    elseif rcpt == "route@example.com" then
      msg:routing_domain("Other-Route.TEST")
    elseif rcpt == "personal@example.com" then
      msg:header("X-Personal", "only for " .. rcpt)
    end
    msg:context_set(EM, "routing_seen", msg:routing_domain())
    local ok = pcall(vctx.add_recipient, vctx, "late@example.com")
    msg:context_set(EM, "add_after_final_ok", tostring(ok))
  end
  return msys.core.VALIDATE_CONT
end

-- lua.ref.msg_get_envelope2 / msg_binding examples, with the domains of this test
function mod:validate_set_binding(msg)
  local from = msg:mailfrom();
  local localpart_str = msys.core.string_new();
  local domain_str = msys.core.string_new();
  msg:get_envelope2(msys.core.EC_MSG_ENV_FROM, localpart_str, domain_str);
  local domain = tostring(domain_str);
  msg:context_set(EM, "env_from", tostring(localpart_str) .. "|" .. domain)
  local to_all = msys.core.string_new();
  msg:get_envelope2(msys.core.EC_MSG_ENV_TO | msys.core.EC_MSG_ENV_COMPLETE, to_all, msys.core.string_new());
  msg:context_set(EM, "env_to_complete", tostring(to_all))
  localpart_str = nil;
  if msys.pcre.match(domain, "mydomain.com") then
    msg:binding("mydomain");
  elseif domain == "grouped.test" then
    msg:binding_group("grp");
  elseif domain == "nobinding.test" then
    msg:context_set(EM, "bad_binding", tostring(msg:binding("no_such_binding")))
  elseif domain == "urgent.test" then
    -- implementing.policy.scriptlets 62.2.5.1
    print("mod:validate_set_binding: Setting msg priority to 1");
    msg.priority = 1;
  end
  return msys.core.VALIDATE_CONT;
end
msys.registerModule("obj", mod);
"""

# lua.ref.ac_esmtp_capability_add example (plus remove and inbound_session_count), for the
# Listen whose Context says so.
CAPS = """
require("msys.core");
require("msys.extended.message");
require("msys.extended.ac");
local mod = {};
function mod:validate_connect(ac, vctx)
  local C = msys.core.VCTX_CONN
  if vctx:get(C, "caps") == "edit" then
    ac:esmtp_capability_add("8BITMIME");
    ac:esmtp_capability_add("X-SHINY EXTRA");
    ac:esmtp_capability_remove("XDUMPCONTEXT_NOT_THERE");
    ac:esmtp_capability_remove("PIPELINING");
  end
  if vctx:get(C, "caps") == "count" then
    vctx:set(C, "n_default", tostring(ac:inbound_session_count()))
    vctx:set(C, "n_slash8", tostring(ac:inbound_session_count("/8")))
    vctx:set(C, "n_slash32", tostring(ac:inbound_session_count("/32")))
    vctx:set(C, "n_addr", tostring(ac:inbound_session_count("127.0.0.5")))
    vctx:set(C, "n_net", tostring(ac:inbound_session_count("10.0.0.0/8")))
    vctx:set(C, "n_control", tostring(ac:inbound_session_count(nil, "Control")))
  end
  return msys.core.VALIDATE_CONT;
end
msys.registerModule("caps", mod);
"""

SCRIPTLET = """\
Binding "mydomain" {
}
Binding_Group "grp" {
  Binding "grpb" {
  }
}
scriptlet "scriptlet" {
  script "obj" {
    source = "policy/obj"
  }
  script "caps" {
    source = "policy.caps"
  }
}
"""


@pytest.fixture(scope="module")
def ob():
    shared = Shared()
    try:
        yield start_mta(
            shared.factory, ports={"caps": free_port(), "count": free_port()}, tail=SCRIPTLET,
            glob='relay_domains = ( "example.com" "mydomain.com" "grouped.test" )',
            ext='"ENHANCEDSTATUSCODES" "PIPELINING" "XDUMPCONTEXT"',
            more_listens=('  Listen "127.0.0.1:$caps" {\n    Context = [ caps = "edit" ]\n  }\n'
                          '  Listen "127.0.0.1:$count" {\n    Context = [ caps = "count" ]\n  }'),
            files={"policy/obj.lua": OBJ, "policy/caps.lua": CAPS})
    finally:
        shared.close()


def deliver(ob, subject: str, rcpts=("o@example.com",), sender="a@sender.test", body=b"body\r\n",
            headers: bytes = b"", port=None):
    w = ob.wire(port)
    w.cmd("EHLO client.test")
    assert w.cmd(f"MAIL FROM:<{sender}>").code == 250
    for r in rcpts:
        assert w.cmd(f"RCPT TO:<{r}>").code == 250, r
    assert w.cmd("DATA").code == 354
    r = w.cmd(b"Subject: " + subject.encode() + b"\r\n" + headers + b"\r\n" + body + b".")
    assert r.code == 250, str(r)
    batch = queue_id(r)
    got = wait_for(lambda: sorted((m for m in ob.spooled() if m.batch_id == batch),
                                  key=lambda m: m.rcptto))
    return got, w


def panic_after(ob, n_before: int, pattern: str):
    rx = re.compile(pattern)
    return wait_for(lambda: [ln for ln in ob.paniclog()[n_before:] if rx.search(ln)],
                    what=f"paniclog {pattern!r}")


def header_lines(m) -> list[str]:
    return m.body.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")


# -- vctx recipients ----------------------------------------------------------------------------

def test_add_recipient_doc_example(ob):
    n = len(ob.paniclog())
    got, _ = deliver(ob, "add recipient", rcpts=("first@example.com", "second@example.com"))
    assert [m.rcptto for m in got] == ["first@example.com", "mailfrom@messagesystems.com",
                                       "second@example.com"]
    panic_after(ob, n, r":scriptlet: validate_mailfrom:rcpts: first@example\.com second@example\.com "
                       r"mailfrom@messagesystems\.com $")
    assert len({m.batch_id for m in got}) == 1 and len({m.id for m in got}) == 3


def test_remove_and_replace_recipients(ob):
    got, _ = deliver(ob, "remove recipient", rcpts=("stay@example.com", "gone@example.com"))
    assert [m.rcptto for m in got] == ["stay@example.com"]
    got, _ = deliver(ob, "replace recipients", rcpts=("orig@example.com",))
    assert [m.rcptto for m in got] == ["r1@example.com", "r2@example.com"]


def test_recipient_list_refused_in_rcptto_and_edits_refused_after_the_split(ob):
    got, _ = deliver(ob, "each", rcpts=("list-in-rcptto@example.com",))
    (m,) = got
    assert m.ctx_mess["list_in_rcptto_ok"] == "false"
    assert m.ctx_mess["add_after_final_ok"] == "false"
    assert m.ctx_mess["rcptto_seen_list-in-rcptto"] == "list-in-rcptto@example.com"


# -- msg content ---------------------------------------------------------------------------------

def test_header_get_set_delete_prepend_append_replace(ob):
    hdrs = (b"X-Custom-Header: one\r\nX-Custom-Header: two\r\nX-Deleted: bye\r\n"
            b"X-Encoded: =?UTF-8?B?w5xiZXJwcsO8ZnVuZw==?=\r\n")
    (m,), _ = deliver(ob, "headers", headers=hdrs)
    assert (m.ctx_mess["first_custom"], m.ctx_mess["custom_count"]) == ("one", "2")
    assert m.ctx_mess["encoded_subject"] == "Überprüfung"          # RFC 2047 decoded
    lines = header_lines(m)
    assert [ln for ln in lines if ln.startswith("X-Custom-Header")] == ["X-Custom-Header: 123456"]
    assert not [ln for ln in lines if ln.startswith("X-Deleted")]
    added = [ln for ln in lines if ln.startswith("X-Added")]
    assert added == ["X-Added: prepended value", "X-Added: appended value", "X-Added: second appended"]
    assert lines.index("X-Added: prepended value") < lines.index("Subject: headers")
    (utf8,) = [ln for ln in lines if ln.startswith("X-Utf8")]
    assert utf8.isascii() and "=?" in utf8                          # RFC 2047 encoded
    import email.header
    assert str(email.header.make_header(email.header.decode_header(utf8[8:]))) == "Grüße"


def test_mailfrom_and_rcptto(ob):
    (m,), _ = deliver(ob, "envelope", rcpts=("who@example.com",))
    assert m.ctx_mess["old_from"] == "a@sender.test"
    assert m.ctx_mess["rcptto_set_in_data_ok"] == "false"          # only from each_rcpt on
    assert m.ctx_mess["rcptto_seen_who"] == "who@example.com"
    assert m.mailfrom == "rewritten@sender.test"
    (r,) = wait_for(lambda: [x for x in ob.receptions() if x["id"] == m.id])
    assert (r["sl"], r["sd"]) == ("rewritten", "sender.test")


def test_body_and_raw(ob):
    (m,), _ = deliver(ob, "body", body=b"original body\r\n..with a dot\r\n")
    assert m.ctx_mess["old_body"] == "original body\r\n.with a dot\r\n"
    assert m.body.endswith(b"\r\n\r\nreplaced body\r\n")
    (m,), _ = deliver(ob, "raw", body=b"raw body\r\n")
    assert m.body == b"Subject: raw replaced\r\nX-Raw: yes\r\n\r\nnew raw body\r\n"
    assert int(m.ctx_mess["raw_len"]) > len(b"Subject: raw\r\n\r\nraw body\r\n")   # trace headers
    assert m.size == len(m.body)


def test_text_parts_are_decoded(ob):
    mime = (b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=BB\r\n")
    body = (b"--BB\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe\r\n"
            b"--BB\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            b"PGI+aGk8L2I+\r\n--BB\r\nContent-Type: image/png\r\n\r\nnot text\r\n--BB--\r\n")
    (m,), _ = deliver(ob, "text", headers=mime, body=body)
    assert m.ctx_mess["text_parts"] == "2"
    assert m.ctx_mess["text1"].strip() == "Grüße"
    assert m.ctx_mess["text2"] == "<b>hi</b>"


def test_context_functions_doc_example(ob):
    (m,), _ = deliver(ob, "context")
    c = m.ctx_mess
    assert c["key_type"] == "string:1"                  # context_get always returns a string
    assert c["key"] == "1"
    assert (c["exists"], c["exists_and_get"], c["temp_after_delete"]) == ("1", "1:1", "0")
    assert c["missing"] == "[]"
    assert m.ctx_conn["conn_key"] == "conn value"


# -- msg addresses, ids, size ---------------------------------------------------------------------

def test_listener_addr_reception_peer_and_ids(ob):
    n = len(ob.paniclog())
    (m,), w = deliver(ob, "addresses")
    port, peer_port = ob.port, local_port(w)
    prints = [ln.split(":scriptlet: ", 1)[1] for ln in
              wait_for(lambda: (lambda g: g if len(g) >= 9 else None)(
                  [ln for ln in ob.paniclog()[n:] if ":scriptlet: " in ln]))]
    assert prints[:9] == ["127.0.0.1", str(port), f"127.0.0.1:{port}", f"127.0.0.1:{port}",
                          "127.0.0.1", str(peer_port), f"127.0.0.1:{peer_port}",
                          f"127.0.0.1:{peer_port}", m.batch_id]
    (r,) = wait_for(lambda: [x for x in ob.receptions() if x["id"] == m.id])
    assert m.ctx_mess["data_ids"] == f"{m.id} {m.batch_id} {r['conn']}"
    assert int(m.ctx_mess["size_in_data"]) == int(m.ctx_mess["raw_in_data"]) == m.size == int(r["size"])


def test_each_rcpt_has_its_own_message_and_id(ob):
    got, _ = deliver(ob, "each", rcpts=("plain@example.com", "rename@example.com",
                                        "route@example.com", "personal@example.com"))
    by = {m.rcptto: m for m in got}
    assert set(by) == {"plain@example.com", "renamed@example.com", "route@example.com",
                       "personal@example.com"}
    ids = {m.ctx_mess["each_ids"].split()[0] for m in got}
    assert len(ids) == 4 and ids == {m.id for m in got}
    assert {m.ctx_mess["each_ids"].split()[1] for m in got} == {got[0].batch_id}
    assert by["route@example.com"].routing_domain == "other-route.test"
    assert by["route@example.com"].ctx_mess["routing_seen"] == "other-route.test"
    assert by["plain@example.com"].routing_domain == "example.com"
    assert by["renamed@example.com"].routing_domain == "example.com"
    # a per-recipient header edit touches that recipient's copy only
    assert b"X-Personal: only for personal@example.com\r\n" in by["personal@example.com"].body
    assert not [m for m in got if m.rcptto != "personal@example.com" and b"X-Personal" in m.body]
    rl = wait_for(lambda: (lambda g: g if len(g) == 4 else None)(
        [x for x in ob.receptions() if x["batch"] == got[0].batch_id]))
    assert {x["rl"] for x in rl} == {"plain", "renamed", "route", "personal"}


def test_routing_domain_set_in_rcptto_affects_the_batch(ob):
    got, _ = deliver(ob, "routing", rcpts=("route-batch@example.com",))
    assert got[0].routing_domain == "batch-route.test"


# -- set_binding: get_envelope2, binding, binding_group, priority -----------------------------------

def test_get_envelope2_and_binding_doc_example(ob):
    (m,), _ = deliver(ob, "binding", sender="user@mydomain.com", rcpts=("b@example.com",))
    assert m.ctx_mess["env_from"] == "user|mydomain.com"
    assert m.ctx_mess["env_to_complete"] == "b@example.com"
    assert (m.binding, m.binding_group) == ("mydomain", "default")
    (r,) = wait_for(lambda: [x for x in ob.receptions() if x["id"] == m.id])
    assert (r["group"], r["binding"]) == ("default", "mydomain")


def test_binding_group_picks_a_binding_of_the_group(ob):
    (m,), _ = deliver(ob, "group", sender="user@grouped.test", rcpts=("g@example.com",))
    assert (m.binding_group, m.binding) == ("grp", "grpb")
    (r,) = wait_for(lambda: [x for x in ob.receptions() if x["id"] == m.id])
    assert (r["group"], r["binding"]) == ("grp", "grpb")


def test_unknown_binding_returns_nil_and_keeps_default(ob):
    (m,), _ = deliver(ob, "nobinding", sender="user@nobinding.test", rcpts=("n@example.com",))
    assert m.ctx_mess["bad_binding"] == "nil"
    assert (m.binding, m.binding_group) == ("default", "default")


def test_priority_doc_example(ob):
    n = len(ob.paniclog())
    (m,), _ = deliver(ob, "urgent", sender="boss@urgent.test", rcpts=("u@example.com",))
    assert m.priority == 1
    panic_after(ob, n, r":scriptlet: mod:validate_set_binding: Setting msg priority to 1$")
    (m2,), _ = deliver(ob, "normal", rcpts=("u2@example.com",))
    assert m2.priority == 0


# -- ac ------------------------------------------------------------------------------------------

def test_esmtp_capability_add_and_remove(ob):
    plain = ob.wire().cmd("EHLO client.test").lines[1:]
    assert plain == ["ENHANCEDSTATUSCODES", "PIPELINING", "XDUMPCONTEXT"]
    edited = ob.wire(ob.d.ports["caps"]).cmd("EHLO client.test").lines[1:]
    assert edited == ["ENHANCEDSTATUSCODES", "XDUMPCONTEXT", "8BITMIME", "X-SHINY EXTRA"]
    w = ob.wire(ob.d.ports["caps"])
    w.cmd("EHLO client.test")
    # PIPELINING is gone; 8BITMIME now works as an extension
    assert w.cmd("MAIL FROM:<a@sender.test> BODY=8BITMIME").code == 250


def test_inbound_session_count(ob):
    # sessions of earlier tests end asynchronously: start from an empty registry
    wait_for(lambda: ob.ok("show inbound") == "" or None, what="no inbound sessions")
    keep = [ob.wire(), ob.wire(), ob.wire(source="127.0.0.5")]
    for w in keep:
        w.cmd("EHLO holder.test")
    w = ob.wire(ob.d.ports["count"], source="127.0.0.5")
    lines = w.cmd("EHLO client.test") and w.cmd("XDUMPCONTEXT").lines
    got = dict(ln.split(" ", 2)[1:] for ln in lines if ln.startswith("[connection] n_"))
    # the session asking counts itself: 127.0.0.5 has 2, 127/8 has 4
    assert got == {"n_default": "2", "n_slash8": "4", "n_slash32": "2", "n_addr": "2",
                   "n_net": "0", "n_control": "0"}
    for k in keep:
        k.close()
