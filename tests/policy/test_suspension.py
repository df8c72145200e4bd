"""Suspending functions under gevent: msys.dnsLookup against a real DNS server (dnsmasq),
msys.sleep, msys.runInPool in real OS threads, many sessions interleaved on the runtime
pool, and `config reload` swapping runtimes while an old callout finishes."""

from ecmta.tests.policy.util import lua, panic_texts, scenario

DNS_SCRIPT = lua("""
    local mod = {}
    local function show(r, err)
      if r == nil then return "nil:" .. tostring(err) end
      local out = {}
      for i, v in ipairs(r) do
        if type(v) == "table" then out[i] = v[1] .. "=" .. v[2] else out[i] = v end
      end
      return table.concat(out, ",")
    end
    function mod:validate_connect(ac, vctx)
      local C = msys.core.VCTX_CONN
      vctx:set(C, "a", show(msys.dnsLookup("test.example")))
      vctx:set(C, "mx", show(msys.dnsLookup("test.example", "MX")))
      vctx:set(C, "mxprio", show(msys.dnsLookup("test.example", "MX", {priority = true})))
      vctx:set(C, "txt", show(msys.dnsLookup("test.example", "TXT")))
      vctx:set(C, "ptr", show(msys.dnsLookup("5.0.0.127.in-addr.arpa", "PTR")))
      vctx:set(C, "ptrip", show(msys.dnsLookup("127.0.0.5", "ptr")))
      vctx:set(C, "nx", show(msys.dnsLookup("host.nx.invalid", "A")))
      vctx:set(C, "refused", show(msys.dnsLookup("test.example", "AAAA")))
      local ok, err = pcall(msys.dnsLookup, "test.example", "SRV")
      vctx:set(C, "badtype", tostring(ok) .. ":" .. err)
      return msys.core.VALIDATE_CONT
    end
    function mod:validate_ehlo(str, ac, vctx)
      msys.dnsLookup("test.example", "BOGUS")       -- uncaught: the session gets a 4xx
      return msys.core.VALIDATE_CONT
    end
    msys.registerModule("dns", mod)
""")


def test_dns_lookup_result_shapes(dnsmasq):
    r = scenario("phases", files={"dns.lua": DNS_SCRIPT}, stanzas=[["dns", "dns"]],
                 dns_port=dnsmasq,
                 steps=[{"phase": "validate_connect"}, {"phase": "validate_ehlo", "arg": "x"}])
    conn = r["sessions"]["s1"]["conn"]
    assert conn["a"] == "127.0.0.5"
    assert conn["mx"] == "mx0.test.example,mx1.test.example"          # best preference first
    assert conn["mxprio"] == "10=mx0.test.example,20=mx1.test.example"
    assert sorted(conn["txt"].split(",")) == ["second", "v=spf1 -all"]
    assert conn["ptr"] == conn["ptrip"] == "host.test.example"
    assert conn["nx"] == "nil:NXDOMAIN"
    assert conn["refused"] == "nil:SERVFAIL"
    assert conn["badtype"].startswith("false:") and "invalid record type 'SRV'" in conn["badtype"]
    assert not r["results"][0]["error"]
    assert r["results"][1]["error"] and r["results"][1]["reply"][:2] == [451, "4.3.0"]
    assert "invalid record type 'BOGUS'" in panic_texts(r)[0]


def test_dns_lookup_server_option(dnsmasq):
    script = lua("""
        local mod = {}
        function mod:validate_connect(ac, vctx)
          local r, err = msys.dnsLookup("test.example", "A", {server = "127.0.0.1#%d"})
          vctx:set(msys.core.VCTX_CONN, "a", r and r[1] or err)
          return msys.core.VALIDATE_CONT
        end
        msys.registerModule("dns", mod)
    """ % dnsmasq)
    # the engine's own resolver points nowhere useful: only the server option can answer
    r = scenario("phases", files={"dns.lua": script}, stanzas=[["dns", "dns"]], dns_port=9,
                 steps=[{"phase": "validate_connect"}])
    assert r["sessions"]["s1"]["conn"]["a"] == "127.0.0.5"


