"""The msg, vctx and msys functions scripts call, against real MailMessage/Body objects."""

from ecmta.tests.policy.util import lua, panic_texts, scenario

DATA = ("From: a@from.example\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nX-Tag: one\r\n"
        "X-Tag: two\r\nReceived: by x\r\n\r\nHello\r\n")


def run(script, steps, messages=None, **kw):
    return scenario("phases", files={"p.lua": script}, stanzas=[["p", "p"]],
                    messages=messages or {"m": {"data": DATA}}, steps=steps, **kw)


def test_header_get_set_prepend_delete_in_each_rcpt_copies_shared_body():
    script = lua("""
        require("msys.extended.message")
        local mod = {}
        function mod:validate_data_spool_each_rcpt(msg, ac, vctx)
          if msg:rcptto() ~= "one@to.example" then return msys.core.VALIDATE_CONT end
          local subj = msg:header("Subject")
          vctx:set(msys.core.VCTX_MESS, "subject", subj[1])
          vctx:set(msys.core.VCTX_MESS, "tags", #msg:header("X-Tag"))
          msg:header("X-Tag", "replaced")
          msg:header("X-First", "top", "prepend")
          msg:header("X-Multi", {"a", "b"}, "append")
          msg:header("Received", "")
          msg:header("X-Utf", "naïve")
          return msys.core.VALIDATE_CONT
        end
        msys.registerModule("p", mod)
    """)
    r = run(script, [{"phase": "validate_data_spool_each_rcpt", "msg": "m1"},
                     {"phase": "validate_data_spool_each_rcpt", "msg": "m2"}],
            messages={"m1": {"data": DATA, "rcptto": "one@to.example"},
                      "m2": {"share": "m1", "rcptto": "two@to.example"}})
    assert not any(x["error"] for x in r["results"]), r["panic"]
    assert r["sessions"]["s1"]["mess"] == {"subject": "café", "tags": "2"}
    one, two = r["messages"]["m1"], r["messages"]["m2"]
    assert one["headers"][0] == ["X-First", "top"]
    names = [h[0] for h in one["headers"]]
    assert names == ["X-First", "From", "Subject", "X-Tag", "X-Multi", "X-Multi", "X-Utf"]
    assert ["X-Tag", "replaced"] in one["headers"]
    assert dict((n, v) for n, v in one["headers"])["X-Utf"].startswith("=?utf-8?")
    # the other recipient keeps the batch's content: the edit copied the body first
    assert one["shares_body_with"] == [] and two["headers"][1][0] == "Subject"
    assert [h[0] for h in two["headers"]].count("X-Tag") == 2 and ["Received", "by x"] in two["headers"]


def test_header_edit_in_data_phase_applies_to_the_batch():
    script = lua("""
        local mod = {}
        function mod:validate_data(msg, ac, vctx) msg:header("X-Batch", "yes") return 0 end
        msys.registerModule("p", mod)
    """)
    r = run(script, [{"phase": "validate_data", "msg": "m1"}],
            messages={"m1": {"data": DATA}, "m2": {"share": "m1"}})
    assert ["X-Batch", "yes"] in r["messages"]["m2"]["headers"]
    assert r["messages"]["m1"]["shares_body_with"] == ["m2"]


def test_header_injection_is_a_lua_error():
    script = lua("""
        local mod = {}
        function mod:validate_data_spool_each_rcpt(msg, ac, vctx)
          msg:header("X-Evil", "a\\r\\nBcc: victim@example.com")
          return 0
        end
        function mod:validate_data(msg, ac, vctx)
          local ok, err = pcall(msg.header, msg, "Bad Name", "x")
          vctx:set(msys.core.VCTX_MESS, "err", tostring(err))
          return 0
        end
        msys.registerModule("p", mod)
    """)
    r = run(script, [{"phase": "validate_data_spool_each_rcpt", "msg": "m"},
                     {"phase": "validate_data", "msg": "m"}])
    assert r["results"][0]["error"] and r["results"][0]["reply"][0] == 451
    assert "bare line break" in panic_texts(r)[0]
    assert "Bcc" not in str(r["messages"]["m"]["headers"])
    assert "invalid header name" in r["sessions"]["s1"]["mess"]["err"]


