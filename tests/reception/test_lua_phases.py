"""Lua policy through the real daemon: every phase and every disposition.

The scripts are written the way Momentum operators write them (implementing.policy.scriptlets,
lua.ref.*): `require("msys.core")`, a module table, `msys.registerModule`, loaded from the
config with `scriptlet "scriptlet" { script "x" { source = "dir.file" } }` next to the
config file. Each behaviour is switched on by the client (EHLO name, sender, recipient,
Subject), so one daemon serves the whole module.
"""

from __future__ import annotations

import re
import time

import pytest

from ecmta.tests.harness import free_port
from ecmta.tests.reception.helpers import (Shared, ctx_pairs, local_port, message, queue_id,
                                           start_mta, wait_for)

# Example 62.2 (implementing.policy.scriptlets), verbatim.
EHLO_PHASE = """\
require("msys.core");
local mod = {};
function mod:validate_ehlo(str, accept, vctx)
  print("ehlo string is:", msys.expandMacro("%{vctx_conn:ehlo_string}"));
  return msys.core.VALIDATE_CONT;
end
msys.registerModule("ehlo_phase", mod);
"""

# Every phase appends its name to a context "trail" when the client says EHLO trail.test.
TRAIL = """\
require("msys.core");
require("msys.extended.message");
require("msys.extended.vctx");
local mod = {};
local C, M = msys.core.VCTX_CONN, msys.core.VCTX_MESS

local function on(vctx)
  return vctx:get(C, "ehlo_domain") == "trail.test"
end
local function mark(vctx, name)
  local t = vctx:get(C, "trail")
  vctx:set(C, "trail", (t and t ~= "") and (t .. "," .. name) or name)
end

function mod:init()
  print("trail: init ran")
  return true
end
function mod:validate_connect(ac, vctx)
  vctx:set(C, "trail", "connect")
  return msys.core.VALIDATE_CONT
end
function mod:validate_ehlo(str, ac, vctx)
  if on(vctx) then mark(vctx, "ehlo") end
  return msys.core.VALIDATE_CONT
end
function mod:validate_mailfrom(str, ac, vctx)
  if on(vctx) then mark(vctx, "mailfrom") end
  return msys.core.VALIDATE_CONT
end
function mod:validate_rcptto(msg, str, ac, vctx)
  if on(vctx) then mark(vctx, "rcptto:" .. vctx:get(M, "rcptto_localpart")) end
  return msys.core.VALIDATE_CONT
end
function mod:validate_rcptto_list(list, vctx)
  if on(vctx) then mark(vctx, "rcptto_list") end
  return msys.core.VALIDATE_CONT
end
function mod:validate_rcptto_list_final(node, vctx)
  if on(vctx) then mark(vctx, "rcptto_list_final") end
  return msys.core.VALIDATE_CONT
end
function mod:validate_data(msg, ac, vctx)
  if on(vctx) then mark(vctx, "data") end
  return msys.core.VALIDATE_CONT
end
function mod:validate_data_spool(msg, ac, vctx)
  if on(vctx) then mark(vctx, "data_spool") end
  return msys.core.VALIDATE_CONT
end
function mod:validate_data_spool_each_rcpt(msg, ac, vctx)
  if on(vctx) then
    local E = msys.core.ECMESS_CTX_MESS
    msg:context_set(E, "each", "each_rcpt:" .. msg:rcptto())
  end
  return msys.core.VALIDATE_CONT
end
function mod:validate_set_binding(msg)
  local E = msys.core.ECMESS_CTX_MESS
  if msg:context_get(msys.core.ECMESS_CTX_CONN, "ehlo_domain") == "trail.test" then
    msg:context_set(E, "binding_phase", "set_binding")
  end
  return msys.core.VALIDATE_CONT
end
function mod:core_final_validation(msg, ac, vctx)
  if on(vctx) then
    msg:context_set(msys.core.ECMESS_CTX_MESS, "final", "final_validation")
  end
  return msys.core.VALIDATE_CONT
end
msys.registerModule("trail", mod);
"""

