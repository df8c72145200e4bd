"""`ec_sendmail [-F full_name] [-f address] [-h] [-i] [-t] [recipient ...]`: the sendmail
compatibility interface (executable.ec_sendmail).

Reads one message from stdin and submits it over SMTP to the local ESMTP listener, then
exits. Momentum's options:
  -F name   full name of the sender, used in the From: header ec_sendmail adds when the
            message has none
  -f addr   envelope sender (MAIL FROM); also the address of an added From: header. When a
            user other than root sets a sender other than user@hostname, the header
            `X-Authentication-Warning: <host>: <user> set sender to <addr> using -f` is added
  -h        help
  -i        a line holding a single "." does not end the message (also -oi); without it
            such a line ends the input, as in sendmail
  -t        recipients from the To:, Cc: and Bcc: headers; Bcc: is removed before sending.
            Addresses also given as arguments are left out (sendmail 8 semantics)
sendmail options MUAs pass are understood: -r addr (= -f), -bm (the default), -bs (an SMTP
session on stdin/stdout, relayed to the listener), -N (DSN NOTIFY), -R (RET), -V (ENVID),
-B (7BIT | 8BITMIME), -v (the SMTP dialogue on stderr); -o<x> options other than -oi, -U and
-em/-ep/-eq are accepted and ignored.

Where it submits: `--server host:port`, else the first enabled, non-Use_SSL Listen of the
ESMTP_Listener of the configuration (`-C file`, `--config file`, $EC_SENDMAIL_CONFIG, else
the embedded default configuration); a wildcard address (`*:25`, `:25`, `[::]:25`) means
the loopback address of that family.

Failure is never silent: the exit status is non-zero (sysexits: 64 usage, 65 no recipient,
67 a recipient refused, 69 message refused (5xx), 74 stdin unreadable, 75 temporary
failure (no connection, 4xx), 78 no usable listener in the configuration), the server's
answer is printed on stderr, and the message is appended to ~/dead.letter ($EC_DEAD_LETTER
overrides the path) unless every recipient accepted it.
"""

from __future__ import annotations

import email.utils
import getpass
import os
import re
import selectors
import smtplib
import socket
import sys
import time

EX_OK, EX_USAGE, EX_DATAERR, EX_NOUSER, EX_UNAVAILABLE = 0, 64, 65, 67, 69
EX_SOFTWARE, EX_IOERR, EX_TEMPFAIL, EX_CONFIG = 70, 74, 75, 78
TIMEOUT = 120.0

USAGE = """\
usage: ec_sendmail [-F full_name] [-f email_address] [-h] [-i] [-t] [recipient ...]
  -F name     sender's full name (From: header)
  -f addr     envelope sender (MAIL FROM), also shown in the From: header
  -h          show this help
  -i, -oi     a line with a single "." does not end the message
  -t          read recipients from the To:, Cc: and Bcc: headers
  -r addr     same as -f;  -bs  SMTP session on stdin/stdout;  -v  show the SMTP dialogue
  -N notify   DSN NOTIFY (SUCCESS,FAILURE,DELAY or NEVER);  -R full|hdrs;  -V envid
  -B type     7BIT or 8BITMIME
  -C file, --config file   ecelerity.conf to find the listener in
  --server host:port       submit to this listener
"""


class Usage(Exception):
    pass


class Options:
    def __init__(self) -> None:
        self.sender: str | None = None
        self.full_name: str | None = None
        self.ignore_dots = False
        self.from_headers = False
        self.smtp_stdin = False
        self.verbose = False
        self.notify: str | None = None
        self.ret: str | None = None
        self.envid: str | None = None
        self.body: str | None = None
        self.config: str | None = None
        self.server: str | None = None
        self.help = False
        self.recipients: list[str] = []


