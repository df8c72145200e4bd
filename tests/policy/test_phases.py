"""Phase dispatch, dispositions, ordering, AGAIN and script errors, with policies written
the way Momentum operators write them (the doc examples, `!=` and all)."""

from ecmta.tests.policy.util import lua, panic_texts, scenario

CONT, DONE, AGAIN = 0, 1, 2

EHLO_EXAMPLE = lua("""
    require("msys.core");

    local mod = {};

    function mod:validate_ehlo(str, accept, vctx)
      print("ehlo string is:", msys.expandMacro("%{vctx_conn:ehlo_string}"));
      return msys.core.VALIDATE_CONT;
    end

    msys.registerModule("ehlo_phase", mod);
""")

DISCONNECT_EXAMPLE = lua("""
    require("msys.core");
    require("msys.extended.message");
    require("msys.extended.vctx");
    local mod = {};
    function mod:validate_mailfrom(str, accept, vctx)
      str = tostring(str);
      if (string.find(str, "disconnect@example.com") != nil) then
        print("Disconnecting " .. str);
        vctx:disconnect(421, "Go away dude");
      return msys.core.VALIDATE_DONE;
    end
    return msys.core.VALIDATE_CONT;
    end
    msys.registerModule("vctx_disconnect", mod);
""")


def test_ehlo_example_prints_to_paniclog():
    r = scenario("phases", files={"myscripts/ehlo_phase.lua": EHLO_EXAMPLE},
                 stanzas=[["boot", "msys.boot"], ["ehlo_phase", "myscripts.ehlo_phase"]],
                 conn={"ehlo_string": "EHLO client.example"},
                 steps=[{"phase": "validate_connect"},
                        {"phase": "validate_ehlo", "arg": "client.example"}])
    assert r["modules"] == ["boot", "ehlo_phase"]
    assert r["results"][1] == {"reply": None, "disconnect": False, "tarpit": 0.0,
                               "discard": None, "msg_code": None, "verdict": CONT,
                               "again": False, "retry_after": 0.0, "error": False,
                               "module": None}
    assert panic_texts(r) == ["scriptlet: ehlo string is:\tEHLO client.example"]


def test_disconnect_example():
    r = scenario("phases", files={"vctx_disconnect.lua": DISCONNECT_EXAMPLE},
                 stanzas=[["vctx_disconnect", "vctx_disconnect"]],
                 steps=[{"phase": "validate_mailfrom", "arg": "ok@example.com"},
                        {"phase": "validate_mailfrom", "arg": "disconnect@example.com"}])
    ok, bye = r["results"]
    assert ok["reply"] is None and ok["verdict"] == CONT
    assert bye["reply"] == [421, None, "Go away dude"]
    assert bye["disconnect"] is True and bye["verdict"] == DONE and bye["module"] == "scriptlet"
    assert panic_texts(r) == ["scriptlet: Disconnecting disconnect@example.com"]


def test_set_code_tarpit_and_capabilities():
    script = lua("""
        local mod = {}
        function mod:validate_connect(ac, vctx)
          vctx:tarpit(1)
          ac:esmtp_capability_add("XCLIENT NAME ADDR")
          ac:esmtp_capability_remove("8bitmime")
          vctx:set(msys.core.VCTX_CONN, "seen", ac:inbound_session_count("/24"))
          return msys.core.VALIDATE_CONT
        end
        function mod:validate_rcptto(msg, str, ac, vctx)
          if str == "nobody@to.example" then
            vctx:set_code(550, "5.1.1 no such user")
            return msys.core.VALIDATE_DONE
          end
          return msys.core.VALIDATE_CONT
        end
        msys.registerModule("p", mod)
    """)
    r = scenario("phases", files={"p.lua": script}, stanzas=[["p", "p"]],
                 messages={"m": {}}, session_counts={"/24|SMTP": 3},
                 steps=[{"phase": "validate_connect"},
                        {"phase": "validate_rcptto", "msg": "m", "arg": "nobody@to.example"},
                        {"phase": "validate_rcptto", "msg": "m", "arg": "b@to.example"}])
    connect, rejected, accepted = r["results"]
    assert connect["tarpit"] == 1.0 and connect["reply"] is None
    assert r["sessions"]["s1"]["capabilities"] == ["PIPELINING", "XCLIENT NAME ADDR"]
    assert r["sessions"]["s1"]["conn"]["seen"] == "3"
    assert rejected["reply"] == [550, "5.1.1", "no such user"] and rejected["verdict"] == DONE
    assert accepted["reply"] is None           # a disposition lasts one phase