# Dispositions, each switched on by what the client sends.
DISPO = """\
require("msys.core");
require("msys.extended.message");
require("msys.extended.vctx");
local mod = {};
local C, M = msys.core.VCTX_CONN, msys.core.VCTX_MESS

function mod:validate_connect(ac, vctx)
  local hint = vctx:get(C, "peer_hint") or ""
  -- Example 70.72 (lua.ref.vctx_tarpit), for one Listen
  if hint == "tarpit" then
    vctx:tarpit(1);
  elseif hint == "refuse" then
    vctx:set_code(554, "5.7.1 no service for you")
    return msys.core.VALIDATE_DONE
  elseif hint == "busy" then
    vctx:set_code(421, "4.7.0 too busy, try later")
    return msys.core.VALIDATE_DONE
  end
  return msys.core.VALIDATE_CONT;
end

function mod:validate_ehlo(str, accept, vctx)
  local d = vctx:get(C, "ehlo_domain")
  if d == "reject-ehlo.test" then
    vctx:set_code(550, "5.7.1 we do not talk to you")
    return msys.core.VALIDATE_DONE
  elseif d == "tempfail-ehlo.test" then
    vctx:set_code(450, "4.7.1 come back later")
    return msys.core.VALIDATE_DONE
  elseif d == "error.test" then
    error("boom in ehlo")
  elseif d == "noreturn.test" then
    return                            -- no return value: an illegal result
  elseif d == "done.test" then
    vctx:set(C, "first_module", "dispo")
    return msys.core.VALIDATE_DONE    -- the next module of this phase does not run
  end
  return msys.core.VALIDATE_CONT
end

-- Example 70.70 (lua.ref.vctx_disconnect), verbatim apart from the module name
function mod:validate_mailfrom(str, accept, vctx)
  str = tostring(str);
  if (string.find(str, "disconnect@example.com") != nil) then
    print("Disconnecting " .. str);
    vctx:disconnect(421, "Go away dude");
  return msys.core.VALIDATE_DONE;
end
  if string.find(str, "again@", 1, true) then
    self.again = (self.again or 0) + 1
    vctx:set(M, "again_calls", tostring(self.again))
    if self.again < 3 then return msys.core.VALIDATE_AGAIN end
  end
  if string.find(str, "badsender@", 1, true) then
    vctx:set_code(553, "5.7.1 sender refused by policy")
    return msys.core.VALIDATE_DONE
  end
  return msys.core.VALIDATE_CONT;
end

function mod:validate_rcptto(msg, str, accept, vctx)
  local lp = vctx:get(M, "rcptto_localpart")
  if lp == "unknown" then
    vctx:set_code(550, "5.1.1 no such user")
    return msys.core.VALIDATE_DONE
  elseif lp == "later" then
    vctx:set_code(451, "4.2.1 mailbox busy")
    return msys.core.VALIDATE_DONE
  elseif lp == "kick" then
    vctx:disconnect(421, "4.7.0 closing now")
    return msys.core.VALIDATE_DONE
  end
  return msys.core.VALIDATE_CONT
end

function mod:validate_data(msg, accept, vctx)
  local subj = (msg:header("Subject") or {})[1] or ""
  if subj == "spam" then
    vctx:set_code(554, "5.7.1 looks like spam")
    return msys.core.VALIDATE_DONE
  elseif subj == "discard" then
    msg:discard()
  elseif subj == "discard with reason" then
    msg:discard("550 Bounce message processed")
  elseif subj == "discard without code" then
    msg:discard("go away")
  elseif subj == "code" then
    msg:code(451, "4.3.2 message code from policy")
    return msys.core.VALIDATE_DONE
  elseif subj == "data error" then
    local t = nil
    return t.field
  end
  return msys.core.VALIDATE_CONT
end

function mod:validate_data_spool_each_rcpt(msg, accept, vctx)
  local rcpt = msg:rcptto()
  if string.find(rcpt, "^drop%-me@") then
    msg:discard("550 5.7.1 dropped for this recipient")
  elseif string.find(rcpt, "^refuse%-me@") then
    vctx:set_code(550, "5.7.1 refused for this recipient")
    return msys.core.VALIDATE_DONE
  end
  return msys.core.VALIDATE_CONT
end
msys.registerModule("dispo", mod);
"""

