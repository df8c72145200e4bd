"""The `config` and `write config` console commands against the examples of
console_commands.config and console_commands.write_config."""

import pytest

from ecmta.config import ConfigManager
from ecmta.console.registry import dispatch
from ecmta.tests.config.util import Console, FakeDaemon, write

PAGE_CONFIG = """
Message_Expiration = 86400

Domain earthlink.net {
  Message_Expiration = 900
}

Binding smtp-01 {
  EHLO_Hostname = "smtp-01.com"
  Domain relay.com {
    EHLO_Hostname = "relay.com"
  }
}

Esmtp_Listener {
  Listen ":25" {
  }
  Listen ":587" {
    Enable = false
    SMTP_Extensions = (
      "ENHANCEDSTATUSCODES"
      "STARTTLS"
      "AUTH LOGIN"
    )
    TLS_Key = "cert.key"
    TLS_Certificate = "cert.pem"
    TLS_Client_CA = "ca-bundle.crt"
    TLS_Ciphers = "DEFAULT"
  }
  Idle_Time = 300
  SMTP_Extensions = (
    "ENHANCEDSTATUSCODES"
  )
}

Control_Listener {
  Listen "127.0.0.1:2025" {
  }
  Listen "/tmp/2025" {
  }
}

mail_loop "mail_loop"
{
  Use_IP = false
}
"""


@pytest.fixture
def daemon(tmp_path):
    path = write(tmp_path, "ecelerity.conf", PAGE_CONFIG)
    return FakeDaemon(ConfigManager(path, allow_unbuilt=True))


@pytest.fixture
def con(daemon):
    return Console(daemon)


def test_page_examples_get_unset(con):
    assert con.run("config get message_expiration") == "Message_Expiration = 86400"
    assert con.run("config get domain earthlink.net message_expiration") == "\tMessage_Expiration = 900"
    assert con.run("config unset domain earthlink.net message_expiration") == (
        '"Message_Expiration" has been unset. Effective value is now:\n\tMessage_Expiration = 86400')
    assert con.run("config get binding smtp-01 ehlo_hostname") == '\tEHLO_Hostname = "smtp-01.com"'
    assert con.run("config get binding smtp-01 domain relay.com ehlo_hostname") == '\tEHLO_Hostname = "relay.com"'
    assert con.run("config unset binding smtp-01 domain relay.com ehlo_hostname") == (
        '"EHLO_Hostname" has been unset. Effective value is now:\n\tEHLO_Hostname = "smtp-01.com"')


def test_page_examples_get_versus_eval(con):
    assert con.run("config get blackhole") == "Option 'Blackhole' is not set in scope ''."
    assert con.run("config eval blackhole") == "Blackhole = 0"
    assert con.run("config get binding smtp-01 message_expiration") == \
        "Option 'Message_Expiration' is not set in scope 'Binding:smtp-01:'."
    assert con.run("config eval binding smtp-01 domain relay.com message_expiration") == \
        "\tMessage_Expiration = 86400"


def test_page_examples_set(con):
    assert con.run("config set Relay_Hosts ( 10.0.0.1 10.0.0.2 )") == "Relay_Hosts = (\n  10.0.0.1\n  10.0.0.2\n  )"
    for literal in ("true", "1", "enabled", "on"):
        assert con.run(f"config set suspend_delivery {literal}") == f"Suspend_Delivery = {literal}"
    assert con.run("config set ESMTP_Listener Pathway foo") == "\tPathway = foo"
    assert con.run("config set ESMTP_Listener Peer 127.0.0.1 Pathway foo") == "\tPathway = foo"
    assert con.run('config set ehlo_hostname = "has # hash"') == 'EHLO_Hostname = "has # hash"'
    assert con.run("config set esmtp_listener listen :25 enable false") == "\tEnable = false"
    cfg = con.daemon.config.current
    assert cfg.get("esmtp_listener peer 127.0.0.1", "pathway").value == "foo"
    assert cfg.get((), "suspend_delivery").value is True
    assert cfg.get("esmtp_listener listen :25", "enable").value is False