def test_binding_example_with_get_envelope2_pcre_and_priority():
    script = lua("""
        require('msys.core');
        require('msys.extended.message');
        require('msys.pcre');
        local mod = {};
        function mod:validate_set_binding(msg)
          local from = msg:mailfrom();
          local localpart_str = msys.core.string_new();
          local domain_str = msys.core.string_new();
          msg:get_envelope2(msys.core.EC_MSG_ENV_FROM, localpart_str, domain_str);
          local domain = tostring(domain_str);
          localpart_str = nil;
          if msys.pcre.match(domain, "mydomain.com") then
            msg:binding("mydomain");
          end
          if msg:binding("nonexistent") == nil then msg:binding_group("bulk") end
          msg.priority = 1;
          return msys.core.VALIDATE_CONT;
        end
        function mod:validate_data(msg, ac, vctx)
          local ok, err = pcall(function() msg:binding("mydomain") end)
          vctx:set(msys.core.VCTX_MESS, "err", err)
          return msys.core.VALIDATE_CONT
        end
        msys.registerModule("p", mod);
    """)
    r = run(script, [{"phase": "validate_data", "msg": "m"},
                     {"phase": "validate_set_binding", "msg": "m"},
                     {"phase": "validate_set_binding", "msg": "other"}],
            messages={"m": {"mailfrom": "ceo@mydomain.com"}, "other": {"mailfrom": "x@else.example"}},
            bindings=["mydomain"], binding_groups=["bulk"])
    assert "can only set a binding in validate_set_binding" in r["sessions"]["s1"]["mess"]["err"]
    m, other = r["messages"]["m"], r["messages"]["other"]
    assert (m["binding"], m["binding_group"], m["priority"]) == ("mydomain", "bulk", 1)
    assert (other["binding"], other["priority"]) == ("default", 1)


def test_discard_and_code():
    script = lua("""
        local mod = {}
        function mod:validate_data(msg, ac, vctx)
          local kind = msg:header("X-Kind")[1]
          if kind == "plain" then msg:discard()
          elseif kind == "reason" then msg:discard("550 Bounce message processed")
          elseif kind == "bad" then msg:discard("not an smtp reply")
          elseif kind == "code" then
            vctx:set(msys.core.VCTX_MESS, "before", msg:code())
            msg:code("421", "Too much spam.")
          elseif kind == "multi" then msg:code(0, "452 first line\\nsecond line\\n")
          end
          return msys.core.VALIDATE_CONT
        end
        function mod:validate_set_binding(msg) msg:discard() return 0 end
        msys.registerModule("p", mod)
    """)
    msgs = {k: {"data": f"X-Kind: {k}\r\n\r\nbody\r\n", "code": "250 ok" if k == "code" else ""}
            for k in ("plain", "reason", "bad", "code", "multi")}
    steps = [{"phase": "validate_data", "msg": k} for k in msgs] + \
        [{"phase": "validate_set_binding", "msg": "plain"}]
    r = run(script, steps, messages=msgs)
    plain, reason, bad, code, multi, sb = r["results"]
    assert plain["discard"] == "550 5.7.0 discarded by policy" and plain["module"] == "scriptlet"
    assert reason["discard"] == "550 Bounce message processed"
    assert bad["discard"] == "550 5.7.1 [internal] discarded by policy"
    assert code["msg_code"] == "421 Too much spam." and r["messages"]["code"]["code"] == "421 Too much spam."
    assert multi["msg_code"] == "452-first line\r\n452 second line"
    assert sb["error"] and "must not be called from validate_set_binding" in "".join(r["panic"])


def test_context_functions():
    script = lua("""
        local mod = {}
        local C = msys.core
        function mod:validate_data(msg, ac, vctx)
          msg:context_set(C.ECMESS_CTX_MESS, "n", 1)
          vctx:set(C.VCTX_CONN, "fl", 2.5)
          local t = {}
          t[#t+1] = type(msg:context_get(C.ECMESS_CTX_MESS, "n")) .. ":" .. msg:context_get(C.ECMESS_CTX_MESS, "n")
          t[#t+1] = "[" .. msg:context_get(C.ECMESS_CTX_MESS, "missing") .. "]"
          t[#t+1] = msg:context_exists(C.ECMESS_CTX_MESS, "n") .. "," .. msg:context_exists(C.ECMESS_CTX_MESS, "zz")
          local e, s = msg:context_exists_and_get(C.ECMESS_CTX_CONN, "fl")
          t[#t+1] = e .. "=" .. s
          local e2, s2 = msg:context_exists_and_get(C.ECMESS_CTX_CONN, "nope")
          t[#t+1] = e2 .. "=" .. tostring(s2)
          t[#t+1] = msg:context_delete(C.ECMESS_CTX_MESS, "n") .. msg:context_delete(C.ECMESS_CTX_MESS, "n")
          t[#t+1] = tostring(vctx:get(C.VCTX_MESS, "n"))
          vctx:set(C.VCTX_MESS, "out", table.concat(t, " "))
          return 0
        end
        msys.registerModule("p", mod)
    """)
    r = run(script, [{"phase": "validate_data", "msg": "m"}])
    assert r["sessions"]["s1"]["mess"]["out"] == "string:1 [] 1,0 1=2.5 0=nil 10 nil"
    assert r["messages"]["m"]["ctx_mess"] is not None   # msg and vctx share the dictionaries


