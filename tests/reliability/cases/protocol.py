"""Protocol abuse cases, kept as data: what a hostile or broken client sends and what ecmta
must answer, byte for byte where the text matters, and what it logs.

Every case is one connection to one Listen of the daemon of test_protocol_abuse.py:
  smtp      the default listener (relay_domains example.com, the usual extensions,
            rfc2822 rules at their defaults: lone LF in the body ignored)
  strict    Pathway "strict": rfc2822_lone_lf_in_body = pedantic, rfc2822_max_line_length
            = pedantic, max_message_size = 100000, max_recipients_per_message = 100,
            max_recipients_per_connection = 150, rfc2822_date_header = pedantic
  tls       STARTTLS offered (certificate), starttls_injection_policy = reject (default)
  auth      AUTH PLAIN LOGIN CRAM-MD5 (user "alice", password "right")
  lua       Pathway "slowgreet": a 0.5 s pause before the banner (a connect-phase tarpit),
            and a scriptlet that sets headers with msg:header from the X-Inject header's case
            number (values in test_protocol_abuse.LUA_INJECT)

Fields:
  id        unique name
  ref       where the rule or the attack comes from (RFC section, CVE, advisory)
  listen    one of the Listens above
  steps     [(bytes sent in one write, [expected replies])]. An expected reply is an int
            (the code), or bytes (the reply line must start with them, e.g. b"250 2.0.0 OK
            queued"). "CLOSED" means the server closed the connection after the replies
            before it; "OPEN" that it must still be open. `{tag}` in the bytes is replaced
            by a per-case token (recipients are `{tag}@example.com`, so the spool check
            can find this case's messages).
  banner    False: the first step is sent before the banner is read (early talker)
  stored    how many spooled messages must carry this case's tag (None: not checked)
  log       the rejectlog lines this connection must produce: [(code, phase)] in order,
            phase as in P="..." (None: not checked); [] = no line at all
  ctx       {key: value} the connection context must hold at the end (XDUMPCONTEXT)
"""

from __future__ import annotations

OK = 250
E = b"EHLO client.test\r\n"
M = b"MAIL FROM:<sender@client.test>\r\n"
R = b"RCPT TO:<{tag}@example.com>\r\n"
HDR = b"From: sender@client.test\r\nTo: {tag}@example.com\r\nSubject: case {tag}\r\nDate: Tue, 24 Nov 2026 12:00:00 +0000\r\n\r\n"
QUEUED = b"250 2.0.0 OK queued as "
RELAY_DENIED = b"550 5.7.1 relaying denied"
UNRECOGNIZED = b"500 5.5.2 unrecognized command"
TOO_LONG = b"500 5.5.2 line too long"
BARE = b"500 5.5.2 bare CR or LF in command; lines must end with CRLF"
MAIL_SYNTAX = b"501 5.5.2 MAIL FROM syntax error"
RCPT_SYNTAX = b"501 5.5.2 RCPT TO syntax error"
SIZE_EXCEEDED = b"552 5.3.4 message size limit exceeded"
INJECTION = b"554 5.5.1"
AUTH_FAILED = b"535 5.7.8 Authentication credentials invalid"
AUTH_LIMIT = b"421 4.7.0 Too many failed authentication attempts, closing connection"
POLICY_ERROR = b"451 4.3.0 Temporary policy failure (script error), try again later"
AWM, AWR, DATA_P = "awaiting mailfrom", "awaiting rcptto", "data"


def smuggle(marker: bytes) -> bytes:
    """A body hiding a second transaction behind a non-standard end marker (SEC Consult)."""
    return (HDR + b"innocent" + marker +
            b"MAIL FROM:<admin@bank.test>\r\nRCPT TO:<{tag}-smuggled@example.com>\r\nDATA\r\n"
            b"From: admin@bank.test\r\n\r\nsmuggled\r\n")