SLEEPY = lua("""
    local mod = {}
    function mod:validate_connect(ac, vctx)
      local sid = vctx:get(msys.core.VCTX_CONN, "sid")
      self.sid = sid                                   -- per-session state across suspensions
      _TLS.sid = sid
      msys.sleep(0.3)
      local r, err = msys.dnsLookup("s" .. sid .. ".test.example", "A")
      msys.sleep(0.05)
      vctx:set(msys.core.VCTX_CONN, "out", self.sid .. ":" .. (r and r[1] or err) .. ":" .. _TLS.sid)
      return msys.core.VALIDATE_CONT
    end
    function mod:validate_ehlo(str, ac, vctx)
      vctx:set(msys.core.VCTX_CONN, "again", self.sid)
      return msys.core.VALIDATE_CONT
    end
    msys.registerModule("sleepy", mod)
""")


def test_200_sessions_suspended_interleave_without_corruption(dnsmasq):
    n = 200
    r = scenario("concurrent", files={"sleepy.lua": SLEEPY}, stanzas=[["sleepy", "sleepy"]],
                 dns_port=dnsmasq, sessions=n, phases=["validate_connect", "validate_ehlo"])
    assert r["all_done"]
    for i, conn in enumerate(r["conns"]):
        assert conn["out"] == f"{i}:127.0.0.5:{i}", conn
        assert conn["again"] == str(i)                 # self survived to the next phase
    assert all(not x["error"] for res in r["results"] for x in res)
    # serialised, 200 sessions would take 200 * 0.35 s; interleaved they take about 0.35 s
    assert r["elapsed"] < 10, r["elapsed"]
    assert r["stats"]["runtimes"] >= 100 and r["stats"]["waiting"] == 0


def test_runtime_cap_makes_sessions_wait_not_fail(dnsmasq):
    r = scenario("concurrent", files={"sleepy.lua": SLEEPY}, stanzas=[["sleepy", "sleepy"]],
                 dns_port=dnsmasq, sessions=40, max_runtimes=8,
                 phases=["validate_connect", "validate_ehlo"])
    assert r["all_done"] and r["stats"]["runtimes"] == 8
    assert [c["out"] for c in r["conns"]] == [f"{i}:127.0.0.5:{i}" for i in range(40)]
    assert 5 * 0.35 * 0.9 < r["elapsed"] < 30         # 40 sessions through 8 runtimes


POOL_SCRIPT = lua("""
    local mod = {}
    local state = "idle"
    function mod:validate_data(msg, ac, vctx)
      _OSTLS.where = "scheduler"
      local ok, where, sum = msys.runInPool("CPU", function()
        local x = 0
        for i = 1, 1e8 do x = x + i end                -- pure Lua: needs the GIL released
        msys.sleep(0.1)                                 -- blocks this pool thread
        print("from the pool thread")
        return tostring(_OSTLS.where), x
      end)
      local bad_ok, bad_err = msys.runInPool("IO", function() error("closure failed") end)
      vctx:set(msys.core.VCTX_CONN, "pool", tostring(ok) .. ":" .. where .. ":" .. sum)
      vctx:set(msys.core.VCTX_CONN, "bad", tostring(bad_ok) .. ":" .. bad_err)
      local ok2, err2 = pcall(msys.runInPool, "NoSuchPool", function() end)
      vctx:set(msys.core.VCTX_CONN, "nopool", err2)
      state = "callout running"
      msys.runInPool("IO", function() print("fire-and-forget saw: " .. state) end, true)
      msys.runInPool("IO", function() print("closure with completion") end,
                     function() print("completion in the scheduler") end,
                     msys.core.ECTP_COMPLETE_CALLBACK_SCHED)
      state = "callout returned"
      return msys.core.VALIDATE_CONT
    end
    function mod:validate_ehlo(str, ac, vctx) return msys.core.VALIDATE_CONT end
    msys.registerModule("pool", mod)
""")