# A module must be registered under the name of its script stanza (a second module in
# the same file is never run), so these two have their own files.
KEEP = """\
require("msys.core");
local keep = {}
function keep:validate_ehlo(str, ac, vctx)
  if vctx:get(msys.core.VCTX_CONN, "ehlo_domain") == "trail.test" then
    self.saw_trail = "trail.test"
  end
  return msys.core.VALIDATE_CONT
end
function keep:validate_dealloc()
  if self.saw_trail then print("trail: dealloc saw " .. self.saw_trail) end
  return msys.core.VALIDATE_CONT
end
msys.registerModule("keep", keep);
"""

AFTER = """\
require("msys.core");
local after = {}
function after:validate_ehlo(str, accept, vctx)
  vctx:set(msys.core.VCTX_CONN, "second_module", "ran")
  return msys.core.VALIDATE_CONT
end
msys.registerModule("after", after);
"""

MISNAMED = """\
require("msys.core");
local mod = {}
function mod:validate_ehlo(str, accept, vctx)
  vctx:set(msys.core.VCTX_CONN, "misnamed_ran", "yes")
  return msys.core.VALIDATE_CONT
end
msys.registerModule("not_the_stanza_name", mod);
"""

SCRIPTLET = """\
scriptlet "scriptlet" {
  script "boot" {
    source = "msys.boot"
  }
  script "ehlo_phase" {
    source = "myscripts.ehlo_phase"
  }
  script "trail" {
    source = "myscripts/trail"
  }
  script "keep" {
    source = "myscripts.keep"
  }
  script "dispo" {
    source = "myscripts.dispo"
  }
  script "after" {
    source = "myscripts.after"
  }
  script "misnamed" {
    source = "myscripts.misnamed"
  }
}
"""


@pytest.fixture(scope="module")
def lp():
    shared = Shared()
    try:
        yield start_mta(
            shared.factory, ports={k: free_port() for k in ("tarpit", "refuse", "busy")},
            tail=SCRIPTLET,
            more_listens="\n".join(
                f'  Listen "127.0.0.1:${k}" {{\n    Context = [ peer_hint = "{k}" ]\n  }}'
                for k in ("tarpit", "refuse", "busy")),
            files={"myscripts/ehlo_phase.lua": EHLO_PHASE, "myscripts/trail.lua": TRAIL,
                   "myscripts/dispo.lua": DISPO, "myscripts/keep.lua": KEEP,
                   "myscripts/after.lua": AFTER, "myscripts/misnamed.lua": MISNAMED})
    finally:
        shared.close()


def panic_lines(lp, pattern: str, n: int = 1) -> list[str]:
    rx = re.compile(pattern)
    return wait_for(lambda: (lambda got: got if len(got) >= n else None)(
        [ln for ln in lp.paniclog() if rx.search(ln)]), what=f"paniclog {pattern!r}")


def rejections_of(lp, w, n=1):
    port = local_port(w)
    return wait_for(lambda: (lambda got: got if len(got) >= n else None)(
        [r for r in lp.rejections() if r["R"] == f"127.0.0.1:{port}"]), what=f"{n} rejections")


def spooled(lp, batch):
    return sorted((m for m in lp.spooled() if m.batch_id == batch), key=lambda m: m.rcptto)


# -- loading, init, print ------------------------------------------------------------------

def test_init_runs_once_and_print_goes_to_the_paniclog(lp):
    (line,) = panic_lines(lp, r"^\d+:scriptlet: trail: init ran$")
    w = lp.wire()
    w.cmd("EHLO example.test")
    # print() joins its arguments with white space
    (line,) = panic_lines(lp, r"^\d+:scriptlet: ehlo string is:\s+EHLO example\.test$")


def test_a_module_registered_under_another_name_never_runs(lp):
    w = lp.wire()
    dump = w.cmd("EHLO client.test") and w.cmd("XDUMPCONTEXT").lines
    assert "[connection] second_module ran" in dump           # the scripts around it ran
    assert not [ln for ln in dump if "misnamed_ran" in ln]


# -- phase order ----------------------------------------------------------------------------

