"""Fallback (ecelerity.conf.fallback, conf.ref.domain/host/pathway, listeners): which
setting applies for a message or a connection, and get versus eval."""

import pytest

from ecmta.config import ConfigError, EvalContext, load_config_text

E = EvalContext


def cfg_of(text):
    return load_config_text(text, "f.conf", allow_unbuilt=True)


def val(cfg, option, ctx=None):
    v = cfg.eval(option, ctx)
    return None if v is None else v.value


EXAMPLE_15_1 = """
max_outbound_connections = 40

domain "example.com" {
  max_outbound_connections = 20
}

domain "someotherexample.com" {
  max_resident_active_queue = 500
}
"""

# Example 15.2 with the page's option-name typo corrected (max_resident_active_queue).
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
    max_resident_active_queue = 500
  }
}

binding "example3" {

  domain "example.com" {
    max_resident_active_queue = 500
  }

  domain "anotherexample.com" {
    message_expiration = 86400
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


def test_example_15_1_domain_scope():
    cfg = cfg_of(EXAMPLE_15_1)
    assert val(cfg, "max_outbound_connections", E(domain="example.com")) == 20
    assert val(cfg, "max_outbound_connections", E(domain="someotherexample.com")) == 40
    assert val(cfg, "max_outbound_connections", E(domain="elsewhere.org")) == 40


@pytest.mark.parametrize("binding,domain,expected", [
    (None, "x.org", 86400),                        # global
    (None, "example.com", 120),                    # global domain
    ("example", "example.com", 3600),              # binding beats global domain
    ("example", "x.org", 3600),
    ("example2", "example.com", 86400),            # binding::domain
    ("example2", "anotherexample.com", 7200),      # binding
    ("example2", "x.org", 7200),
    ("example3", "anotherexample.com", 86400),     # binding::domain
    ("example3", "example.com", 120),              # binding unset -> global domain
    ("example3", "x.org", 86400),                  # -> global
])
def test_example_15_2_binding_scope(binding, domain, expected):
    cfg = cfg_of(EXAMPLE_15_2)
    assert val(cfg, "message_expiration", E(binding=binding, domain=domain)) == expected


def test_example_15_3_binding_group_and_console_path():
    cfg = cfg_of(EXAMPLE_15_3)
    assert val(cfg, "max_outbound_connections", E(binding="example", domain="example.com")) == 15
    assert val(cfg, "max_outbound_connections",
               "binding_group group1 binding example domain example.com") == 15
    # "If you remove max_outbound_connections from the binding example ... becomes 5"
    cfg2 = cfg_of(EXAMPLE_15_3.replace("    max_outbound_connections = 15\n", ""))
    assert val(cfg2, "max_outbound_connections", E(binding="example", domain="example.com")) == 5
    assert val(cfg2, "max_outbound_connections", E(binding_group="group1", binding="example",
                                                   domain="example.com")) == 5
    assert val(cfg2, "max_outbound_connections", E(domain="example.com")) == 30


LEVELS = """
message_expiration = 1
domain "d.com" { message_expiration = 2 }
binding_group "g" {
  message_expiration = 3
  domain "d.com" { message_expiration = 5 }
  binding "b" {
    message_expiration = 4
    domain "d.com" { message_expiration = 6 }
  }
}
"""


def test_sending_precedence_removing_one_level_at_a_time():
    # binding_group::binding::domain > binding_group::domain > binding > binding_group
    # > global domain > global > default
    text = LEVELS
    ctx = E(binding="b", domain="d.com")
    for expected, remove in [(6, "    domain \"d.com\" { message_expiration = 6 }\n"),
                             (5, "  domain \"d.com\" { message_expiration = 5 }\n"),
                             (4, "    message_expiration = 4\n"),
                             (3, "  message_expiration = 3\n"),
                             (2, "domain \"d.com\" { message_expiration = 2 }\n"),
                             (1, "message_expiration = 1\n"),
                             (86400, None)]:
        cfg = cfg_of(text)
        assert val(cfg, "message_expiration", ctx) == expected, text
        if remove:
            assert remove in text
            text = text.replace(remove, "", 1)


def test_default_when_nothing_is_set_and_defining_scope():
    cfg = cfg_of("")
    r = cfg.resolve("message_expiration", E(binding="b", domain="d"))
    assert r.value.value == 86400 and r.value.file is None and r.scope is None
    assert cfg.eval("outbound_throttle_messages", E(domain="d")) is None   # no default


def test_regex_domains_exact_first_then_declaration_order():
    cfg = cfg_of("""
    domain "example.com" {
      max_outbound_connections = 20
    }
    domain "/(?:^|[.])example[.](?:com|co[.]uk)$/" {
      max_outbound_connections = 15
      max_deliveries_per_connection = 5
    }
    domain "/co[.]uk$/" {
      max_outbound_connections = 7
      max_deliveries_per_connection = 9
    }
    """)
    # conf.ref.domain: example.com -> 20 (exact) and 5 (from the regex stanza)
    assert val(cfg, "max_outbound_connections", E(domain="example.com")) == 20
    assert val(cfg, "max_deliveries_per_connection", E(domain="example.com")) == 5
    assert val(cfg, "max_outbound_connections", E(domain="example.co.uk")) == 15
    assert val(cfg, "max_outbound_connections", E(domain="mail.EXAMPLE.com")) == 15
    assert val(cfg, "max_outbound_connections", E(domain="other.co.uk")) == 7
    assert val(cfg, "max_outbound_connections", E(domain="badexample.com")) == 32   # anchored: no match


def test_regex_domain_throttle_is_shared_by_reference():
    cfg = cfg_of("""
    outbound_throttle_messages = "100"
    binding "b" {
      outbound_throttle_messages = "60/3"
      domain "/[.]example[.]com$/" { outbound_throttle_messages = "5/1" }
      domain "own.org" { outbound_throttle_messages = "1/10" }
    }
    """)
    s1 = cfg.defining_scope("outbound_throttle_messages", E(binding="b", domain="a.example.com"))
    s2 = cfg.defining_scope("outbound_throttle_messages", E(binding="b", domain="b.example.com"))
    assert s1 is s2 and s1.name == "/[.]example[.]com$/"
    s3 = cfg.defining_scope("outbound_throttle_messages", E(binding="b", domain="x.net"))
    s4 = cfg.defining_scope("outbound_throttle_messages", E(binding="b", domain="y.net"))
    assert s3 is s4 and s3.kind == "Binding"
    assert cfg.defining_scope("outbound_throttle_messages", E(binding="b", domain="own.org")).name == "own.org"
    glob = cfg.defining_scope("outbound_throttle_messages", E(binding="other", domain="x.net"))
    assert glob is cfg.root
    assert val(cfg, "outbound_throttle_messages", E(binding="b", domain="x.net")) == (60, 3)


def test_host_scope_does_not_fall_back():
    cfg = cfg_of("""
    max_outbound_connections = 30
    host "mx1.example.com" {
      max_outbound_connections = 3
    }
    host "mx2.example.com" {
    }
    host "/^mx[0-9]+[.]regex[.]net$/" {
      max_outbound_connections = 4
    }
    binding "b" {
      host "mx1.example.com" {
        max_outbound_connections = 1
      }
    }
    """)
    moc = "max_outbound_connections"
    assert val(cfg, moc, E(host="mx1.example.com")) == 3
    assert val(cfg, moc, E(host="mx2.example.com")) == -1          # declared, not set: -1
    assert cfg.defining_scope(moc, E(host="mx2.example.com")).name == "mx2.example.com"
    assert val(cfg, moc, E(host="mx7.example.com")) == -1          # no Host stanza: no per-host limit
    assert val(cfg, moc, E(host="mx12.regex.net")) == 4
    assert val(cfg, moc, E(binding="b", host="mx1.example.com")) == 1   # binding::host first
    assert val(cfg, moc, "host mx2.example.com") == -1
    assert val(cfg, moc, E(domain="example.com")) == 30             # no host: the normal chain
    assert val(cfg, "cluster_max_outbound_connections", E(host="mx1.example.com")) == -1


def test_listener_peer_and_listen_precedence():
    cfg = cfg_of("""
    relay_hosts = ( "global" )
    ESMTP_Listener {
      relay_hosts = ( "listener" )
      Peer "10.0.0.0/16" {
        relay_hosts = ( "peer16" )
      }
      Peer "10.0.0.0/8" {
        relay_hosts = ( "peer8" )
      }
      Listen ":25" {
        Peer "10.0.0.1" {
          SMTP_Extensions = ( "ENHANCEDSTATUSCODES" "AUTH LOGIN" )
          relay_hosts = ( "listen-peer" )
        }
        Peer "10.0.0.0/24" {
          relay_hosts = ( "listen-peer24" )
        }
      }
      Listen ":587" {
        relay_hosts = ( "listen587" )
      }
    }
    """)

    def rh(listen, peer):
        return val(cfg, "relay_hosts", E(listener="ESMTP_Listener", listen=listen, peer=peer))[0]

    assert rh(":25", "10.0.0.1") == "listen-peer"          # Listen::Peer, most specific
    assert rh(":25", "10.0.0.9") == "listen-peer24"
    assert rh(":25", "10.0.9.9") == "peer16"               # listener-level Peer, most specific CIDR
    assert rh(":25", "10.9.9.9") == "peer8"
    assert rh(":25", "192.168.1.1") == "listener"
    assert rh(":587", "10.0.0.1") == "listen587"           # Listen beats listener-level Peer
    assert val(cfg, "relay_hosts")[0] == "global"
    ext = val(cfg, "smtp_extensions", E(listener="esmtp_listener", listen=":25", peer="10.0.0.1"))
    assert ext == ("ENHANCEDSTATUSCODES", "AUTH LOGIN")
    # The listener is found from the Listen alone, too.
    assert val(cfg, "relay_hosts", E(listen=":587"))[0] == "listen587"


def test_listen_inherits_from_its_listener_via_console_path():
    cfg = cfg_of("""
    Control_Listener {
      Enable_Authentication = true
      Listen "127.0.0.1:2025" { }
      Listen "/tmp/2025" { Enable_Authentication = false }
    }
    """)
    assert val(cfg, "enable_authentication", "Control_Listener Listen 127.0.0.1:2025") is True
    assert val(cfg, "enable_authentication", "Control_Listener Listen /tmp/2025") is False
    assert cfg.get("Control_Listener Listen 127.0.0.1:2025", "enable_authentication") is None


PATHWAYS = """
allow_null_envelope_sender = true
pathway "p1" {
  allow_null_envelope_sender = false
  idle_time = 100
}
pathway "p2" {
  idle_time = 200
}
pathway_group "g" {
  idle_time = 300
  allow_ip_literal = false
  pathway "p2" {
    idle_time = 400
  }
  pathway "p3" {
  }
}
ESMTP_Listener {
  pathway = "p1"
  Listen ":25" {
  }
  Listen ":26" {
    pathway = "p2"
    Peer "10.0.0.0/8" {
      pathway = "p3"
      idle_time = 5
    }
  }
}
"""


def test_pathway_precedence_and_selection():
    cfg = cfg_of(PATHWAYS)
    L = "ESMTP_Listener"
    # pathway from the listener
    assert val(cfg, "allow_null_envelope_sender", E(listener=L, listen=":25", peer="1.2.3.4")) is False
    assert val(cfg, "idle_time", E(listener=L, listen=":25")) == 100
    # pathway from the Listen: pathway_group::pathway beats pathway
    assert val(cfg, "idle_time", E(listener=L, listen=":26", peer="1.2.3.4")) == 400
    # pathway from the Peer; p3 has nothing: pathway_group
    assert val(cfg, "allow_ip_literal", E(listener=L, listen=":26", peer="10.1.1.1")) is False
    assert val(cfg, "idle_time", E(listener=L, listen=":26", peer="10.1.1.1")) == 5   # Peer itself
    # falls through the pathways to global
    assert val(cfg, "allow_null_envelope_sender", E(listener=L, listen=":26")) is True
    # explicit pathway in the context (a message ctx variable)
    assert val(cfg, "idle_time", E(pathway="p2")) == 400
    assert val(cfg, "idle_time", E(pathway="p2", pathway_group="nonexistent")) == 200
    assert val(cfg, "idle_time", "pathway_group g pathway p2") == 400
    assert val(cfg, "idle_time", "pathway p1") == 100
    assert val(cfg, "idle_time", "ESMTP_Listener Listen :26") == 400


def test_get_only_looks_in_the_scope_eval_falls_back():
    cfg = cfg_of("Message_Expiration = 86400\nDomain earthlink.net {\n  Message_Expiration = 900\n}\n"
                 "Binding smtp-01 {\n  EHLO_Hostname = \"smtp-01.com\"\n  Domain relay.com {\n  }\n}\n")
    assert cfg.get((), "blackhole") is None
    assert cfg.eval("blackhole").raw == "0"
    assert cfg.get("binding smtp-01 domain relay.com", "ehlo_hostname") is None
    assert cfg.eval("ehlo_hostname", "binding smtp-01 domain relay.com").value == "smtp-01.com"
    assert cfg.get("domain earthlink.net", "message_expiration").value == 900
    assert cfg.get((("Domain", "earthlink.net"),), "message_expiration").line == 3
    assert cfg.get("domain nowhere.net", "message_expiration") is None


def test_per_kind_default():
    cfg = cfg_of("HTTP_Listener {\n}\nESMTP_Listener {\n}\n")
    assert val(cfg, "tcp_recv_buffer_size", "http_listener") == 32768
    assert val(cfg, "tcp_recv_buffer_size", "esmtp_listener") == 4096


def test_unknown_option_in_eval_is_an_error():
    cfg = cfg_of("")
    with pytest.raises(ConfigError, match="unknown option 'no_such_thing'"):
        cfg.eval("no_such_thing", E(domain="x"))