def test_show_and_showrecurse_as_on_the_page(con):
    assert con.run("config show mail_loop mail_loop") == "Use_IP = false"
    assert con.run("config show ESMTP_Listener") == (
        'Listen ":25" { ... }\n'
        'Listen ":587" { ... }\n'
        "Idle_Time = 300\n"
        "SMTP_Extensions = (\n"
        '  "ENHANCEDSTATUSCODES"\n'
        ")")
    assert con.run("config showrecurse ESMTP_Listener") == (
        "Esmtp_Listener {\n"
        '  Listen ":25" {\n'
        "  }\n"
        '  Listen ":587" {\n'
        "    Enable = false\n"
        "    SMTP_Extensions = (\n"
        '      "ENHANCEDSTATUSCODES"\n'
        '      "STARTTLS"\n'
        '      "AUTH LOGIN"\n'
        "    )\n"
        '    TLS_Key = "cert.key"\n'
        '    TLS_Certificate = "cert.pem"\n'
        '    TLS_Client_CA = "ca-bundle.crt"\n'
        '    TLS_Ciphers = "DEFAULT"\n'
        "  }\n"
        "  Idle_Time = 300\n"
        "  SMTP_Extensions = (\n"
        '    "ENHANCEDSTATUSCODES"\n'
        "  )\n"
        "}")
    assert con.run("config show esmtp_listener idle_time") == "Idle_Time = 300"
    whole = con.run("config showrecurse")
    assert whole.startswith("Domain \"earthlink.net\" {") and "ThreadPool \"IO\" {\n  Concurrency = 50\n}" in whole


def test_locate_as_on_the_page(con):
    assert con.run("config locate listen") == (
        'Listen ":25"\n  is at Esmtp_Listener::Listen:\\:25:\n'
        'Listen ":587"\n  is at Esmtp_Listener::Listen:\\:587:\n'
        'Listen "127.0.0.1:2025"\n  is at Control_Listener::Listen:127.0.0.1\\:2025:\n'
        'Listen "/tmp/2025"\n  is at Control_Listener::Listen:/tmp/2025:')
    assert con.run("config locate listen 127.0.0.1") == \
        'Listen "127.0.0.1:2025"\n  is at Control_Listener::Listen:127.0.0.1\\:2025:'
    assert con.run("config locate domain relay") == 'Domain "relay.com"\n  is at Binding:smtp-01:Domain:relay.com:'
    assert con.run("config locate peer") == "No 'peer' scope found."


def test_transaction_batch_from_the_page(con, daemon):
    seen = []
    daemon.config.subscribe(seen.append)
    assert con.run("config begin") == ""
    con.run("config set esmtp_listener listen :587 concurrency 5")
    con.run("config set esmtp_listener listen :587 pool_name accept")
    con.run("config set threadpool accept concurrency 5")
    assert con.run("config get threadpool accept concurrency") == "\tConcurrency = 5"   # the draft
    assert daemon.config.current.find("threadpool accept") is None
    assert con.run("config replay") == (
        "config set esmtp_listener listen :587 concurrency 5\n"
        "config set esmtp_listener listen :587 pool_name accept\n"
        "config set threadpool accept concurrency 5")
    assert con.run("config commit") == ""
    assert len(seen) == 1 and seen[0].get("threadpool accept", "concurrency").value == 5
    assert con.fail("config commit") == "No transaction in progress."


def test_two_sessions_first_commit_wins(daemon):
    one, two = Console(daemon, 1), Console(daemon, 2)
    one.run("config begin")
    two.run("config begin")
    one.run("config set threadpool IO concurrency 11")
    two.run("config set threadpool IO concurrency 22")
    assert two.run("config get threadpool IO concurrency") == "\tConcurrency = 22"
    assert one.run("config commit") == ""
    assert two.fail("config commit").startswith("Commit failed")
    assert two.session.transaction is None
    assert one.run("config get threadpool IO concurrency") == "\tConcurrency = 11"


def test_rollback_begin_twice_and_reload_inside_transaction(con, daemon):
    con.run("config begin")
    assert con.fail("config begin").startswith("A transaction is already in progress")
    assert "outside" in con.fail("config reload") or "inside a transaction" in con.fail("config reload")
    con.run("config set threadpool IO concurrency 3")
    assert con.run("config rollback") == ""
    assert daemon.config.current.get("threadpool IO", "concurrency").value == 50
    assert con.fail("config rollback") == "No transaction in progress."
    assert con.fail("config replay") == "No transaction in progress."