def txn(body: bytes, *, rcpt: bytes = R, end: bytes = b".\r\n") -> list:
    """EHLO, MAIL, RCPT, DATA, body + end: the steps of one plain transaction."""
    return [(E, [OK]), (M, [OK]), (rcpt, [OK]), (b"DATA\r\n", [354]), (body + end, [QUEUED])]


SMUGGLING_MARKERS = {
    # SEC Consult, "SMTP Smuggling - Spoofing E-Mails Worldwide" (2023-12-18) and its
    # smtp-smuggling-tools; CVE-2023-51764 (Postfix), CVE-2023-51765 (sendmail),
    # CVE-2023-51766 (Exim), CVE-2024-?? follow-ups
    "lf-dot-lf": b"\n.\n",
    "lf-dot-crlf": b"\n.\r\n",
    "cr-dot-cr": b"\r.\r",
    "cr-dot-crlf": b"\r.\r\n",
    "crlf-dot-cr": b"\r\n.\r",
    "crlf-dot-lf": b"\r\n.\n",
    "crlf-nul-dot-crlf": b"\r\n\x00.\r\n",
    "crlf-dot-nul-crlf": b"\r\n.\x00\r\n",
    "lf-lf-dot-lf-lf": b"\n\n.\n\n",
    "cr-cr-lf-dot": b"\r\r\n.\r\r\n",
    "crlf-sp-dot-crlf": b"\r\n .\r\n",
}

CASES: list[dict] = []


def case(id, ref, steps, *, listen="smtp", banner=True, stored=None, log=None, ctx=None):
    CASES.append(dict(id=id, ref=ref, listen=listen, steps=steps, banner=banner, stored=stored,
                      log=log, ctx=ctx))


# -- SMTP smuggling: the smuggled transaction stays data -------------------------------------
for name, marker in SMUGGLING_MARKERS.items():
    case(f"smuggle-{name}", "SEC Consult 2023; CVE-2023-51764/51765/51766",
         txn(smuggle(marker)) + [(b"QUIT\r\n", [221, "CLOSED"])], stored=1, log=[])

case("smuggle-bdat-embedded-dot", "RFC 3030 (BDAT octets are opaque); SEC Consult 2023",
     [(E, [OK]), (M, [OK]), (R, [OK]), (("BDAT", smuggle(b"\r\n.\r\n") + b".\r\n", True), [QUEUED]),
      (b"QUIT\r\n", [221])], stored=1, log=[])
case("smuggle-strict-lf-dot-lf-refused", "RFC 5321 2.3.8, rfc2822_lone_lf_in_body = pedantic",
     txn(smuggle(b"\n.\n"))[:-1] + [(smuggle(b"\n.\n") + b".\r\n",
                                     [b"550 5.6.0 Lone CR or LF in body (see RFC2822 section 2.3)"])],
     listen="strict", stored=0, log=[(550, DATA_P)])
case("smuggle-pipelined-one-write", "RFC 2920 + SEC Consult 2023: everything in one write",
     [(E + M + R + b"DATA\r\n" + smuggle(b"\n.\n") + b".\r\nQUIT\r\n", [OK, OK, OK, 354, QUEUED, 221])],
     stored=1, log=[])

# -- bare CR / LF and NUL in commands --------------------------------------------------------
case("bare-lf-command", "RFC 5321 2.3.8 (lines end with CRLF only)",
     [(b"EHLO client.test\n", [BARE]), (E, [OK])], log=[(500, "awaiting ehlo")])
case("bare-cr-inside-command", "RFC 5321 2.3.8",
     [(E, [OK]), (b"NOOP\rMAIL FROM:<x@y.test>\r\n", [BARE]), (b"NOOP\r\n", [OK])],
     log=[(500, AWM)])
case("nul-in-ehlo", "RFC 5321 4.1.1.1 (domain syntax)",
     [(b"EHLO a\x00b\r\n", [b"501 5.5.2 invalid EHLO"]), (E, [OK])], log=[(501, "awaiting ehlo")])