def test_envelope_addresses_and_fields():
    script = lua("""
        local mod = {}
        function mod:validate_data_spool_each_rcpt(msg, ac, vctx)
          local t = {}
          t[#t+1] = msg:listener_addr("ip") .. "|" .. msg:listener_addr("port") .. "|" .. msg:listener_addr()
          t[#t+1] = msg:reception_peer("all")
          t[#t+1] = msg:get_message_size()
          t[#t+1] = tostring(msg.id) .. "|" .. msg.conn_id .. "|" .. msg.batch_id .. "|" .. msg.priority
          t[#t+1] = msg:routing_domain()
          local lp = msys.core.string_new()
          msg:get_envelope2(msys.core.EC_MSG_ENV_TO | msys.core.EC_MSG_ENV_COMPLETE, lp, nil)
          t[#t+1] = tostring(lp) .. "/" .. #lp
          msg:mailfrom("new@from.example")
          msg:rcptto("New@To.Example")
          msg:routing_domain("Relay.Example")
          t[#t+1] = msg:routing_domain()
          vctx:set(msys.core.VCTX_MESS, "out", table.concat(t, " "))
          return 0
        end
        function mod:validate_rcptto(msg, str, ac, vctx)
          msg:rcptto("changed@example.com")
          return 0
        end
        msys.registerModule("p", mod)
    """)
    r = run(script, [{"phase": "validate_data_spool_each_rcpt", "msg": "m"},
                     {"phase": "validate_rcptto", "msg": "m", "arg": "x"}],
            messages={"m": {"data": "S: x\r\n\r\nbody\r\n", "id": "12/34-00042-ABCDEF01",
                            "rcptto": "b@To.example"}})
    out = r["sessions"]["s1"]["mess"]["out"]
    assert out == ("10.1.2.3|25|10.1.2.3:25 10.9.8.7:41000 14 12/34-00042-ABCDEF01|C1|B1|0 "
                   "to.example b@To.example/12 relay.example")
    m = r["messages"]["m"]
    assert (m["mailfrom"], m["rcptto"]) == ("new@from.example", "New@To.Example")
    assert r["results"][1]["error"] and "validate_data_spool_each_rcpt or later" in "".join(r["panic"])


def test_body_raw_text():
    script = lua("""
        local mod = {}
        function mod:validate_data_spool_each_rcpt(msg, ac, vctx)
          local kind = msg:header("X-Kind")[1]
          if kind == "body" then
            vctx:set(msys.core.VCTX_MESS, "old", msg:body())
            msg:body("new body\\n.\\r\\n")
          elseif kind == "raw" then
            msg:raw("Subject: raw\\n\\nreplaced\\n")
          elseif kind == "text" then
            vctx:set(msys.core.VCTX_MESS, "text", msg:text())
            msg:text("Grüße", "text/plain", "iso-8859-1")
            vctx:set(msys.core.VCTX_MESS, "after", msg:text())
          end
          return 0
        end
        msys.registerModule("p", mod)
    """)
    qp = ("X-Kind: text\r\nContent-Type: text/plain; charset=utf-8\r\n"
          "Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n")
    r = run(script, [{"phase": "validate_data_spool_each_rcpt", "msg": k, "session": k}
                     for k in ("body", "raw", "text")],
            messages={"body": {"data": "X-Kind: body\r\n\r\nold\r\n"},
                      "raw": {"data": "X-Kind: raw\r\n\r\nold\r\n"}, "text": {"data": qp}})
    assert not any(x["error"] for x in r["results"]), r["panic"]
    assert r["sessions"]["body"]["mess"]["old"] == "old\r\n"
    assert r["messages"]["body"]["body"] == "new body\r\n"
    assert r["messages"]["raw"]["headers"] == [["Subject", "raw"]]
    assert r["messages"]["raw"]["body"] == "replaced\r\n"
    assert r["sessions"]["text"]["mess"]["text"] == "café\r\n"
    assert r["sessions"]["text"]["mess"]["after"].startswith("Grüße")
    assert ["Content-Type", 'text/plain; charset="iso-8859-1"'] in r["messages"]["text"]["headers"]