def test_begin_from_scratch_shows_implicit_settings(con):
    con.run("config begin from scratch")
    text = con.run("config showrecurse")
    assert 'ThreadPool "IO" {\n  Concurrency = 50\n}' in text and "Debug_Flags {" in text
    assert "TimestampFormat = " in text and "Message_Expiration" not in text
    con.run("config rollback")


def test_reload_through_the_daemon(con, daemon, tmp_path):
    write(tmp_path, "ecelerity.conf", PAGE_CONFIG.replace("86400", "1000"))
    con.run("config set threadpool IO concurrency 7")
    assert con.run("config reload") == ""
    assert daemon.reloads == [None]
    assert con.run("config get message_expiration") == "Message_Expiration = 1000"
    assert con.run("config get threadpool IO concurrency") == "\tConcurrency = 50"   # console change undone
    write(tmp_path, "broken.conf", "Message_Expiration = soon\n")
    out = con.fail(f"config reload {tmp_path}/broken.conf")
    assert out.splitlines() == ["Reconfigure failed.",
                                f"{tmp_path}/broken.conf:1: bad value for option 'Message_Expiration': "
                                "expected seconds or \"N seconds|minutes|hours|days\", got \"soon\""]


def test_reload_reports_restart_needed(tmp_path):
    path = write(tmp_path, "ecelerity.conf", 'pidfile = "a"\n')
    con = Console(FakeDaemon(ConfigManager(path)))
    write(tmp_path, "ecelerity.conf", 'pidfile = "b"\n')
    assert con.run("config reload") == (
        "Option 'Pidfile' in scope 'global' changed; a restart is needed for the new value to take effect")


def test_writeback_and_write_config(con, daemon, tmp_path):
    con.run("config set domain earthlink.net message_expiration 600")
    assert con.run("config writeback") == ""
    assert "Message_Expiration = 600" in open(tmp_path / "ecelerity.conf").read()
    text = con.run("write config")
    assert text.startswith("Message_Expiration = 86400\nDomain \"earthlink.net\" {\n  Message_Expiration = 600\n}")
    out = tmp_path / "written.conf"
    assert con.run(f"write config {out}") == ""
    assert open(out).read().rstrip("\n") == text
    # write config shows the running configuration, not a transaction's draft
    con.run("config begin")
    con.run("config set message_expiration 5")
    assert con.run("write config") == text
    con.run("config rollback")


def test_errors_are_clear(con):
    assert con.fail("config") .startswith("Usage: config")
    assert con.fail("config frobnicate").startswith("Unknown config mode 'frobnicate'")
    assert con.fail("config get no_such_option") == "Unknown option 'no_such_option'."
    assert con.fail("config set threadpool IO concurrency lots") == \
        "bad value for option 'Concurrency': expected an integer, got \"lots\""
    assert con.fail("config set threadpool IO concurrency") == "Usage: config set [scope ...] option value"
    assert con.fail("config set pidfile /x").startswith("Option 'Pidfile' is not dynamic")
    assert con.fail("config unset").startswith("Unsetting the global scope is not supported")
    assert con.fail('config set ehlo_hostname "open') == "Syntax error: No closing quotation"
    assert con.fail("config show domain nowhere.com") == "Scope 'Domain:nowhere.com:' does not exist."
    assert con.fail("config set ehlo_hostname a b") == "unexpected 'b' after the value"
    assert con.fail("config locate listen (").startswith("Bad regular expression")


def test_unset_whole_scope(con):
    assert con.run("config unset binding smtp-01") == "Scope 'Binding:smtp-01:' has been unset."
    assert con.run("config locate binding") == "No 'binding' scope found."


def test_dispatch_longest_match_reaches_write_config(daemon):
    from ecmta.console.registry import CommandContext, Session
    ok, out = dispatch(CommandContext(daemon, Session()), "write config")
    assert ok and out.startswith("Message_Expiration = 86400")