case("nul-only-line", "RFC 5321 4.2.4",
     [(b"\x00\x00\x00\r\n", [UNRECOGNIZED]), (E, [OK])], log=[(500, "awaiting ehlo")])
case("nul-in-mail-from", "RFC 5321 4.1.2",
     [(E, [OK]), (b"MAIL FROM:<a\x00b@client.test>\r\n", [MAIL_SYNTAX])], log=[(501, AWM)])
case("nul-in-body-kept", "RFC 5321 4.5.2 (the body is octets; ecmta does not judge NUL)",
     txn(HDR + b"a\x00b\r\n"), stored=1, log=[])
case("8bit-verb", "RFC 5321 4.1.1 (verbs are ASCII)",
     [(b"M\xc3\x84IL FROM:<a@b.test>\r\n", [UNRECOGNIZED])], log=[(500, "awaiting ehlo")])
case("8bit-mail-without-smtputf8", "RFC 6531 3.4",
     [(E, [OK]), (b"MAIL FROM:<j\xc3\xb6rg@client.test>\r\n", [553])], log=[(553, AWM)])
case("invalid-utf8-with-smtputf8", "RFC 6531 3.3 (UTF-8 must be valid)",
     [(E, [OK]), (b"MAIL FROM:<j\xff\xfe@client.test> SMTPUTF8\r\n", [MAIL_SYNTAX])], log=[(501, AWM)])
case("8bit-body-without-8bitmime", "RFC 6152 (a lenient server keeps the octets)",
     txn(HDR + b"caf\xc3\xa9 \xff\r\n"), stored=1, log=[])

# -- line and length limits (RFC 5321 4.5.3.1) -----------------------------------------------
case("command-line-512-ok", "RFC 5321 4.5.3.1.4 (512 octets with CRLF)",
     [(E, [OK]), (b"NOOP " + b"x" * 505 + b"\r\n", [OK])], log=[])
case("command-line-513-refused", "RFC 5321 4.5.3.1.4",
     [(E, [OK]), (b"NOOP " + b"x" * 506 + b"\r\n", [TOO_LONG]), (b"NOOP\r\n", [OK])], log=[(500, AWM)])
case("endless-line-12k", "RFC 5321 4.5.3.1.4; memory bound (12288 octets kept at most)",
     [(E, [OK]), (b"A" * 20000, []), (b"A" * 20000 + b"\r\n", [TOO_LONG]), (b"NOOP\r\n", [OK])],
     log=[(500, AWM)])
case("one-megabyte-line", "RFC 5321 4.5.3.1.4; memory bound",
     [(E, [OK]), (b"X" * 1048576 + b"\r\n", [TOO_LONG]), (b"NOOP\r\n", [OK])], log=[(500, AWM)])
case("local-part-64-ok", "RFC 5321 4.5.3.1.1",
     [(E, [OK]), (M, [OK]), (b"RCPT TO:<" + b"l" * 64 + b"@example.com>\r\n", [OK])], log=[])
case("local-part-65-refused", "RFC 5321 4.5.3.1.1",
     [(E, [OK]), (M, [OK]), (b"RCPT TO:<" + b"l" * 65 + b"@example.com>\r\n", [RCPT_SYNTAX])],
     log=[(501, AWR)])
case("domain-256-refused", "RFC 5321 4.5.3.1.2 (255 octets)",
     [(E, [OK]), (b"MAIL FROM:<a@" + b"d" * 63 + b"." + b"e" * 63 + b"." + b"f" * 63 + b"." +
                  b"g" * 63 + b".test>\r\n", [MAIL_SYNTAX])], log=[(501, AWM)])
case("label-64-accepted", "RFC 5321 4.1.2 grammar has no label limit (RFC 1035's 63 is DNS's); "
     "delivery to it fails in DNS (test_remote_faults)",
     [(E, [OK]), (b"MAIL FROM:<a@" + b"d" * 64 + b".test>\r\n", [OK])], log=[])
