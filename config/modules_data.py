"""Module declarations: one ModuleSpec per stanza name of chapter 71 (Modules Reference).

Chapter 71 has 73 entries: 71.1 Introduction plus 72 module pages. Some pages document several
stanza names (compress_spool: gzipio, bzip2io; domainkeys: dk_sign, dk_validate; msgc:
msgc_server, msgc_client; reception_timing: reception_timing_logger; spf: spf_macros, spf_v1,
senderid; opendkim: dkim_sign, dkim_validate as listed in Table 65.1), so every stanza name a
config can use gets its own entry; `doc` ties each back to its chapter 71 page.

singleton: from Table 65.1 (modules.summary.all.modules) "(singleton)" marks; modules absent
from that table are decided from their page's example stanza. Non-singleton modules may still be
written without an instance name in the docs (`mxip`, `static_routes`, `tls_macros {}`,
`dnsbuf {}`): the instance name is then the module name.
api: the `module list` "API:" wording: Singleton for singletons (ds_core), Logger for loggers
(ec_logger, bounce_logger); Validation for Table 65.1 "Valid" modules; otherwise a descriptive
class (Transport, IO Wrapper, Auth, Generic).

Every module accepts the common options COMMON_MODULE_OPTIONS (module_config). Module-specific
options are declared in `options` as each module is built.
"""

from __future__ import annotations

from dataclasses import replace

from ecmta.config.registry import ModuleSpec, OptionSpec, ScopeSpec

# ----------------------------------------------------------------------------------------
# BUILT: the ONE place that says which modules ecmta implements (lowercased stanza names).
# ----------------------------------------------------------------------------------------
BUILT = frozenset({"scriptlet", "ec_logger", "maildir", "pipe_transport", "bounce_logger",
                   "custom_bounce_logger", "bounce_classifier_override",
                   "custom_logger", "tls_macros", "exim_logger", "postfix_logger",
                   "sendmail_logger", "syslog_io", "log_streams", "delay_dsn", "chunk_logger",
                   "as_logger", "inbound_audit"})

# Options every module stanza accepts (module_config): enabled (bool, default true; false =
# passive, only callable from Lua) and debug_level (DEBUG..CRITICAL, default ERROR).
COMMON_MODULE_OPTIONS = ("enabled", "debug_level")

# Chapter 71 entries that are not modules.
CHAPTER_NON_MODULES = {"modules": "71.1. Introduction"}


def _m(name, title, doc, api, description, singleton=False):
    return ModuleSpec(name=name, title=title, doc=doc, singleton=singleton, api=api,
                      description=description)