def test_every_phase_runs_in_momentum_order(lp):
    w = lp.wire()
    w.cmd("EHLO trail.test")
    w.cmd("MAIL FROM:<a@sender.test>")
    w.cmd("RCPT TO:<one@example.com>")
    w.cmd("RCPT TO:<two@example.com>")
    w.cmd("DATA")
    r = w.cmd(message("trail") + b".")
    assert r.code == 250
    one, two = spooled(lp, queue_id(r))
    assert one.ctx_conn["trail"] == ("connect,ehlo,mailfrom,rcptto:one,rcptto:two,rcptto_list,"
                                     "rcptto_list_final,data,data_spool")
    assert (one.ctx_mess["each"], two.ctx_mess["each"]) == ("each_rcpt:one@example.com",
                                                          "each_rcpt:two@example.com")
    for m in (one, two):
        assert m.ctx_mess["binding_phase"] == "set_binding"
        assert m.ctx_mess["final"] == "final_validation"
    w.cmd("QUIT")
    assert w.closed()
    panic_lines(lp, r"^\d+:scriptlet: trail: dealloc saw trail\.test$")


def test_bdat_runs_the_recipient_list_phases_too(lp):
    w = lp.wire()
    w.cmd("EHLO trail.test")
    w.cmd("MAIL FROM:<a@sender.test>")
    w.cmd("RCPT TO:<chunk@example.com>")
    data = message("trail bdat")
    w.send(b"BDAT %d LAST\r\n" % len(data) + data)
    r = w.reply()
    (m,) = spooled(lp, queue_id(r))
    assert m.ctx_conn["trail"] == ("connect,ehlo,mailfrom,rcptto:chunk,rcptto_list,"
                                   "rcptto_list_final,data,data_spool")


# -- dispositions --------------------------------------------------------------------------------

def test_set_code_in_ehlo_refuses_and_logs_module_scriptlet(lp):
    w = lp.wire()
    assert w.cmd("EHLO reject-ehlo.test").raw == b"550 5.7.1 we do not talk to you\r\n"
    assert w.cmd("EHLO tempfail-ehlo.test").raw == b"450 4.7.1 come back later\r\n"
    assert w.cmd("EHLO fine.test").code == 250
    rej = rejections_of(lp, w, 2)
    assert [(r["E"], r["P"], r["M"], r["text"]) for r in rej] == [
        ("550", "awaiting ehlo", "scriptlet", "5.7.1 we do not talk to you"),
        ("450", "awaiting ehlo", "scriptlet", "4.7.1 come back later")]
    assert ctx_pairs(rej[0]["CTXCONN"])["ehlo_domain"] == "reject-ehlo.test"


def test_validate_done_stops_the_phase_cont_goes_on(lp):
    w = lp.wire()
    w.cmd("EHLO done.test")
    dump = w.cmd("XDUMPCONTEXT").lines
    assert "[connection] first_module dispo" in dump
    assert not [ln for ln in dump if "second_module" in ln]
    w = lp.wire()
    w.cmd("EHLO trail.test")                 # CONT: every module of the phase ran
    dump = w.cmd("XDUMPCONTEXT").lines
    assert "[connection] trail connect,ehlo" in dump and "[connection] second_module ran" in dump


def test_disconnect_in_mailfrom_doc_example(lp):
    w = lp.wire()
    w.cmd("EHLO client.test")
    assert w.cmd("MAIL FROM:<disconnect@example.com>").raw == b"421 Go away dude\r\n"
    assert w.closed()
    panic_lines(lp, r"^\d+:scriptlet: Disconnecting MAIL FROM:<disconnect@example\.com>$")
    (rej,) = rejections_of(lp, w)
    assert (rej["E"], rej["P"], rej["M"], rej["text"]) == ("421", "awaiting mailfrom", "scriptlet",
                                                           "Go away dude")


def test_set_code_and_disconnect_per_recipient(lp):
    w = lp.wire()
    w.cmd("EHLO client.test")
    w.cmd("MAIL FROM:<a@sender.test>")
    assert w.cmd("RCPT TO:<unknown@example.com>").raw == b"550 5.1.1 no such user\r\n"
    assert w.cmd("RCPT TO:<later@example.com>").raw == b"451 4.2.1 mailbox busy\r\n"
    assert w.cmd("RCPT TO:<fine@example.com>").code == 250
    w.cmd("DATA")
    r = w.cmd(message("per rcpt") + b".")
    assert [m.rcptto for m in spooled(lp, queue_id(r))] == ["fine@example.com"]
    w.cmd("MAIL FROM:<a@sender.test>")
    assert w.cmd("RCPT TO:<kick@example.com>").raw == b"421 4.7.0 closing now\r\n"
    assert w.closed()
    rej = rejections_of(lp, w, 3)
    assert [(r["E"], r["M"]) for r in rej] == [("550", "scriptlet"), ("451", "scriptlet"),
                                               ("421", "scriptlet")]