case("ehlo-overlong", "RFC 5321 4.5.3.1.4",
     [(b"EHLO " + b"h" * 600 + b"\r\n", [TOO_LONG]), (E, [OK])], log=[(500, "awaiting ehlo")])
case("text-line-over-998-strict", "RFC 5322 2.1.1, rfc2822_max_line_length = pedantic",
     txn(HDR + b"y" * 1200 + b"\r\n")[:-1] + [(HDR + b"y" * 1200 + b"\r\n.\r\n",
                                              [b"550 5.6.0 Body line too long (see RFC2822 section 3.5)"])],
     listen="strict", stored=0, log=[(550, DATA_P)])
case("header-line-over-998-strict", "RFC 5322 2.1.1",
     txn(b"Subject: " + b"s" * 1200 + b"\r\n" + HDR)[:-1] +
     [(b"Subject: " + b"s" * 1200 + b"\r\n" + HDR + b".\r\n",
       [b"550 5.6.0 Header line too long (see RFC2822 section 3.5)"])],
     listen="strict", stored=0, log=[(550, DATA_P)])
case("text-line-over-998-default-kept", "rfc2822_max_line_length = ignore (default)",
     txn(HDR + b"y" * 5000 + b"\r\n"), stored=1, log=[])

# -- early talkers and pipelining -------------------------------------------------------------
case("early-talker", "RFC 5321 4.3.1 (wait for the greeting); postscreen pregreet",
     [(b"EHLO early.test\r\n", [220, OK])], banner=False, log=[], listen="lua",
     ctx={"early_talker": "yes"})
case("early-talker-whole-transaction", "RFC 5321 4.3.1",
     [(E + M + R + b"DATA\r\n" + HDR + b"early\r\n.\r\nQUIT\r\n", [220, OK, OK, OK, 354, QUEUED, 221])],
     banner=False, stored=1, log=[], listen="lua")
case("pipelining-noop-flood", "RFC 2920 (every command answered, in order)",
     [(E, [OK]), (b"NOOP\r\n" * 2000, [OK] * 2000), (b"NOOP\r\n", [OK])], log=[])
case("pipelining-rset-flood-1mb", "RFC 2920; memory bound",
     [(E, [OK]), (b"RSET\r\n" * 170000, [OK] * 170000), (b"NOOP\r\n", [OK])], log=[])
case("pipelining-bad-command-flood", "RFC 2920; each refusal answered and logged",
     [(E, [OK]), (b"BOGUS\r\n" * 300, [UNRECOGNIZED] * 300), (b"NOOP\r\n", [OK])],
     log=[(500, AWM)] * 300)
case("pipelining-body-before-354", "RFC 2920 3.1 (DATA ends a group; the body waits for 354)",
     [(E, [OK]), (M + R + b"DATA\r\n" + HDR + b"body\r\n.\r\n", [OK, OK, 354, QUEUED])],
     stored=1, log=[])
case("pipelining-rcpt-after-bad-mail", "RFC 2920 3.1 (a failed MAIL fails the group's RCPTs)",
     [(E, [OK]), (b"MAIL FROM:<bad\r\n" + R + b"DATA\r\n",
                  [MAIL_SYNTAX, b"503 RCPT TO without MAIL FROM", b"503 5.5.1 DATA without MAIL FROM"])],
     log=[(501, AWM), (503, AWM), (503, AWM)])

# -- sequence errors --------------------------------------------------------------------------
case("data-without-mail", "RFC 5321 4.1.4",
     [(E, [OK]), (b"DATA\r\n", [b"503 5.5.1 DATA without MAIL FROM"])], log=[(503, AWM)])
case("data-without-rcpt", "RFC 5321 4.1.4",
     [(E, [OK]), (M, [OK]), (b"DATA\r\n", [b"503 5.5.1 DATA without RCPT TO"])], log=[(503, AWR)])