def test_done_stops_the_phase_cont_continues_in_registration_order():
    first = lua("""
        local mod = {}
        function mod:validate_ehlo(str, ac, vctx)
          local order = (vctx:get(msys.core.VCTX_CONN, "order") or "") .. "first,"
          vctx:set(msys.core.VCTX_CONN, "order", order)
          if str == "stop" then return msys.core.VALIDATE_DONE end
          return msys.core.VALIDATE_CONT
        end
        msys.registerModule("first", mod)
    """)
    second = lua("""
        local mod = {}
        function mod:validate_ehlo(str, ac, vctx)
          vctx:set(msys.core.VCTX_CONN, "order", vctx:get(msys.core.VCTX_CONN, "order") .. "second,")
          return msys.core.VALIDATE_CONT
        end
        msys.registerModule("second", mod)
    """)
    r = scenario("phases", files={"a/first.lua": first, "a/second.lua": second},
                 stanzas=[["first", "a.first"], ["second", "a/second"]],
                 steps=[{"phase": "validate_ehlo", "arg": "go"},
                        {"phase": "validate_ehlo", "arg": "stop"}])
    assert r["modules"] == ["first", "second"]
    assert r["sessions"]["s1"]["conn"]["order"] == "first,second,first,"
    assert [x["verdict"] for x in r["results"]] == [CONT, DONE]


def test_again_is_recalled_and_resumes_at_that_module():
    a = lua("""
        local mod = {}
        function mod:validate_mailfrom(str, ac, vctx)
          vctx:set(msys.core.VCTX_CONN, "a", (tonumber(vctx:get(msys.core.VCTX_CONN, "a")) or 0) + 1)
          return msys.core.VALIDATE_CONT
        end
        msys.registerModule("a", mod)
    """)
    b = lua("""
        local mod = {}
        function mod:validate_mailfrom(str, ac, vctx)
          self.calls = (self.calls or 0) + 1
          vctx:set(msys.core.VCTX_CONN, "b", self.calls)
          if self.calls < 3 then return msys.core.VALIDATE_AGAIN end
          return msys.core.VALIDATE_CONT
        end
        msys.registerModule("b", mod)
    """)
    r = scenario("phases", files={"a.lua": a, "b.lua": b}, stanzas=[["a", "a"], ["b", "b"]],
                 steps=[{"phase": "validate_mailfrom", "arg": "x"},
                        {"phase": "validate_mailfrom", "arg": "x"},
                        {"phase": "validate_mailfrom", "arg": "x"},
                        {"phase": "validate_mailfrom", "arg": "x", "session": "s2", "settled": True}])
    first, second, third, settled = r["results"]
    assert first["again"] and first["verdict"] == AGAIN and first["retry_after"] > 0
    assert second["again"] and not third["again"] and third["verdict"] == CONT
    # module a ran once: the re-calls resumed at b
    assert r["sessions"]["s1"]["conn"] == {"a": "1", "b": "3"}
    assert not settled["again"] and r["sessions"]["s2"]["conn"] == {"a": "1", "b": "3"}