def parse_args(argv: list[str]) -> Options:
    o = Options()
    args = list(argv)
    i = 0

    def value(flag: str, rest: str) -> str:
        nonlocal i
        if rest:
            return rest
        i += 1
        if i >= len(args):
            raise Usage(f"option -{flag} needs a value")
        return args[i]

    while i < len(args):
        a = args[i]
        if a == "--":
            o.recipients += args[i + 1:]
            break
        if a.startswith("--"):
            name, eq, v = a[2:].partition("=")
            if name not in ("server", "config", "help"):
                raise Usage(f"unknown option {a}")
            if name == "help":
                o.help = True
            else:
                if not eq:
                    i += 1
                    if i >= len(args):
                        raise Usage(f"option --{name} needs a value")
                    v = args[i]
                setattr(o, name, v)
        elif a.startswith("-") and len(a) > 1:
            flag, rest = a[1], a[2:]
            if flag in "fr":
                o.sender = value(flag, rest)
            elif flag == "F":
                o.full_name = value(flag, rest)
            elif flag == "h":
                o.help = True
            elif flag == "i" and not rest:
                o.ignore_dots = True
            elif flag == "t" and not rest:
                o.from_headers = True
            elif flag == "v" and not rest:
                o.verbose = True
            elif flag == "U" and not rest:
                pass                                    # initial submission: nothing to do
            elif flag == "o":
                if rest == "i":
                    o.ignore_dots = True                # other -o options: ignored
            elif flag == "e" and rest in ("m", "p", "q", "w", "e"):
                pass
            elif flag == "b":
                if rest == "s":
                    o.smtp_stdin = True
                elif rest not in ("m", ""):
                    raise Usage(f"mode -b{rest} is not supported (only -bm and -bs)")
            elif flag == "N":
                o.notify = value(flag, rest).upper()
            elif flag == "R":
                o.ret = value(flag, rest).upper()
            elif flag == "V":
                o.envid = value(flag, rest)
            elif flag == "B":
                o.body = value(flag, rest).upper()
            elif flag == "C":
                o.config = value(flag, rest)
            else:
                raise Usage(f"unknown option {a}")
        else:
            o.recipients.append(a)
        i += 1
    if o.ret is not None and o.ret not in ("FULL", "HDRS"):
        raise Usage("-R takes full or hdrs")
    if o.body is not None and o.body not in ("7BIT", "8BITMIME"):
        raise Usage("-B takes 7BIT or 8BITMIME")
    return o


# -- where to submit -------------------------------------------------------------------------

def listener_address(config_path: str | None) -> tuple[str, int]:
    """(host, port) of the first enabled plain Listen of the ESMTP_Listener."""
    from ecmta.config import load_config, load_default_config

    cfg = load_config(config_path) if config_path else load_default_config()

    def opt(scope, name, default=None):
        v = scope.options.get(name)
        return default if v is None else v.value

    for listener in cfg.scopes("ESMTP_Listener"):
        if opt(listener, "enable", True) is False:
            continue
        for child in listener.children:
            if child.kind.lower() != "listen" or opt(child, "enable", True) is False:
                continue
            if opt(child, "use_ssl", opt(listener, "use_ssl", False)):
                continue
            return split_server(child.name)
    raise LookupError("the configuration has no enabled ESMTP_Listener Listen without Use_SSL")