case("double-mail", "RFC 5321 4.1.4",
     [(E, [OK]), (M, [OK]), (M, [b"501 5.5.1 MAIL FROM already established"])], log=[(501, AWR)])
case("unknown-verb", "RFC 5321 4.2.4",
     [(E, [OK]), (b"XYZZY plugh\r\n", [UNRECOGNIZED])], log=[(500, AWM)])
case("expn-refused", "RFC 5321 3.5.3 / 7.3 (EXPN may be refused)",
     [(E, [OK]), (b"EXPN staff\r\n", [b"502 5.5.1 EXPN not supported"])], log=[(502, AWM)])
case("vrfy-neutral", "RFC 5321 3.5.3 (252: no user enumeration)",
     [(E, [OK]), (b"VRFY root\r\n", [252])], log=[])

# -- hostile and malformed addresses ---------------------------------------------------------
for i, (addr, want) in enumerate([
        (b"<<a@b.test>>", MAIL_SYNTAX), (b"<a@b.test", MAIL_SYNTAX), (b"<a@@b.test>", MAIL_SYNTAX),
        (b"<a..b@b.test>", MAIL_SYNTAX), (b"<.a@b.test>", MAIL_SYNTAX), (b"<a@b..test>", MAIL_SYNTAX),
        (b"<a@[999.1.1.1]>", MAIL_SYNTAX), (b"<a@-b.test>", MAIL_SYNTAX),
        (b'<"unterminated@b.test>', MAIL_SYNTAX), (b"<a b@b.test>", MAIL_SYNTAX),
        (b"<a@b.test> SIZE=1 SIZE=2", b"501 5.5.4 duplicate SIZE parameter"),
        (b"<a@b.test> BODY=9BITMIME", b"501 5.5.4 invalid BODY parameter"),
        (b"<a@b.test> X-EVIL=1", b"555 5.5.4 X-EVIL parameter not supported")]):
    case(f"hostile-mail-from-{i}", "RFC 5321 4.1.2 / 4.1.1.11", [(E, [OK]), (b"MAIL FROM:" + addr + b"\r\n", [want])],
         log=[(int(want[:3]), AWM)])
case("rcpt-null-path", "RFC 5321 4.1.1.3 (RCPT TO:<> is not a path)",
     [(E, [OK]), (M, [OK]), (b"RCPT TO:<>\r\n", [RCPT_SYNTAX])], log=[(501, AWR)])
case("rcpt-postmaster-unqualified", "RFC 5321 4.5.1: <postmaster> is qualified with the hostname "
     "(mx.ecmta.test) and then subject to relay control like any address: not a relay domain here",
     [(E, [OK]), (M, [OK]), (b"RCPT TO:<postmaster>\r\n", [RELAY_DENIED])], log=[(550, AWR)])
case("rcpt-quoted-local-part", "RFC 5321 4.1.2 Quoted-string",
     [(E, [OK]), (M, [OK]), (b'RCPT TO:<"a b"@example.com>\r\n', [OK])], log=[])
case("rcpt-source-route-local", "RFC 5321 4.1.1.3 / C (source routes accepted, ignored)",
     [(E, [OK]), (M, [OK]), (b"RCPT TO:<@relay.test:{tag}@example.com>\r\n", [OK])], log=[])
case("rcpt-ipv6-literal-foreign", "RFC 5321 4.1.3",
     [(E, [OK]), (M, [OK]), (b"RCPT TO:<a@[IPv6:2001:db8::1]>\r\n", [RELAY_DENIED])], log=[(550, AWR)])
case("rcpt-trailing-space", "RFC 5321 4.1.1.3 (no trailing whitespace)",
     [(E, [OK]), (M, [OK]), (b"RCPT TO:<{tag}@example.com> \r\n", [RCPT_SYNTAX])], log=[(501, AWR)])
