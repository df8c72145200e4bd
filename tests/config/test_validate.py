"""Validation against the real registry: documented examples load, every kind of bad
input is a ConfigError naming file:line, values are typed, stanzas merge."""

import os

import pytest

from ecmta.config import ConfigError, Rate, load_config, load_config_text, load_default_config
from ecmta.config.model import FrozenDict
from ecmta.config.registry import ModuleSpec, OptionSpec, ScopeSpec
from ecmta.config.validate import Registry
from ecmta.tests.config.util import errors_of, where, write

DIGEST = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "MOMENTUM_DIGEST.md")

# MOMENTUM_DIGEST §1.6 (verbatim; (a) is two page examples joined by "...").
EXAMPLE_15_2 = """
message_expiration = 86400

binding "example" {
  message_expiration = 3600
}

domain "example.com" {
  message_expiration = 120
}

binding "example2" {
  message_expiration = 7200

  domain example.com {
    message_expiration = 86400
  }

  domain "anotherexample.com" {
    max_resident_active_queue_size = 500
  }
}
"""

EXAMPLE_15_3 = """
max_outbound_connections = 30

binding_group "group1" {
  max_outbound_connections = 5

  binding "example" {
    bind_address = 10.10.10.10
    max_outbound_connections = 15

    domain "example.com" {
      #some other options
    }
  }
}
"""

EXAMPLE_B = """
ESMTP_Listener {
   Listen "*:25" {
      Peer "0.0.0.0/0" {
         context = [
           my_key = "my_value"
           my_other_key = "my_other_value"
         ]
      }
      Peer "10.0.0.0/32" {
         context = [
            trusted_mx = "yes"
         ]
      }
   }
}

alerting {}

scriptlet "scriptlet" {
  # this loads default scripts to support enhanced control channel features
  script "boot" {
    source = "msys.boot"
  }
  # this loads the user-defined script
  script "ehlo_phase" {
    source = "myscripts.ehlo_phase"
  }
}

ec_logger "ec_logger"
{
   mainlog = "/var/log/ecelerity/mainlog.ec"
   rejectlog = "/var/log/ecelerity/rejectlog.ec"
   paniclog = "/var/log/ecelerity/paniclog.ec"
   acctlog = "/var/log/ecelerity/acctlog.ec"
   #importlog is not written by default
   #importlog = "/var/log/ecelerity/importlog.ec"
   heartbeat = 60
}
"""

EXAMPLE_C = """
ESMTP_Listener {
  Listen ":25" {
      Listen_Backlog = 500       # new default, can be set > 200 now
      TCP_Recv_Buffer_Size = 4096
      TCP_Send_Buffer_Size = 4096
      Disable_Nagle_Algorithm = false
  }
  Listen ":587" {
      Enable = "false"
      Accept_Queue_Backlog = 200
      Events_Per_Iter = 20
      Concurrency = 4
      Pool_Name = "accept-pool"
  }
}
ThreadPool accept-pool {
  Concurrency = 4
}
# limit customer-1 to sending 60 messages every 3 seconds
binding "customer-1" {
  outbound_throttle_messages = "60/3"
}
# Customer-2 rules
binding "customer-2" {
  # make no more than 20 concurrent connections to a given domain
  max_outbound_connections = 20
  # make no more than 40 concurrent connections to example.com
  domain "example.com" {
    max_outbound_connections = 40
  }
}
# TLS settings for customer-1
binding "customer-1" {
  tls_key = "/path/to/customer1.key"
  tls_certificate = "/path/to/customer2.cert"
  domain "trusted.partner.example.com" {
    tls = "required"
    tls_ca = "/path/to/customer1/partners.cabundle"
  }
}
"""