def test_recipient_list_edits_and_rcptlist_final():
    script = lua("""
        require("msys.extended.vctx")
        local mod = {}
        local function sum_table(tbl)
          local sum = "";
          for i=0,#tbl do sum = sum..tbl[i].." "; end
          return sum;
        end
        function mod:validate_data(msg, accept, vctx)
          vctx:add_recipient("mailfrom@messagesystems.com");
          vctx:add_recipient({"x@example.com", "y@example.com"})
          vctx:remove_recipient("a@example.com")
          print("validate_data:rcpts: " .. sum_table(vctx:recipient_list()));
          return msys.core.VALIDATE_CONT;
        end
        function mod:validate_data_spool_each_rcpt(msg, accept, vctx)
          vctx:add_recipient("late@example.com")
          return 0
        end
        function mod:validate_rcptto(msg, str, accept, vctx)
          vctx:recipient_list()
          return 0
        end
        msys.registerModule("p", mod)
    """)
    r = run(script, [{"recipients": ["a@example.com", "b@example.com"]},
                     {"phase": "validate_data", "msg": "m"},
                     {"phase": "validate_data_spool_each_rcpt", "msg": "m"},
                     {"phase": "validate_rcptto", "msg": "m", "arg": "x"}])
    assert r["sessions"]["s1"]["recipients"] == ["b@example.com", "mailfrom@messagesystems.com",
                                                  "x@example.com", "y@example.com"]
    lines = panic_texts(r)
    assert lines[0] == ("scriptlet: validate_data:rcpts: b@example.com mailfrom@messagesystems.com "
                        "x@example.com y@example.com ")
    assert r["results"][2]["error"] and "rcptlist final" in lines[1]
    assert r["results"][3]["error"] and "must not be called in validate_rcptto" in lines[3]


def test_expand_macro():
    script = lua("""
        local mod = {}
        function mod:validate_data(msg, ac, vctx)
          vctx:set(msys.core.VCTX_MESS, "x", "mess-value")
          local s = msys.expandMacro("%{vctx_conn:ehlo_domain} %{vctx_mess:x} %{rcptto} %{localpart} " ..
            "%{domain} %{username} %{username_domain||example.com} %{s} %{d} %{d2} %{ir}.%{v} " ..
            "%{spfv1:lr-} [%{vctx_conn:missing}] %{unknown_macro}")
          vctx:set(msys.core.VCTX_MESS, "out", s)
          return 0
        end
        msys.registerModule("p", mod)
    """)
    r = run(script, [{"phase": "validate_data", "msg": "m"}],
            messages={"m": {"mailfrom": "strong-bad@email.example.com", "rcptto": "rcpt@To.Example",
                            "peer_ip": "192.0.2.3"}},
            conn={"ehlo_domain": "helo.example", "auth_user": "bob"})
    assert r["sessions"]["s1"]["mess"]["out"] == (
        "helo.example mess-value rcpt@To.Example rcpt to.example bob example.com "
        "strong-bad@email.example.com email.example.com example.com 3.2.0.192.in-addr "
        "bad.strong [] %{unknown_macro}")