case("rcpt-notify-garbage", "RFC 3461 4.1",
     [(E, [OK]), (M, [OK]), (b"RCPT TO:<{tag}@example.com> NOTIFY=NEVER,SUCCESS\r\n",
                            [b"501 5.5.4 invalid NOTIFY parameter"])], log=[(501, AWR)])
case("rcpt-orcpt-overlong", "RFC 3461 4.2 (ORCPT bounded)",
     [(E, [OK]), (M, [OK]), (b"RCPT TO:<{tag}@example.com> ORCPT=rfc822;" + b"a" * 600 + b"\r\n",
                            [b"501 5.5.4 invalid ORCPT parameter"])], log=[(501, AWR)])

# -- recipient counts ------------------------------------------------------------------------
case("recipients-per-message-limit", "RFC 5321 4.5.3.1.8 (452 over the limit, 100 allowed)",
     [(E, [OK]), (M, [OK]),
      (b"".join(b"RCPT TO:<{tag}-%d@example.com>\r\n" % i for i in range(101)),
       [OK] * 100 + [b"452 4.5.3 Service unavailable, recipients per message limit reached"]),
      (b"DATA\r\n", [354]), (HDR + b"many\r\n.\r\n", [QUEUED])],
     listen="strict", stored=100, log=[(452, "awaiting data")])
case("recipients-1000-default", "RFC 5321 4.5.3.1.8 (no limit configured: all accepted)",
     [(E, [OK]), (M, [OK]),
      (b"".join(b"RCPT TO:<{tag}-%d@example.com>\r\n" % i for i in range(1000)), [OK] * 1000),
      (b"DATA\r\n", [354]), (HDR + b"many\r\n.\r\n", [QUEUED])],
     stored=1000, log=[])
case("recipients-mixed-relay-denied", "relay control per recipient",
     [(E, [OK]), (M, [OK]),
      (b"".join(b"RCPT TO:<{tag}-%d@%s>\r\n" % (i, b"example.com" if i % 2 else b"else.test")
                for i in range(50)), [RELAY_DENIED, OK] * 25),
      (b"DATA\r\n", [354]), (HDR + b"half\r\n.\r\n", [QUEUED])],
     stored=25, log=[(550, AWR)] + [(550, "awaiting data")] * 24)

# -- SIZE, DATA and BDAT edges ---------------------------------------------------------------
case("size-zero", "RFC 1870 6", [(E, [OK]), (b"MAIL FROM:<a@b.test> SIZE=0\r\n", [OK])], log=[])
case("size-over-limit", "RFC 1870 6 (552 at MAIL)",
     [(E, [OK]), (b"MAIL FROM:<a@b.test> SIZE=100001\r\n", [SIZE_EXCEEDED])], listen="strict",
     log=[(552, AWM)])
case("size-21-digits", "RFC 1870 (size-value 1*20DIGIT)",
     [(E, [OK]), (b"MAIL FROM:<a@b.test> SIZE=123456789012345678901\r\n",
                  [b"501 5.5.4 invalid SIZE parameter"])], log=[(501, AWM)])
case("size-negative", "RFC 1870",
     [(E, [OK]), (b"MAIL FROM:<a@b.test> SIZE=-1\r\n", [b"501 5.5.4 invalid SIZE parameter"])],
     log=[(501, AWM)])
case("size-lied-data-over-limit", "RFC 1870 6.3 (the actual size counts)",
     txn(HDR + b"z" * 120000 + b"\r\n")[:-1] + [(HDR + b"z" * 120000 + b"\r\n.\r\n", [SIZE_EXCEEDED]),
                                                (b"NOOP\r\n", [OK])],
     listen="strict", stored=0, log=[(552, DATA_P)])
case("bdat-zero-last-empty", "RFC 3030 2 (BDAT 0 LAST ends the message)",
     [(E, [OK]), (M, [OK]), (R, [OK]), (b"BDAT 0 LAST\r\n",
                                        [b"550 5.6.0 Required headers not found (see RFC2822 section 3.6)"])],
     stored=0, log=[(550, DATA_P)])