DEFAULT_DEBUG_FLAGS = """
Debug_Flags {
        DEBUG = ()
        INFO = ()
        NOTICE = ()
        WARNING = ()
        ERROR = (TIME FD SMTP LOG1 DNS DNSDS NET SIG MEM DB LIC SSL MOD START ALL)
        CRITICAL = (TIME FD SMTP LOG1 DNS DNSDS NET SIG MEM DB LIC SSL MOD START ALL)
}
"""

THREADPOOL_PAGE = """
ThreadPool "SwapOut" {
  Concurrency = 5
}
ThreadPool "SwapIn" {
  Concurrency = 5
}
ThreadPool "Unlink" {
  Backlog = 100
  Concurrency = 6
}
ThreadPool "Batch_Unlink" {
  Concurrency = 4
}
ThreadPool "Close" {
  Concurrency = 0
}
ThreadPool "CPU" {
  Concurrency = 4
}
ThreadPool "IO" {
  Concurrency = 50
}
ThreadPool "SpoolIn" {
  Concurrency = 1
}
"""

LISTENERS_UNIX = """
Control_Listener {
  Listen "/tmp/2025" {
    File_Mode = 0666
    Listen_Backlog = 500
  }
}
"""


def test_digest_examples_are_the_digest_text():
    # Guard against the copies above drifting from the digest.
    if not os.path.exists(DIGEST):
        pytest.skip("MOMENTUM_DIGEST.md not present")
    digest = open(DIGEST, encoding="utf-8").read()
    for text in (EXAMPLE_15_2, EXAMPLE_15_3, EXAMPLE_B, EXAMPLE_C, DEFAULT_DEBUG_FLAGS):
        assert text.strip("\n") in digest


def test_example_a_15_3_and_b_and_c_load(tmp_path):
    for name, text in (("a2.conf", EXAMPLE_15_3), ("b.conf", EXAMPLE_B), ("c.conf", EXAMPLE_C)):
        cfg = load_config(write(tmp_path, name, text), allow_unbuilt=True)
        assert cfg.root.children


def test_example_a_15_2_only_misses_the_pages_own_typo(tmp_path):
    # The page writes max_resident_active_queue_size; the option is max_resident_active_queue
    # (config.options.summary). Both uses are reported at their exact lines, nothing else.
    path = write(tmp_path, "a1.conf", EXAMPLE_15_2)
    errs = errors_of(path, allow_unbuilt=True)
    assert where(errs) == [("a1.conf", 19)]
    assert errs[0].message == "unknown option 'max_resident_active_queue_size'"
    fixed = EXAMPLE_15_2.replace("max_resident_active_queue_size", "max_resident_active_queue")
    cfg = load_config(write(tmp_path, "a1b.conf", fixed), allow_unbuilt=True)
    assert cfg.get("binding example2 domain anotherexample.com", "Max_Resident_Active_Queue").value == 500


def test_example_b_structure(tmp_path):
    cfg = load_config(write(tmp_path, "b.conf", EXAMPLE_B), allow_unbuilt=True)
    peer = cfg.find((("ESMTP_Listener", None), ("Listen", "*:25"), ("Peer", "10.0.0.0/32")))
    assert peer.get("context").value == FrozenDict(trusted_mx="yes")
    script = cfg.find((("scriptlet", "scriptlet"), ("script", "boot")))
    assert script.get("source").value == "msys.boot"
    assert cfg.find((("ec_logger", "ec_logger"),)).get("heartbeat").raw == "60"
    assert cfg.find((("alerting", None),)) is not None


def test_example_c_types_and_merging(tmp_path):
    cfg = load_config(write(tmp_path, "c.conf", EXAMPLE_C), allow_unbuilt=True)
    c1 = cfg.root.child("binding", "customer-1")
    # Two binding "customer-1" stanzas merge into one scope instance.
    assert c1.get("outbound_throttle_messages").value == Rate(60, 3)
    assert c1.get("tls_key").value == "/path/to/customer1.key"
    assert c1.locations == ((c1.file, 20), (c1.file, 33))
    assert cfg.get("esmtp_listener listen :587", "enable").value is False
    assert cfg.get("esmtp_listener listen :587", "enable").raw == '"false"'
    assert cfg.get("threadpool accept-pool", "concurrency").value == 4
    assert cfg.get("binding customer-1 domain trusted.partner.example.com", "tls").value == "required"