def test_sender_refused_by_policy(lp):
    w = lp.wire()
    w.cmd("EHLO client.test")
    assert w.cmd("MAIL FROM:<badsender@sender.test>").raw == b"553 5.7.1 sender refused by policy\r\n"
    assert w.cmd("RCPT TO:<x@example.com>").raw == b"503 RCPT TO without MAIL FROM\r\n"
    assert w.cmd("MAIL FROM:<good@sender.test>").code == 250


def test_validate_again_calls_the_phase_again(lp):
    w = lp.wire()
    w.cmd("EHLO client.test")
    t0 = time.monotonic()
    assert w.cmd("MAIL FROM:<again@sender.test>").code == 250
    assert time.monotonic() - t0 < 5
    assert "[message] again_calls 3" in w.cmd("XDUMPCONTEXT").lines


def test_tarpit_holds_the_banner(lp):
    t0 = time.monotonic()
    w = lp.wire(lp.d.ports["tarpit"])
    held = time.monotonic() - t0
    assert w.banner.code == 220 and 0.9 <= held <= 5, held
    t0 = time.monotonic()
    lp.wire()
    assert time.monotonic() - t0 < 0.9


def test_early_talker_is_seen_after_the_pre_banner_pause(lp):
    w = lp.wire(lp.d.ports["tarpit"], banner=False)
    w.send(b"EHLO impatient.test\r\n")                  # before the (tarpitted) banner
    assert w.reply().code == 220
    assert w.reply().code == 250
    assert "[connection] early_talker yes" in w.cmd("XDUMPCONTEXT").lines
    w = lp.wire(lp.d.ports["tarpit"])
    w.cmd("EHLO patient.test")
    assert not [ln for ln in w.cmd("XDUMPCONTEXT").lines if "early_talker" in ln]


def test_refusals_in_the_connect_phase(lp):
    w = lp.wire(lp.d.ports["refuse"])
    assert w.banner.raw == b"554 no service for you\r\n"      # no enhanced code in a greeting
    assert w.cmd("EHLO client.test").raw == b"503 5.5.1 bad sequence of commands\r\n"
    assert w.cmd("QUIT").code == 221                          # RFC 5321 3.1: only QUIT
    w = lp.wire(lp.d.ports["busy"])
    assert w.banner.raw == b"421 too busy, try later\r\n"
    assert w.closed()
    rej = wait_for(lambda: (lambda r: r if len(r) >= 2 else None)(
        [x for x in lp.rejections() if x["P"] == "connect"]))
    assert sorted((x["E"], x["M"], x["text"]) for x in rej) == [
        ("421", "scriptlet", "4.7.0 too busy, try later"),
        ("554", "scriptlet", "5.7.1 no service for you")]


def test_set_code_in_data_refuses_the_message(lp):
    w = lp.wire()
    w.cmd("EHLO client.test")
    w.cmd("MAIL FROM:<a@sender.test>")
    w.cmd("RCPT TO:<spam-target@example.com>")
    w.cmd("DATA")
    assert w.cmd(message("spam") + b".").raw == b"554 5.7.1 looks like spam\r\n"
    assert not [m for m in lp.spooled() if m.rcptto == "spam-target@example.com"]
    (rej,) = rejections_of(lp, w)
    assert (rej["E"], rej["P"], rej["M"]) == ("554", "data", "scriptlet")


@pytest.mark.parametrize("subject,logged", [
    ("discard", "5.7.0 discarded by policy"),
    ("discard with reason", "Bounce message processed"),
    ("discard without code", "5.7.1 [internal] discarded by policy")])
def test_msg_discard_accepts_logs_and_stores_nothing(lp, subject, logged):
    rcpt = "d-" + subject.replace(" ", "-") + "@example.com"
    w = lp.wire()
    w.cmd("EHLO client.test")
    w.cmd("MAIL FROM:<a@sender.test>")
    w.cmd(f"RCPT TO:<{rcpt}>")
    w.cmd("DATA")
    r = w.cmd(message(subject) + b".")
    assert r.code == 250 and "queued as" in r.text           # looks accepted to the sender
    (rej,) = rejections_of(lp, w)
    assert (rej["E"], rej["text"]) == ("550", logged)
    assert not [m for m in lp.spooled() if m.rcptto == rcpt]
    assert not [x for x in lp.receptions() if x["batch"] == queue_id(r)]