case("bdat-chunks-then-last", "RFC 3030 2",
     [(E, [OK]), (M, [OK]), (R, [OK]), (("BDAT", HDR, False), [b"250 2.0.0 "]),
      (("BDAT", b"second chunk\r\n", True), [QUEUED])], stored=1, log=[])
case("bdat-huge-count-refused", "RFC 3030 (a count nobody can send)",
     [(E, [OK]), (M, [OK]), (R, [OK]),
      (b"BDAT 1000000000000000000 LAST\r\n", [b"501 5.5.4 Syntax: BDAT count [LAST]", "CLOSED"])],
     log=[(501, "awaiting data")])
case("bdat-over-limit", "RFC 3030 + RFC 1870",
     [(E, [OK]), (M, [OK]), (R, [OK]), (b"BDAT 200000 LAST\r\n" + b"q" * 200000, [SIZE_EXCEEDED]),
      (b"NOOP\r\n", [OK])], listen="strict", stored=0, log=[(552, "awaiting data")])
case("bdat-then-data", "RFC 3030 2 (DATA after BDAT is a sequence error)",
     [(E, [OK]), (M, [OK]), (R, [OK]), (b"BDAT 5\r\nabcde", [OK]), (b"DATA\r\n", [b"503 5.5.1 bad sequence"])],
     log=[(503, "awaiting data")])
case("bdat-negative", "RFC 3030",
     [(E, [OK]), (M, [OK]), (R, [OK]), (b"BDAT -5 LAST\r\n", [b"501 5.5.4 Syntax: BDAT count [LAST]", "CLOSED"])],
     log=[(501, "awaiting data")])
case("data-missing-dot-at-close", "RFC 5321 4.1.1.4",
     [(E, [OK]), (M, [OK]), (R, [OK]), (b"DATA\r\n", [354]), (HDR + b"cut", []), ("SHUT_WR", [b"550 5.6.0 Missing CR LF . CR LF"])],
     stored=0, log=[(550, DATA_P)])

# -- STARTTLS command injection (CVE-2011-0411 family) ------------------------------------------
for i, tail in enumerate([b"RSET\r\n", b"MAIL FROM:<inject@evil.test>\r\n", b"\r\n", b"EHLO evil.test\r\n",
                          b"NOOP\r\nNOOP\r\nNOOP\r\n"]):
    case(f"starttls-injection-{i}", "CVE-2011-0411 (Postfix), CVE-2011-1430/1431, CVE-2021-38371 (Exim)",
         [(E, [OK]), (b"STARTTLS\r\n" + tail, [INJECTION, "CLOSED"])], listen="tls",
         log=[(554, AWM)])
case("starttls-with-argument", "RFC 3207 4",
     [(E, [OK]), (b"STARTTLS now\r\n", [b"501 5.5.4 Syntax error (no parameters allowed)"])],
     listen="tls", log=[(501, AWM)])
case("starttls-not-offered", "RFC 3207 (no certificate: no STARTTLS)",
     [(E, [OK]), (b"STARTTLS\r\n", [UNRECOGNIZED])], log=[(500, AWM)])
case("starttls-then-clean-handshake", "RFC 3207 4.2 (state reset after TLS)",
     [(E, [OK]), (b"STARTTLS\r\n", [220]), ("TLS", []), (b"MAIL FROM:<a@b.test>\r\n", [OK])], listen="tls",
     log=[])