def test_built_reference_examples_load_strictly(tmp_path):
    for i, text in enumerate((DEFAULT_DEBUG_FLAGS, THREADPOOL_PAGE, LISTENERS_UNIX)):
        cfg = load_config(write(tmp_path, f"r{i}.conf", text))
        assert cfg.root.children
    cfg = load_config(write(tmp_path, "u.conf", LISTENERS_UNIX))
    assert cfg.get('Control_Listener Listen /tmp/2025', "file_mode").value == 0o666
    cfg = load_config(write(tmp_path, "d.conf", DEFAULT_DEBUG_FLAGS))
    assert cfg.get("debug_flags", "error").value[-1] == "ALL"
    assert cfg.get("debug_flags", "debug").value == ()


def test_page_examples_with_unbuilt_options_load(tmp_path):
    texts = [
        # conf.ref.domain
        'domain "example.com" {\n  max_outbound_connections = 20\n}\n'
        'domain "/(?:^|[.])example[.](?:com|co[.]uk)$/" {\n  max_outbound_connections = 15\n'
        '  max_deliveries_per_connection = 5\n}\n'
        'domain "192.0.43.10" {\n}\ndomain "[IPv6:fd82:7796:815b:be0:222:19ff:fe52:3629]" {\n}\n',
        # conf.ref.host
        'host "smtp.example.com" {\n}\nbinding "example" {\n  host "smtp.example.com" {\n  }\n}\n'
        'host "/(?:^|[.])example[.](?:com|co[.]uk)$/" {\n  max_outbound_connections = 15\n}\n',
        # conf.ref.pathway
        'pathway "example1" {\n  allow_null_envelope_sender = true\n}\n'
        'pathway_group "group1" {\n  pathway "example2" {\n    idle_time = 400\n  }\n}\n'
        'ESMTP_Listener {\n  listen ":25" {\n    pathway = "example1"\n  }\n}\n',
        # listeners 15.4
        'ESMTP_Listener {\n  Peer "10.0.0.0/16" {\n  }\n  Listen ":25" {\n    Peer "10.0.0.1" {\n'
        '      SMTP_Extensions = ( "ENHANCEDSTATUSCODES" "AUTH LOGIN" )\n    }\n  }\n}\n'
        'ESMTP_Listener {\n  Listen "*:25" {}\n  Listen "127.0.0.1:25" {}\n  Listen "[*]:25" {}\n'
        '  Listen "[::]:25" {}\n}\n',
        # console_commands.config
        'Message_Expiration = 86400\nDomain earthlink.net {\n  Message_Expiration = 900\n}\n'
        'Binding smtp-01 {\n  EHLO_Hostname = "smtp-01.com"\n  Domain relay.com {\n'
        '    EHLO_Hostname = "relay.com"\n  }\n}\nmail_loop "mail_loop1"\n{\n  Use_IP = false\n}\n',
    ]
    for i, text in enumerate(texts):
        load_config(write(tmp_path, f"p{i}.conf", text), allow_unbuilt=True)


def test_embedded_default_config():
    cfg = load_default_config()
    assert cfg.get((), "pidfile").value == "ecelerity.pid"
    assert cfg.get("control_listener listen /tmp/2025", "file_mode").value == 0o600
    assert cfg.find("control_listener listen 127.0.0.1:2025") is not None
    assert cfg.sources.main.readonly


# -- ten (and more) kinds of malformed configuration ----------------------------------------