_SPECS = [
    _m("ac_auth", "ac_auth – Authentication Handler", "modules.ac_auth", "Auth",
       "Enable a Lua module to hook into the authentication mechanism"),
    _m("adaptive", "adaptive – Adaptive Delivery", "modules.adaptive", "Singleton",
       "Dynamically tune delivery options", singleton=True),
    _m("alerting", "alerting – Send Alerting Emails", "modules.alerting", "Singleton",
       "Enable Lua policy scripts and alerts", singleton=True),
    _m("alias", "alias – Alias Expansion", "modules.alias", "Validation",
       "Rewrite recipient addresses"),
    _m("antivirus", "antivirus – Antivirus", "modules.antivirus", "Validation",
       "The antivirus framework"),
    _m("as_logger", "as_logger – Audit Series Logger", "modules.as_logger", "Singleton",
       "Replicate audit series to disk", singleton=True),
    _m("auth_ds", "auth_ds – Datasource based SMTP Authentication", "modules.auth_ds", "Singleton",
       "Use a data source to authenticate an SMTP session", singleton=True),
    _m("auth_radius", "auth_radius – RADIUS based SMTP Authentication", "modules.auth_radius",
       "Singleton", "Authenticate SMTP sessions via SMTP AUTH using RADIUS servers", singleton=True),
    _m("beik", "beik – Symantec Brightmail™ Engine Integration Kit", "modules.beik", "Singleton",
       "This module provides an in-process version of the brightmail module", singleton=True),
    _m("bind_address_secondary", "bind_address_secondary – Dual-stack IPv4/IPv6 Support",
       "modules.bind_address_secondary", "Generic",
       "This module allows a binding to attach itself to an ipv6 address"),
    _m("bounce_classifier_override", "bounce_classifier_override – Override/Augment Bounce Classifications",
       "modules.bounce_classifier_override", "Singleton",
       "Override the built-in bounce classification", singleton=True),
    _m("bounce_logger", "bounce_logger – Momentum-Style Bounce Logging", "modules.bounce_logger",
       "Logger", "Log bounced messages"),
    _m("brightmail", "brightmail – Symantec Brightmail™ Content Scanning Support", "modules.brightmail",
       "Validation", "Check inbound mail against a Brightmail server"),
    _m("chunk_logger", "chunk_logger Module", "modules.chunk_logger", "Logger",
       "Provide an interface for logging asynchronously from Lua, C, and C++"),
    _m("cidrdb", "cidrdb – CIDRDB", "modules.cidrdb", "Singleton",
       "Expose scripting functions for checking IP addresses", singleton=True),
    _m("clamav", "clamav – ClamAV", "modules.clamav", "Validation", "Support for Clam AV"),
    _m("cloudmark", "cloudmark – Cloudmark Authority® Content Scanning", "modules.cloudmark", "Singleton",
       "Support for the Cloudmark spam technology", singleton=True),
    _m("cluster", "cluster – Cluster", "modules.cluster", "Singleton", "Cluster configuration module",
       singleton=True),
    _m("commtouch_ctasd", "commtouch_ctasd – Commtouch Spam Protection", "modules.commtouch",
       "Validation", "Spam protection technology"),
    _m("compress_spool", "compress_spool – Dynamic Spool Compression", "modules.compress_spool",
       "Singleton", "Compress large messages before writing them to disk", singleton=True),
    _m("gzipio", "compress_spool – Dynamic Spool Compression", "modules.compress_spool", "Singleton",
       "gzip compression algorithm", singleton=True),
    _m("bzip2io", "compress_spool – Dynamic Spool Compression", "modules.compress_spool", "Singleton",
       "bzip compression algorithm", singleton=True),
    _m("conntrol", "conntrol – Fine-Grained Connection Control", "modules.conntrol", "Validation",
       "Control how inbound connections are established"),
    _m("csapi", "csapi – Symantec CSAPI Antivirus Support", "modules.csapi", "Validation",
       "Integration for Symantec content scanners"),
    _m("custom_bounce_logger", "custom_bounce_logger – Custom Bounce Logging",
       "modules.custom_bounce_logger", "Logger",
       'Append a "User_String" to the end of each bounce record'),
    _m("custom_logger", "custom_logger – User-defined Logging", "modules.custom_logger", "Logger",
       "Create custom logs"),
    _m("delay_dsn", "delay_dsn – Delay DSN Generation", "modules.delay_dsn", "Generic",
       "Configure and send delay DSNs"),
    _m("dnsbuf", "dnsbuf – Dynamically Set the DNS UDP Buffer Size", "modules.dnsbuf", "Generic",
       "Manipulate DNS buffer sizes on demand"),
    _m("dk_sign", "domainkeys – Yahoo! DomainKeys", "modules.domainkeys", "Validation",
       "Attach domain keys signatures to outbound mail"),
    _m("dk_validate", "domainkeys – Yahoo! DomainKeys", "modules.domainkeys", "Validation",
       "Validate inbound mail checking domain keys signatures"),
    _m("ds_core", "ds_core - Datasource Query Core", "modules.ds_core", "Singleton",
       "Provide modular data access and caching for use by other modules", singleton=True),
    _m("ec_logger", "EC_logger – Momentum-Style Logging", "modules.ec_logger", "Logger",
       "Log the status of messages"),
    _m("eleven", "eleven – Eleven eXpurgate Content Scanning", "modules.eleven", "Singleton",
       "This module implements the eleven spam filter and categorization service", singleton=True),
    _m("engagement_tracker", "engagement_tracker – HTTP Engagement Tracking", "modules.engage_tracker",
       "Singleton", "Create and parse open- and click-tracked links", singleton=True),
    _m("event_hydrant", "event_hydrant – Message Tracking", "modules.event_hydrant", "Logger",
       "Message-tracking event stream"),
    _m("exim_logger", "exim_logger – Exim Logging", "modules.exim_logger", "Logger",
       "Support for Exim style logs"),
    _m("fbl", "fbl - Feedback Loop", "modules.fbl", "Singleton", "Manage feedback loop services",
       singleton=True),
    _m("fingerprint", "fingerprint – Host Fingerprinting", "modules.host_fingerprint", "Validation",
       "Perform passive OS fingerprinting"),
    _m("http_logger", "http_logger – HTTP Requests and Responses", "modules.http_logger", "Logger",
       "Log HTTP requests and responses"),
    _m("httpsrv", "httpsrv – HTTP Server", "modules.httpsrv", "Singleton",
       "The HTTP server required for using the REST injection API", singleton=True),
    _m("icu", "icu – ICU", "modules.icu", "Singleton", "Unicode support", singleton=True),
    _m("ilf_logger", "ilf_logger – Incremental License Fee Logging", "modules.ilf_logger", "Singleton",
       "Use this module if you have usage-based licenses", singleton=True),
    _m("inbound_audit", "inbound_audit – Inbound traffic analytics", "modules.inbound_audit",
       "Singleton", "Provide analytics on sending IPs", singleton=True),
    _m("ipv6_lookup", "ipv6_lookup – Multi-address-family MX Records", "modules.ipv6_lookup", "Generic",
       "This module supports multi-address-family MX records, enabling A record lookups for IPv6 addresses"),
    _m("jlog", "jlog – jlog-Formatted Logging", "modules.jlog", "Singleton",
       "Create jlog formatted logs", singleton=True),
    # Not a stanza in practice: configured through liveupdate.conf (BounceLiveUpdates, ...).
    _m("live_bounce_updates", "Live Bounce Updates – Live Bounce Updates Service",
       "modules.live.bounce.updates", "Generic",
       "Canonicalizes bounce messages into a number of categories (configured in liveupdate.conf)"),
    # ecmta addition, not a Momentum module: log streams in jlogs for attached consumers
    # (loggers/streams.py). Its doc is the jlog page, the Momentum page closest to it.
    _m("log_streams", "log_streams – Log Event Streams (ecmta addition)", "modules.jlog", "Logger",
       "ecmta: log events written to jlogs for attached consumers", singleton=True),
    _m("mail_loop", "mail_loop – Mail Loop Detection", "modules.mail_loop", "Validation",
       "Automatic suppression of potential mail loops"),
    _m("maildir", "maildir – Maildir Delivery Support", "modules.maildir", "Transport",
       "Store messages in maildir format as specified by qmail"),
    _m("msgc_server", "msgc – Message Systems Group Communication", "modules.msgc", "Singleton",
       "The server component of MSGC", singleton=True),
    _m("msgc_client", "msgc – Message Systems Group Communication", "modules.msgc", "Singleton",
       "The client component of MSGC", singleton=True),
    _m("msg_gen", "msg_gen – Message Generation", "modules.msg_gen", "Singleton",
       "HTTP/REST message generation", singleton=True),
    _m("mxip", "mxip - IP Addresses In MX Records", "modules.mxip", "Generic",
       "Enable Momentum to deliver to domains with a textual IP address"),
    _m("opendkim", "opendkim – Open Source DKIM", "modules.opendkim", "Validation",
       "Validate/sign mail using DKIM signatures"),
    _m("dkim_sign", "opendkim – Open Source DKIM", "modules.opendkim", "Validation",
       "Attach DKIM signatures to outbound mail"),
    _m("dkim_validate", "opendkim – Open Source DKIM", "modules.opendkim", "Validation",
       "Validate inbound mail checking DKIM signatures"),
    _m("outbound_audit", "outbound_audit – Outbound traffic analytics", "modules.outbound_audit",
       "Generic", "Provides time-series analytics on the behavior of receiving domains"),
    _m("outbound_smtp_auth", "outbound_smtp_auth", "modules.outbound_smtp_auth", "Generic",
       "Enables users to specify authentication parameters for a given set of messages"),
    _m("persist_io", "persist_io – Persistent IO Wrapper", "modules.persistio", "Singleton",
       "Provides a non-volatile cache wrapper for any other IO wrapper", singleton=True),
    _m("pipe_io", "pipe_io – Pipe IO Wrapper", "modules.pipeio", "Singleton",
       "Provides ability to writing content via an arbitrary program", singleton=True),
    _m("pipe_transport", "pipe_transport – Module", "modules.pipe_transport", "Transport",
       "Pipe messages to a local program"),
    _m("postfix_logger", "postfix_logger – Postfix Logging", "modules.postfix_logger", "Logger",
       "Log in Postfix format"),
    _m("reception_timing", "reception_timing - Reception Timing Modules", "modules.reception_timing",
       "Validation", "Track how long it takes to receive or reject messages over SMTP"),
    _m("reception_timing_logger", "reception_timing - Reception Timing Modules",
       "modules.reception_timing", "Logger", "Log reception timing records through chunk_logger"),
    _m("response_transcode", "response_transcode – Module", "modules.response_transcode", "Singleton",
       "Work around broken remote servers", singleton=True),
    _m("sched", "sched – The Schedule Module", "modules.sched", "Singleton",
       "Schedule tasks to be run from the console", singleton=True),
    # Not a Table 65.1 singleton, but only one instance name may exist (modules.scriptlet).
    _m("scriptlet", "scriptlet - Lua Policy Scripts", "modules.scriptlet", "Validation",
       "Enable scriptlets for enforcing policy"),
    _m("securecreds", "securecreds – Password Encryption/Credential Retrieval", "modules.securecreds",
       "Singleton", "Use encrypted credentials throughout Momentum", singleton=True),
    _m("seedlist", "seedlist – Seedlist Integration", "modules.seedlist", "Validation",
       "Deliverability monitoring service"),
    _m("sendmail_logger", "sendmail_logger – Sendmail Logging", "modules.sendmail_logger", "Logger",
       "Create Sendmail formatted logs"),
    _m("smtp_auth_proxy", "smtp_auth_proxy - SMTP Authentication Proxy", "modules.smtp_auth_proxy",
       "Auth", "Allow edge SMTP servers to forward SMTP AUTH requests to SMTP servers"),
    _m("smtp_cbv", "smtp_cbv – SMTP Callback Verification", "modules.smtp_cbv", "Validation",
       "Perform SMTP Callback Verification"),
    _m("smtp_rcptto_proxy", "smtp_rcptto_proxy - SMTP Recipient-To Proxy", "modules.smtp_rcptto_proxy",
       "Generic", "Validate a Lua recipient by doing an SMTP call-forward"),
    _m("smtpapi", "smtpapi – SMTP Engagement Tracking", "modules.smtpapi", "Singleton",
       "SMTP-injection engagement tracking via the X-MSYS-API header", singleton=True),
    _m("spf_macros", "spf Modules – spf_macros, spf_v1, and senderid (SPF v2)", "modules.spf",
       "Singleton", "Generic macro service for SPF", singleton=True),
    _m("spf_v1", "spf Modules – spf_macros, spf_v1, and senderid (SPF v2)", "modules.spf",
       "Validation", "Use Sender Policy Framework"),
    _m("senderid", "spf Modules – spf_macros, spf_v1, and senderid (SPF v2)", "modules.spf",
       "Validation", "Use Sender Policy Framework (spf_v2)"),
    _m("static_routes", "static-routes - Static Routes", "modules.static_routes", "Generic",
       "Route traffic to a given server by IP address and port"),
    _m("suppress_spool", "suppress_spool – Deferred Message Spooling", "modules.suppress_spool",
       "Generic", "Defer spool attempts"),
    _m("syslog_io", "syslog_io – The syslog_io Module", "modules.syslog_io", "Singleton",
       "Use the syslog wrapper to write entries to the log", singleton=True),
    _m("tls_macros", "tls_macros – TLS-related Logging", "tls_macros", "Generic",
       "Provide several macros supporting custom logging of TLS-related data"),
    _m("url_ripper", "url_ripper – URL Extraction", "modules.url_ripper", "Validation",
       "A toolkit for DNS-based content correlation"),
]


