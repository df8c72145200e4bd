"""msys.* through the real daemon: msys.core constants, print() to the paniclog,
msys.expandMacro, msys.runInPool (waiting, fire-and-forget, completion functions),
msys.sleep (the session waits, the others go on) and msys.dnsLookup against a real DNS
server (dnsmasq on 127.0.0.1, reached with the documented `server` option).
Each behaviour is switched on by the EHLO name the client sends."""

from __future__ import annotations

import concurrent.futures
import re
import time

import pytest

from ecmta.tests.reception.helpers import Shared, start_mta, wait_for

MSYS = r"""
require("msys.core");
local mod = {};
local C = msys.core.VCTX_CONN

local function show(r, err)
  if r == nil then return "nil:" .. tostring(err) end
  local out = {}
  for i, v in ipairs(r) do
    if type(v) == "table" then out[i] = v[1] .. "=" .. v[2] else out[i] = v end
  end
  return table.concat(out, ",")
end

function mod:validate_ehlo(str, accept, vctx)
  local d = vctx:get(C, "ehlo_domain")
  if d == "consts.test" then
    local k = msys.core
    vctx:set(C, "consts", table.concat({k.VALIDATE_CONT, k.VALIDATE_DONE, k.VALIDATE_AGAIN,
      k.VCTX_MESS, k.VCTX_CONN, k.ECMESS_CTX_MESS, k.ECMESS_CTX_CONN, k.EC_MSG_ENV_FROM,
      k.EC_MSG_ENV_TO, k.EC_MSG_ENV_COMPLETE, k.ECTP_COMPLETE_CALLBACK,
      k.ECTP_COMPLETE_CALLBACK_SCHED}, " "))
    vctx:set(C, "more", tostring(type(k.P_ESMTP) == "number" and type(k.DELIVERED) == "number"
      and type(k.EC_AUTH_OK) == "number"))
  elseif d == "macro.test" then
    vctx:set(C, "macro", msys.expandMacro("<%{vctx_conn:ehlo_string}> <%{vctx_conn:ehlo_domain}>"))
  elseif d == "sleep.test" then
    msys.sleep(1.0)
    vctx:set(C, "slept", "yes")
  elseif d == "pool.test" then
    -- lua.ref.msys.runinpool: waiting form, then an error inside the closure
    local st, a, b = msys.runInPool("IO", function() return "done", 42 end)
    vctx:set(C, "pool_sync", tostring(st) .. ":" .. tostring(a) .. ":" .. tostring(b))
    local st2, err = msys.runInPool("CPU", function() error("closure failed") end)
    vctx:set(C, "pool_err", tostring(st2) .. ":" .. tostring(err))
    local do_heavy_lifting = function()
      print("doing heavy lifting")
      return true
    end
    local st3, res = msys.runInPool('IO', do_heavy_lifting)
    vctx:set(C, "pool_fn", tostring(st3) .. ":" .. tostring(res))
    -- fire and forget: starts once this callout has returned
    msys.runInPool("IO", function() print("async closure ran") end, true)
    -- completion in the scheduler (the doc's example)
    local status, r = msys.runInPool("IO",
      function()
        return "done";
      end,
      function()
        print("Done!");
      end,
      msys.core.ECTP_COMPLETE_CALLBACK_SCHED
    );
    vctx:set(C, "pool_completion_form", tostring(status) .. ":" .. tostring(r))
    print("pool callout returning")
  elseif d == "dns.test" then
    local srv = {server = "127.0.0.1#" .. vctx:get(C, "dns_port")}
    vctx:set(C, "a", show(msys.dnsLookup("a.rx.test", "A", srv)))
    vctx:set(C, "a_default_type", show(msys.dnsLookup("a.rx.test", nil, srv)))
    vctx:set(C, "mx", show(msys.dnsLookup("rx.test", "MX", srv)))
    local prio = {server = srv.server, priority = true}
    vctx:set(C, "mx_prio", show(msys.dnsLookup("rx.test", "MX", prio)))
    vctx:set(C, "txt", show(msys.dnsLookup("rx.test", "TXT", srv)))
    vctx:set(C, "ptr", show(msys.dnsLookup("1.0.0.127.in-addr.arpa", "PTR", srv)))
    vctx:set(C, "nx", show(msys.dnsLookup("host.nx.rx.test", "A", srv)))
    -- the documented idiom
    local results, errmsg
    results, errmsg = msys.dnsLookup('a.rx.test', 'A', srv);
    if results == nil then
      print("ERROR: " .. errmsg);
    else
      for k,v in ipairs(results) do
        print("key: " .. k .. "and value: " .. v)
      end
    end
  elseif d == "badtype.test" then
    msys.dnsLookup("a.rx.test", "BOGUS", {server = "127.0.0.1#" .. vctx:get(C, "dns_port")})
  end
  return msys.core.VALIDATE_CONT;
end
msys.registerModule("msysfn", mod);
"""