def split_server(text: str) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    if not port.isdigit():
        raise ValueError(f"'{text}' is not host:port")
    host = host.strip("[]")
    if host in ("", "*", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(port)


# -- the message -------------------------------------------------------------------------------

def read_message(stream, ignore_dots: bool) -> bytes:
    if ignore_dots:
        return stream.read()
    out = []
    for line in iter(stream.readline, b""):
        if line.rstrip(b"\r\n") == b".":
            break
        out.append(line)
    return b"".join(out)


def split_message(data: bytes) -> tuple[list[bytes], bytes]:
    """(header lines with their line ends, the rest) of a message."""
    headers, pos = [], 0
    while pos < len(data):
        eol = data.find(b"\n", pos)
        end = len(data) if eol < 0 else eol + 1
        line = data[pos:end]
        if line.rstrip(b"\r\n") == b"":
            return headers, data[pos:]
        if not (line[:1] in (b" ", b"\t") and headers) and b":" not in line:
            return headers, data[pos:]                 # not a header: the body starts here
        headers.append(line)
        pos = end
    return headers, b""


def _fields(headers: list[bytes]) -> list[tuple[str, str, list[int]]]:
    """(name, unfolded value, indexes of its lines) for every header field."""
    out = []
    for i, line in enumerate(headers):
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        if text[:1] in (" ", "\t") and out:
            name, value, idx = out[-1]
            out[-1] = (name, value + " " + text.strip(), idx + [i])
        else:
            name, _, value = text.partition(":")
            out.append((name.strip(), value.strip(), [i]))
    return out


def recipients_from_headers(headers: list[bytes]) -> tuple[list[str], list[bytes]]:
    """-t: addresses of To/Cc/Bcc, and the headers without Bcc."""
    fields = _fields(headers)
    values = [v for n, v, _ in fields if n.lower() in ("to", "cc", "bcc")]
    addrs = [a for _, a in email.utils.getaddresses(values) if a]
    drop = {i for n, _, idx in fields if n.lower() == "bcc" for i in idx}
    return addrs, [h for i, h in enumerate(headers) if i not in drop]


def default_sender() -> tuple[str, str, str]:
    user = getpass.getuser()
    host = socket.gethostname() or "localhost"
    return user, host, f"{user}@{host}"


def prepare(data: bytes, o: Options) -> tuple[bytes, str, list[str]]:
    """(message with CRLF line ends and added headers, sender, recipients)."""
    headers, rest = split_message(data)
    user, host, own = default_sender()
    sender = o.sender if o.sender is not None else own
    recipients = [r for r in o.recipients if r]
    if o.from_headers:
        found, headers = recipients_from_headers(headers)
        given = {r.lower() for r in recipients}
        recipients = [a for a in found if a.lower() not in given]
    names = {n.lower() for n, _, _ in _fields(headers)}
    added = []
    if o.sender is not None and sender != own and os.geteuid() != 0:
        added.append(f"X-Authentication-Warning: {host}: {user} set sender to {sender} using -f\n")
    if "from" not in names:
        shown = email.utils.formataddr((o.full_name, sender)) if o.full_name else sender
        added.append(f"From: {shown}\n")
    head = b"".join(h.encode() for h in added) + b"".join(headers)
    if not rest.startswith((b"\n", b"\r\n")):
        rest = b"\n" + rest
    msg = re.sub(rb"\r?\n", b"\r\n", head + rest)
    return msg, sender, recipients


# -- submitting ----------------------------------------------------------------------------------

class Failed(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


def _status_of(code: int) -> int:
    return EX_TEMPFAIL if 400 <= code < 500 else EX_UNAVAILABLE


def submit(host: str, port: int, msg: bytes, sender: str, rcpts: list[str], o: Options) -> list[str]:
    """Send; returns the refused recipients as "addr: reply" (empty when all accepted)."""
    try:
        s = smtplib.SMTP(host, port, local_hostname=socket.gethostname() or "localhost",
                         timeout=TIMEOUT)
    except (OSError, smtplib.SMTPException) as exc:
        raise Failed(EX_TEMPFAIL, f"cannot connect to {host}:{port}: {exc}") from None
    try:
        if o.verbose:
            s.set_debuglevel(1)
        code, text = s.ehlo()
        if code != 250:
            code, text = s.helo()
            if code != 250:
                raise Failed(_status_of(code), f"HELO refused: {code} {text.decode(errors='replace')}")
        mopts, ropts = [], []
        if s.has_extn("size"):
            mopts.append(f"SIZE={len(msg)}")
        eight = any(b > 127 for b in msg)
        if (o.body == "8BITMIME" or (eight and o.body is None)) and s.has_extn("8bitmime"):
            mopts.append("BODY=8BITMIME")
        if not (sender + "".join(rcpts)).isascii():
            if not s.has_extn("smtputf8"):
                raise Failed(EX_UNAVAILABLE, "non-ASCII addresses but the server has no SMTPUTF8")
            mopts.append("SMTPUTF8")
        if s.has_extn("dsn"):
            if o.ret:
                mopts.append(f"RET={o.ret}")
            if o.envid:
                mopts.append(f"ENVID={_xtext(o.envid)}")
            if o.notify:
                ropts.append(f"NOTIFY={o.notify}")
        code, text = s.mail(sender, mopts)
        if code != 250:
            raise Failed(_status_of(code),
                         f"sender <{sender}> refused: {code} {text.decode(errors='replace')}")
        refused, accepted = [], []
        for r in rcpts:
            code, text = s.rcpt(r, ropts)
            if code in (250, 251):
                accepted.append(r)
            else:
                refused.append((r, code, text.decode(errors="replace")))
        if not accepted:
            worst = EX_TEMPFAIL if all(400 <= c < 500 for _, c, _ in refused) else EX_NOUSER
            raise Failed(worst, "no recipient accepted:\n" +
                         "\n".join(f"  <{r}>: {c} {t}" for r, c, t in refused))
        code, text = s.data(msg)
        if code != 250:
            raise Failed(_status_of(code), f"message refused: {code} {text.decode(errors='replace')}")
        return [f"<{r}>: {c} {t}" for r, c, t in refused]
    except smtplib.SMTPServerDisconnected as exc:
        raise Failed(EX_TEMPFAIL, f"the server closed the connection: {exc}") from None
    except smtplib.SMTPResponseException as exc:
        raise Failed(_status_of(exc.smtp_code),
                     f"{exc.smtp_code} {exc.smtp_error.decode(errors='replace')}") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise Failed(EX_TEMPFAIL, f"SMTP session failed: {exc}") from None
    finally:
        try:
            s.quit()
        except (OSError, smtplib.SMTPException):
            s.close()


def _xtext(text: str) -> str:
    return "".join(c if 33 <= ord(c) <= 126 and c not in "+=" else f"+{ord(c):02X}"
                   for c in text)


def dead_letter(data: bytes, sender: str) -> str:
    """Append the message to the dead letter file (mbox); returns its path."""
    path = os.environ.get("EC_DEAD_LETTER") or os.path.join(os.path.expanduser("~"), "dead.letter")
    body = data.replace(b"\r\n", b"\n")
    body = re.sub(rb"(?m)^(>*From )", rb">\1", body)
    stamp = time.strftime("%a %b %d %H:%M:%S %Y")
    with open(path, "ab") as fh:
        fh.write(f"From {sender or 'MAILER-DAEMON'} {stamp}\n".encode() + body +
                 (b"" if body.endswith(b"\n") else b"\n") + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    return path


def _keep(data: bytes, sender: str, err) -> None:
    try:
        path = dead_letter(data, sender)
        print(f"ec_sendmail: the message was saved in {path}", file=err)
    except OSError as exc:
        print(f"ec_sendmail: could not save the message ({exc}); it is not lost only if you "
              "still have it", file=err)


# -- -bs ---------------------------------------------------------------------------------------

def smtp_on_stdio(host: str, port: int, stdin, stdout) -> int:
    try:
        sock = socket.create_connection((host, port), timeout=TIMEOUT)
    except OSError as exc:
        stdout.write(f"421 4.4.0 ec_sendmail: cannot connect to {host}:{port}: {exc}\r\n".encode())
        stdout.flush()
        return EX_TEMPFAIL
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    in_fd = stdin.fileno()
    sel.register(in_fd, selectors.EVENT_READ)
    try:
        while True:
            events = sel.select(TIMEOUT)
            if not events:
                return EX_TEMPFAIL
            for key, _ in events:
                if key.fileobj is sock:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return EX_OK
                    stdout.write(chunk)
                    stdout.flush()
                else:
                    chunk = os.read(in_fd, 65536)
                    if not chunk:                   # stdin done: wait for the server
                        sel.unregister(in_fd)
                        sock.shutdown(socket.SHUT_WR)
                    else:
                        sock.sendall(chunk)
    finally:
        sel.close()
        sock.close()


# -- main ------------------------------------------------------------------------------------------

def run(argv, stdin, stdout, err) -> int:
    try:
        o = parse_args(argv)
    except Usage as exc:
        print(f"ec_sendmail: {exc}\n{USAGE}", file=err, end="")
        return EX_USAGE
    if o.help:
        stdout.write(USAGE.encode())
        return EX_OK
    try:
        if o.server:
            host, port = split_server(o.server)
        else:
            host, port = listener_address(o.config or os.environ.get("EC_SENDMAIL_CONFIG"))
    except Exception as exc:            # ConfigError, no listener, bad --server
        print(f"ec_sendmail: no listener to submit to: {exc}", file=err)
        if not o.smtp_stdin:
            try:
                data = read_message(stdin, o.ignore_dots)
            except OSError:
                return EX_CONFIG
            if data:
                _keep(data, o.sender or default_sender()[2], err)
        return EX_CONFIG
    if o.smtp_stdin:
        return smtp_on_stdio(host, port, stdin, stdout)
    try:
        data = read_message(stdin, o.ignore_dots)
    except OSError as exc:
        print(f"ec_sendmail: cannot read the message: {exc}", file=err)
        return EX_IOERR
    msg, sender, rcpts = prepare(data, o)
    if not rcpts:
        print("ec_sendmail: no recipients given" + (" (none in To:, Cc: or Bcc:)" if o.from_headers
                                                    else " (use -t or list them)"), file=err)
        _keep(msg, sender, err)
        return EX_DATAERR
    try:
        refused = submit(host, port, msg, sender, rcpts, o)
    except Failed as exc:
        print(f"ec_sendmail: {exc}", file=err)
        _keep(msg, sender, err)
        return exc.status
    if refused:
        print("ec_sendmail: the message was not accepted for:\n  " + "\n  ".join(refused), file=err)
        _keep(msg, sender, err)
        return EX_NOUSER
    return EX_OK


def main(argv=None) -> int:
    return run(sys.argv[1:] if argv is None else argv, sys.stdin.buffer, sys.stdout.buffer,
               sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