def test_run_in_pool_uses_a_real_thread_while_sessions_proceed():
    r = scenario("pool_thread", files={"pool.lua": POOL_SCRIPT}, stanzas=[["pool", "pool"]],
                 quick=20, settle=0.5)
    marks = r["marks"]
    result, conn = marks["slow"]
    assert not result["error"], r["panic"]
    assert conn["pool"] == "true:nil:5000000050000000"       # _OSTLS of another OS thread
    assert conn["bad"].startswith("false:") and conn["bad"].endswith("closure failed")
    assert "no thread pool named 'NoSuchPool'" in conn["nopool"]
    # the 20 quick sessions all finished while the closure was still running in its thread
    assert len(marks["quick_done"]) == 20
    assert max(marks["quick_done"]) < marks["slow_done"] - 0.1, marks
    lines = panic_texts(r, "scriptlet")
    assert "scriptlet: from the pool thread" in lines
    assert "scriptlet: fire-and-forget saw: callout returned" in lines
    assert lines.index("scriptlet: closure with completion") < \
        lines.index("scriptlet: completion in the scheduler")


RELOAD_V1 = lua("""
    local mod = {}
    function mod:validate_connect(ac, vctx)
      msys.sleep(0.5)
      vctx:set(msys.core.VCTX_CONN, "version", "v1")
      return msys.core.VALIDATE_CONT
    end
    function mod:deinit() print("deinit v1") return true end
    msys.registerModule("v", mod)
""")
RELOAD_V2 = RELOAD_V1.replace("msys.sleep(0.5)", "").replace("v1", "v2")


def test_reload_swaps_runtimes_while_an_old_callout_finishes():
    r = scenario("reload", files={"v.lua": RELOAD_V1}, files2={"v.lua": RELOAD_V2},
                 stanzas=[["v", "v"]], reload_after=0.1)
    assert r["epoch"] == 2 and r["reload_error"] is None
    assert r["old_conn"] == {"version": "v1"}          # finished on its epoch-1 runtime
    assert r["new_conn"] == {"version": "v2"}
    assert r["new_elapsed"] < 0.3                      # did not wait for the old runtime
    lines = panic_texts(r)
    assert lines == ["scriptlet: deinit v1", "scriptlet: deinit v2"]


def test_failed_reload_keeps_the_running_scripts():
    r = scenario("reload", files={"v.lua": RELOAD_V1}, files2={"v.lua": "function (\n"},
                 stanzas=[["v", "v"]], reload_after=0.1)
    assert r["epoch"] == 1 and r["reload_error"].endswith(
        "Module 'scriptlet' instance 'scriptlet' initialization failed while preparing to "
        "commit. Consult your vendor.")
    assert r["old_conn"] == r["new_conn"] == {"version": "v1"}


def test_dns_lookup_inside_run_in_pool_blocks_that_thread(dnsmasq):
    script = lua("""
        local mod = {}
        function mod:validate_connect(ac, vctx)
          local ok, a = msys.runInPool("IO", function()
            local r, err = msys.dnsLookup("pool.test.example", "A")
            return r and r[1] or err
          end)
          vctx:set(msys.core.VCTX_CONN, "a", tostring(ok) .. ":" .. a)
          return msys.core.VALIDATE_CONT
        end
        msys.registerModule("dns", mod)
    """)
    r = scenario("phases", files={"dns.lua": script}, stanzas=[["dns", "dns"]],
                 dns_port=dnsmasq, steps=[{"phase": "validate_connect"}])
    assert r["sessions"]["s1"]["conn"]["a"] == "true:127.0.0.5", r["panic"]


def test_killed_sessions_give_their_runtimes_back():
    script = lua("""
        local mod = {}
        function mod:validate_connect(ac, vctx)
          self.keep = true
          if vctx:get(msys.core.VCTX_CONN, "sid") == "0" then
            msys.runInPool("CPU", function() msys.sleep(0.5) end)    -- killed while in a thread
          else
            msys.sleep(10)
          end
          return msys.core.VALIDATE_CONT
        end
        function mod:validate_ehlo(s, ac, vctx)
          vctx:set(msys.core.VCTX_CONN, "ok", "yes")
          return msys.core.VALIDATE_CONT
        end
        msys.registerModule("k", mod)
    """)
    r = scenario("killed", files={"k.lua": script}, stanzas=[["k", "k"]], sessions=5,
                 kill_after=0.2, settle=0.6, max_runtimes=5)
    # the runtime lent to the pool thread stays out until the closure returns
    assert r["after_kill"]["idle"] == 4
    assert r["stats"]["idle"] == 5 and r["stats"]["runtimes"] == 5
    assert r["conn"] == {"sid": "fresh", "ok": "yes"} and not r["fresh"]["error"]