@pytest.fixture(scope="module")
def ms(dnsmasq):
    shared = Shared()
    try:
        yield start_mta(
            shared.factory, files={"scripts/msysfn.lua": MSYS},
            listener=f'  Context = [ dns_port = "{dnsmasq}" ]',
            tail='scriptlet "scriptlet" {\n  script "msysfn" {\n    source = "scripts.msysfn"\n  }\n}')
    finally:
        shared.close()


def ctx_of(ms, ehlo: str) -> dict:
    w = ms.wire()
    r = w.cmd(f"EHLO {ehlo}")
    assert r.code == 250, str(r)
    out = {}
    for ln in w.cmd("XDUMPCONTEXT").lines[:-1]:
        _, key, value = (ln.split(" ", 2) + [""])[:3]
        out[key] = value
    return out


def prints_after(ms, n: int) -> list[str]:
    return [ln.split(":scriptlet: ", 1)[1] for ln in ms.paniclog()[n:] if ":scriptlet: " in ln]


def test_msys_core_constants(ms):
    c = ctx_of(ms, "consts.test")
    values = [int(v) for v in c["consts"].split()]
    cont, done, again, mess, conn, emess, econn, efrom, eto, ecomplete, cb, sched = values
    assert len({cont, done, again}) == 3 and mess != conn and emess != econn
    assert len({efrom, eto, ecomplete}) == 3
    assert efrom & eto == 0 and (efrom | eto) & ecomplete == 0     # OR-able flags
    assert cb != sched
    assert c["more"] == "true"


def test_expand_macro(ms):
    c = ctx_of(ms, "macro.test")
    assert c["macro"] == "<EHLO macro.test> <macro.test>"


def test_sleep_suspends_only_its_session(ms):
    def sleeper():
        t0 = time.monotonic()
        c = ctx_of(ms, "sleep.test")
        return c, time.monotonic() - t0
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        fut = ex.submit(sleeper)
        time.sleep(0.2)
        t0 = time.monotonic()
        quick = ctx_of(ms, "quick.test")            # served while the other one sleeps
        quick_took = time.monotonic() - t0
        c, took = fut.result(timeout=30)
    assert c["slept"] == "yes" and 1.0 <= took < 5
    assert "slept" not in quick and quick_took < 0.8


def test_run_in_pool_forms(ms):
    n = len(ms.paniclog())
    c = ctx_of(ms, "pool.test")
    assert c["pool_sync"] == "true:done:42"
    assert c["pool_err"].startswith("false:") and "closure failed" in c["pool_err"]
    assert c["pool_fn"] == "true:true"
    assert c["pool_completion_form"] == "nil:nil"               # asynchronous: no results
    lines = wait_for(lambda: (lambda p: p if {"async closure ran", "Done!"} <= set(p) else None)(
        prints_after(ms, n)), what="async prints")
    assert "doing heavy lifting" in lines
    # the asynchronous closures start only after the callout has returned
    assert lines.index("pool callout returning") < lines.index("async closure ran")
    assert lines.index("pool callout returning") < lines.index("Done!")


def test_dns_lookup_against_dnsmasq(ms):
    n = len(ms.paniclog())
    c = ctx_of(ms, "dns.test")
    assert c["a"] == c["a_default_type"] == "192.0.2.7"
    assert c["mx"] == "mx1.rx.test,mx2.rx.test"                  # best preference first
    assert c["mx_prio"] == "10=mx1.rx.test,20=mx2.rx.test"
    assert c["txt"] == "v=spf1 -all"
    assert c["ptr"] == "localhost.rx.test"
    assert c["nx"] == "nil:NXDOMAIN"
    assert wait_for(lambda: "key: 1and value: 192.0.2.7" in prints_after(ms, n) or None)


def test_dns_lookup_with_an_invalid_type_fails_the_command(ms):
    n = len(ms.paniclog())
    w = ms.wire()
    r = w.cmd("EHLO badtype.test")
    # lua.ref.msys.dnslookup says the session "will return a 421 error"; ecmta's engine
    # answers every script error with its 451 (reported to the policy owner)
    assert r.raw == b"451 4.3.0 Temporary policy failure (script error), try again later\r\n"
    assert wait_for(lambda: [ln for ln in ms.paniclog()[n:]
                             if re.search(r"scriptlet-00147: validate_ehlo error: .*BOGUS", ln)])