def test_msys_library_bits():
    script = lua("""
        require("msys.base64"); require("msys.threadpool"); require("msys.dumper"); require("msys.db")
        local mod = {}
        function mod:validate_ehlo(str, ac, vctx)
          local t = {}
          t[#t+1] = msys.base64.encode("hello")
          t[#t+1] = msys.base64.decode("aGVsbG8=")
          t[#t+1] = #msys.base64.encode(string.rep("x", 100), true)
          t[#t+1] = tostring(pcall(msys.base64.decode, "!!"))
          t[#t+1] = msys.threadpool.count() >= 8 and "pools" or "nopools"
          t[#t+1] = msys.threadpool.find("IO") ~= nil and msys.threadpool.find(msys.threadpool.find("IO"))
          local st = msys.threadpool.stat("CPU")
          t[#t+1] = st.name .. ":" .. type(st.invocations)
          t[#t+1] = tostring(msys.threadpool.stat("NoSuchPool"))
          t[#t+1] = type(msys.core.get_now_ts())
          local ok, err = pcall(msys.db.query, "ecdb", "select 1")
          t[#t+1] = err
          local ok2, err2 = pcall(function() return msys.lock("x") end)
          t[#t+1] = err2
          local m = msys.pcre.match("abc123", "(?P<word>[a-z]+)(\\\\d+)")
          t[#t+1] = m[0] .. "," .. m[1] .. "," .. m[2] .. "," .. m.word
          t[#t+1] = msys.pcre.replace("a1b2", "(\\\\d)", "<$1>")
          t[#t+1] = #msys.pcre.split("a,b,,c", ",")
          t[#t+1] = msys.dumper.Dumper({1, "two", k = true})
          t[#t+1] = tostring(msys.asyncOk())
          vctx:set(msys.core.VCTX_CONN, "out", table.concat(t, "|"))
          return 0
        end
        msys.registerModule("p", mod)
    """)
    r = run(script, [{"phase": "validate_ehlo", "arg": "x"}])
    assert not r["results"][0]["error"], r["panic"]
    out = r["sessions"]["s1"]["conn"]["out"].split("|")
    assert out[:4] == ["aGVsbG8=", "hello", str(136 + 2), "false"]
    assert out[4:8] == ["pools", "IO", "CPU:number", "nil"]
    assert out[8] == "number"
    assert out[9].endswith("msys.db.query is not available in this version")
    assert out[10].endswith("msys.lock is not available in this version")
    assert out[11:14] == ["abc123,abc,123,abc", "a<1>b<2>", "4"]
    assert out[14] == 'return {\n  [1]=1,\n  [2]="two",\n  k=true\n}'
    assert out[15] == "true"


def test_lua51_compatibility_and_operators():
    script = lua("""
        local mod = {}
        function mod:validate_ehlo(str, ac, vctx)
          local t = {}
          t[#t+1] = tostring(10 / 2)                      -- "5" as in 5.1
          t[#t+1] = 7 \\ 2                                 -- integer division
          t[#t+1] = 5 ^^ 3                                 -- xor
          t[#t+1] = (6 & 3) | (1 << 4)
          t[#t+1] = 5.5 & 3                                -- truncated, as Momentum does
          t[#t+1] = unpack({"u"}) .. table.getn({1, 2}) .. tostring(loadstring("return 1 != 2")())
          for w in string.gfind("a b", "%a") do t[#t+1] = w end
          local mt = setmetatable({}, {__intdiv = function() return "intdiv" end, __xor = function() return "xor" end})
          t[#t+1] = (mt \\ 2) .. (mt ^^ 1)
          local f = function() return x_global end
          setfenv(f, {x_global = "fenv"})
          t[#t+1] = f() .. tostring(x_global)
          t[#t+1] = tostring(math.pow(2, 3)) .. math.mod(7, 3)
          t[#t+1] = tostring(pcall(os.exit))
          vctx:set(msys.core.VCTX_CONN, "out", table.concat(t, ","))
          return 0
        end
        msys.registerModule("p", mod)
    """)
    r = run(script, [{"phase": "validate_ehlo", "arg": "x"}])
    assert not r["results"][0]["error"], r["panic"]
    assert r["sessions"]["s1"]["conn"]["out"] == "5,3,6,18,1,u2true,a,b,intdivxor,fenvnil,81,false"


def test_ostls_and_self_are_per_session():
    script = lua("""
        _OSTLS.marker = 42
        local mod = {}
        function mod:validate_ehlo(str, ac, vctx)
          if self.first == nil then self.first = str end
          _TLS.count = (_TLS.count or 0) + 1
          local st, in_pool = msys.runInPool("CPU", function() return tostring(_OSTLS.marker) end)
          vctx:set(msys.core.VCTX_CONN, "out", self.first .. "/" .. _TLS.count .. "/" ..
            tostring(_OSTLS.marker) .. "/" .. in_pool)
          return 0
        end
        msys.registerModule("p", mod)
    """)
    r = run(script, [{"phase": "validate_ehlo", "arg": "a"}, {"phase": "validate_ehlo", "arg": "b"},
                     {"phase": "validate_ehlo", "arg": "c", "session": "s2"}])
    assert r["sessions"]["s1"]["conn"]["out"] == "a/2/42/nil"
    assert r["sessions"]["s2"]["conn"]["out"] == "c/1/42/nil"