def _mo(name, type, default=None, scopes=None, *, module, doc, description="", choices=(),
        built=True):
    return OptionSpec(name=name, type=type, default=default, scopes=frozenset(scopes or {module}),
                      doc=doc, choices=tuple(choices), built=built, module=module,
                      description=description)


# Options and sub-scopes of the built modules (their pages list them).
_SCRIPTLET = "modules.scriptlet"
_EC_LOGGER = "modules.ec_logger"
_MAILDIR = "modules.maildir"
_PIPE = "modules.pipe_transport"
_BOUNCE = "modules.bounce_logger"
_CBOUNCE = "modules.custom_bounce_logger"
_BCO = "modules.bounce_classifier_override"


def _bounce_logger_options(module: str, doc: str) -> list:
    return [
        _mo("bouncelog", "string", None, module=module, doc=doc,
            description="The bouncelog file (a path, file:// or jlog://)"),
        _mo("bouncelog_mode", "octal", 0o644, module=module, doc=doc,
            description="File permissions of the bouncelog"),
        _mo("heartbeat", "interval", 60, module=module, doc=doc,
            description="Seconds between heartbeat (ts@@@@M1) lines; 0 = none"),
        _mo("log_inband_bounces", "bool", True, module=module, doc=doc,
            description="Log bounces of the SMTP dialog (B lines, stage of the failure)"),
        _mo("log_outofband_bounces", "bool", True, module=module, doc=doc,
            description="Log bounces received for bounce_domains (B lines, stage 21)"),
        _mo("log_transient_failures", "bool", True, module=module, doc=doc,
            description="Log transient failures (T lines)"),
    ]