# -- AUTH: brute force and malformed exchanges ------------------------------------------------
PLAIN_BAD = b"AUTH PLAIN AGFsaWNlAHdyb25n\r\n"        # \0alice\0wrong
PLAIN_OK = b"AUTH PLAIN AGFsaWNlAHJpZ2h0\r\n"         # \0alice\0right
case("auth-brute-force-three-strikes", "ecmta limit: 3 failed AUTH per session, then 421 (RFC 4954 4)",
     [(E, [OK]), (PLAIN_BAD, [AUTH_FAILED]), (PLAIN_BAD, [AUTH_FAILED]), (PLAIN_BAD, [AUTH_LIMIT, "CLOSED"])],
     listen="auth", log=[(535, AWM), (535, AWM), (421, AWM)])
case("auth-two-failures-then-success", "RFC 4954 4 (failures below the limit do not stick)",
     [(E, [OK]), (PLAIN_BAD, [AUTH_FAILED]), (PLAIN_BAD, [AUTH_FAILED]), (PLAIN_OK, [235]),
      (b"MAIL FROM:<a@b.test>\r\n", [OK])], listen="auth", log=[(535, AWM), (535, AWM)])
case("auth-pipelined-guessing", "RFC 4954 4; brute force in one write",
     [(E, [OK]), (PLAIN_BAD * 10, [AUTH_FAILED, AUTH_FAILED, AUTH_LIMIT, "CLOSED"])], listen="auth",
     log=[(535, AWM), (535, AWM), (421, AWM)])
case("auth-login-failures", "RFC 4954 4 (every mechanism counts)",
     [(E, [OK])] + [(b"AUTH LOGIN\r\n", [334]), (b"YWxpY2U=\r\n", [334]), (b"bm9wZQ==\r\n", [AUTH_FAILED])] * 2 +
     [(b"AUTH LOGIN\r\n", [334]), (b"YWxpY2U=\r\n", [334]), (b"bm9wZQ==\r\n", [AUTH_LIMIT, "CLOSED"])],
     listen="auth", log=[(535, AWM), (535, AWM), (421, AWM)])
case("auth-cancel", "RFC 4954 4 (\"*\" cancels: 501)",
     [(E, [OK]), (b"AUTH LOGIN\r\n", [334]), (b"*\r\n", [b"501 5.0.0 Authentication cancelled"])],
     listen="auth", log=[(501, AWM)])
case("auth-bad-base64", "RFC 4954 4",
     [(E, [OK]), (b"AUTH PLAIN !!!notbase64!!!\r\n", [501])], listen="auth", log=[(501, AWM)])
case("auth-unknown-mechanism", "RFC 4954 4",
     [(E, [OK]), (b"AUTH GSSAPI\r\n", [b"504 5.5.4 Unrecognized authentication type"])], listen="auth",
     log=[(504, AWM)])
case("auth-overlong-initial-response", "RFC 4954 4 (12288-octet lines)",
     [(E, [OK]), (b"AUTH PLAIN " + b"A" * 13000 + b"\r\n", [TOO_LONG]), (b"NOOP\r\n", [OK])], listen="auth",
     log=[(500, AWM)])
case("auth-before-ehlo", "RFC 4954 4",
     [(PLAIN_OK, [b"503 5.5.1 bad sequence of commands"])], listen="auth", log=[(503, "awaiting ehlo")])
case("auth-in-transaction", "RFC 4954 4",
     [(E, [OK]), (M, [OK]), (PLAIN_OK, [b"503 5.5.1 AUTH not permitted during a mail transaction"])],
     listen="auth", log=[(503, AWR)])

# -- header injection through Lua-set headers ------------------------------------------------
for n, ok in [(1, False), (2, False), (3, False), (4, False), (5, False), (6, True), (7, False),
              (8, True), (9, False)]:
    body = HDR.replace(b"\r\n\r\n", b"\r\nX-Inject: %d\r\n\r\n" % n) + b"lua\r\n"
    case(f"lua-header-injection-{n}", "RFC 5322 2.2 (no CR/LF in a header value but folding)",
         txn(body)[:-1] + [(body + b".\r\n", [QUEUED if ok else POLICY_ERROR])],
         listen="lua", stored=1 if ok else 0, log=[] if ok else [(451, DATA_P)])