def test_script_error_and_missing_return_log_and_answer_451():
    script = lua("""
        local mod = {}
        function mod:validate_ehlo(str, accept, vctx)
          print("no return here")
        end
        function mod:validate_mailfrom(str, accept, vctx)
          local t = nil
          return t.field
        end
        function mod:validate_connect(accept, vctx)
          error("boom")
        end
        msys.registerModule("ehlo_phase", mod)
    """)
    r = scenario("phases", files={"ehlo_phase.lua": script}, stanzas=[["ehlo_phase", "ehlo_phase"]],
                 steps=[{"phase": "validate_ehlo", "arg": "x"},
                        {"phase": "validate_mailfrom", "arg": "x"},
                        {"phase": "validate_connect"},
                        {"phase": "validate_ehlo", "arg": "again"}])
    ehlo, mailfrom, connect, later = r["results"]
    assert ehlo["error"] and ehlo["reply"][:2] == [451, "4.3.0"] and not ehlo["disconnect"]
    assert ehlo["module"] == "scriptlet"
    assert mailfrom["reply"][:2] == [451, "4.3.0"]
    assert connect["reply"][:2] == [421, "4.3.0"] and connect["disconnect"]
    assert later["error"]                       # the daemon keeps going
    lines = panic_texts(r)
    assert lines[:3] == ["scriptlet: no return here",
                         "scriptlet-00147: validate_ehlo error: (null)",
                         "scriptlet-00239: ehlo_phase error: (null)"]
    assert lines[3].startswith("scriptlet-00147: validate_mailfrom error: ")
    assert "ehlo_phase.lua:7: attempt to index a nil value" in lines[3]
    assert lines[5].startswith("scriptlet-00147: validate_connect error: ")
    assert lines[5].endswith("ehlo_phase.lua:10: boom")


def test_set_binding_allows_only_cont_and_done():
    script = lua("""
        local mod = {}
        function mod:validate_set_binding(msg)
          return msys.core.VALIDATE_AGAIN
        end
        msys.registerModule("sb", mod)
    """)
    r = scenario("phases", files={"sb.lua": script}, stanzas=[["sb", "sb"]], messages={"m": {}},
                 steps=[{"phase": "validate_set_binding", "msg": "m"}])
    assert r["results"][0]["error"] and r["results"][0]["reply"][0] == 451
    assert panic_texts(r) == ["scriptlet-00147: validate_set_binding error: (null)",
                              "scriptlet-00239: sb error: (null)"]


def test_every_phase_gets_its_arguments():
    script = lua("""
        local mod = {}
        local function note(vctx, what) vctx:set(msys.core.VCTX_CONN, what, "yes") end
        function mod:validate_connect(ac, vctx) note(vctx, msys.type(ac) .. "/" .. msys.type(vctx)) return 0 end
        function mod:validate_ehlo(str, ac, vctx) note(vctx, "ehlo=" .. str) return 0 end
        function mod:validate_mailfrom(str, ac, vctx) note(vctx, "mailfrom=" .. str) return 0 end
        function mod:validate_rcptto(msg, str, ac, vctx) note(vctx, "rcptto=" .. str .. "/" .. msg:rcptto()) return 0 end
        function mod:validate_rcptto_list(list, vctx) note(vctx, "list=" .. table.concat(list, ",")) return 0 end
        function mod:validate_rcptto_list_final(node, vctx) note(vctx, "final=" .. #node) return 0 end
        function mod:validate_data(msg, ac, vctx) note(vctx, "data=" .. msg.id) return 0 end
        function mod:validate_data_spool(msg, ac, vctx) note(vctx, "spool=" .. msg.batch_id) return 0 end
        function mod:validate_data_spool_each_rcpt(msg, ac, vctx) note(vctx, "each=" .. msg:rcptto()) return 0 end
        function mod:validate_set_binding(msg) msg:context_set(msys.core.ECMESS_CTX_CONN, "sb", select("#", msg) .. msys.type(msg)) return 0 end
        function mod:core_final_validation(msg, ac, vctx) note(vctx, "final_validation=" .. msg.conn_id) return 0 end
        function mod:validate_dealloc() self.gone = true return 0 end
        msys.registerModule("all", mod)
    """)
    r = scenario("phases", files={"all.lua": script}, stanzas=[["all", "all"]],
                 messages={"m": {"rcptto": "r@to.example", "id": "ID1", "batch_id": "B7", "conn_id": "C9"}},
                 steps=[{"phase": "validate_connect"}, {"phase": "validate_ehlo", "arg": "h.example"},
                        {"phase": "validate_mailfrom", "arg": "f@x"},
                        {"phase": "validate_rcptto", "msg": "m", "arg": "r@to.example"},
                        {"phase": "validate_rcptto_list", "arg": ["r@to.example", "s@to.example"]},
                        {"phase": "validate_rcptto_list_final", "arg": ["r@to.example"]},
                        {"phase": "validate_data", "msg": "m"}, {"phase": "validate_data_spool", "msg": "m"},
                        {"phase": "validate_data_spool_each_rcpt", "msg": "m"},
                        {"phase": "validate_set_binding", "msg": "m"},
                        {"phase": "core_final_validation", "msg": "m"},
                        {"phase": "validate_dealloc"}])
    conn = r["sessions"]["s1"]["conn"]
    for key in ("accept_construct/vctx", "ehlo=h.example", "mailfrom=f@x", "rcptto=r@to.example/r@to.example",
                "list=r@to.example,s@to.example", "final=1", "data=ID1", "spool=B7", "each=r@to.example",
                "final_validation=C9"):
        assert conn.get(key) == "yes", key
    assert conn["sb"] == "1ec_message"
    assert all(x is None or not x["error"] for x in r["results"]), r["panic"]