MODULE_OPTIONS = {
    "scriptlet": [
        _mo("Always_GC", "bool", False, module="scriptlet", doc=_SCRIPTLET),
        _mo("GC_Pause", "int", 200, module="scriptlet", doc=_SCRIPTLET),
        _mo("GC_Stepmul", "int", 200, module="scriptlet", doc=_SCRIPTLET),
        _mo("Max_Spare_Per_Master", "int", 5000, module="scriptlet", doc=_SCRIPTLET),
        _mo("Reap_Interval", "interval", 1, module="scriptlet", doc=_SCRIPTLET),
        _mo("Script_TTL", "interval", 300, module="scriptlet", doc=_SCRIPTLET),
        _mo("Source", "string", None, {"script"}, module="scriptlet", doc=_SCRIPTLET,
            description="Location of the Lua policy script (dir.file, .lua dropped)"),
    ],
    "ec_logger": [
        *[_mo(n, "string", None, module="ec_logger", doc=_EC_LOGGER)
          for n in ("Mainlog", "Rejectlog", "Paniclog", "Acctlog")],
        *[_mo(n, "octal", 0o644, module="ec_logger", doc=_EC_LOGGER)
          for n in ("Mainlog_Mode", "Rejectlog_Mode", "Paniclog_Mode", "Acctlog_Mode",
                    "Acctlog_Log_Mode")],
        _mo("Heartbeat", "interval", 60, module="ec_logger", doc=_EC_LOGGER),
        *[_mo(n, "bool", True, module="ec_logger", doc=_EC_LOGGER)
          for n in ("Log_Receptions", "Log_Deliveries", "Log_Transient_Failures",
                    "Log_Permanent_Failures", "Log_Rejections", "Log_Errors")],
    ],
    # modules.maildir. The page's option list says `domain` and `createusers`, its example
    # writes `domains` and `create_users`: both spellings of each are accepted (the two
    # domain lists are merged; create_users wins over createusers when both are set).
    # dirmode/filemode are file modes: written without a leading 0 on the page (775, 664)
    # and read as octal digits by actors/local_delivery.py. Names are spelled as the pages
    # write them (all lower case).
    "maildir": [
        _mo("all_domains", "bool", False, module="maildir", doc=_MAILDIR,
            description="Deliver every domain to the maildir store"),
        _mo("basedir", "string", None, module="maildir", doc=_MAILDIR,
            description="Base directory under which maildir mailboxes are created"),
        *[_mo(n, "bool", False, module="maildir", doc=_MAILDIR,
              description="Create missing mailboxes (false: reject mail for a missing mailbox)")
          for n in ("createusers", "create_users")],
        _mo("dirmode", "octal", 0o700, module="maildir", doc=_MAILDIR,
            description="Permission mode (octal) of directories the module creates"),
        *[_mo(n, "list", (), module="maildir", doc=_MAILDIR,
              description="Domains delivered to the maildir store")
          for n in ("domain", "domains")],
        _mo("domain_in_path", "bool", False, module="maildir", doc=_MAILDIR,
            description="Include the domain in the mailbox path (basedir/domain/user)"),
        _mo("filemode", "octal", 0o600, module="maildir", doc=_MAILDIR,
            description="Permission mode (octal) of message files the module creates"),
    ],
    "pipe_transport": [
        _mo("code", "dict", None, module="pipe_transport", doc=_PIPE,
            description="Exit status -> SMTP reply map (default: 0 = 250, else 504 5.5.0)"),
        _mo("domain", "list", (), module="pipe_transport", doc=_PIPE,
            description="Domains piped through the program"),
        _mo("error_file", "string", "/dev/null", module="pipe_transport", doc=_PIPE,
            description="File the program's standard error is appended to"),
        _mo("output_file", "string", "/dev/null", module="pipe_transport", doc=_PIPE,
            description="File the program's standard output is appended to"),
        _mo("program_name", "string", None, module="pipe_transport", doc=_PIPE,
            description="The program (and its arguments) the message is piped into"),
        # Not on the page (ecmta extension): a program that runs longer is killed and the
        # client gets 451 4.4.1, so a hung program cannot hold the SMTP session forever.
        # (Not named `timeout`: the core Timeout's BUILT_SCOPES entry would refuse it here.)
        _mo("program_timeout", "interval", 300, module="pipe_transport", doc=_PIPE,
            description="ecmta: seconds the program may run before it is killed (451 4.4.1)"),
    ],
}
MODULE_OPTIONS["bounce_logger"] = _bounce_logger_options("bounce_logger", _BOUNCE)
MODULE_OPTIONS["custom_bounce_logger"] = _bounce_logger_options("custom_bounce_logger", _CBOUNCE) + [
    _mo("user_string", "string", "", module="custom_bounce_logger", doc=_CBOUNCE,
        description="Appended to every bounce record after macro expansion (%{vctx_conn:foo})"),
]
# modules.bounce_classifier_override. Datasource queries (":datasource:name:query") are
# refused when the configuration is applied: ds_core is not built.
MODULE_OPTIONS["bounce_classifier_override"] = [
    _mo("custom_classes", "dict", None, module="bounce_classifier_override", doc=_BCO,
        description="User bounce classes: [ code = \"description\" ], codes below 100"),
    # Live Bounce Updates is Message Systems' service: it cannot exist here.
    _mo("enable_system_updates", "bool", True, module="bounce_classifier_override", doc=_BCO,
        description="Load unclassified bounce reasons for Live Bounce Updates", built=False),
    _mo("refresh", "interval", 300, module="bounce_classifier_override", doc=_BCO,
        description="Seconds between re-reads of the classification override files"),
    _mo("system_smtp_classification_override", "string",
        "/opt/msys/ecelerity/etc/updates/smtp_classification.ovr",
        module="bounce_classifier_override", doc=_BCO,
        description="System SMTP override rules (domain,bounce_code,rule)"),
    _mo("system_mdn_classification_override", "string",
        "/opt/msys/ecelerity/etc/updates/mdn_classification.ovr",
        module="bounce_classifier_override", doc=_BCO,
        description="System MDN override rules (bounce_code,rule)"),
    _mo("user_smtp_classification_override", "string", "user_smtp_classification.ovr",
        module="bounce_classifier_override", doc=_BCO,
        description="SMTP override rules: domain,bounce_code,rule ('|' is a wildcard)"),
    _mo("user_mdn_classification_override", "string", "user_mdn_classification.ovr",
        module="bounce_classifier_override", doc=_BCO,
        description="MDN override rules: bounce_code,rule ('|' is a wildcard)"),
]
# modules.custom_logger (loggers/custom_logger.py). The log_* switches default to off;
# a *_format turns its stage on. concurrency is accepted (one writer per file keeps the
# line order; see the module docstring).
_CUSTOM = "modules.custom_logger"
_CUSTOM_STAGES = ("delivery", "reception", "transient_failure", "permanent_failure", "xfer", "rejection")
MODULE_OPTIONS["custom_logger"] = [
    *[_mo(f"{st}_logfile", "string", None, module="custom_logger", doc=_CUSTOM,
          description=f"Log file of the {st.replace('_', ' ')} stage (path, file://, jlog://, syslog://)")
      for st in _CUSTOM_STAGES],
    *[_mo(f"{st}_format", "string", None, module="custom_logger", doc=_CUSTOM,
          description=f"Format of {st.replace('_', ' ')} lines (% specifiers); setting it logs the stage")
      for st in _CUSTOM_STAGES],
    *[_mo(f"{st}_log_mode", "octal", 0o644, module="custom_logger", doc=_CUSTOM,
          description=f"File mode (octal) of the {st.replace('_', ' ')} log") for st in _CUSTOM_STAGES],
    *[_mo(n, "bool", False, module="custom_logger", doc=_CUSTOM,
          description="Log this stage (a format must be set too)")
      for n in ("log_deliveries", "log_receptions", "log_transient_failures",
                "log_permanent_failures", "log_rejections")],
    _mo("log_errors", "bool", False, module="custom_logger", doc=_CUSTOM,
        description="Write the paniclog lines to this instance's paniclog"),
    _mo("mainlog", "string", None, module="custom_logger", doc=_CUSTOM,
        description="One file for the lines of every logged stage"),
    _mo("paniclog", "string", None, module="custom_logger", doc=_CUSTOM,
        description="Where error notifications go (with log_errors)"),
    _mo("mainlog_mode", "octal", 0o644, module="custom_logger", doc=_CUSTOM),
    _mo("paniclog_mode", "octal", 0o644, module="custom_logger", doc=_CUSTOM),
    _mo("concurrency", "int", 1, module="custom_logger", doc=_CUSTOM,
        description="Logger threads (accepted; each file keeps one writer so lines stay in order)"),
    _mo("thread_pool", "string", None, module="custom_logger", doc=_CUSTOM,
        description="ThreadPool whose threads append this instance's lines (default IO)"),
    _mo("namespace", "string", "custom_logger,sieve", module="custom_logger", doc=_CUSTOM,
        description="Macro namespaces searched, in order (custom_logger, sieve, outbound_tls)"),
    _mo("sanitize", "string", "", module="custom_logger", doc=_CUSTOM,
        description="special_characters, non_printable, tr/from/to/ (in the order written)"),
]
# exim_logger, postfix_logger, sendmail_logger (loggers/mta_formats.py): their pages list
# mainlog, paniclog and log_transient_failures; the modes are ec_logger's.
for _name, _doc in (("exim_logger", "modules.exim_logger"), ("postfix_logger", "modules.postfix_logger"),
                    ("sendmail_logger", "modules.sendmail_logger")):
    MODULE_OPTIONS[_name] = [
        _mo("mainlog", "string", None, module=_name, doc=_doc,
            description="Receptions, deliveries, failures and rejections in this MTA's format"),
        _mo("paniclog", "string", None, module=_name, doc=_doc,
            description="Where the paniclog lines are also written"),
        _mo("mainlog_mode", "octal", 0o644, module=_name, doc=_doc),
        _mo("paniclog_mode", "octal", 0o644, module=_name, doc=_doc),
        _mo("log_transient_failures", "bool", True, module=_name, doc=_doc,
            description="Log transient failures (deferrals)"),
    ]
