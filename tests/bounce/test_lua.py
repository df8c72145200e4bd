"""msys.bounce.classify and msys.bounce.classify_smtp_response from a policy script
(lua.ref.msys.bounce.*), run in the gevent-patched scenario process of tests/policy."""

from ecmta.tests.bounce.helpers import notice
from ecmta.tests.policy.util import lua, panic_texts, scenario


def run(script, data: str, rcptto: str = "bounces-1@bounces.example.com"):
    return scenario("phases", files={"p.lua": script}, stanzas=[["p", "p"]],
                    messages={"m": {"data": data, "rcptto": rcptto, "mailfrom": ""}},
                    steps=[{"phase": "validate_data_spool", "msg": "m"}])


def test_the_documented_example():
    """Example 70.49 of lua.ref.msys.bounce.classify_smtp_response, on a DSN."""
    script = lua("""
        require("msys.bounce");
        local mod = {};
        function mod:validate_data_spool(msg, accept, vctx)
          code, name, desc, rcpts = msys.bounce.classify(msg);
          print("msys.bounce.classify: code = ", code, " symbol = ", name, " desc = ", desc, " orig rcpt: ", rcpts);
          code, name, desc = msys.bounce.classify_smtp_response("this domain is no longer used");
          print("msys.bounce.classify_smtp_response: code = ", code, " symbol = ", name, " desc = ", desc );
          return msys.core.VALIDATE_CONT;
        end
        msys.registerModule("test_bc", mod);
    """)
    r = scenario("phases", files={"p.lua": script}, stanzas=[["test_bc", "p"]],
                 messages={"m": {"data": notice("postfix_dsn.eml").decode(), "mailfrom": "",
                                 "rcptto": "bounces-12-345@bounces.example.com"}},
                 steps=[{"phase": "validate_data_spool", "msg": "m"}])
    assert not any(x["error"] for x in r["results"]), r["panic"]
    assert panic_texts(r, "scriptlet") == [
        "scriptlet: msys.bounce.classify: code = \t10\t symbol = \tBC_HARD_INVALID_RECIPIENT\t desc = "
        "\tInvalid Recipient\t orig rcpt: \tjane@example.org",
        "scriptlet: msys.bounce.classify_smtp_response: code = \t10\t symbol = \tBC_HARD_INVALID_RECIPIENT"
        "\t desc = \tInvalid Recipient",
    ]


def test_smtp_responses_with_domain_and_non_bounces():
    script = lua("""
        local b = require("msys.bounce")
        local mod = {}
        function mod:validate_data_spool(msg, ac, vctx)
          for _, t in ipairs({"552-5.2.2 over quota", "421 4.7.0 [TSS04] Messages temporarily deferred",
                              "554 5.4.7 [internal] exceeded max time without delivery", ""}) do
            print(b.classify_smtp_response(t, "example.com"))
          end
          print(msys.bounce.classify(msg))
          local ok, err = pcall(msys.bounce.classify, "not a message")
          print(ok, err)
          return msys.core.VALIDATE_CONT
        end
        msys.registerModule("p", mod)
    """)
    r = run(script, "From: a@b.example\r\nSubject: hello\r\n\r\nJust a note.\r\n")
    assert not any(x["error"] for x in r["results"]), r["panic"]
    lines = panic_texts(r, "scriptlet")
    assert lines[:5] == [
        "scriptlet: 22\tBC_SOFT_MAILBOX_FULL\tMailbox Full",
        "scriptlet: 51\tBC_BLOCK_SPAM\tSpam Block",
        "scriptlet: 24\tBC_SOFT_TIMEOUT\tTimeout",
        "scriptlet: 1\tBC_UNDETERMINED\tUndetermined",
        "scriptlet: 1\tBC_UNDETERMINED\tUndetermined\tnil",
    ]
    assert lines[5].startswith("scriptlet: false\t") and "must be a message" in lines[5]


def test_auto_reply_and_unsubscribe_from_lua():
    script = lua("""
        local mod = {}
        function mod:validate_data_spool(msg, ac, vctx)
          print(msys.bounce.classify(msg))
          return msys.core.VALIDATE_CONT
        end
        msys.registerModule("p", mod)
    """)
    r = run(script, notice("autoreply.eml").decode())
    assert panic_texts(r, "scriptlet") == ["scriptlet: 60\tBC_SOFT_AUTO_REPLY\tAuto-Reply\tjane@example.org"]
    r = run(script, notice("subscribe.eml").decode())
    assert panic_texts(r, "scriptlet") == ["scriptlet: 80\tBC_SUBSCRIBE\tSubscribe\tdave@example.com"]