MALFORMED = [
    # (text, line, message fragment)
    ('pidfile = "x.pid\n\n', 1, "unterminated string"),
    ("pidfile = x\n\n/* never closed\n", 3, "unterminated /* comment"),
    ("pidfile = x\n}\n", 2, "unexpected '}'"),
    ('ThreadPool "IO" {\n  Concurrency = 5\n', 1, "unterminated scope"),
    ("pidfile\n", 1, "has no value"),
    ("pidfile = x\n\ninvalid_option = 1\n", 3, "unknown option 'invalid_option'"),
    ('ThreadPool "IO" {\n  File_Mode = 0600\n}\n', 2, "option 'File_Mode' is not valid in scope 'ThreadPool'"),
    ("Frobnicator {\n}\n", 1, "unknown scope or module 'Frobnicator'"),
    ('ThreadPool "IO" {\n  Frobnicator {\n  }\n}\n', 2, "unknown scope 'Frobnicator'"),
    ('Listen ":25" {\n}\n', 1, "scope 'Listen' is not valid inside 'Global'"),
    ('ThreadPool "IO" {\n\n  Concurrency = lots\n}\n', 3, "bad value for option 'Concurrency': expected an integer"),
    ('Control_Listener {\n  Listen "/tmp/x" {\n    File_Mode = 0999\n  }\n}\n', 3, "expected an octal number"),
    ("Local_Changes_Only = maybe\n", 1, "expected a boolean"),
    ("Adaptive_Enabled = true\n", 1, "option 'Adaptive_Enabled' is not available in this version"),
    ('cloudmark {\n}\n', 1, "module 'cloudmark' is not available in this version"),
    ('no_such_module "x" {\n}\n', 1, "unknown scope or module 'no_such_module'"),
    ("ThreadPool {\n}\n", 1, "needs an instance name"),
    ('Control_Listener "x" {\n}\n', 1, "takes no instance name"),
    ("pidfile {\n}\n", 1, "'Pidfile' is an option, not a scope"),
    ("Binding = b1\n", 1, "'Binding' is a scope"),
    ('Binding "a:b" {\n}\n', 1, "may not be empty or contain spaces or colons"),
    ('Domain "/(unclosed/" {\n}\n', 1, "not a valid regular expression"),
    ('Control_Listener {\n  Concurrency = 4\n}\n', 2, "not available in scope 'Control_Listener'"),
    ("pidfile = \u201cx\u201d\n", 1, "typographic quote"),
    ('ThreadPool "IO" {\n  Concurrency = ( 1 2 )\n}\n', 2, "expected an integer, got a list"),
]


@pytest.mark.parametrize("text,line,needle", MALFORMED, ids=[m[2][:40] for m in MALFORMED])
def test_malformed_config_names_file_and_line(tmp_path, text, line, needle):
    path = write(tmp_path, "bad.conf", text)
    errs = errors_of(path)
    assert errs[0].file == path and errs[0].line == line, errs
    assert needle in errs[0].message
    assert f"{path}:{line}: " in str(ConfigError(errs))


def test_errors_in_unbuilt_module_and_peer_names(tmp_path):
    path = write(tmp_path, "m.conf", 'alerting "named" {\n}\nESMTP_Listener {\n  Peer "not-a-cidr" {\n  }\n}\n')
    errs = errors_of(path, allow_unbuilt=True)
    assert where(errs) == [("m.conf", 1), ("m.conf", 4)]
    assert "singleton" in errs[0].message and "not an IP address or CIDR" in errs[1].message


def test_scriptlet_allows_only_one_instance_name(tmp_path):
    path = write(tmp_path, "s.conf", 'scriptlet "scriptlet" {\n}\nscriptlet "scriptlet" {\n}\nscriptlet "other" {\n}\n')
    errs = errors_of(path, allow_unbuilt=True)
    assert where(errs) == [("s.conf", 5)] and "only one instance name" in errs[0].message