def test_discard_and_set_code_for_one_recipient_in_each_rcpt(lp):
    w = lp.wire()
    w.cmd("EHLO client.test")
    w.cmd("MAIL FROM:<a@sender.test>")
    for r in ("keep@example.com", "drop-me@example.com", "refuse-me@example.com"):
        assert w.cmd(f"RCPT TO:<{r}>").code == 250
    w.cmd("DATA")
    r = w.cmd(message("each rcpt") + b".")
    assert r.code == 250
    assert [m.rcptto for m in spooled(lp, queue_id(r))] == ["keep@example.com"]
    rej = rejections_of(lp, w, 2)
    assert sorted((x["E"], x["text"]) for x in rej) == [
        ("550", "5.7.1 dropped for this recipient"), ("550", "5.7.1 refused for this recipient")]
    batch = queue_id(r)
    assert [x["rl"] for x in wait_for(lambda: [y for y in lp.receptions() if y["batch"] == batch])] \
        == ["keep"]


def test_msg_code_in_data_answers_the_message(lp):
    w = lp.wire()
    w.cmd("EHLO client.test")
    w.cmd("MAIL FROM:<a@sender.test>")
    w.cmd("RCPT TO:<coded@example.com>")
    w.cmd("DATA")
    assert w.cmd(message("code") + b".").raw == b"451 4.3.2 message code from policy\r\n"
    assert not [m for m in lp.spooled() if m.rcptto == "coded@example.com"]


def test_script_error_answers_451_and_writes_the_paniclog(lp):
    w = lp.wire()
    r = w.cmd("EHLO error.test")
    assert r.code == 451 and r.raw.startswith(b"451 4.3.0 ")
    assert w.cmd("EHLO client.test").code == 250          # the session goes on
    panic_lines(lp, r"^\d+:scriptlet-00147: validate_ehlo error: .*boom in ehlo")
    panic_lines(lp, r"^\d+:scriptlet-00239: dispo error: .*boom in ehlo")
    w.cmd("MAIL FROM:<a@sender.test>")
    w.cmd("RCPT TO:<errdata@example.com>")
    w.cmd("DATA")
    assert w.cmd(message("data error") + b".").code == 451
    assert not [m for m in lp.spooled() if m.rcptto == "errdata@example.com"]


def test_callout_without_a_legal_return_value(lp):
    w = lp.wire()
    assert w.cmd("EHLO noreturn.test").code == 451
    panic_lines(lp, r"^\d+:scriptlet-00147: validate_ehlo error: \(null\)$")
    panic_lines(lp, r"^\d+:scriptlet-00239: dispo error: \(null\)$")


# validate_dealloc as implementing.policy.scriptlets shows it: no return value
BARE_DEALLOC = """\
require("msys.core");
local bare = {}
function bare:validate_ehlo(str, accept, vctx)
  self.mark = vctx:get(msys.core.VCTX_CONN, "ehlo_domain")
  return msys.core.VALIDATE_CONT
end
function bare:validate_dealloc()
  print("bare dealloc ran for " .. self.mark)
end
msys.registerModule("bare", bare);
"""


def test_validate_dealloc_without_a_return_value(daemon_factory):
    m = start_mta(daemon_factory, files={"bare.lua": BARE_DEALLOC},
                  tail='scriptlet "scriptlet" {\n  script "bare" {\n    source = "bare"\n  }\n}')
    w = m.wire()
    w.cmd("EHLO bare-dealloc.test")
    w.cmd("QUIT")
    assert w.closed()
    wait_for(lambda: [ln for ln in m.paniclog() if "bare dealloc ran for bare-dealloc.test" in ln
                      or "policy teardown failed" in ln], timeout=5)
    assert [ln for ln in m.paniclog() if ln.endswith(":scriptlet: bare dealloc ran for bare-dealloc.test")]
    assert not [ln for ln in m.paniclog() if "policy teardown failed" in ln]
