"""Scope declarations: one ScopeSpec per scope keyword ecelerity.conf may use.

Sources: Table 66.1 "(scope)" rows, MOMENTUM_DIGEST §1.3 and the conf.ref pages named in `doc`.
`parents` are lowercased scope kinds ("global" = top level). A module name is also a valid
parent kind for scopes a module owns (adaptive_sweep_rule lives in adaptive's option scopes,
Replicate/Topology inside the `cluster` module stanza, Datasource is ds_core's).

named: True = takes an instance name (`Domain "x" {}`), False = anonymous (`Debug_Flags {}`),
None = either form is accepted.
"""

from __future__ import annotations

from dataclasses import replace

from ecmta.config.registry import ScopeSpec

# ----------------------------------------------------------------------------------------
# BUILT: the ONE place that says which scope keywords ecmta implements (lowercased names).
# Containers are built; the options used inside them are checked on their own.
# ----------------------------------------------------------------------------------------
BUILT = frozenset({
    "threadpool", "control_listener", "listen", "debug_flags",
    "domain", "binding", "binding_group", "host",
    "esmtp_listener", "peer", "pathway", "pathway_group",
})

# Listener kinds (anonymous, global). Listen and Peer nest inside these.
LISTENERS = ("control_listener", "eccluster_listener", "ecstream_listener", "esmtp_listener",
             "http_listener", "msgcserver_listener", "xmpp_listener")

# Names that may be regular expressions written "/.../" (conf.ref.domain, conf.ref.host 4.2+).
REGEX_NAMED = frozenset({"domain", "host"})


def _s(name, named, parents, doc="", module=None):
    return ScopeSpec(name=name, named=named, parents=frozenset(parents.split()), doc=doc,
                     module=module)


_G = "global"
_SPECS = [
    # sending side
    _s("Domain", True, "global binding binding_group", "conf.ref.domain"),
    _s("Binding", True, "global binding_group", "conf.ref.binding"),
    _s("Binding_Group", True, "global", "conf.ref.binding_group"),
    _s("Host", True, "global binding binding_group", "conf.ref.host"),
    # listeners (Table 66.1 lists them as global scopes; one anonymous stanza each)
    _s("ESMTP_Listener", False, _G, "esmtp_listener"),
    _s("Control_Listener", False, _G, "control_listener"),
    _s("HTTP_Listener", False, _G, "http_listener"),
    _s("ECStream_Listener", False, _G, "ecstream_listener"),
    _s("ECCluster_Listener", False, _G, "cluster.listeners"),
    _s("Msgcserver_Listener", False, _G, "modules.msgc"),
    _s("XMPP_Listener", False, _G,
       "https://support.messagesystems.com/docs/web-mobility/mobility.xmpp.modules"),
    # Listen "addr" and Peer "CIDR" (Table 66.1 parents; Listen is not listed for ECCluster_Listener)
    _s("Listen", True, "control_listener ecstream_listener esmtp_listener http_listener "
       "msgcserver_listener xmpp_listener", "listeners"),
    _s("Peer", True, "control_listener ecstream_listener esmtp_listener http_listener listen "
       "xmpp_listener", "listeners"),
    # receiving-side policy containers
    _s("Pathway", True, "global pathway_group", "conf.ref.pathway"),
    _s("Pathway_Group", True, _G, "conf.ref.pathway_group"),
    # process-wide
    _s("ThreadPool", True, _G, "conf.ref.threadpool"),
    _s("EventLoop", True, _G, "config.ref.eventloop"),
    _s("Datasource", True, _G, "modules.ds_core", module="ds_core"),
    _s("Security", False, _G, "conf.ref.security"),
    _s("Debug_Flags", False, _G, "conf.ref.debug_flags"),
    _s("Authorization", False, _G, "conf.ref.authorization"),
    _s("Role", True, "authorization", "conf.ref.authorization"),
    _s("SNMP", False, _G, "conf.ref.snmp"),
    _s("SNMP_Traps", False, _G, "conf.ref.snmp"),
    _s("Destination", True, "snmp_traps", "conf.ref.snmp"),   # trap destination "ip:port"
    # adaptive delivery
    _s("Adaptive_Backstore_Leveldb", False, _G, "conf.ref.adaptive_backstore_leveldb"),
    _s("Adaptive_Backstore_Riak", False, _G, "conf.ref.adaptive_backstore_riak"),
    _s("Adaptive_Sweep_Rule", True, "global binding binding_group domain", "modules.adaptive",
       module="adaptive"),
    # cluster (ecelerity-cluster.conf / eccluster.conf on the cluster manager)
    _s("Replicate", True, "cluster", "conf.ref.ecelerity_cluster.conf", module="cluster"),
    _s("Topology", True, "cluster", "cluster.config.duravip", module="cluster"),
    _s("Logs", False, "global cluster", "conf.ref.eccluster.conf"),
    _s("Manager", True, "logs", "cluster.config.logging.complex"),
]

SCOPES = [replace(spec, built=spec.name.lower() in BUILT) for spec in _SPECS]
