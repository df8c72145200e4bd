"""`msys.bounce` for policy scripts (lua.ref.msys.bounce.classify, .classify_smtp_response).

Owns: the Python half of the two functions; the Lua half is in
policy/lua/ecmta/bootstrap.lua (it hands the message proxy's CalloutCtx over). Both use the
classifier of the running configuration (loggers/bounce_classifier.py, including
bounce_classifier_override's custom classes and rules).

    code, name, desc = msys.bounce.classify_smtp_response(response_text, domain)
    code, name, desc, orig_rcpt = msys.bounce.classify(msg)

`name` is the symbolic BC_* name, `desc` the class name ("Invalid Recipient", or a custom
class's description). classify() reads the message as an out-of-band notice (a DSN, a
mailer-daemon text, an auto-reply, a challenge-response probe, a (un)subscribe request);
a message that is none of these gives BC_UNDETERMINED and a nil recipient. Called from Lua
through lupa (`encoding=None`): strings in and out are bytes. Nothing here waits.
"""

from __future__ import annotations

from ecmta.loggers import bounce_classifier as BC
from ecmta.policy.msys import b, s


def _triple(result) -> tuple:
    k = result.klass
    return k.code, b(k.symbol), b(k.name)


def classify_smtp_response(text, domain=None) -> tuple:
    return _triple(BC.current().classify_smtp(s(text), s(domain)))


def classify(c) -> tuple:
    """c: the CalloutCtx behind the Lua `msg` proxy."""
    msg = getattr(c, "msg", None)
    body = getattr(msg, "body", None) if msg is not None else None
    if body is None:
        raise ValueError("msys.bounce.classify: the message content is not available here")
    notice = BC.analyze_message(body.data, getattr(msg, "rcptto", "") or "",
                                getattr(msg, "mailfrom", "") or "", BC.current().suppress)
    if notice is None:
        return (*_triple(BC.Result(BC.CLASSES[BC.UNDETERMINED])), None)
    result = BC.current().classify_mdn(notice)
    return (*_triple(result), b(notice.orig_rcpt) if notice.orig_rcpt else None)


API = {b"bounce_classify": classify, b"bounce_classify_smtp_response": classify_smtp_response}