def test_dealloc_only_for_modules_that_ran_and_sees_self():
    ran = lua("""
        local mod = {}
        function mod:validate_ehlo(str, ac, vctx) self.ehlo = str return 0 end
        function mod:validate_dealloc() print("dealloc ran, ehlo was " .. tostring(self.ehlo)) return 0 end
        msys.registerModule("ran", mod)
    """)
    idle = lua("""
        local mod = {}
        function mod:validate_data(msg, ac, vctx) return 0 end
        function mod:validate_dealloc() print("idle dealloc must not run") return 0 end
        msys.registerModule("idle", mod)
    """)
    r = scenario("phases", files={"ran.lua": ran, "idle.lua": idle},
                 stanzas=[["ran", "ran"], ["idle", "idle"]],
                 steps=[{"phase": "validate_ehlo", "arg": "one.example"},
                        {"phase": "validate_ehlo", "arg": "two.example", "session": "s2"},
                        {"phase": "validate_dealloc"}, {"phase": "validate_dealloc", "session": "s2"},
                        {"phase": "validate_dealloc", "session": "s3"}])
    assert panic_texts(r) == ["scriptlet: dealloc ran, ehlo was one.example",
                              "scriptlet: dealloc ran, ehlo was two.example"]


def test_bypass_scriptlet_skips_every_script():
    script = lua("""
        local mod = {}
        function mod:validate_ehlo(str, ac, vctx) vctx:set_code(550, "no") return 1 end
        msys.registerModule("p", mod)
    """)
    r = scenario("phases", files={"p.lua": script}, stanzas=[["p", "p"]],
                 conn={"__bypass_scriptlet": "true"}, steps=[{"phase": "validate_ehlo", "arg": "x"}])
    assert r["results"][0]["reply"] is None


def test_endless_loop_is_stopped_by_the_watchdog():
    script = lua("""
        local mod = {}
        function mod:validate_ehlo(str, ac, vctx)
          if str == "loop" then while true do end end
          return msys.core.VALIDATE_CONT
        end
        msys.registerModule("loop", mod)
    """)
    r = scenario("phases", files={"loop.lua": script}, stanzas=[["loop", "loop"]],
                 max_callout_seconds=1,
                 steps=[{"phase": "validate_ehlo", "arg": "loop"}, {"phase": "validate_ehlo", "arg": "ok"}])
    looped, ok = r["results"]
    assert looped["error"] and looped["reply"][0] == 451 and not ok["error"]
    assert "callout ran for more than 1 seconds without yielding" in panic_texts(r)[0]
