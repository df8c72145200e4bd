"""What policy costs per message: a phase with no callout must be nearly free (the driver
calls run() for every phase of every message); a trivial Lua callout is measured."""

from ecmta.tests.policy.util import lua, scenario

TRIVIAL = lua("""
    require("msys.core")
    local mod = {}
    function mod:validate_data(msg, accept, vctx)
      return msys.core.VALIDATE_CONT
    end
    msys.registerModule("trivial", mod)
""")


def test_cost_per_message(record_property):
    r = scenario("bench", files={"trivial.lua": TRIVIAL},
                 stanzas=[["boot", "msys.boot"], ["trivial", "trivial"]], n=20000)
    for key in ("empty_us", "trivial_us", "runtime_ms", "runtime_kb"):
        record_property(key, round(r[key], 3))
    print(f"\nempty phase {r['empty_us']:.2f} us, trivial Lua callout {r['trivial_us']:.1f} us, "
          f"new runtime {r['runtime_ms']:.2f} ms / {r['runtime_kb']:.0f} KiB")
    assert r["empty_us"] < 5          # measured ~0.2 us: one dict lookup
    assert r["trivial_us"] < 500      # measured ~10 us; generous for slow CI machines
