"""Option declarations: one OptionSpec per option of Table 66.1 (config.options.summary).

Generated once from momentum-docs/config.options.summary.md, then typed by hand from the
conf.ref.* / config.* / modules.* pages; from here on this file is maintained by hand.

Conventions (what the parser/validator can rely on):
  * name      canonical capitalisation as the console echoes it (Max_Outbound_Connections,
              SMTP_Extensions, EHLO_Hostname, ThreadPool, TimestampFormat, AuthLoginParameters).
  * default   typed: bool -> bool; int/interval/size -> int (interval = seconds);
              octal -> int (0o640); enum -> the canonical choice string; list -> tuple of str;
              rate -> (count, seconds) tuple; dict/scope/no default -> None.
  * scopes    lowercased kinds exactly as Table 66.1 lists them (plus the few documented
              additions marked "+scope" in the comments).
  * Table 66.1 row anomalies are resolved in SUMMARY_ROW_RENAMES / NOT_REALLY_SCOPES below;
    duplicate rows (state, file_mode, logs, pathway) are merged into one spec.
"""

from __future__ import annotations

from dataclasses import replace

from ecmta.config.registry import OptionSpec

# ----------------------------------------------------------------------------------------
# BUILT: the ONE place that says which options ecmta implements. Lowercased names.
# Flip an option on by adding its name here (nothing else needs to change).
# ----------------------------------------------------------------------------------------
BUILT = frozenset({
    # ThreadPool (pools/)
    "concurrency", "backlog", "stack_size",
    # process / logging foundation
    "pidfile", "debug_flags", "debug", "info", "notice", "warning", "error", "critical",
    "timestampformat",
    # config writeback
    "local_changes_file", "local_changes_only",
    # spool (actors/spool.py)
    "spoolbase", "spool_mode", "force_fsync", "disk_queue_drain_rate",
    "unlink_on_spool_in_failure", "exclude_vctx_conn", "exclude_vctx_mess",
    # Control_Listener / Listen
    "file_mode", "enable", "timeout", "listen_backlog",
    # scope keywords of built containers (their OptionSpec has type "scope")
    "threadpool", "control_listener", "listen", "domain", "binding", "binding_group", "host",
    "esmtp_listener", "peer", "pathway", "pathway_group",
    # reception (actors/reception.py, actors/inbound.py, actors/esmtp_service.py)
    "hostname", "context", "smtp_extensions", "max_message_size",
    "max_receptions_per_connection", "max_recipients_per_connection",
    "max_recipients_per_message", "banner_hostname", "static_banner", "received_hostname",
    "idle_time", "listener_sessions", "service_sessions", "require_ehlo",
    "allow_null_envelope_sender", "allow_ip_literal", "allow_trailing_whitespace_in_commands",
    "rfc2821_allow_whitespace_in_envelope", "rfc2821_pedantic_address_rules",
    "rfc2822_date_header", "rfc2822_messageid_header", "rfc2822_missing_headers",
    "rfc2822_lone_lf_in_headers", "rfc2822_lone_lf_in_body", "rfc2822_max_line_length",
    "rfc2822_max_line_length_policy", "rfc2822_trace_headers",
    "domain_for_unqualified_sender_address", "domain_for_unqualified_recipient_addresses",
    "relay_domains", "relay_hosts", "open_relay", "relay_for_sending_domains", "blackhole",
    "inbound_throttle_messages", "reconfig_message", "tls_certificate", "tls_key",
    "tls_client_ca", "tls_verify_mode", "tls_ciphers", "tls_protocols", "use_ssl",
    "starttls_injection_policy", "tls_verified_peer_can_relay", "authloginparameters",
    "authplainparameters", "authcrammd5parameters", "tcp_recv_buffer_size",
    "tcp_send_buffer_size",
    # delivery (actors/delivery.py, actors/domain_queue.py, transports/smtp_outbound.py)
    "retry_interval", "max_retry_interval", "max_retries", "message_expiration", "never_retry",
    "never_attempt_expired_messages", "max_outbound_connections", "max_recipients_per_batch",
    "max_deliveries_per_connection", "idle_timeout", "suspend_delivery", "generate_bounces",
    "bounces_inline_original", "mailerdaemon", "mdn_failures_notify", "async_bounce_rendering",
    "delivery_method", "remote_smtp_port", "lmtp_port", "connect_timeout", "ehlo_timeout",
    "mailfrom_timeout", "rcptto_timeout", "body_timeout", "rset_timeout", "tls", "tls_verify",
    "tls_ca", "tls_ifavailable_fallback", "xclient", "bind_address", "ehlo_hostname",
    "mx_failures_to_delay", "connect_timeout_to_delay", "host_failure_retry",
    "dns_failures_to_purge", "send_8bitmime", "transform_8bitmime_content",
    "connection_allocation_aggressiveness", "outbound_throttle_messages",
    "outbound_throttle_connections", "max_resident_active_queue", "drop_body_after_trans_fail",
    "delayed_queue_scan_interval", "server_max_outbound_connections",
    "generate_delay_dsn", "delay_dsn_retry_interval", "delay_dsn_max_retry_interval",
    "default_binding",
    # DNS and routing (transports/dns.py, transports/routing.py)
    "resolv_conf", "min_dns_ttl", "max_dns_ttl", "dns_cache_purge_interval",
    "dns_fallback_to_tcp", "use_ipv6", "prohibited_hosts", "skip_hosts", "gateway", "routes",
    "fully_resolve_before_smtp", "only_use_best_mx_for_relay_domains",
    "mx_failures_fallback_to_a",
    # bounce processing (loggers/bounce_logger.py, loggers/bounce_classifier.py)
    "bounce_domains", "bounce_pattern", "bounce_behavior", "bounce_suppress_list",
})

# Where a built option is actually implemented, for options valid in more scopes than the
# foundation covers (e.g. Concurrency is also a listener option). Options not listed here
# are implemented in all their scopes. The validator may use this for a finer error.
_INBOUND = frozenset({"esmtp_listener", "listen", "peer", "pathway", "pathway_group", "global"})

BUILT_SCOPES = {
    # inbound side only; the outbound meaning of these (bindings, domains) comes with delivery
    "max_recipients_per_connection": _INBOUND,
    "authloginparameters": _INBOUND, "authplainparameters": _INBOUND,
    "authcrammd5parameters": _INBOUND,
    "pathway": frozenset({"esmtp_listener", "listen", "peer", "global", "pathway_group"}),
    "context": _INBOUND, "enable": frozenset({"control_listener", "esmtp_listener", "listen"}),
    "concurrency": frozenset({"threadpool", "custom_logger"}),   # custom_logger's own option
    "backlog": frozenset({"threadpool"}),
    "stack_size": frozenset({"threadpool"}),
    "file_mode": frozenset({"control_listener", "listen"}),
    "timeout": frozenset({"control_listener"}),
    "listen_backlog": frozenset({"control_listener", "esmtp_listener", "listen"}),
}

# Defaults that differ by scope kind: (option lower, scope kind) -> typed default.
# OptionSpec.default holds the common/first one; config eval should consult this first.
SCOPE_DEFAULTS = {
    ("state", "snmp_traps"): False,                    # conf.ref.snmp: traps disabled by default
    ("max_outbound_connections", "host"): -1,          # conf.ref.max_outbound_connections: no fallback, -1
    ("tcp_recv_buffer_size", "http_listener"): 32768,  # Table 66.1
    ("tcp_send_buffer_size", "http_listener"): 32768,  # Table 66.1
    ("timeout", "adaptive_backstore_riak"): 5,         # conf.ref.adaptive_backstore_riak
    ("connect_timeout", "adaptive_backstore_riak"): 5,  # conf.ref.adaptive_backstore_riak
    ("file_mode", "logs"): None,                       # Table 66.1: no default for cluster logs
}

# Enum options that also accept a plain integer instead of one of their choices.
ENUM_ACCEPTS_INT = frozenset({
    "max_retries",               # "auto" | "none" | N
    "rfc2822_max_line_length",   # "ignore" | "pedantic" | "fix" | N
})

# Table 66.1 rows whose printed name is wrong, keyed by (printed name, fragment of the
# row's description or link) -> the real option name (from the linked page).
SUMMARY_ROW_RENAMES = {
    ("adaptive_notification_events", "Set the sender address"): "adaptive_alert_email_sender",
    ("trap_interval", "watch_interval"): "watch_interval",
    ("replicate", "Define a role"): "role",
}

# Rows marked "(scope)" in Table 66.1 whose own page shows a plain option.
NOT_REALLY_SCOPES = frozenset({"binding_auto_replumb", "binding_auto_replumb_interval"})

# Options added from pages although Table 66.1 lacks them (not counted as table rows).
NOT_IN_SUMMARY = frozenset({"path", "allow"})


def _o(name, type, default=None, scopes="global", *, dynamic=True, choices=(), module=None,
       doc="", description=""):
    return OptionSpec(name=name, type=type, default=default, scopes=frozenset(scopes.split()),
                      dynamic=dynamic, doc=doc, choices=tuple(choices), module=module,
                      description=description)


