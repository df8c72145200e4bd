"""The Lua face of msys.audit_series through the policy engine (tests/policy/scenarios.py
runs it under gevent in a subprocess): argument forms (options table or bare key, an `ac`
as key, startv/endv), the default key (the session's peer, 10.9.8.7 in the scenarios),
errors raised at the script's line, replicate = "cluster", a call from a msys.runInPool
closure, and the namespace no longer being a stub."""

from ecmta.tests.policy.util import lua, panic_texts, scenario

SCRIPT = lua("""
    require("msys.core")
    require("msys.audit_series")
    local mod = {}
    function mod:init()
      msys.audit_series.define("ips", "cidr", 300, 3)
      msys.audit_series.define("words", "string", 300, 3)
      msys.audit_series.define("clustered", "string", 300, 3, {replicate = "cluster"})
      msys.audit_series.define("managed", "string", 300, 3, {replicate = "manager", serialize = true})
      local ok, err = pcall(msys.audit_series.count, "ips")
      INIT_ERR = err
      return true
    end
    local function try(f, ...)
      local ok, err = pcall(f, ...)
      return ok and "ok" or err
    end
    function mod:validate_ehlo(arg, ac, vctx)
      local A = msys.audit_series
      A.add("ips")                                   -- the peer, 10.9.8.7
      A.add("ips", ac)                               -- the same, from the accept construct
      A.add("ips", "accept_construct")
      A.add("ips", {key = "10.9.8.1", count = 10})
      A.add("ips", "10.9.9.1")
      A.add("words", {key = "w", count = 2.5})
      A.add("words", 42)                             -- not a table: the key
      A.add("clustered", {key = "k"})
      A.add("managed", {key = "k"})
      local _, pooled = msys.runInPool("IO", function() A.add("ips") return A.count("ips") end)
      local out = {
        A.count("ips"), A.count("ips", ac), A.count("ips", {key = "/24"}),
        A.count("ips", "10.9.0.0/16"), A.count("ips", {key = "10.9.8.1", startv = 0, endv = 2}),
        A.count("ips", {key = "10.9.8.1", startv = 1, endv = 2}),
        A.count("ips", "2001:db8::1"), A.count("words", "w"), A.count("words", "42"),
        A.count("clustered", "k"), A.count("managed", "k"), pooled,
      }
      A.remove_item("ips", "10.9.9.1")
      out[#out + 1] = A.count("ips", "10.9.9.1")
      A.remove_item("ips")
      out[#out + 1] = A.count("ips", "/24")
      local errs = {
        INIT_ERR,
        try(A.add, "words"),
        try(A.count, "words", {startv = 1}),
        try(A.add, "nosuch", "x"),
        try(A.add, "ips", "not-an-ip"),
        try(A.count, "ips", "10.0.0.0/40"),
        try(A.define, "bad", "ipv4", 60, 1),
        try(A.define, "bad", "cidr", 60, 1, {replicate = "everywhere"}),
        try(A.add, nil),
        try(A.add, "ips", {count = "lots"}),
      }
      vctx:set_code(250, table.concat(out, " ") .. "\\n" .. table.concat(errs, "\\n"))
      return msys.core.VALIDATE_DONE
    end
    function mod:validate_mailfrom(arg, ac, vctx)
      msys.audit_series.add("words")                 -- an error at this line: the phase fails
      return msys.core.VALIDATE_CONT
    end
    msys.registerModule("series", mod)
""")


def test_lua_api_forms_defaults_and_errors():
    r = scenario("phases", files={"series.lua": SCRIPT}, stanzas=[["series", "series"]],
                 steps=[{"phase": "validate_ehlo", "arg": "EHLO client.test"},
                        {"phase": "validate_mailfrom", "arg": "MAIL FROM:<a@b.test>"}])
    ehlo, mailfrom = r["results"]
    lines = ehlo["reply"][2].split("\n")
    # ips: 10.9.8.7 x4 (add, ac, "accept_construct", the pool closure), 10.9.8.1 x10, 10.9.9.1
    # then remove_item of 10.9.9.1, then of the peer: 10.9.8.1 stays in the /24
    assert lines[0].split() == ["4", "4", "14", "15", "10", "0", "0", "2.5", "1", "0", "1", "4",
                                "0", "10"]
    assert lines[1:] == [
        "msys.audit_series.count: no key given and no connected peer to "
        "default to (call it from a validation callout)",
        "msys.audit_series.add: a key is required for string series 'words'",
        "msys.audit_series.count: a key is required for string series 'words'",
        "msys.audit_series.add: no series named 'nosuch' (define it with "
        "msys.audit_series.define first)",
        "msys.audit_series.add: 'not-an-ip' is not an IP address (series 'ips' is of type cidr)",
        "msys.audit_series.count: bad mask '/40' (0 to 32)",
        "msys.audit_series.define: unknown type 'ipv4' (cidr, cidr_ipv6 or string)",
        "msys.audit_series.define: replicate must be none, cluster or manager, not 'everywhere'",
        "bad argument #1 to 'add' (string expected, got no value)",
        "msys.audit_series.add: count must be a number",
    ]
    assert mailfrom["error"] and mailfrom["reply"][0] == 451
    assert any("series.lua:56: msys.audit_series.add: a key is required for string series"
               in line for line in panic_texts(r)), r["panic"]


def test_define_errors_in_init_fail_the_configuration():
    bad = lua("""
        require("msys.audit_series")
        local mod = {}
        function mod:init()
          msys.audit_series.define("s", "cidr", 0, 6)
          return true
        end
        function mod:validate_connect() return 0 end
        msys.registerModule("m", mod)
    """)
    r = scenario("load", files={"m.lua": bad}, stanzas=[["m", "m"]])
    assert "m.lua:4: msys.audit_series.define: interval must be a whole number of at least 1, " \
           "not 0" in r["load_error"]
