"""Loading scripts: the search path, msys.boot, registerModule rules, init() and the exact
error texts of implementing.policy.scriptlets."""

import os

from ecmta.tests.policy.util import lua, panic_texts, scenario

COMMIT_FAILED = ("Module 'scriptlet' instance 'scriptlet' initialization failed while "
                 "preparing to commit. Consult your vendor.")

EHLO = lua("""
    require("msys.core");
    local mod = {};
    function mod:validate_ehlo(str, accept, vctx)
      vctx:set(msys.core.VCTX_CONN, "ran", "ehlo_phase")
      return msys.core.VALIDATE_CONT;
    end
    msys.registerModule("ehlo_phase", mod);
""")


def test_source_with_lua_extension_is_unable_to_open():
    r = scenario("load", files={"myscripts/ehlo_phase.lua": EHLO},
                 stanzas=[["ehlo_phase", "myscripts.ehlo_phase.lua"]])
    want = (f"Unable to open '{r['root']}/myscripts/ehlo_phase/lua.lua', "
            "errno=2 No such file or directory")
    assert r["lines"] == [want]
    assert r["load_error"] == want + "\n" + COMMIT_FAILED


def test_dot_and_slash_separators_and_boot():
    r = scenario("load", files={"myscripts/ehlo_phase.lua": EHLO},
                 stanzas=[["boot", "msys.boot"], ["ehlo_phase", "myscripts/ehlo_phase"]])
    assert r["modules"] == ["boot", "ehlo_phase"]
    assert r["phases"] == ["validate_ehlo"]
    assert r["conn"] == {"ran": "ehlo_phase"} and r["panic"] == []


def test_search_path_after_the_script_root():
    r = scenario("load", files={}, search_path=True, search_files={"lib/ehlo_phase.lua": EHLO},
                 stanzas=[["ehlo_phase", "lib.ehlo_phase"]])
    assert r["modules"] == ["ehlo_phase"] and r["conn"] == {"ran": "ehlo_phase"}


def test_ec_conf_search_path_environment(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "ehlo_phase.lua").write_text(EHLO)
    r = scenario("load", files={}, stanzas=[["ehlo_phase", "shared.ehlo_phase"]],
                 env={"EC_CONF_SEARCH_PATH": os.pathsep.join(["/nonexistent", str(tmp_path)])})
    assert r["conn"] == {"ran": "ehlo_phase"}


def test_no_usable_methods_logged_once():
    bad = lua("""
        local mod = {}
        function mod:helper() end
        function mod:validate_helo() end      -- misspelt callout
        msys.registerModule("mod_name", mod)
    """)
    r = scenario("phases", files={"mod_name.lua": bad, "ehlo_phase.lua": EHLO},
                 stanzas=[["mod_name", "mod_name"], ["ehlo_phase", "ehlo_phase"]],
                 steps=[{"phase": "validate_ehlo", "arg": "x"}])
    assert r["modules"] == ["ehlo_phase"]
    assert panic_texts(r) == ["scriptlet: no usable methods found for module mod_name in "
                              "registerModule call"]


def test_registration_name_must_match_the_stanza():
    r = scenario("load", files={"ehlo.lua": EHLO}, stanzas=[["ehlo", "ehlo"]])
    # registered as "ehlo_phase" under a stanza named "ehlo": silently never runs
    assert r["modules"] == [] and r["phases"] == [] and r["conn"] == {} and r["panic"] == []


def test_syntax_error_fails_the_configuration():
    broken = "local mod = {}\nfunction mod:validate_ehlo(\n  return 1\nend\n"
    r = scenario("load", files={"broken.lua": broken}, stanzas=[["broken", "broken"]])
    assert r["load_error"].endswith(COMMIT_FAILED)
    assert f"{r['root']}/broken.lua:3:" in r["lines"][0]


def test_runtime_error_at_top_level_fails_the_configuration():
    r = scenario("load", files={"x.lua": "error('cannot start')\n"}, stanzas=[["x", "x"]])
    assert r["lines"][0].endswith("x.lua:1: cannot start")


def test_init_must_return_true():
    tmpl = lua("""
        local mod = {}
        function mod:init() print("init called") return %s end
        function mod:validate_ehlo(s, ac, vctx)
          msys.sleep(0.1)
          vctx:set(msys.core.VCTX_CONN, "ran", "1")
          return 0
        end
        function mod:deinit() return true end
        msys.registerModule("m", mod)
    """)
    ok = scenario("concurrent", files={"m.lua": tmpl % "true"}, stanzas=[["m", "m"]],
                  sessions=5, phases=["validate_ehlo"])
    # every runtime ran init() (5 sessions at once need 5 runtimes); it is logged once
    assert ok["stats"]["runtimes"] == 5 and all(c["ran"] == "1" for c in ok["conns"])
    assert panic_texts(ok) == ["scriptlet: init called"]
    bad = scenario("load", files={"m.lua": tmpl % "0"}, stanzas=[["m", "m"]])
    assert bad["lines"] == ["m: init() returned 0, not true"]
    assert bad["load_error"].endswith(COMMIT_FAILED)


def test_required_helpers_speak_the_dialect_too():
    helper = "local M = {}\nfunction M.half(n) if n != 0 then return n \\ 2 end return 0 end\nreturn M\n"
    main = lua("""
        local h = require("myscripts.helpers")
        local mod = {}
        function mod:validate_ehlo(s, ac, vctx) vctx:set(msys.core.VCTX_CONN, "ran", h.half(9)) return 0 end
        msys.registerModule("m", mod)
    """)
    r = scenario("load", files={"myscripts/helpers.lua": helper, "myscripts/m.lua": main},
                 stanzas=[["m", "myscripts.m"]])
    assert r["conn"] == {"ran": "4"}


def test_unknown_msys_module_is_a_load_error_but_known_ones_load():
    r = scenario("load", files={"x.lua": 'require("msys.datasource"); require("msys.nosuch")\n'},
                 stanzas=[["x", "x"]])
    assert "module 'msys.nosuch' not found" in r["lines"][0]


def test_from_config_reads_the_scriptlet_stanza():
    conf = lua("""
        alerting {}
        scriptlet "scriptlet" {
          script_ttl = 120
          gc_pause = 150
          gc_stepmul = 300
          always_gc = true
          reap_interval = 2
          max_spare_per_master = 10
          script "boot" {
            source = "msys.boot"
          }
          script "ehlo_phase" {
            source = "myscripts.ehlo_phase"
          }
          script "binder" {
            source = "myscripts/binder"
          }
        }
        binding "mydomain" { }
    """)
    binder = lua("""
        local mod = {}
        function mod:validate_set_binding(msg)
          if msg:binding("nosuchbinding") == nil then msg:binding("mydomain") end
          return msys.core.VALIDATE_CONT
        end
        msys.registerModule("binder", mod)
    """)
    r = scenario("from_config", conf=conf,
                 files={"myscripts/ehlo_phase.lua": EHLO, "myscripts/binder.lua": binder})
    assert r["modules"] == ["boot", "ehlo_phase", "binder"]
    assert r["conn"] == {"ran": "ehlo_phase"} and r["binding"] == "mydomain"
    assert r["options"] == [120.0, 150, 300, True, 2.0, 10]
