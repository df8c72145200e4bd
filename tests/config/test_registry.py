"""The registry data against the reference pages it was built from.

Table 66.1 (config.options.summary), Table 65.1 (modules.summary.all.modules) and the chapter 71
TOC (modules.md) are parsed here independently of the data files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

# registry first: it loads the data modules itself (importing a data module first is circular)
from ecmta.config import registry  # isort: skip
from ecmta.config import modules_data, options_data, scopes_data  # isort: skip
from ecmta.config.registry import TYPES

DOCS = Path("/work/shared/momentum-docs")
needs_docs = pytest.mark.skipif(not DOCS.is_dir(), reason="momentum-docs not available")

_ROW = re.compile(r'^(?:\[(?P<ln>[^\]]+)\]\((?P<link>[^ )]+)(?: "[^"]*")?\)|\*\*(?P<bn>[^*]+)\*\*)'
                  r'\s*(?P<scope>\*\(scope\)\*)?\s*–\s*(?P<desc>.*)$')


def summary_rows():
    """Rows of Table 66.1 as dicts (a row may span several physical lines)."""
    lines = (DOCS / "config.options.summary.md").read_text().split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("| Option/Description |"))
    rows, buf = [], ""
    for line in lines[start + 2:]:
        if not buf and not line.startswith("| "):
            if rows:
                break
            continue
        buf = f"{buf} {line}" if buf else line
        cells = [c.strip() for c in buf.strip().strip("|").split(" | ")]
        if len(cells) >= 5 and buf.rstrip().endswith("|"):
            m = _ROW.match(cells[0])
            assert m, cells[0]
            rows.append({
                "name": (m.group("ln") or m.group("bn")).lower(),
                "link": m.group("link") or "",
                "scope": bool(m.group("scope")),
                "desc": m.group("desc"),
                "default": " ".join(cells[2].split()),
                "scopes": {s.strip() for s in cells[4].split(",")},
            })
            buf = ""
    return rows


def real_name(row):
    for (printed, fragment), actual in options_data.SUMMARY_ROW_RENAMES.items():
        if row["name"] == printed and (fragment in row["desc"] or fragment in row["link"]):
            return actual
    return row["name"]


def typechecks(spec, value):
    t = spec.type
    if t == "bool":
        return isinstance(value, bool)
    if t in ("int", "interval", "size", "octal"):
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "string":
        return isinstance(value, str)
    if t == "enum":
        return value in spec.choices
    if t == "list":
        return isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    if t == "rate":
        return (isinstance(value, tuple) and len(value) == 2
                and all(isinstance(v, int) for v in value))
    return False   # dict and scope options carry no default


# ---------------------------------------------------------------- Table 66.1 coverage

@needs_docs
def test_every_summary_row_present_once():
    rows = summary_rows()
    assert len(rows) >= 355
    for row in rows:
        name = real_name(row)
        if row["scope"] and name not in options_data.NOT_REALLY_SCOPES:
            assert row["scopes"] <= registry.scope(name).parents, name
        if row["scope"] and name == "pathway":
            # `pathway` is both a scope (global, pathway_group) and a listener option.
            continue
        spec = registry.option(name)
        assert spec is not None, f"Table 66.1 row {row['name']!r} missing"
        assert row["scopes"] <= spec.scopes, (name, row["scopes"] - spec.scopes)
        if row["scope"] and name not in options_data.NOT_REALLY_SCOPES:
            assert spec.type == "scope", name
            assert registry.scope(name) is not None, f"scope {name} missing from SCOPES"
        if "(*non-dynamic*)" in row["default"] and name not in DYNAMIC_PER_PAGE:
            assert spec.dynamic is False, name


@needs_docs
def test_no_option_without_a_source():
    names = {real_name(row) for row in summary_rows()}
    lowered = [spec.name.lower() for spec in options_data.OPTIONS]
    assert len(lowered) == len(set(lowered)), "duplicate option names"
    extra = set(lowered) - names
    assert extra <= options_data.NOT_IN_SUMMARY, extra


def test_threadpool_debug_flags_and_timestampformat_present():
    for name in ("Concurrency", "Backlog", "Stack_Size"):
        assert "threadpool" in registry.option(name).scopes
    for level in ("DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL"):
        spec = registry.option(level)
        assert spec.name == level and spec.type == "list" and spec.scopes == {"debug_flags"}
    assert registry.option("timestampformat").name == "TimestampFormat"


# Link targets of Table 66.1 / scope docs that are not in the momentum-docs corpus.
MISSING_PAGES = {"cluster.listeners", "conf.ref.eccluster.conf", "cluster.config.logging.complex",
                 "cluster.config.duravip", "conf.ref.ecelerity_cluster.conf"}


@needs_docs
def test_doc_stems_resolve():
    specs = list(options_data.OPTIONS) + list(scopes_data.SCOPES) + list(modules_data.MODULES)
    for spec in specs:
        if spec.doc.startswith("https://") or spec.doc in MISSING_PAGES:
            continue
        assert (DOCS / f"{spec.doc}.md").is_file(), (spec.name, spec.doc)


# ---------------------------------------------------------------- types and defaults

def test_types_choices_and_defaults():
    for spec in options_data.OPTIONS:
        assert spec.type in TYPES, spec.name
        if spec.type == "enum":
            assert spec.choices, spec.name
            assert spec.default is None or spec.default in spec.choices, spec.name
            lowered = [c.lower() for c in spec.choices]
            assert len(lowered) == len(set(lowered)), spec.name
        else:
            assert not spec.choices, spec.name
        if spec.default is not None:
            assert typechecks(spec, spec.default), (spec.name, spec.type, spec.default)
        assert isinstance(spec.scopes, frozenset) and spec.scopes, spec.name
        assert all(s == s.lower() for s in spec.scopes), spec.name
        assert spec.doc, spec.name
    for name in options_data.ENUM_ACCEPTS_INT:
        assert registry.option(name).type == "enum"


def test_scope_defaults_refer_to_valid_scopes():
    for (name, kind), value in options_data.SCOPE_DEFAULTS.items():
        spec = registry.option(name)
        assert kind in spec.scopes, (name, kind)
        assert value is None or typechecks(spec, value), (name, kind, value)


# ---------------------------------------------------------------- scopes

def _known_kinds():
    return set(registry.SCOPES) | set(registry.MODULES) | {"global"}


def test_every_option_scope_exists():
    kinds = _known_kinds()
    for spec in options_data.OPTIONS:
        assert spec.scopes <= kinds, (spec.name, spec.scopes - kinds)


def test_scope_specs():
    kinds = _known_kinds()
    lowered = [s.name.lower() for s in scopes_data.SCOPES]
    assert len(lowered) == len(set(lowered))
    for spec in scopes_data.SCOPES:
        assert spec.named in (True, False, None), spec.name
        assert spec.parents and spec.parents <= kinds, (spec.name, spec.parents - kinds)
        assert spec.module is None or registry.module(spec.module) is not None, spec.name
    assert registry.scope("domain").parents == {"global", "binding", "binding_group"}
    assert registry.scope("binding").parents == {"global", "binding_group"}
    assert registry.scope("host").parents == {"global", "binding", "binding_group"}
    assert registry.scope("listen").named is True
    assert registry.scope("peer").named is True and "listen" in registry.scope("peer").parents
    for anon in ("esmtp_listener", "control_listener", "debug_flags", "security", "snmp"):
        assert registry.scope(anon).named is False, anon
        assert registry.scope(anon).parents == {"global"}, anon
    assert registry.scope("role").parents == {"authorization"}


def test_scope_options_have_scope_specs():
    for spec in options_data.OPTIONS:
        if spec.type == "scope":
            assert registry.scope(spec.name).name == spec.name, spec.name


# ---------------------------------------------------------------- modules

@needs_docs
def test_chapter_71_entries_all_represented():
    toc = re.findall(r"^\* \[71\.(\d+)\\\. ([^\]]+)\]\(([^)#]+)", (DOCS / "modules.md").read_text(),
                     re.M)
    assert len(toc) == 73
    docs = {m.doc for m in modules_data.MODULES}
    for _num, title, stem in toc:
        assert stem in docs or stem in modules_data.CHAPTER_NON_MODULES, (stem, title)
    assert docs <= {stem for _n, _t, stem in toc}
    spf = {m.name for m in modules_data.MODULES if m.doc == "modules.spf"}
    assert spf == {"spf_macros", "spf_v1", "senderid"}


@needs_docs
def test_singletons_agree_with_table_65_1():
    text = (DOCS / "modules.summary.all.modules.md").read_text()
    marked = {}
    for line in text.split("\n"):
        m = re.match(r"^\| \[(?:Section\s71\.\d+, “)?([A-Za-z_0-9.-]+)", line)
        if m:
            marked[m.group(1).lower()] = "(*singleton*)" in line.split(" | ")[0]
    aliases = {"static_routes": "static-routes"}
    checked = 0
    for spec in modules_data.MODULES:
        key = aliases.get(spec.name, spec.name)
        if key in marked:
            assert spec.singleton == marked[key], spec.name
            checked += 1
    assert checked >= 60


OPTIONLESS_MODULES = {"ipv6_lookup", "tls_macros", "delay_dsn"}     # stanzas without options
UNBUILDABLE_MODULE_OPTIONS = {"enable_system_updates"}    # Live Bounce Updates
# inbound_audit is built only for msys.audit_series' directories; `monitors` configures a
# console command (`inbound_audit show ip`) that is not built yet (config/modules_data.py).
PARTLY_BUILT_MODULE_OPTIONS = {("inbound_audit", "monitors")}


def test_module_specs():
    lowered = [m.name.lower() for m in modules_data.MODULES]
    assert len(lowered) == len(set(lowered))
    for spec in modules_data.MODULES:
        assert spec.title and spec.doc and spec.api and spec.description, spec.name
        assert spec.built == (spec.name.lower() in modules_data.BUILT), spec.name
        # A built module declares its options; the others have none declared yet.
        assert bool(spec.options) == spec.built or spec.name.lower() in OPTIONLESS_MODULES, spec.name
        for opt in spec.options.values():
            assert opt.module == spec.name.lower(), (spec.name, opt.name)
            # Only options of services that cannot exist here stay unbuilt in a built module.
            assert (opt.built or opt.name.lower() in UNBUILDABLE_MODULE_OPTIONS
                    or (spec.name.lower(), opt.name.lower()) in PARTLY_BUILT_MODULE_OPTIONS), (spec.name, opt.name)
        assert spec.api != "Singleton" or spec.singleton, spec.name
    for name in ("ec_logger", "bounce_logger", "scriptlet", "custom_logger", "jlog",
                 "static_routes", "maildir", "pipe_transport", "delay_dsn", "opendkim",
                 "alerting", "ds_core", "gzipio", "dk_sign", "msgc_server"):
        assert registry.module(name) is not None, name
    assert registry.module("ec_logger").api == "Logger"
    assert registry.module("ds_core").singleton and registry.module("ds_core").api == "Singleton"


# ---------------------------------------------------------------- names

def test_canonical_names_round_trip():
    for table, lookup in ((registry.OPTIONS, registry.option), (registry.SCOPES, registry.scope),
                          (registry.MODULES, registry.module)):
        for spec in table.values():
            for variant in (spec.name, spec.name.lower(), spec.name.upper(), spec.name.swapcase()):
                assert lookup(variant) is spec
    expected = ["Max_Outbound_Connections", "SMTP_Extensions", "TLS_Certificate", "EHLO_Hostname",
                "Suspend_Delivery", "Message_Expiration", "Idle_Time", "Relay_Hosts",
                "Enable_FBL_Header_Insertion", "Exclude_VCTX_Conn", "Remote_SMTP_Port",
                "TLS_Client_CA", "Min_DNS_TTL", "ECStream_Idle_Time", "Use_SSL",
                "AuthLoginParameters", "SysContact", "Transform_8BitMime_Content", "XCLIENT",
                "Allow_IP_Literal", "MX_Failures_To_Delay", "Delay_DSN_Retry_Interval",
                "GCM_Application_ID", "Max_DNS_TTL", "TLS_Verify_Mode", "DuraVIP_Follow"]
    for name in expected:
        assert registry.option(name).name == name
    for name in ("ThreadPool", "ESMTP_Listener", "ECStream_Listener", "Debug_Flags", "Binding_Group"):
        assert registry.scope(name).name == name


# ---------------------------------------------------------------- built flags

# The table marks these non-dynamic; their own pages say they change at run time
# (conf.ref.threadpool: "The stack size can be changed at runtime ... newly spawned threads").
DYNAMIC_PER_PAGE = {"stack_size"}


def test_built_flags_in_one_place():
    built = {spec.name.lower() for spec in options_data.OPTIONS if spec.built}
    assert built == set(options_data.BUILT)
    assert {"concurrency", "backlog", "stack_size", "pidfile", "debug_flags", "timestampformat",
            "local_changes_file", "local_changes_only", "file_mode", "enable", "timeout",
            "listen_backlog"} <= built
    for name in options_data.BUILT_SCOPES:
        assert name in options_data.BUILT
    built_scopes = {s.name.lower() for s in scopes_data.SCOPES if s.built}
    assert {"threadpool", "control_listener", "listen", "debug_flags", "domain",
            "binding", "binding_group", "host"} <= built_scopes
    for spec in scopes_data.SCOPES:
        assert spec.built == (spec.name.lower() in scopes_data.BUILT), spec.name


# ---------------------------------------------------------------- spot checks against pages

def test_spot_checks():
    o = registry.option
    assert o("retry_interval").default == 1200 and o("retry_interval").type == "interval"
    assert o("max_retry_interval").default == 43200
    assert o("message_expiration").default == 86400
    assert o("smtp_extensions").type == "list"
    assert o("relay_domains").type == "list" and o("prohibited_hosts").type == "list"
    assert o("routes").type == "list" and o("routes").scopes == {"domain", "global"}
    assert o("context").type == "dict"
    assert o("outbound_throttle_messages").type == "rate"
    assert o("inbound_throttle_messages").type == "rate"
    assert o("blackhole").type == "enum"
    assert o("blackhole").choices == ("false", "true", "inline", "internal")
    assert o("blackhole").default == "false"
    assert o("tls").choices == ("no", "ifavailable", "required") and o("tls").default == "no"
    assert o("tls_verify").choices == ("no", "ca", "host", "optional")
    assert o("bind_address").dynamic is False
    assert o("spoolbase").dynamic is False and o("spoolbase").default == "/var/spool/ecelerity"
    assert o("spool_mode").type == "octal" and o("spool_mode").default == 0o640
    assert o("file_mode").default == 0o660
    assert o("suspend_delivery").type == "bool" and o("suspend_delivery").default is False
    assert o("max_outbound_connections").default == 32
    assert "host" in o("max_outbound_connections").scopes
    assert o("max_retries").default == "auto"
    assert o("delivery_method").default == "ESMTP"
    assert o("server_max_outbound_connections").default == 20000
    assert o("listen_backlog").default == 500
    assert o("backlog").dynamic is False and o("concurrency").default == 0
    assert o("pidfile").default == "/var/run/ecelerity.pid" and o("pidfile").dynamic is False
    assert o("adaptive_default_suspension").default == 4 * 3600
    assert o("adaptive_default_suspension").module == "adaptive"
    assert o("retry_interval").module is None
    assert o("arp_all_hosts").module == "cluster"
    assert o("critical").default[-1] == "ALL" and o("debug").default == ()
    assert o("timestampformat").default.startswith("[%a %d %b %Y %H:%M:%S]")
    assert o("state").scopes == {"snmp", "snmp_traps"}
    assert o("watch_interval").default == 10 and o("trap_interval").default == 60
    assert o("adaptive_alert_email_sender") is not None
    assert o("pathway").type == "string" and registry.scope("pathway").parents == {
        "global", "pathway_group"}
    assert o("binding").type == "scope" and o("binding_auto_replumb").type == "bool"