def test_every_error_is_collected_in_one_exception(tmp_path):
    path = write(tmp_path, "many.conf", "a1 = 1\nThreadPool IO {\n  Concurrency = x\n}\nb2 = 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert [i.line for i in info.value.errors] == [1, 3, 5]
    assert str(info.value).splitlines() == [
        f"{path}:1: unknown option 'a1'",
        f"{path}:3: bad value for option 'Concurrency': expected an integer, got \"x\"",
        f"{path}:5: unknown option 'b2'"]
    assert [i.option for i in info.value.errors] == ["a1", "Concurrency", "b2"]


def test_allow_unbuilt_only_skips_built_checks(tmp_path):
    path = write(tmp_path, "u.conf", "Adaptive_Enabled = true\nnot_an_option = 1\n")
    errs = errors_of(path, allow_unbuilt=True)
    assert where(errs) == [("u.conf", 2)]


def test_missing_main_file(tmp_path):
    errs = errors_of(str(tmp_path / "nope.conf"))
    assert errs[0].line == 0 and "not found" in errs[0].message


def test_non_utf8_file_names_line(tmp_path):
    path = str(tmp_path / "bin.conf")
    with open(path, "wb") as fh:
        fh.write(b"pidfile = x\n\npidfile = \xff\xfe\n")
    errs = errors_of(path)
    assert (errs[0].line, errs[0].message) == (3, "file is not valid UTF-8 text")


# -- case, names, merging, typed values -----------------------------------------------------

def test_keywords_and_options_are_case_insensitive_and_canonical(tmp_path):
    cfg = load_config(write(tmp_path, "c.conf", 'THREADPOOL "io" {\n  CONCURRENCY = 10\n}\nPIDFILE = p\n'))
    io = cfg.root.child("threadpool", "IO")
    assert io.kind == "ThreadPool" and io.get("concurrency").option == "Concurrency"
    assert io.get("Concurrency").value == 10
    assert cfg.get((), "Pidfile").option == "Pidfile"


def test_binding_names_are_case_sensitive_domains_are_not(tmp_path):
    text = 'Binding "Alpha" {\n}\nBinding "alpha" {\n}\nDomain "Example.COM" {\n}\ndomain "example.com" {\n}\n'
    cfg = load_config(write(tmp_path, "n.conf", text))
    assert len(cfg.scopes("binding")) == 2
    assert len(cfg.scopes("domain")) == 1
    assert cfg.root.child("binding", "Alpha") is not cfg.root.child("binding", "alpha")
    assert cfg.root.child("binding", "ALPHA") is None


def test_repeated_binding_group_stanzas_merge(tmp_path):
    text = ('binding_group "g" {\n  binding "a" {\n  }\n}\n'
            'binding_group "g" {\n  binding "b" {\n  }\n  binding "a" {\n    domain "d" {\n    }\n  }\n}\n')
    cfg = load_config(write(tmp_path, "g.conf", text))
    (g,) = cfg.scopes("binding_group")
    assert [b.name for b in g.children] == ["a", "b"]
    assert g.child("binding", "a").child("domain", "d") is not None
    assert [ln for _, ln in g.locations] == [1, 5]


def test_later_setting_wins_within_a_scope(tmp_path):
    cfg = load_config(write(tmp_path, "w.conf", "pidfile = a\nThreadPool IO { concurrency = 1 }\n"
                                                "pidfile = b\nThreadPool io { concurrency = 2 }\n"))
    assert cfg.get((), "pidfile").value == "b" and cfg.get((), "pidfile").line == 3
    assert cfg.get("threadpool IO", "concurrency").value == 2


def test_implicit_settings_are_present_and_overridable(tmp_path):
    cfg = load_config(write(tmp_path, "i.conf", 'ThreadPool "IO" {\n  Concurrency = 10\n}\n'))
    pools = {s.name: s for s in cfg.scopes("threadpool")}
    assert set(pools) == {"SwapOut", "SwapIn", "Unlink", "Batch_Unlink", "Close", "CPU", "IO", "SpoolIn"}
    assert pools["IO"].get("concurrency").value == 10 and not pools["IO"].implicit
    assert pools["Unlink"].get("backlog").value == 100 and pools["Unlink"].implicit
    assert cfg.get("debug_flags", "critical").value[0] == "TIME"
    assert cfg.get((), "timestampformat").value == "[%a %d %b %Y %H:%M:%S] "


def _mini_registry():
    return Registry(
        options=[OptionSpec("Flag", "bool", False, frozenset({"global"}), built=True),
                 OptionSpec("Count", "int", 1, frozenset({"global", "box"}), built=True),
                 OptionSpec("Mode", "octal", 0o600, frozenset({"global"}), built=True),
                 OptionSpec("Colour", "enum", "red", frozenset({"global"}), choices=("Red", "Green"), built=True),
                 OptionSpec("Retries", "enum", "auto", frozenset({"global"}), choices=("auto",), built=True),
                 OptionSpec("Rate", "rate", None, frozenset({"global"}), built=True),
                 OptionSpec("Wait", "interval", 60, frozenset({"global"}), built=True),
                 OptionSpec("Size", "size", 0, frozenset({"global"}), built=True),
                 OptionSpec("Names", "list", (), frozenset({"global"}), built=True),
                 OptionSpec("Map", "dict", None, frozenset({"global"}), built=True),
                 OptionSpec("Text", "string", None, frozenset({"global"}), built=True)],
        scopes=[ScopeSpec("Box", True, frozenset({"global"}), built=True)],
        modules=[ModuleSpec("widget", built=True,
                            options={"knob": OptionSpec("Knob", "int", 3, frozenset({"widget"}), built=True)})])


def test_value_types_with_an_injected_registry():
    reg = _mini_registry()
    reg.ENUM_ACCEPTS_INT = frozenset({"retries"})
    text = ('Flag = enabled\nCount = "42"\nMode = 0644\nColour = GREEN\nRetries = 7\nRate = "60/3"\n'
            'Wait = "4 hours"\nSize = 1048576\nNames = ( a, "b c" d )\nMap = [ k = v 99 = "x" ]\n'
            "Text = bare\nBox b { Count = -1 }\nwidget { knob = 9 enabled = false debug_level = info }\n")
    cfg = load_config_text(text, registry=reg, implicit=False)
    got = {k: v.value for k, v in cfg.root.options.items()}
    assert got == {"flag": True, "count": 42, "mode": 0o644, "colour": "Green", "retries": 7,
                   "rate": Rate(60, 3), "wait": 14400, "size": 1048576, "names": ("a", "b c", "d"),
                   "map": {"k": "v", "99": "x"}, "text": "bare"}
    assert cfg.root.options["flag"].raw == "enabled"
    assert cfg.get("box b", "count").value == -1
    widget = cfg.find("widget")
    assert widget.name == "widget"
    assert (widget.get("knob").value, widget.get("enabled").value, widget.get("debug_level").value) == (9, False, "INFO")


@pytest.mark.parametrize("line,needle", [
    ("Flag = perhaps", "expected a boolean"),
    ("Count = 1.5", "expected an integer"),
    ("Mode = rwx", "expected an octal number"),
    ("Colour = blue", "expected one of Red, Green"),
    ('Rate = "60/0"', "at least one second"),
    ('Rate = "fast"', 'expected a rate "N" or "N/S"'),
    ('Wait = "4 fortnights"', "expected seconds"),
    ("Map = ( a b )", "expected a dictionary"),
    ("Text = ( a )", "expected a string, got a list"),
    ("Names = [ a = b ]", "expected a list"),
    ("Count = " + "9" * 5000, "number out of range"),
])
def test_bad_values_with_an_injected_registry(line, needle):
    with pytest.raises(ConfigError) as info:
        load_config_text("\n" + line + "\n", "t.conf", registry=_mini_registry(), implicit=False)
    (issue,) = info.value.errors
    assert (issue.file, issue.line) == ("t.conf", 2) and needle in issue.message