# modules.chunk_logger (loggers/chunk_logger.py). The page writes add_newline = "true".
_CHUNK = "modules.chunk_logger"
MODULE_OPTIONS["chunk_logger"] = [
    _mo("destination", "string", None, module="chunk_logger", doc=_CHUNK,
        description="The log file (path, file://, jlog://, syslog://); required"),
    _mo("timestamp_format", "string", None, module="chunk_logger", doc=_CHUNK,
        description="strftime() format of the time written before every item (unset: none)"),
    _mo("add_newline", "bool", True, module="chunk_logger", doc=_CHUNK,
        description="Add a newline to every item logged (false: written as given)"),
]
# modules.as_logger (loggers/as_logger.py): journals the audit series of this node (no
# cluster here). Momentum gives no defaults for base_dir and log_interval; ecmta's are the
# standalone directory (under the state directory) and the page's example interval.
_ASL = "modules.as_logger"
MODULE_OPTIONS["as_logger"] = [
    _mo("base_dir", "string", "audit_series_logs", module="as_logger", doc=_ASL,
        description="Directory of the journal files (<series>.<YYYYmmddHHMMSS>, UTC)"),
    _mo("log_interval", "interval", 60, module="as_logger", doc=_ASL,
        description="Seconds between journal files; each series is reset after its file"),
    _mo("series_include_default", "enum", "none", module="as_logger", doc=_ASL,
        choices=("all", "none"), description="Journal every series (all) or none by default"),
    _mo("series_include", "regex_list", (), module="as_logger", doc=_ASL,
        description="With series_include_default = none: regexes of the series journaled"),
    _mo("series_exclude", "regex_list", (), module="as_logger", doc=_ASL,
        description="With series_include_default = all: regexes of the series left out"),
]
# modules.inbound_audit: only what msys.audit_series uses is built (policy/
# audit_series_service.py). `monitors` feeds `inbound_audit show ip`, a console command
# not built yet, like msys.audit.* (connections, receptions, rejections).
_IA = "modules.inbound_audit"
MODULE_OPTIONS["inbound_audit"] = [
    _mo("log_dir", "string", "audit_series_logs", module="inbound_audit", doc=_IA,
        description="Directory of the journals of series defined with serialize = true"),
    _mo("serialize_dir", "string", "audit_series_persist", module="inbound_audit", doc=_IA,
        description="Directory where series defined with persist = true are saved and read back"),
    _mo("maintenance_interval", "interval", 300, module="inbound_audit", doc=_IA,
        description="Seconds between journals of the series defined with serialize = true"),
    _mo("monitors", "list", (), module="inbound_audit", doc=_IA, built=False,
        description="Windows of `inbound_audit show ip` (\"window-size,number-of-windows\" ...)"),
]
# tls_macros has no options: `tls_macros {}` makes the outbound_tls macros available.
MODULE_OPTIONS["tls_macros"] = []
# modules.syslog_io (loggers/syslog_io.py); `socket` is an ecmta extension.
MODULE_OPTIONS["syslog_io"] = [
    _mo("ident", "string", "ecelerity", module="syslog_io", doc="modules.syslog_io",
        description="The identification string of syslog lines"),
    _mo("default_facility", "string", "mail", module="syslog_io", doc="modules.syslog_io",
        description="Facility of syslog:// destinations that name none"),
    _mo("socket", "string", None, module="syslog_io", doc="modules.syslog_io",
        description="ecmta: send RFC 3164 datagrams to this Unix socket instead of syslog(3)"),
]
# log_streams (ecmta addition; loggers/streams.py, loggers/consumers.py).
_STREAMS = "modules.jlog"
MODULE_OPTIONS["log_streams"] = [
    _mo("streams", "list", (), module="log_streams", doc=_STREAMS,
        description="ecmta: streams written to jlogs (events, mainlog, bouncelog, <instance>/<file>, ...)"),
    _mo("basedir", "string", "streams", module="log_streams", doc=_STREAMS,
        description="ecmta: directory of the stream jlogs (<basedir>/<name>.jlog; relative: state dir)"),
    _mo("subscribers", "list", (), module="log_streams", doc=_STREAMS,
        description="ecmta: subscribers created in every stream jlog at start (they miss nothing)"),
    _mo("mode", "octal", 0o640, module="log_streams", doc=_STREAMS,
        description="ecmta: file mode of the stream jlogs' files"),
    _mo("thread_pool", "string", "IO", module="log_streams", doc=_STREAMS,
        description="ecmta: the ThreadPool that appends to the stream jlogs"),
    _mo("trim_interval", "interval", 30, module="log_streams", doc=_STREAMS,
        description="ecmta: seconds between trims of streams without subscribers (0: never)"),
]
MODULE_SUBSCOPES = {
    "scriptlet": [ScopeSpec("Script", True, frozenset({"scriptlet"}), _SCRIPTLET, True, "scriptlet")],
}


def _with_data(spec: ModuleSpec) -> ModuleSpec:
    key = spec.name.lower()
    opts = {o.name.lower(): o for o in MODULE_OPTIONS.get(key, ())}
    subs = {sc.name.lower(): sc for sc in MODULE_SUBSCOPES.get(key, ())}
    return replace(spec, built=key in BUILT, options=opts or spec.options,
                   subscopes=subs or spec.subscopes)


# What to tell an operator whose config names a module ecmta does not have.
HINTS = {
    "alerting": "ecmta's scriptlet does not need it and nothing sends alerts yet; remove the stanza",
    "cloudmark": "Cloudmark's engine cannot run here",
    "brightmail": "Brightmail's engine cannot run here",
    "beik": "the Brightmail engine cannot run here",
    "csapi": "Symantec CSAPI cannot run here",
    "commtouch_ctasd": "Commtouch's engine cannot run here",
    "eleven": "the eXpurgate engine cannot run here",
}

MODULES = [replace(_with_data(spec), hint=HINTS.get(spec.name.lower(), "")) for spec in _SPECS]
