"""SMTP replies: the `Reply` value and every reply text the inbound server generates.

Owns: the wire rendering of a reply (multi-line, enhanced status codes on or off) and the
named reply constants, with Momentum's exact wording where `message_responses.md` /
MOMENTUM_DIGEST Appendix A documents one. Texts marked "(ecmta)" have no documented
Momentum wording; they follow the RFC that defines the situation.

Used by the sans-IO server (`transports/smtp_server.py`), by its session driver (to build
policy replies: `Reply.parse(550, "5.7.1 relaying denied")`) and by tests, which assert
against these names rather than literal strings. Pure data; nothing here fails at run time.
"""
from __future__ import annotations

from dataclasses import dataclass




def _is_esc(word: str) -> bool:
    """True for an RFC 3463 enhanced status code such as "5.7.1" (class 2, 4 or 5)."""
    parts = word.split(".")
    return (len(parts) == 3 and parts[0] in ("2", "4", "5")
            and all(p.isdigit() and 0 < len(p) <= 3 for p in parts[1:]))


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: `code`, `enhanced` status ("2.1.0" or "") and `text`.

    `text` may hold several lines separated by "\\n"; they go out as a multi-line reply.
    The enhanced code is written in front of every line only when the session has
    ENHANCEDSTATUSCODES enabled (Momentum writes none otherwise).
    """

    code: int
    enhanced: str = ""
    text: str = ""

    @classmethod
    def parse(cls, code: int, text: str) -> "Reply":
        """Build a reply from a policy text that may start with an enhanced code.

        `Reply.parse(550, "5.7.1 relaying denied")` == `Reply(550, "5.7.1", "relaying denied")`.
        """
        word, _, rest = text.partition(" ")
        if _is_esc(word):
            return cls(code, word, rest)
        return cls(code, "", text)

    @property
    def is_positive(self) -> bool:
        """2xx and 3xx replies (the command was accepted)."""
        return self.code < 400

    def render(self, enhanced: bool = True) -> bytes:
        """The reply as wire bytes, CRLF-terminated, lines joined with "-" continuation."""
        head = f"{self.enhanced} " if (enhanced and self.enhanced) else ""
        # A CR inside policy text could forge extra reply lines: neutralise it.
        text = self.text.replace("\r", " ") if "\r" in self.text else self.text
        if "\n" not in text:
            return f"{self.code} {head}{text}\r\n".encode("utf-8", "surrogateescape")
        lines = text.split("\n")
        out = [f"{self.code}-{head}{ln}\r\n" for ln in lines[:-1]]
        out.append(f"{self.code} {head}{lines[-1]}\r\n")
        return "".join(out).encode("utf-8", "surrogateescape")

    def __str__(self) -> str:
        return self.render(True).decode("utf-8", "replace").rstrip("\r\n")


# --- positive replies --------------------------------------------------------------------
OK = Reply(250, "2.0.0", "OK")
MAIL_OK = Reply(250, "2.1.0", "MAIL FROM accepted")            # Momentum transcript
RCPT_OK = Reply(250, "2.1.5", "RCPT TO accepted.")             # Momentum transcript (sic, with '.')
DATA_GO = Reply(354, "", 'continue.  finished with "\\r\\n.\\r\\n"')  # Momentum transcript
MESSAGE_OK = Reply(250, "2.0.0", "OK")                        # the driver appends the queue id
STARTTLS_GO = Reply(220, "2.0.0", "Ready to start TLS")        # (ecmta) RFC 3207
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")     # (ecmta) RFC 4954
VRFY_DEFAULT = Reply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery")
XDUMPCONTEXT_DONE = Reply(250, "", "XDUMPCONTEXT complete")    # Momentum transcript
XREMOTEIP_OK = Reply(250, "2.0.0", "XREMOTEIP accepted")       # (ecmta)
XSETCONTEXT_OK = Reply(250, "2.0.0", "XSETCONTEXT accepted")   # (ecmta)

# --- protocol errors the server answers by itself ----------------------------------------
UNRECOGNIZED = Reply(500, "5.5.2", "unrecognized command")
LINE_TOO_LONG = Reply(500, "5.5.2", "line too long")           # (ecmta) RFC 5321 4.5.3.1.4
BARE_CR_LF = Reply(500, "5.5.2", "bare CR or LF in command; lines must end with CRLF")  # (ecmta)
MAIL_SYNTAX = Reply(501, "5.5.2", "MAIL FROM syntax error")
RCPT_SYNTAX = Reply(501, "5.5.2", "RCPT TO syntax error")
MAIL_ALREADY = Reply(501, "5.5.1", "MAIL FROM already established")
INVALID_EHLO = Reply(501, "5.5.2", "invalid EHLO")
INVALID_HELO = Reply(501, "5.5.2", "invalid HELO")
RSET_ARGS = Reply(501, "5.5.4", "invalid arguments to RSET")
DATA_ARGS = Reply(501, "5.5.4", "unexpected argument to DATA")
NO_PARAMS = Reply(501, "5.5.4", "Syntax error (no parameters allowed)")
UNEXPECTED = Reply(501, "5.5.4", "unexpected command")
RCPT_NO_MAIL = Reply(503, "", "RCPT TO without MAIL FROM")     # Momentum gives no enhanced code
DATA_NO_MAIL = Reply(503, "5.5.1", "DATA without MAIL FROM")
DATA_NO_RCPT = Reply(503, "5.5.1", "DATA without RCPT TO")
BAD_SEQUENCE = Reply(503, "5.5.1", "bad sequence of commands")
HELO_NEEDED = Reply(550, "5.5.1", "RFC2821 HELO/EHLO needed")
SIZE_EXCEEDED = Reply(552, "5.3.4", "message size limit exceeded")
RCPTS_PER_MESSAGE = Reply(452, "4.5.3", "Service unavailable, recipients per message limit reached")
RCPTS_PER_CONNECTION = Reply(452, "4.5.3",
                             "Service unavailable, recipients per connection limit reached")
RCPTS_PER_BATCH = Reply(452, "4.5.3", "Service unavailable, batch limit reached")
RECEPTIONS_PER_CONNECTION = Reply(421, "4.4.5",  # (ecmta)
                                  "Service unavailable, receptions per connection limit reached")
RECONFIG = "4.3.2 Reconfiguration in progress"                 # Reconfig_Message default (a text)

# Envelope details (ecmta wording; RFC 5321 / 1870 / 3461 / 6531 codes).
PARAM_UNSUPPORTED = "{} parameter not supported"               # 555 5.5.4, formatted with the key
PARAM_INVALID = "invalid {} parameter"                         # 501 5.5.4
PARAM_DUPLICATE = "duplicate {} parameter"                     # 501 5.5.4
NULL_SENDER_REFUSED = Reply(553, "5.1.7", "null envelope sender not allowed")
IP_LITERAL_REFUSED = Reply(553, "5.1.2", "IP address literal not allowed")
UTF8_REQUIRED = Reply(553, "5.6.7", "non-ASCII address requires SMTPUTF8")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
BINARYMIME_NEEDS_BDAT = Reply(503, "5.5.1", "BODY=BINARYMIME requires BDAT")
BDAT_NO_MAIL = Reply(503, "5.5.1", "BDAT without MAIL FROM")
BDAT_NO_RCPT = Reply(503, "5.5.1", "BDAT without RCPT TO")
BDAT_SYNTAX = Reply(501, "5.5.4", "Syntax: BDAT count [LAST]")
BDAT_INCOMPLETE = Reply(550, "5.6.0", "connection closed inside a BDAT chunk")

# --- end of message (body checks the server makes itself) ---------------------------------
LONE_LF_HEADERS = Reply(550, "5.6.0", "Lone CR or LF in headers (see RFC2822 section 2.2)")
LONE_LF_BODY = Reply(550, "5.6.0", "Lone CR or LF in body (see RFC2822 section 2.3)")
MISSING_DOT = Reply(550, "5.6.0", "Missing CR LF . CR LF")
HEADER_LINE_TOO_LONG = Reply(550, "5.6.0", "Header line too long (see RFC2822 section 3.5)")
BODY_LINE_TOO_LONG = Reply(550, "5.6.0", "Body line too long (see RFC2822 section 3.5)")
# For the driver's rfc2822 checks (validation phase), same wording family:
REQUIRED_HEADERS = Reply(550, "5.6.0", "Required headers not found (see RFC2822 section 3.6)")
HEADER_NOT_TERMINATED = Reply(550, "5.6.0",
                              "Header not terminated by CR LF (see RFC2822 section 2.2)")
INVALID_HEADER = Reply(550, "5.6.0", "Invalid header found (see RFC2822 section 3.6)")
MISSING_DATE = Reply(550, "5.6.0", "Missing required RFC2822 Date field (see RFC2822 section 3.6)")
# Policy replies the driver sends (listed so every text lives in one place):
RELAYING_DENIED = Reply(550, "5.7.1", "relaying denied")
RECIPIENT_BLACKHOLED = Reply(551, "5.7.1", "recipient blackholed")
CONCURRENCY_LIMIT = Reply(421, "4.4.5", "Service unavailable, concurrency limit reached")
TOO_LARGE_NOW = Reply(421, "4.3.0", "message is too large to process at this time")
RESOURCES_EXCEEDED = Reply(421, "4.3.4", "allocated resources exceeded")

# --- STARTTLS / AUTH / XCLIENT ------------------------------------------------------------
TLS_ACTIVE = Reply(503, "5.5.1", "TLS already active")                              # (ecmta)
STARTTLS_INJECTION = Reply(554, "5.5.1",  # (ecmta)
                           "commands pipelined after STARTTLS; connection dropped")
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")             # RFC 4954
AUTH_TOO_MANY = Reply(421, "4.7.0", "Too many failed authentication attempts, closing connection")  # (ecmta)
AUTH_CANCELLED = Reply(501, "5.0.0", "Authentication cancelled")                    # RFC 4954
AUTH_BAD_BASE64 = Reply(501, "5.5.2", "Cannot Base64-decode client response")       # RFC 4954
AUTH_BAD_RESPONSE = Reply(501, "5.5.2", "Invalid authentication response")          # (ecmta)
AUTH_ALREADY = Reply(503, "5.5.1", "Already authenticated")                         # RFC 4954
AUTH_IN_TRANSACTION = Reply(503, "5.5.1", "AUTH not permitted during a mail transaction")
AUTH_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication type")            # RFC 4954
AUTH_SYNTAX = Reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
AUTH_NEEDS_TLS = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
AUTH_NO_INITIAL = Reply(501, "5.5.2", "CRAM-MD5 takes no initial response")
XCLIENT_SYNTAX = Reply(501, "5.5.4", "Syntax: XCLIENT attribute=value ...")          # Postfix
XCLIENT_IN_TRANSACTION = Reply(503, "5.5.1", "Error: MAIL transaction in progress")  # Postfix
XCLIENT_BAD_NAME = "Bad XCLIENT attribute name: {}"                                  # 501 5.5.4
XCLIENT_BAD_VALUE = "Bad {} syntax: {}"                                              # 501 5.5.4
XREMOTEIP_SYNTAX = Reply(501, "5.5.4", "Syntax: XREMOTEIP ip-address")
XSETCONTEXT_SYNTAX = Reply(501, "5.5.4", "Syntax: XSETCONTEXT name=value ...")
VRFY_SYNTAX = Reply(501, "5.5.4", "Syntax: VRFY address")
EXPN_SYNTAX = Reply(501, "5.5.4", "Syntax: EXPN list")
EXPN_DEFAULT = Reply(502, "5.5.1", "EXPN not supported")
HELP_UNKNOWN = Reply(504, "5.5.1", "HELP topic unknown")