_SPECS = [
    _o('Accept_Queue_Backlog', 'int', 0, 'control_listener eccluster_listener ecstream_listener esmtp_listener http_listener listen msgcserver_listener xmpp_listener', doc='esmtp_listener', description='Accept queue backlog'),
    _o('Adaptive_Adjustment_Interval', 'interval', 60, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Throttle the adaptive adjustment interval'),
    _o('Adaptive_Alert_Email_Destination', 'string', None, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Address where adaptive alerts should be sent'),
    _o('Adaptive_Alert_Email_Sender', 'string', None, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Set the sender address of the alert email'),
    _o('Adaptive_Attempt_Threshold', 'int', 2000, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Minimum delivery attempts over a period during which bounce stats are collected and suspensions attempted'),
    _o('Adaptive_Backstore_Leveldb', 'scope', None, 'global', doc='conf.ref.adaptive_backstore_leveldb', description='Use LevelDB as the backing store for Adaptive Delivery'),
    _o('Adaptive_Backstore_Riak', 'scope', None, 'global', doc='conf.ref.adaptive_backstore_riak', description='Define the characteristics of the Riak backing store'),
    _o('Adaptive_Body_Timeout', 'list', None, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Set the bounds for the adaptive option'),
    # "4 hours"
    _o('Adaptive_Default_Suspension', 'interval', 14400, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Amount of time to suspend a domain'),
    _o('Adaptive_EHLO_Timeout', 'list', None, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Set the bounds for the adaptive option'),
    _o('Adaptive_Enabled', 'bool', False, 'binding binding_group domain global', doc='conf.ref.adaptive_enabled', description='Whether to enable the adaptive module for a specific scope'),
    _o('Adaptive_FBL_Volume_Threshold', 'int', 20000, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Minimum total delivered mail count over a period during which FBL stats are collected'),
    _o('Adaptive_Idle_Timeout', 'list', None, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Set the bounds for the adaptive option'),
    _o('Adaptive_Mailfrom_Timeout', 'list', None, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Set the bounds for the adaptive option'),
    _o('Adaptive_Max_Deliveries_Per_Connection', 'list', None, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Set the bounds for the adaptive option'),
    _o('Adaptive_Max_Outbound_Connections', 'list', None, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Set the bounds for the adaptive option'),
    _o('Adaptive_Max_Recipients_Per_Batch', 'list', None, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Set the bounds for the adaptive option'),
    _o('Adaptive_Max_Recipients_Per_Connection', 'list', None, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Set the bounds for the adaptive option'),
    _o('Adaptive_Max_Resident_Active_Queue', 'list', None, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Set the bounds for the adaptive option'),
    _o('Adaptive_Max_Retries', 'list', None, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Set the bounds for the adaptive option'),
    _o('Adaptive_Max_Retry_Interval', 'list', None, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Set the bounds for the adaptive option'),
    _o('Adaptive_Notification_Events', 'list', ('throttle', 'suspension', 'blackhole'), 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Configure the events that will trigger an email notification'),
    _o('Adaptive_Notification_Interval', 'interval', 3600, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Throttle for adaptive alert notification emails'),
    _o('Adaptive_Outbound_Throttle_Messages', 'list', None, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Set the bounds for the adaptive option'),
    _o('Adaptive_Positive_Adjustment_Interval', 'interval', 3600, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Throttle positive adjustments to adaptive changes'),
    _o('Adaptive_Rcptto_Timeout', 'list', None, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Set the bounds for the adaptive option'),
    _o('Adaptive_Rejection_Rate_Suspension_Percentage', 'int', 20, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Rate at which messages are rejected'),
    _o('Adaptive_Retry_Fuzz', 'int', 4096, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Allow greater control over bulk message retries in cases where all messages for a domain have to be retried'),
    _o('Adaptive_Retry_Interval', 'list', None, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Set the bounds for the adaptive option'),
    _o('Adaptive_Rset_Timeout', 'list', None, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Set the bounds for the adaptive option'),
    _o('Adaptive_Scope', 'enum', 'auto', 'binding binding_group domain global', choices=('local', 'global', 'auto'), doc='conf.ref.adaptive_scope', description='Define the scope applicable to adaptive delivery'),
    _o('Adaptive_Sweep_Rule', 'scope', None, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Set the thresholds and actions for adaptive fbl and bounce rules'),
    _o('Adaptive_Sweep_Rule_Enabled', 'bool', True, 'binding binding_group domain global', module='adaptive', doc='modules.adaptive', description='Enable or disable adaptive_sweep_rule in a specified scope'),
    _o('Address', 'string', None, 'snmp', dynamic=False, doc='conf.ref.snmp', description='Set the SNMP IP address and port'),
    _o('Address_Metrics_Cleanse_Interval', 'interval', 3600, 'global', doc='conf.ref.address_metrics_cleanse_interval', description='Interval for refreshing address metrics'),
    _o('Address_Metrics_Lifetime', 'interval', 1800, 'global', doc='conf.ref.address_metrics_lifetime', description='TTL of address metrics'),
    _o('Alias_Schemes', 'list', None, 'domain global pathway pathway_group', doc='conf.ref.alias_schemes', description='Enable named alias expansion schemes'),
    # not in Table 66.1
    _o('Allow', 'list', None, 'role', doc='conf.ref.authorization', description='Console command regexes a role may run'),
    _o('Allow_IP_Literal', 'bool', True, 'esmtp_listener global listen pathway pathway_group peer', doc='conf.ref.allow_ip_literal', description='Allow IP addresses in email addresses'),
    _o('Allow_Null_Envelope_Sender', 'bool', True, 'esmtp_listener global listen pathway pathway_group peer', doc='conf.ref.allow_null_envelope_sender', description='Allow the null envelope sender in email addresses'),
    _o('Allow_Trailing_Whitespace_In_Commands', 'bool', False, 'esmtp_listener global listen pathway pathway_group peer', doc='conf.ref.allow_trailing_whitespace_in_commands', description='Allow trailing white space at the end of an SMTP command'),
    _o('Always_Allow', 'bool', False, 'control_listener esmtp_listener http_listener listen pathway pathway_group peer', doc='control_auth', description='When set to true, authentication is considered to have succeeded, unless always_deny is set'),
    _o('Always_Deny', 'bool', False, 'control_listener esmtp_listener http_listener listen pathway pathway_group peer', doc='control_auth', description='If set to true, authentication is considered to have failed'),
    # table says "yes" for a number of seconds; no usable default
    _o('APN_Expiry', 'int', None, 'binding binding_group domain global', dynamic=False, doc='https://support.messagesystems.com/docs/web-push/apns.apn_expiry', description='Define the number of seconds after which an APNs notification is no longer valid'),
    _o('ARP_All_Hosts', 'bool', True, 'cluster', module='cluster', doc='modules.cluster', description='Whether or not to aggressively send out ARP information to ensure that the network knows about the IP address assignment (cluster-specific)'),
    _o('Async_Bounce_Rendering', 'bool', True, 'global', doc='conf.ref.async_bounce_rendering', description='Which thread pool to use for bounce rendering'),
    _o('AuthCramMD5Parameters', 'dict', None, 'control_listener esmtp_listener listen pathway pathway_group', doc='inbound_smtp', description='Configure CRAM-MD5 authentication'),
    _o('AuthDigestMD5Parameters', 'dict', None, 'control_listener esmtp_listener http_listener listen pathway pathway_group peer xmpp_listener', doc='inbound_smtp', description='Configure DIGEST-MD5 authentication'),
    _o('AuthLoginParameters', 'dict', None, 'control_listener esmtp_listener listen pathway pathway_group', doc='control_auth', description='Configure clear text login authentication'),
    _o('Authorization', 'scope', None, 'global', doc='conf.ref.authorization', description='Configure the console commands applicable to users'),
    _o('AuthorizationParameters', 'dict', None, 'control_listener esmtp_listener listen', doc='control_authz', description='AuthorizationParameters dictionary points to authorization information'),
    _o('AuthPlainParameters', 'dict', None, 'esmtp_listener http_listener listen pathway pathway_group xmpp_listener', doc='inbound_smtp', description='Configure plain text login authentication'),
    _o('Backlog', 'int', 0, 'threadpool', dynamic=False, doc='conf.ref.threadpool', description='Maximum number of jobs that can be queued up for a pool'),
    _o('Banner_Hostname', 'string', None, 'esmtp_listener listen pathway pathway_group peer', doc='conf.ref.pathway_group', description='Specifies the banner hostname that will be displayed to the remote client upon connecting'),
    # conf.ref.bind_address: restart needed
    _o('Bind_Address', 'string', None, 'binding binding_group global', dynamic=False, doc='conf.ref.bind_address', description='Source address for outbound connections'),
    _o('Binding', 'scope', None, 'binding_group global', doc='conf.ref.binding', description='Configure binding-specific options'),
    # page: default "disabled"
    _o('Binding_Auto_Replumb', 'bool', False, 'global', doc='conf.ref.binding_auto_replumb', description='Enable or disable the auto replumber'),
    # page: default 60
    _o('Binding_Auto_Replumb_Interval', 'interval', 60, 'global', doc='conf.ref.binding_auto_replumb_interval', description='Sets the time interval to check the plumbed state of statically plumbed bindings'),
    _o('Binding_Group', 'scope', None, 'global', doc='conf.ref.binding_group', description='Logically group a set of bindings'),
    _o('Blackhole', 'enum', 'false', 'binding binding_group domain global', choices=('false', 'true', 'inline', 'internal'), doc='conf.ref.blackhole', description='Blackhole mail'),
    _o('Body_Timeout', 'interval', 600, 'binding binding_group domain global', doc='conf.ref.body_timeout', description='Network timeout once the DATA phase is complete'),
    _o('Bounce_Behavior', 'enum', 'pass', 'domain global', choices=('pass', 'blackhole'), doc='conf.ref.bounce_behavior', description='Configure the action taken when a message is classified as a bounce'),
    _o('Bounce_Domains', 'list', None, 'global pathway pathway_group', doc='conf.ref.bounce_domains', description='Configure the list of domains eligible for bounce processing'),
    _o('Bounce_Pattern', 'string', None, 'domain global', doc='conf.ref.bounce_pattern', description='Configure the pattern that inbound email addresses must match to be considered bounces'),
    _o('Bounce_Suppress_List', 'string', None, 'global', doc='conf.ref.bounce_suppress_list', description='Configure a list of email addresses that may not be considered original recipients'),
    _o('Bounces_Inline_Original', 'enum', 'headers', 'binding binding_group domain global', choices=('none', 'headers', 'all'), doc='conf.ref.bounces_inline_original', description='How much of the original message to include in MDNs'),
    _o('Capabilities', 'string', None, 'security', dynamic=False, doc='conf.ref.capabilities', description='Selectively retain root capabilities'),
    _o('Chroot', 'string', None, 'security', dynamic=False, doc='conf.ref.chroot', description='chroot to a secure environment'),
    _o('Clear_Mail_Queue_Maintainers', 'bool', True, 'global', doc='conf.ref.clear_mail_queue_maintainers', description='Reschedule the mail queue maintainer'),
    _o('Click_Tracking_Enabled', 'bool', False, 'esmtp_listener listen pathway pathway_group peer', doc='config.click_tracking_enabled', description='Enable or disable click tracking for SMTP injections'),
    _o('Click_Tracking_Scheme', 'string', 'http', 'esmtp_listener listen pathway pathway_group peer', doc='config.click_tracking_scheme', description='Set the hyperlink scheme to use for click tracking links in SMTP injections'),
    _o('Cluster_Group', 'string', 'ec_cluster', 'cluster', module='cluster', doc='modules.cluster', description='The DuraVIP™ system coordinates IP ownership responsibilities via the cluster_group extended virtual synchrony group (cluster-specific)'),
    _o('Cluster_Max_Outbound_Connections', 'int', -1, 'binding domain global host', doc='conf.ref.cluster_max_outbound_connections', description='Set the maximum number of outbound connections for a domain (cluster-specific)'),
    _o('Cluster_Outbound_Throttle_Connections', 'rate', None, 'binding_group domain global', doc='conf.ref.cluster_outbound_throttle_connections', description='Limit the rate at which connections are established (cluster-specific)'),
    _o('Cluster_Outbound_Throttle_Messages', 'rate', None, 'binding_group domain global', doc='conf.ref.cluster_outbound_throttle_messages', description='Limit the rate at which messages are delivered (cluster-specific)'),
    _o('Cluster_Scope_Max_Outbound_Connections', 'int', None, 'binding binding_group domain global host', doc='conf.ref.cluster_scope_max_outbound_connections', description='Provide traffic shaping for outbound connections (cluster-specific)'),
    _o('Cluster_Server_Max_Outbound_Connections', 'int', None, 'binding binding_group global', doc='conf.ref.cluster_server_max_outbound_connections', description='Set the maximum number of outbound connections (cluster-specific)'),
    _o('Codes', 'list', None, 'adaptive_sweep_rule', module='adaptive', doc='modules.adaptive', description='adaptive_sweep_rule bounce or fbl codes'),
    # +destination: conf.ref.snmp: SNMP_Traps Destination stanza
    _o('Community', 'string', 'public', 'destination snmp', dynamic=False, doc='conf.ref.snmp', description='Set the SNMP Community option value to the desired SNMP community the agent is to join'),
    # +eventloop: config.ref.eventloop: only option of EventLoop
    _o('Concurrency', 'int', 0, 'control_listener eccluster_listener ecstream_listener esmtp_listener eventloop http_listener listen threadpool xmpp_listener', doc='esmtp_listener', description='Define number of available threads'),
    # +adaptive_backstore_riak: conf.ref.adaptive_backstore_riak: connect_timeout (default 5 there)
    _o('Connect_Timeout', 'interval', 300, 'adaptive_backstore_riak binding binding_group domain global', doc='conf.ref.connect_timeout', description='Set the connection timeout'),
    _o('Connect_Timeout_To_Delay', 'interval', 900, 'binding binding_group domain global', doc='conf.ref.connect_timeout_to_delay', description='Time interval before moving mail into the delayed queue'),
    _o('Connection_Allocation_Aggressiveness', 'enum', 'normal', 'binding binding_group domain global', choices=('normal', 'high'), doc='conf.ref.connection_allocation_aggressiveness', description='Tune the aggressiveness for establishing new connections to domains'),
    _o('Context', 'dict', None, 'esmtp_listener listen pathway pathway_group peer', doc='conf.ref.context', description='Use to set arbitrary connection context key value pairs'),
    _o('Control_Cache', 'string', None, 'logs', doc='conf.ref.eccluster.conf', description='Name of the cache file storing asynchronous responses'),
    _o('Control_Client_Timeout', 'interval', 60, 'global', doc='conf.ref.control_client_timeout', description='Network timeout for Momentum control client connections'),
    _o('Control_Group', 'string', 'ec_console', 'cluster', doc='conf.ref.ecelerity_cluster.conf', description='Cluster manager utilizes this group to issue cluster-wide configuration commands (cluster-specific)'),
    _o('Control_Listener', 'scope', None, 'global', doc='control_listener', description='Listener for incoming control connections'),
    # table: ALL; expanded as conf.ref.debug_flags prints it
    _o('CRITICAL', 'list', ('TIME', 'FD', 'SMTP', 'LOG1', 'DNS', 'DNSDS', 'NET', 'SIG', 'MEM', 'DB', 'LIC', 'SSL', 'MOD', 'START', 'ALL'), 'debug_flags', doc='conf.ref.debug_flags', description='Set the debug level'),
    _o('Crypto_Engine', 'string', None, 'global', doc='conf.ref.crypto_engine', description='Enable hardware cryptography acceleration'),
    _o('Crypto_Lock_Method', 'enum', 'EC_SSL_DEFAULTLOCK', 'global', dynamic=False, choices=('EC_SSL_SPINLOCK', 'EC_SSL_MUTEX', 'EC_SSL_DEFAULTLOCK'), doc='config.crypto_lock_method', description='Set the locking method used by the TLS layer'),
    _o('DEBUG', 'list', (), 'debug_flags', doc='conf.ref.debug_flags', description='Set the debug level'),
    _o('Debug_Flags', 'scope', None, 'global', doc='conf.ref.debug_flags', description='Configure debug verbosity'),
    _o('Debug_Level', 'enum', 'ERROR', 'cluster', choices=('DEBUG', 'INFO', 'NOTICE', 'WARNING', 'ERROR', 'CRITICAL'), doc='module_config', description='Set the module debug level (applicable to all modules) (cluster-specific)'),
    _o('Default_Binding', 'enum', 'normal', 'global', choices=('normal', 'suspended', 'none'), doc='conf.ref.default_binding', description='Control the default binding'),
    _o('Default_Charset', 'string', 'us-ascii', 'global pathway pathway_group', doc='conf.ref.default_charset', description='Control the character set'),
    # CONFLICT: table 43200, conf.ref page 0; table kept
    _o('Delay_DSN_Max_Retry_Interval', 'interval', 43200, 'binding binding_group domain global', doc='conf.ref.delay_dsn_max_retry_interval', description='Maximum interval for sending DSNs to the sender of a message that has not yet been delivered'),
    _o('Delay_DSN_Retry_Interval', 'interval', 3600, 'binding binding_group domain global', doc='conf.ref.delay_dsn_retry_interval', description='Base interval for sending DSNs to the sender of a message that has not yet been delivered'),
    _o('Delayed_Binding_Domain_Fuzz', 'interval', 0, 'binding binding_group global', doc='conf.ref.delayed_binding_domain_fuzz', description='Time period to spread scheduled messages over when a bulk requeue is necessary'),
    _o('Delayed_Queue_Scan_Interval', 'interval', 15, 'global', doc='conf.ref.delayed_queue_scan_interval', description='How often to call the maintainer for a domain'),
    # ESMTP since 3.0 (SMTP in 2.2)
    _o('Delivery_Method', 'enum', 'ESMTP', 'binding binding_group domain global', choices=('ESMTP', 'SMTP', 'LMTP', 'ECSTREAM', 'APN', 'GCM', 'MM7'), doc='conf.ref.delivery_method', description='Set the delivery method'),
    _o('Delivery_Pool', 'string', None, 'global', dynamic=False, doc='config.ref.delivery_pool', description='Associate an eventloop with mail delivery'),
    _o('Delivery_Response_Timeout', 'int', 5000, 'binding domain global', doc='conf.ref.delivery_response_timeout', description='Time to wait for a response to an outbound request'),
    _o('Dir_Mode', 'octal', None, 'logs', doc='conf.ref.eccluster.conf', description='Octal representation of the file permissions'),
    _o('Disable_Chunked', 'bool', False, 'http_listener listen pathway pathway_group peer', doc='https://support.messagesystems.com/docs/web-mobility/mobility.mm7.listener', description='Option used with aggregators who do not support chunked transfer-coding (Mobile Momentum)'),
    _o('Disable_Nagle_Algorithm', 'bool', False, 'control_listener eccluster_listener ecstream_listener esmtp_listener global http_listener listen xmpp_listener', doc='conf.ref.disable_nagle_algorithm', description='Disable nagle algorithm on sockets'),
    _o('Disk_Queue_Drain_Rate', 'int', 100, 'global', doc='conf.ref.disk_queue_drain_rate', description='Control the rate at which messages are spooled in on start-up'),
    _o('DNS_Cache_Purge_Interval', 'interval', 60, 'global', doc='conf.ref.dns_cache_purge_interval', description='How often the DNS response cache is scanned for stale entries'),
    _o('DNS_Expire_Interval', 'interval', 10, 'global', doc='conf.ref.dns_expire_interval', description='How often to check for domains with expired DNS information'),
    _o('DNS_Failures_To_Purge', 'int', 10, 'domain global', doc='conf.ref.dns_failures_to_purge', description='Configure the maximum number of DNS lookups'),
    _o('DNS_Fallback_To_TCP', 'bool', False, 'global', doc='conf.ref.dns_fallback_to_tcp', description='Whether or not to fail over to TCP in place of UDP'),
    _o('Domain', 'scope', None, 'binding binding_group global', doc='conf.ref.domain', description='Configure domain-specific options'),
    _o('Domain_For_Unqualified_Recipient_Addresses', 'string', None, 'esmtp_listener global listen pathway pathway_group peer', doc='conf.ref.domain_for_unqualified_recipient_addresses', description='Configure a domain which will be used to resolve delivery for unqualified addresses'),
    _o('Domain_For_Unqualified_Sender_Address', 'string', None, 'esmtp_listener global listen pathway pathway_group peer', doc='conf.ref.domain_for_unqualified_sender_address', description='Configure a domain which will be used to substitute for unqualified sender addresses'),
    _o('Domainkeys', 'bool', None, 'binding binding_group domain global', doc='conf.ref.domainkeys', description='Enable or disable domainkeys signing'),
    _o('Drop_Body_After_Trans_Fail', 'int', 3, 'binding binding_group domain global', doc='conf.ref.drop_body_after_trans_fail', description='Number of retry attempts before freeing message memory'),
    _o('DuraVIP_Balance_Set_Size', 'int', 1, 'cluster', module='cluster', doc='modules.cluster', description='When balancing DuraVIP™s, how many to process as a batch in response to a balance request (cluster-specific)'),
    _o('DuraVIP_Follow', 'string', None, 'listen', doc='cluster.config.duravip', description='Specify the binding a listener should follow (cluster-specific)'),
    _o('DuraVIP_Preference', 'string', None, 'binding listen', doc='cluster.config.duravip', description='Specify a DuraVIP™ preference (cluster-specific)'),
    _o('ECCluster_Listener', 'scope', None, 'global', doc='cluster.listeners', description='Control communication between cluster nodes (cluster-specific)'),
    _o('ECStream_Idle_Time', 'interval', 300, 'ecstream_listener listen pathway pathway_group peer', doc='ecstream_listener', description='Number of seconds of inactivity before a client is disconnected (ECStream only)'),
    _o('ECStream_Listener', 'scope', None, 'global', doc='ecstream_listener', description='Listener for incoming ECSTREAM connections'),
    _o('ECStream_Max_Batch_Size', 'int', 10000, 'ecstream_listener listen pathway pathway_group peer', doc='ecstream_listener', description='Maximum number of ECStream messages to accept before dropping back into the scheduler (ECStream only)'),
    _o('ECStream_Port', 'int', 1825, 'binding binding_group domain global', doc='conf.ref.ecstream_port', description='Configure the port for ecstream deliveries'),
    _o('ECStream_Timeout', 'interval', 600, 'binding binding_group domain global', doc='conf.ref.ecstream_timeout', description='Amount of time to wait for an ecstream connection to be established'),
    _o('EHLO_Hostname', 'string', '__hostname__', 'binding binding_group domain global', doc='conf.ref.ehlo_hostname', description='Set the hostname used for EHLO in outbound mail'),
    _o('EHLO_Timeout', 'interval', 300, 'binding binding_group domain global', doc='conf.ref.ehlo_timeout', description='Network timeout for EHLO'),
    _o('Enable', 'bool', True, 'control_listener eccluster_listener ecstream_listener esmtp_listener http_listener listen msgcserver_listener xmpp_listener', doc='listeners', description='Enable or disable a listener scope'),
    _o('Enable_Authentication', 'bool', None, 'control_listener esmtp_listener http_listener listen pathway pathway_group peer', doc='control_auth', description='Whether or not to enable authentication'),
    _o('Enable_Authorization', 'bool', None, 'control_listener listen peer', doc='control_authz', description='Whether or not to enable authorization for console commands'),
    _o('Enable_DuraVIP', 'bool', None, 'binding listen', doc='cluster.config.duravip', description='Whether to enable Durable MultiVIP© bindings (cluster-specific)'),
    _o('Enable_FBL_Header_Insertion', 'bool', None, 'binding binding_group domain global', doc='conf.ref.enable_fbl_header_insertion', description='Enable or disable fbl header insertion'),
    _o('Enabled', 'bool', True, 'cluster', doc='config.options.summary', description='Whether or not the module is enabled (cluster-specific)'),
    # table: ALL; expanded as conf.ref.debug_flags prints it
    _o('ERROR', 'list', ('TIME', 'FD', 'SMTP', 'LOG1', 'DNS', 'DNSDS', 'NET', 'SIG', 'MEM', 'DB', 'LIC', 'SSL', 'MOD', 'START', 'ALL'), 'debug_flags', doc='conf.ref.debug_flags', description='Set the debug level'),
    _o('ESMTP_Listener', 'scope', None, 'global', doc='esmtp_listener', description='Listener for incoming SMTP connections'),
    _o('Event_Loop', 'string', None, 'ecstream_listener esmtp_listener listen', dynamic=False, doc='config.ref.event_loop', description='Associate a listener with an eventloop'),
    _o('EventLoop', 'scope', None, 'global', dynamic=False, doc='config.ref.eventloop', description='Define a pool of event loops to enable multiple event loop configuration'),
    _o('Events_Per_Iter', 'int', 0, 'control_listener eccluster_listener ecstream_listener esmtp_listener http_listener listen xmpp_listener', doc='conf.ref.events_per_iter', description='Employ when using a Concurrency greater than 1'),
    _o('Exclude_VCTX_Conn', 'list', None, 'binding binding_group domain global', doc='conf.ref.exclude_vctx_conn', description='Exclude validation connection context keys from being journaled in the spool metadata'),
    _o('Exclude_VCTX_Mess', 'list', None, 'binding binding_group domain global', doc='conf.ref.exclude_vctx_mess', description='Exclude validation message context keys from being journaled in the spool metadata'),
    _o('Expensive_Batch_Assessment', 'bool', False, 'global', doc='conf.ref.expensive_batch_assessment', description='Treat messages as equal even if the bodies or headers have been modified since reception'),
    # listeners: 0660; no default in the cluster logs scope
    _o('File_Mode', 'octal', 0o660, 'control_listener eccluster_listener ecstream_listener esmtp_listener http_listener listen logs msgcserver_listener xmpp_listener', doc='conf.ref.eccluster.conf', description='File access rights in octal notation; Octal representation of the file permissions (cluster logs)'),
    # ecmta is durable by default (issue 3): only an explicit `force_fsync = false` opts out.
    _o('Force_Fsync', 'bool', True, 'global', doc='conf.ref.force_fsync', description='Ensure that data is synced to disk on reception'),
    _o('Fully_Resolve_Before_SMTP', 'bool', True, 'binding binding_group domain global', doc='conf.ref.fully_resolve_before_smtp', description='Resolve all MX and A records before attempting delivery'),
    _o('Gateway', 'string', None, 'binding binding_group domain global', doc='conf.ref.gateway', description='Configure a static SMTP route for mail'),
    _o('GCM_Application_ID', 'string', None, 'binding binding_group domain global', doc='https://support.messagesystems.com/docs/web-push/push.gcm.gcm_application_id', description='Define the package name of the Android application allowed to received notifications'),
    _o('GCM_Authorization_Token_ID', 'string', None, 'binding binding_group domain global', doc='https://support.messagesystems.com/docs/web-push/push.gcm.gcm_authorization_token_id', description='Authorization token that permits sending Google push notifications'),
    _o('GCM_Delay_While_Idle', 'bool', False, 'binding binding_group domain global', doc='https://support.messagesystems.com/docs/web-push/push.gcm.gcm_delay_while_idle', description='Whether or not to send the notification immediately if a device is idle'),
    _o('GCM_Dry_Run', 'bool', False, 'binding binding_group domain global', doc='https://support.messagesystems.com/docs/web-push/push.gcm.gcm_dry_run', description='Test a request without actually sending a message'),
    _o('GCM_TTL', 'int', -1, 'binding binding_group domain global', doc='https://support.messagesystems.com/docs/web-push/push.gcm.gcm_ttl', description='Default Time To Live for notifications'),
    _o('Generate_Bounces', 'bool', True, 'binding binding_group domain global', doc='conf.ref.generate_bounces', description='Generate MDNs if mail is failed after reception'),
    _o('Generate_Bounces_For_Multi_Recipient_Policy_Rejections', 'bool', True, 'global pathway pathway_group', doc='conf.ref.generate_bounces_for_multi_recipient_policy_rejections', description='Generate MDNs after reception for policy rejections'),
    _o('Generate_Delay_DSN', 'bool', False, 'binding binding_group domain global', doc='conf.ref.generate_delay_dsn', description='Generate DSNs if mail is delayed'),
    _o('Group', 'string', 'ecuser', 'security', dynamic=False, doc='conf.ref.user', description='Group identity to assume after startup'),
    _o('Growbuf_Size', 'size', 16384, 'global', doc='conf.ref.growbuf_size', description='Size of an element in a growbuf chain'),
    _o('Heartbeat_Start_Delay', 'interval', 15, 'cluster', module='cluster', doc='modules.cluster', description='Seconds to wait after startup before the cluster heartbeat is activated (cluster-specific)'),
    _o('Heartbeats_Per_Sec', 'int', 1, 'cluster', module='cluster', doc='modules.cluster', description='How often to send a heartbeat (cluster-specific)'),
    _o('High_Action', 'list', ('suspend', '4 hours'), 'adaptive_sweep_rule', module='adaptive', doc='modules.adaptive', description='Action when the high threshold is met and the number of delivery attempts exceeds the adaptive_attempt_threshold'),
    # percent; may be fractional (0.5) so kept as a string
    _o('High_Threshold', 'string', '10', 'adaptive_sweep_rule', module='adaptive', doc='modules.adaptive', description='High threshold value for the sum of the rates of the bounce codes or FBL categories'),
    _o('Host', 'scope', None, 'binding binding_group global', doc='conf.ref.host', description='Configure host-specific options'),
    _o('Host_Failure_Retry', 'interval', 120, 'domain global', doc='conf.ref.host_failure_retry', description='Time to wait before attempting a retry'),
    _o('Hostname', 'string', None, 'global', doc='conf.ref.hostname', description='Override the system configured hostname'),
    _o('HTTP_Basic_Auth', 'string', None, 'binding binding_group domain global', doc='conf.ref.http_basic_auth', description='Define the user credentials when using basic HTTP authentication'),
    _o('HTTP_Host', 'string', None, 'binding binding_group domain global', doc='conf.ref.http_host', description='Define the HTTP host'),
    _o('HTTP_Listener', 'scope', None, 'global', doc='https://support.messagesystems.com/docs/web-rest-injector/rest.http_listener', description='Listener used with the REST injector'),
    _o('HTTP_Method', 'string', 'POST', 'binding binding_group domain global', doc='conf.ref.http_method', description='Define the HTTP method to use'),
    _o('HTTP_URI', 'string', None, 'binding binding_group domain global', doc='conf.ref.http_uri', description='Define the HTTP URI that you wish to connect to'),
    _o('HTTP_Version', 'string', '1.1', 'binding binding_group domain global', doc='conf.ref.http_version', description='Define the HTTP version to use'),
    _o('Idle_Time', 'interval', 300, 'esmtp_listener http_listener listen pathway pathway_group peer xmpp_listener', doc='conf.ref.pathway', description='Number of seconds of inactivity before a client is disconnected'),
    _o('Idle_Timeout', 'interval', 5, 'binding binding_group domain global', doc='conf.ref.idle_timeout', description='Time to maintain idle outbound connections'),
    _o('If_Check_Interval', 'interval', 30, 'cluster', module='cluster', doc='modules.cluster', description='How often to run through a maintenance cycle (cluster-specific)'),
    _o('If_Down_Limit', 'int', 4, 'cluster', module='cluster', doc='modules.cluster', description='How long to wait before deciding to bring an IP online (cluster-specific)'),
    _o('Inbound_Throttle_Messages', 'rate', None, 'global pathway pathway_group', doc='conf.ref.inbound_throttle_messages', description='Rate limit inbound mail'),
    _o('INFO', 'list', (), 'debug_flags', doc='conf.ref.debug_flags', description='Set the debug level'),
    _o('Initial_Hash_Buckets', 'int', 32, 'global', doc='conf.ref.initial_hash_buckets', description='Set the number of hash buckets used by the system'),
    _o('Inline_Transfail_Processing', 'bool', True, 'global', doc='conf.ref.inline_transfail_processing', description='How to handle transient failure processing'),
    _o('Keep_Message_Dicts_In_Memory', 'bool', False, 'global', dynamic=False, doc='conf.ref.keep_message_dicts_in_memory', description='Preserve memory representation of metadata when memory is low'),
    _o('Large_Message_Threshold', 'size', 131072, 'global', doc='conf.ref.large_message_threshold', description='Consider a message large when its size exceeds this amount'),
    _o('Legacy_Message_Threshold', 'size', 1048576, 'global', doc='conf.ref.legacy_message_threshold', description='Maximum size allowed for messages being passed to legacy modules'),
    _o('License', 'string', '/opt/msys/ecelerity/etc', 'global', dynamic=False, doc='conf.ref.license', description='Specify an alternate license location'),
    _o('Listen', 'scope', None, 'control_listener ecstream_listener esmtp_listener http_listener msgcserver_listener xmpp_listener', doc='listeners', description='Specify the socket that a listener listens on'),
    # since 3.0
    _o('Listen_Backlog', 'int', 500, 'control_listener eccluster_listener ecstream_listener esmtp_listener http_listener listen xmpp_listener', doc='esmtp_listener', description='Listen backlog'),
    _o('Listener_Sessions', 'int', 0, 'esmtp_listener listen pathway pathway_group peer', doc='config.options.summary', description='Specifies the maximum number of concurrent sessions that can be established to this listener'),
    _o('LMTP_Port', 'int', 2003, 'binding binding_group domain global', doc='conf.ref.lmtp_port', description='Configure the port for LMTP deliveries'),
    _o('Local_Changes_File', 'string', '/opt/msys/ecelerity/etc/local_changes.conf', 'global', doc='conf.ref.local_changes_file', description='File for writing local configuration changes'),
    _o('Local_Changes_Only', 'bool', False, 'global', doc='conf.ref.local_changes_only', description='Whether there is a file for writing local configuration change'),
    _o('Log_Active_Interval', 'interval', 1, 'cluster', module='cluster', doc='modules.cluster', description='Used to tune centralized logging (cluster-specific)'),
    _o('Log_Group', 'string', None, 'cluster', module='cluster', doc='modules.cluster', description='Whether or not panic log messages are broadcast over spread (cluster-specific)'),
    _o('Log_Idle_Interval', 'interval', 10, 'cluster', module='cluster', doc='modules.cluster', description='Amount of time to sleep before looking for another segment (cluster-specific)'),
    _o('Log_Requests_To_Paniclog', 'bool', False, 'http_listener listen pathway pathway_group peer', doc='https://support.messagesystems.com/docs/web-rest-injector/rest.http_listener', description='Whether to log REST injection requests'),
    _o('Logfile', 'string', None, 'logs', doc='conf.ref.eccluster.conf', description='Describe the full path to the log file'),
    _o('Logs', 'scope', None, 'cluster global', doc='conf.ref.ecelerity_cluster.conf', description='Define the location of the cluster manager logs (cluster-specific); Configure centralized log files on the cluster manager'),
    _o('Low_Action', 'list', ('throttle', 'down'), 'adaptive_sweep_rule', module='adaptive', doc='modules.adaptive', description='Action when the high threshold is not met but the low threshold is met'),
    # percent; may be fractional (0.2) so kept as a string
    _o('Low_Threshold', 'string', '5', 'adaptive_sweep_rule', module='adaptive', doc='modules.adaptive', description='Low threshold value for the sum of the rates of the bounce codes or FBL categories'),
    _o('Mail_Queue_Check_VM_Interval', 'interval', 60, 'global', doc='conf.ref.mail_queue_check_vm_interval', description='How often to apply memory management reduction on mail queues'),
    _o('Mailerdaemon', 'string', None, 'binding binding_group domain global', doc='conf.ref.mailerdaemon', description='Set the From: address for MDNs'),
    _o('Mailfrom_Timeout', 'interval', 300, 'binding binding_group domain global', doc='conf.ref.mailfrom_timeout', description='Timeout after MAIL FROM'),
    _o('Maintainer_Pool', 'string', None, 'global', dynamic=False, doc='config.ref.maintainer_pool', description='Create an eventloop for maintainers'),
    _o('Malloc2mmap_Threshold', 'size', 4092, 'global', doc='conf.ref.malloc2mmap_threshold', description='Use mmap when allocations exceed this amount'),
    _o('Manager', 'scope', None, 'logs', doc='cluster.config.logging.complex', description='Define managers for subclusters'),
    _o('Masterdb_File', 'string', '/var/log/ecelerity/ecdb', 'global', dynamic=False, doc='conf.ref.masterdb_file', description='Specify an alternate path for the statistics permastore'),
    _o('Match_Cache_Life', 'interval', 0, 'global', doc='conf.ref.match_cache_life', description='Set the maximum number of seconds that the match cache will be valid'),
    _o('Match_Cache_Size', 'int', 16384, 'global', doc='conf.ref.match_cache_size', description='Size of the cache that holds the results of looking up matching scopes'),
    _o('Max_Deliveries_Per_Connection', 'int', 0, 'binding binding_group domain global', doc='conf.ref.max_deliveries_per_connection', description='Maximum number of messages to deliver before closing a connection'),
    _o('Max_DNS_TTL', 'interval', 4294967295, 'global', doc='conf.ref.max_dns_ttl', description='Set the maximum DNS TTL'),
    _o('Max_Idle', 'interval', None, 'logs', doc='conf.ref.eccluster.conf', description='Maximum number of seconds a log file may be left open'),
    _o('Max_Message_Size', 'size', 0, 'esmtp_listener listen pathway pathway_group peer', doc='config.options.summary', description='Maximum number of bytes allowed in a single message before a "resources exhausted" message is returned to the client'),
    _o('Max_Open', 'int', None, 'logs', doc='conf.ref.eccluster.conf', description='Maximum number of concurrently open log files'),
    _o('Max_Outbound_Connections', 'int', 32, 'binding binding_group domain global host', doc='conf.ref.max_outbound_connections', description='Set the maximum number of outbound connections'),
    _o('Max_Receptions_Per_Connection', 'int', 0, 'esmtp_listener global listen pathway pathway_group peer', doc='config.options.summary', description='Maximum number of messages allowed in a single session, after which a 421 error will be returned'),
    _o('Max_Recipients_Per_Batch', 'int', 100, 'binding binding_group domain global', doc='conf.ref.max_recipients_per_batch', description='Maximum number of recipients to send in a single outbound message transaction'),
    _o('Max_Recipients_Per_Connection', 'int', 0, 'binding binding_group domain esmtp_listener global listen peer', doc='config.options.summary', description='Maximum number of recipients allowed in a single session, after which a 421 error will be returned'),
    _o('Max_Recipients_Per_Message', 'int', 0, 'esmtp_listener listen pathway pathway_group peer', doc='config.options.summary', description='Maximum number of recipients allowed in a message, after which a 421 error will be returned'),
    _o('Max_Request_Size', 'size', None, 'http_listener listen pathway pathway_group peer', doc='config.max_request_size', description='Limit the size of an HTTP request'),
    _o('Max_Resident_Active_Queue', 'int', 250, 'binding binding_group domain global', doc='conf.ref.max_resident_active_queue', description='Threshold above which messages are not held in memory'),
    _o('Max_Resident_Messages', 'int', 32768, 'binding binding_group global', doc='conf.ref.max_resident_messages', description='Threshold above which messages are not held in memory'),
    _o('Max_Resident_Transfails', 'int', 100, 'global', doc='conf.ref.max_resident_transfails', description='If the transient failure queue grows beyond this size, messages are swapped out of memory'),
    # conf.ref.max_retries: auto is the default
    _o('Max_Retries', 'enum', 'auto', 'binding binding_group domain global', choices=('auto', 'none'), doc='conf.ref.max_retries', description='Override the system configured max_retries'),
    _o('Max_Retry_Interval', 'interval', 43200, 'binding binding_group domain global', doc='conf.ref.max_retry_interval', description='Maximum retry interval'),
    _o('Max_Timed_Events_Per_Iter', 'int', 1024, 'global', doc='conf.ref.max_timed_events_per_iter', description='Maximum numer of timed events per scheduler iteration'),
    _o('MCMT_Reception', 'string', 'passthru', 'esmtp_listener listen pathway pathway_group peer', doc='https://support.messagesystems.com/docs/web-mobility/mm7.mcmt_reception', description='Configure a listener to accept the Multi-Channel Message Type (Mobile Momentum)'),
    _o('MDN_Failures_Notify', 'string', None, 'binding binding_group domain global', doc='conf.ref.mdn_failures_notify', description='Mailbox to which to send null recipient MDNs'),
    _o('Memory_Goal', 'int', 90, 'global', doc='conf.ref.memory_goal', description='Configure physical memory usage goal'),
    _o('Memory_HWM', 'int', 95, 'global', doc='conf.ref.memory_hwm', description='Configure physical memory usage high-water mark'),
    # code default (table, digest); the shipped ecelerity.conf / page synopsis set 604800
    _o('Message_Expiration', 'interval', 86400, 'binding binding_group domain global', doc='conf.ref.message_expiration', description='Time to live for messages'),
    _o('Migrate_Connections_Between_Sibling_Domains', 'bool', True, 'global', doc='conf.ref.migrate_connections_between_sibling_domains', description='Optimize connections for sibling domains'),
    _o('MIME_Parse_Large_Messages_During_Reception', 'bool', True, 'global', doc='conf.ref.mime_parse_large_messages_during_reception', description='Configure whether large messages are parsed upon reception or just in time'),
    _o('Min_DNS_TTL', 'interval', 0, 'global', doc='conf.ref.min_dns_ttl', description='Override DNS TTLs smaller than this value'),
    _o('MX_Failures_Fallback_To_A', 'int', 3, 'domain global', doc='conf.ref.mx_failures_fallback_to_a', description='Configure the maximum number of times an MX lookup will be attempted'),
    _o('MX_Failures_To_Delay', 'int', 50, 'domain global', doc='conf.ref.mx_failures_to_delay', description='Number of consecutive failures before a domain is auto-delayed'),
    _o('Never_Attempt_Expired_Messages', 'bool', False, 'binding binding_group domain global', doc='conf.ref.never_attempt_expired_messages', description='Never attempt delivery of expired messages'),
    _o('Never_Retry', 'bool', False, 'binding binding_group domain global', doc='conf.ref.never_retry', description='Whether or not to retry delivery of failed messages'),
    _o('Nodeaddr', 'string', None, 'cluster', module='cluster', doc='modules.cluster', description='Canonical cluster address for the node (cluster-specific)'),
    _o('Nodename', 'string', None, 'cluster', module='cluster', doc='modules.cluster', description='Override the node name that is used to canonically identify this cluster node (cluster-specific)'),
    _o('NOTICE', 'list', (), 'debug_flags', doc='conf.ref.debug_flags', description='Set the debug level'),
    # code default; the shipped ecelerity.conf sets false
    _o('Only_Use_Best_MX_For_Relay_Domains', 'bool', True, 'global', doc='conf.ref.only_use_best_mx_for_relay_domains', description='If this is set to true only the lowest numerical priority MXs are used'),
    _o('Open_Relay', 'bool', False, 'esmtp_listener listen pathway pathway_group peer', doc='conf.ref.open_relay', description='Whether the MTA is an open relay or not'),
    _o('Open_Tracking_Enabled', 'bool', False, 'esmtp_listener listen pathway pathway_group peer', doc='config.open_tracking_enabled', description='Enable or disable open tracking for SMTP injections'),
    _o('Open_Tracking_Scheme', 'string', 'http', 'esmtp_listener listen pathway pathway_group peer', doc='config.open_tracking_scheme', description='Set the hyperlink scheme to use for open tracking links in SMTP injections'),
    _o('Opendkim_Sign', 'bool', True, 'binding binding_group domain global', dynamic=False, doc='conf.ref.opendkim_sign', description='Whether or not to enable OpenDKIM signing'),
    _o('Outbound_Throttle_Connections', 'rate', None, 'binding binding_group domain global', doc='conf.ref.outbound_throttle_connections', description='Limit the rate at which connections are established'),
    _o('Outbound_Throttle_Messages', 'rate', None, 'binding binding_group domain global', doc='conf.ref.outbound_throttle_messages', description='Limit the rate at which messages are delivered'),
    # not in Table 66.1
    _o('Path', 'string', '/var/log/ecelerity/adaptive.leveldb', 'adaptive_backstore_leveldb', doc='conf.ref.adaptive_backstore_leveldb', description='LevelDB database path (only option of adaptive_backstore_leveldb)'),
    _o('Pathway', 'string', None, 'ecstream_listener esmtp_listener listen peer', doc='conf.ref.pathway', description='Means for associating a Listener with a pathway scope'),
    _o('Pathway_Group', 'scope', None, 'global', doc='conf.ref.pathway_group', description='Container for pathway scopes'),
    _o('PCRE_Cache_Size', 'int', 100, 'global', doc='conf.ref.pcre_cache_size', description='Set the maximum size of the ec_pcre_compile cache'),
    _o('PCRE_Cache_TTL', 'interval', 300, 'global', doc='conf.ref.pcre_cache_ttl', description='Set the maximum TTL for the ec_pcre_compile cache'),
    _o('Peer', 'scope', None, 'control_listener ecstream_listener esmtp_listener http_listener listen xmpp_listener', doc='listeners', description='Create an ACL within a specific listener'),
    _o('Permastore_Interval', 'interval', 300, 'global', doc='conf.ref.permastore_interval', description='Frequency for saving various statistics'),
    _o('Pidfile', 'string', '/var/run/ecelerity.pid', 'global', dynamic=False, doc='conf.ref.pidfile', description='Set the PID file path'),
    _o('Pool_Name', 'string', None, 'control_listener eccluster_listener ecstream_listener esmtp_listener http_listener listen xmpp_listener', doc='esmtp_listener', description='Associate a threadpool with a listener'),
    _o('Prohibited_Hosts', 'list', None, 'global', doc='conf.ref.prohibited_hosts', description='Prevent mail from being delivered to invalid destinations'),
    _o('Rcptto_Timeout', 'interval', 300, 'binding binding_group domain global', doc='conf.ref.rcptto_timeout', description='Timeout after RCPT TO'),
    _o('Received_Hostname', 'string', None, 'esmtp_listener listen pathway pathway_group peer', doc='config.options.summary', description='Hostname that is placed in the received headers; these are added to the messages as it transits Momentum'),
    _o('Reconfig_Message', 'string', '4.3.2 Reconfiguration in progress', 'esmtp_listener', doc='esmtp_listener.reconfig_message', description='Message if the configuration has changed'),
    _o('Relay_Domains', 'list', None, 'global pathway pathway_group', doc='conf.ref.relay_domains', description='Configure the list of domains for which Momentum relays mail'),
    _o('Relay_For_Sending_Domains', 'list', None, 'esmtp_listener listen pathway pathway_group peer', doc='conf.ref.relay_for_sending_domains', description='Domains that may use the MTA as a relay'),
    _o('Relay_Hosts', 'list', None, 'esmtp_listener global listen pathway pathway_group peer', doc='conf.ref.relay_hosts', description='Configure the list of hosts for which Momentum relays mail'),
    _o('Remote_SMTP_Port', 'int', 25, 'binding binding_group domain global', doc='conf.ref.remote_smtp_port', description='Set the port to be used for SMTP deliveries'),
    _o('Replicate', 'scope', None, 'cluster', doc='conf.ref.ecelerity_cluster.conf', description='Define the cluster replication framework (cluster-specific)'),
    _o('Require_EHLO', 'bool', False, 'esmtp_listener global listen pathway pathway_group peer', doc='conf.ref.require_ehlo', description='Reject mail from clients that do not say HELO'),
    _o('Reserve_Maintenance_Interval', 'interval', 15, 'global', doc='conf.ref.reserve_maintenance_interval', description='How often to perform mail queue maintenance'),
    _o('Resolv_Conf', 'string', None, 'global', doc='conf.ref.resolv_conf', description='Specify a custom resolv.conf file'),
    _o('Response_Transcode_Pattern', 'string', None, 'binding binding_group domain global', doc='conf.ref.response_transcode_pattern', description='Regex pattern for comparison to a server response'),
    _o('Response_Transcode_Replace', 'string', None, 'binding binding_group domain global', doc='conf.ref.response_transcode_replace', description='Replacement string for a server response'),
    _o('Retry_Interval', 'interval', 1200, 'binding binding_group domain global', doc='conf.ref.retry_interval', description='Base retry interval'),
    _o('RFC2821_Allow_Whitespace_In_Envelope', 'bool', False, 'global pathway pathway_group', doc='conf.ref.rfc2821_allow_whitespace_in_envelope', description='Permit trailing white space before the final CRLF'),
    _o('RFC2821_Pedantic_Address_Rules', 'bool', True, 'global pathway pathway_group', doc='conf.ref.rfc2821_pedantic_address_rules', description='Allow relaxation of enforcement of the rfc2821 address rules'),
    _o('RFC2822_Date_Header', 'enum', 'ifneeded', 'global pathway pathway_group', choices=('ifneeded', 'pedantic', 'ignore'), doc='conf.ref.rfc2822_date_header', description='Allow relaxation of enforcement of the rfc2822 address rules'),
    _o('RFC2822_Lone_LF_In_Body', 'enum', 'ignore', 'global pathway pathway_group', choices=('ignore', 'pedantic', 'fix'), doc='conf.ref.rfc2822_lone_lf_in_body', description='Allow relaxation of enforcement of the rfc2822 address rules'),
    _o('RFC2822_Lone_LF_In_Headers', 'enum', 'pedantic', 'global pathway pathway_group', choices=('pedantic', 'fix'), doc='conf.ref.rfc2822_lone_lf_in_headers', description='Allow relaxation of enforcement of the rfc2822 address rules'),
    _o('RFC2822_Max_Line_Length', 'enum', 'ignore', 'global pathway pathway_group', choices=('ignore', 'pedantic', 'fix'), doc='conf.ref.rfc2822_max_line_length', description='Allow relaxation of enforcement of the rfc2822 address rules'),
    _o('RFC2822_Max_Line_Length_Policy', 'enum', 'none', 'global pathway pathway_group', choices=('none', 'fix', 'reject'), doc='conf.ref.rfc2822_max_line_length_policy', description='Determine how non-RFC-compliant line lengths are handled'),
    _o('RFC2822_Messageid_Header', 'enum', 'ifneeded', 'global pathway pathway_group', choices=('ifneeded', 'ignore'), doc='conf.ref.rfc2822_messageid_header', description='Allow relaxation of enforcement of the rfc2822 address rules'),
    _o('RFC2822_Missing_Headers', 'enum', 'reject', 'global pathway pathway_group', choices=('reject', 'allow'), doc='conf.ref.rfc2822_missing_headers', description='Allow relaxation of enforcement of the rfc2822 address rules'),
    _o('RFC2822_Trace_Headers', 'bool', True, 'global pathway pathway_group', doc='conf.ref.rfc2822_trace_headers', description='Allow relaxation of enforcement of the rfc2822 address rules'),
    _o('Role', 'scope', None, 'authorization', doc='conf.ref.authorization', description='Define a role within an authorization stanza'),
    _o('Routes', 'list', None, 'domain global', doc='conf.ref.routes', description='Configure message routing'),
    _o('Rset_Timeout', 'interval', 30, 'binding binding_group domain global', doc='conf.ref.rset_timeout', description='Set the timeout after RSET'),
    _o('Scheduler', 'string', None, 'global', dynamic=False, doc='conf.ref.scheduler', description='Override the default IO scheduler'),
    _o('Scope_Max_Outbound_Connections', 'int', None, 'binding binding_group domain global', doc='conf.ref.scope_max_outbound_connections', description='Provide traffic shaping for outbound connections'),
    _o('Security', 'scope', None, 'global', dynamic=False, doc='conf.ref.security', description='Scope for defining which permissions are retained by which user'),
    _o('Send_8BitMime', 'enum', 'no', 'binding binding_group domain global', choices=('no', 'ifavailable'), doc='conf.ref.send_8bitmime', description='Enable advertising of 8BITMIME when sending mail'),
    _o('Server_Max_File_Descriptors', 'int', 3000000, 'global', doc='conf.ref.server_max_file_descriptors', description='Sets the maximum number of file descriptors usable by the system'),
    # CONFLICT: table + shipped conf 20000, conf.ref page 75000; table kept
    _o('Server_Max_Outbound_Connections', 'int', 20000, 'binding binding_group global', doc='conf.ref.server_max_outbound_connections', description='Sets the maximum number of outbound connections'),
    _o('Server_Reserve_Outbound_Connections', 'int', 200, 'global', doc='conf.ref.server_reserve_outbound_connections', description='Sets the server-wide connection limit reserve'),
    _o('Service_Sessions', 'int', 0, 'esmtp_listener listen pathway pathway_group peer', doc='config.options.summary', description='Specifies the maximum number of concurrent sessions that can be established to all listeners for this service (e.g., ESMTP, ECStream)'),
    _o('Signing_Stats', 'enum', 'all', 'global', choices=('all', 'global', 'off'), doc='conf.ref.signing_stats', description='Control how signing statistics are recorded'),
    # 100 before 3.0.24, 1000 since
    _o('SIV_Throttle_Cache_Size', 'int', 1000, 'global', doc='conf.ref.siv_throttle_cache_size', description='Set the maximum number of named throttles'),
    _o('Skip_Hosts', 'list', None, 'global', doc='conf.ref.skip_hosts', description='Skip the specified host, but consider other hosts in the domain'),
    _o('SMTP_Extensions', 'list', None, 'esmtp_listener listen pathway pathway_group peer', doc='esmtp_listener.extensions', description='Array of SMTP extensions'),
    _o('SNMP', 'scope', None, 'global', dynamic=False, doc='conf.ref.snmp', description='Simple Network Management Protocol Support scope options'),
    _o('SNMP_Traps', 'scope', None, 'global', dynamic=False, doc='conf.ref.snmp', description='Enable and configure generation of SNMP traps'),
    _o('Soft_Bounce_Drain_Rate', 'int', 100, 'global', doc='conf.ref.soft_bounce_drain_rate', description='How many soft bounces to place into the mail queues in a single scheduler iteration'),
    _o('Spool_Mode', 'octal', 0o640, 'global', dynamic=False, doc='conf.ref.spool_mode', description='Set the file mode for newly created spool files'),
    _o('Spoolbase', 'string', '/var/spool/ecelerity', 'global', dynamic=False, doc='conf.ref.spoolbase', description='Set the base directory for the spool'),
    _o('SSL_Lock_Method', 'enum', 'mutex', 'global', dynamic=False, choices=('mutex', 'spinlock'), doc='config.ssl_lock_method', description='Specify the SSL lock method'),
    _o('Stack_Size', 'size', 0, 'threadpool', doc='conf.ref.threadpool', description='Stack space for a threadpool'),
    _o('Starttls_Injection_Policy', 'enum', 'reject', 'esmtp_listener listen pathway pathway_group peer', choices=('allow', 'ignore', 'reject'), doc='config.starttls_injection_policy', description='Protect against SMTP injections prior to TLS'),
    # SNMP agent enabled by default; in snmp_traps the default is off (see SCOPE_DEFAULTS)
    _o('State', 'bool', True, 'snmp snmp_traps', dynamic=False, doc='conf.ref.snmp', description='Whether to enable the SNMP agent; Whether to enable generation of SNMP traps'),
    _o('Static_Banner', 'string', None, 'esmtp_listener listen pathway pathway_group peer', doc='config.options.summary', description='Specifies the banner that will be displayed to the remote client upon connecting. You must include 220 as the beginning of your replacement string; e.g., 220 my.mail.server ESMTP'),
    _o('Supplemental_Groups', 'list', None, 'security', dynamic=False, doc='conf.ref.supplemental_groups', description='Supplemental groups to assume after startup'),
    _o('Suspend_Delivery', 'bool', False, 'binding binding_group domain global', doc='conf.ref.suspend_delivery', description='Prevent outbound mail delivery'),
    _o('SysContact', 'string', None, 'snmp', dynamic=False, doc='conf.ref.snmp', description='Set the SNMP SysContact option value'),
    _o('SysDescription', 'string', None, 'snmp', dynamic=False, doc='conf.ref.snmp', description='Set the SNMP SysDescription option value'),
    _o('SysLocation', 'string', None, 'snmp', dynamic=False, doc='conf.ref.snmp', description='Set the SNMP SysLocation option value'),
    _o('TCP_Buffer_Size', 'size', 32768, 'cluster global', doc='conf.ref.tcp_buffer_size', description='Maximum tcp buffer size for outbound connections'),
    # 4096 for ESMTP_Listener; 32768 for HTTP_Listener (see SCOPE_DEFAULTS)
    _o('TCP_Recv_Buffer_Size', 'size', 4096, 'control_listener eccluster_listener ecstream_listener esmtp_listener http_listener listen xmpp_listener', doc='esmtp_listener', description='Sets the TCP receive buffer size. When set to 0, the operating system automatically manages the buffer size.'),
    # 4096 for ESMTP_Listener; 32768 for HTTP_Listener (see SCOPE_DEFAULTS)
    _o('TCP_Send_Buffer_Size', 'size', 4096, 'control_listener eccluster_listener ecstream_listener esmtp_listener http_listener listen xmpp_listener', doc='esmtp_listener', description='Sets the TCP send buffer size. When set to 0, the operating system automatically manages the buffer size.'),
    _o('ThreadPool', 'scope', None, 'global', doc='conf.ref.threadpool', description='Configure thread pool specific options'),
    # +adaptive_backstore_riak: conf.ref.adaptive_backstore_riak: timeout (default 5 there)
    _o('Timeout', 'interval', 60, 'adaptive_backstore_riak control_listener', doc='control_listener', description='Timeout for idle control connections on Control_Listeners'),
    # conf.ref.timestampformat synopsis keeps the trailing space the table drops
    _o('TimestampFormat', 'string', '[%a %d %b %Y %H:%M:%S] ', 'global', doc='conf.ref.timestampformat', description='Set the timestamp format used when logging to stderr'),
    _o('TLS', 'enum', 'no', 'binding binding_group domain global', choices=('no', 'ifavailable', 'required'), doc='config.ref.tls', description='Determine whether to use a TLS connection for outbound mail'),
    _o('TLS_Allow_Renegotiation', 'bool', True, 'ecstream_listener esmtp_listener http_listener listen pathway pathway_group peer xmpp_listener', doc='config.tls_allow_renegotiation', description='Determine whether to enable TLS renegotiation'),
    _o('TLS_CA', 'string', None, 'binding binding_group domain global', doc='config.tls_ca', description='Specify certificate authority for outbound mail'),
    _o('TLS_Certificate', 'string', None, 'binding binding_group domain ecstream_listener esmtp_listener global http_listener listen pathway pathway_group peer xmpp_listener', doc='config.tls_certificate', description='Specify certificate to use for inbound and outbound mail'),
    _o('TLS_Ciphers', 'string', None, 'binding binding_group domain ecstream_listener esmtp_listener global http_listener listen pathway pathway_group peer xmpp_listener', doc='config.tls_ciphers', description='Specify allowable ciphers for TLS inbound and outbound sessions'),
    _o('TLS_Client_CA', 'string', None, 'ecstream_listener esmtp_listener global http_listener listen pathway pathway_group peer xmpp_listener', doc='config.tls_client_ca', description='Specify certificate authority for inbound mail'),
    _o('TLS_Dhparams_File', 'string', None, 'global', doc='conf.ref.tls_dhparams_file', description='Specifies DHE parameters that add per-session randomness to the encryption'),
    _o('TLS_Enable_DHE_Ciphers', 'bool', True, 'global', doc='conf.ref.tls_enable_dhe_ciphers', description='Controls whether or not DHE ciphers are available'),
    # config.tls_engine: cannot be changed at runtime
    _o('TLS_Engine', 'enum', 'openssl', 'global', dynamic=False, choices=('openssl', 'gnutls'), doc='config.tls_engine', description='Specify the TLS library to use (OpenSSL or GNUTLS)'),
    _o('TLS_Ifavailable_Fallback', 'bool', True, 'binding binding_group domain global', doc='config.tls_ifavailable_fallback', description='Determine the behavior if TLS negotiation fails'),
    _o('TLS_Key', 'string', None, 'binding binding_group domain ecstream_listener esmtp_listener global http_listener listen pathway pathway_group peer xmpp_listener', doc='config.tls_key', description='Specify the TLS key to use for outbound mail or inbound mail'),
    _o('TLS_Protocols', 'string', None, 'binding binding_group domain ecstream_listener esmtp_listener global http_listener listen pathway pathway_group peer', doc='config.tls_protocols', description='Allowable ciphers for TLS inbound and outbound sessions'),
    _o('TLS_Verified_Peer_Can_Relay', 'bool', False, 'ecstream_listener esmtp_listener listen pathway pathway_group peer', doc='inbound_tls', description='Verification that peer can relay'),
    _o('TLS_Verified_Peer_Is_Authorized', 'bool', False, 'http_listener listen pathway peer', doc='config.tls_verified_peer_is_authorized', description='Mark requests that use a verified SSL Client certificate as being authorized'),
    _o('TLS_Verify', 'enum', 'no', 'binding binding_group domain global', choices=('no', 'ca', 'host', 'optional'), doc='config.tls_verify', description='Specify how to handle the remote presented certificate'),
    _o('TLS_Verify_Mode', 'enum', None, 'ecstream_listener esmtp_listener http_listener listen pathway pathway_group peer xmpp_listener', choices=('none', 'require'), doc='config.tls_verify_mode', description='Determine whether a TLS certificates is required'),
    _o('Topology', 'scope', None, 'cluster', doc='cluster.config.duravip', description='Define the cluster network topology (cluster-specific)'),
    _o('Trace_SMTP_Mode', 'octal', 0o640, 'global', dynamic=False, doc='conf.ref.trace_smtp_mode', description='Set the default permissions of trace files'),
    _o('Tracking_Domain', 'string', 'localhost:8080', 'esmtp_listener listen pathway pathway_group peer', doc='config.tracking_domain', description='Set the tracking domain to use for engagement tracking in SMTP injections'),
    _o('Tracking_Link_Expiry', 'interval', 31536000, 'esmtp_listener listen pathway pathway_group peer', doc='config.tracking_link_expiry', description='Set the expiration time, in seconds, for engagement tracking for SMTP injections'),
    _o('Transfail_Drain_Rate', 'int', 100, 'global', doc='conf.ref.transfail_drain_rate', description='Maximum number of messages to pop off the transient failure queue in a single scheduler iteration'),
    # since 3.1.6
    _o('Transform_8BitMime_Content', 'enum', 'ifneeded', 'binding binding_group domain global', choices=('no', 'ifneeded', 'strict', 'strip'), doc='conf.ref.transform_8bitmime_content', description='Enable 8BITMIME downconversion when sending mail'),
    _o('Trap_Destination', 'string', None, 'snmp_traps', dynamic=False, doc='conf.ref.snmp', description='Destination for SNMP trap'),
    _o('Trap_Interval', 'interval', 60, 'snmp_traps', dynamic=False, doc='conf.ref.snmp', description='Frequency of SNMP trap generation'),
    _o('Umem_Reap_Interval', 'interval', 1800, 'global', doc='conf.ref.umem_reap_interval', description='How often to release unused memory'),
    _o('Unconditional_Rebind', 'bool', True, 'cluster', module='cluster', doc='modules.cluster', description='Whether the full set_binding logic is invoked or not (cluster-specific)'),
    _o('Unlink_On_Spool_In_Failure', 'bool', True, 'global', doc='conf.ref.unlink_on_spool_in_failure', description='Whether or not to remove malformed messages'),
    _o('_Unsafe_Spool', 'bool', False, 'global', doc='conf.ref.unsafe_spool', description='Allow dangerous spool semantics to be used'),
    _o('Use_Iflist_Cache', 'bool', False, 'global', dynamic=False, doc='conf.ref.use_iflist_cache', description='Whether or not to cache the list of interfaces configured by the system'),
    _o('Use_IPv6', 'bool', False, 'global', doc='conf.ref.use_ipv6', description='Affects the selection of IPv6 hosts in the SMTP client'),
    _o('Use_Mmap', 'bool', False, 'global', doc='conf.ref.use_mmap', description='Use mmap when spooling messages from disk'),
    _o('Use_Sendfile', 'bool', False, 'global', doc='conf.ref.use_sendfile', description='Use sendfile() when sending mail'),
    _o('Use_SSL', 'bool', False, 'ecstream_listener esmtp_listener http_listener listen pathway pathway_group peer', doc='inbound_ssl', description='Whether or not to use SSL verification'),
    _o('User', 'string', 'ecuser', 'security', dynamic=False, doc='conf.ref.user', description='User identity to assume after startup'),
    _o('View_Balance_Interval', 'interval', 10, 'cluster', module='cluster', doc='modules.cluster', description='How often DuraVIP™ views are subject to balancing (cluster-specific)'),
    _o('View_Broadcast_Interval', 'interval', 0, 'cluster', module='cluster', doc='modules.cluster', description='How often to speculatively broadcast a view announcement to the cluster (cluster-specific)'),
    _o('View_Mature_Time', 'interval', 5, 'cluster', module='cluster', doc='modules.cluster', description='How long a DuraVIP™ view needs to remain unchanged before considering it "mature" (cluster-specific)'),
    _o('WARNING', 'list', (), 'debug_flags', doc='conf.ref.debug_flags', description='Set the debug level'),
    _o('Watch_Interval', 'interval', 10, 'snmp_traps', dynamic=False, doc='conf.ref.snmp', description='Interval for watched system variables for SNMP traps'),
    _o('Watch_Variables', 'dict', None, 'snmp_traps', dynamic=False, doc='conf.ref.snmp', description='SNMP traps watch variables'),
    _o('XCLIENT', 'enum', 'no', 'binding binding_group domain global', choices=('no', 'ifavailable', 'required'), doc='conf.ref.xclient', description='Use the XCLIENT extension to SMTP for outbound mail'),
    _o('XMPP_Dialback_Secret', 'string', None, 'domain', doc='https://support.messagesystems.com/docs/web-mobility/mobility.xmpp.modules', description='Use when verifying the XMPP server dialback key (Mobile Momentum)'),
    _o('XMPP_Listener', 'scope', None, 'global', doc='https://support.messagesystems.com/docs/web-mobility/mobility.xmpp.modules', description='The listener for incoming XMPP connections (Mobile Momentum)'),
    _o('XMPP_Role', 'string', None, 'domain', doc='https://support.messagesystems.com/docs/web-mobility/mobility.xmpp.modules', description='Define whether a domain is an XMPP server or client (Mobile Momentum)'),
]

OPTIONS = [replace(spec, built=spec.name.lower() in BUILT) for spec in _SPECS]
