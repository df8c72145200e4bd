"""`ec_show [-c config] [--spool dir] [-s] [-m id] [-n] [--sender RE] [--recipient RE]
[--start_date DATE] [--end_date DATE]`: show spool or message information (executable.ec_show).

Reads the spool offline and read-only (actors/spool_store.SpoolReader): it takes no lock
and never writes, so it runs beside the daemon without blocking it (SQLite WAL readers see
the last committed state). Like Momentum's, its Retries / Next Attempt / Code are what
was last written to disk; `message details` in the console shows the live values.

The spool is `--spool`, else `spoolbase` of the `-c` config, else of the default config;
relative paths resolve against the state directory as the daemon's do. `--sender` and
`--recipient` are regular expressions searched in the address (Python `re`, which
covers the PCRE syntax people use here). Dates are `YYYY-MM-DD[ HH:MM[:SS]]` in local
time, or a unix timestamp. Without -m or -n every matching message is shown (-s).
Each message ends with a line holding a single `.`. Exit status: 0, or 1 when the spool
or the message cannot be read.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import datetime

from ecmta import paths
from ecmta.actors.mail import MailMessage, parse_id
from ecmta.actors.spool_store import SpoolError, SpoolReader

DEFAULT_SPOOLBASE = "spool"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ec_show", description="show spool or message information")
    p.add_argument("-c", dest="config", metavar="config_file", help="Momentum configuration file to work with")
    p.add_argument("--spool", metavar="dir", help="spool directory (overrides spoolbase of the config)")
    p.add_argument("-s", dest="show", action="store_true", help="show the spool directory including the messages")
    p.add_argument("-m", dest="message", metavar="message_id", help="show the message with this id")
    p.add_argument("-n", dest="count", action="store_true", help="show the count of messages in the spool only")
    p.add_argument("--sender", metavar="PCRE", help="messages whose sender matches")
    p.add_argument("--recipient", metavar="PCRE", help="messages whose recipient matches")
    p.add_argument("--start_date", metavar="DATE", help="messages created no earlier than DATE")
    p.add_argument("--end_date", metavar="DATE", help="messages created no later than DATE")
    return p


def spoolbase(args) -> str:
    if args.spool:
        return paths.resolve(args.spool)
    raw = None
    try:
        from ecmta.config import load_config, load_default_config
        cfg = load_config(args.config) if args.config else load_default_config()
        value = cfg.eval("spoolbase")
        raw = value.value if value is not None else None
    except ImportError:
        if args.config:
            raise
    return paths.resolve(raw or DEFAULT_SPOOLBASE)


def parse_date(text: str, end: bool = False) -> float:
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            stamp = time.mktime(datetime.strptime(text, fmt).timetuple())
        except ValueError:
            continue
        # A bare day as an end date means the whole of that day.
        return stamp + 86399 if end and fmt == "%Y-%m-%d" else stamp
    raise ValueError(f"cannot read the date {text!r} (use YYYY-MM-DD[ HH:MM[:SS]] or a unix time)")


class Filter:
    def __init__(self, args) -> None:
        self.sender = re.compile(args.sender) if args.sender else None
        self.recipient = re.compile(args.recipient) if args.recipient else None
        self.start = parse_date(args.start_date) if args.start_date else None
        self.end = parse_date(args.end_date, end=True) if args.end_date else None

    def __call__(self, m: MailMessage) -> bool:
        return not ((self.sender and not self.sender.search(m.mailfrom))
                    or (self.recipient and not self.recipient.search(m.rcptto))
                    or (self.start is not None and m.received_at < self.start)
                    or (self.end is not None and m.received_at > self.end))


def _stamp(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _idline(label: str, msg_id: str) -> str:
    try:
        slot, pid, counter = parse_id(msg_id)
    except ValueError:
        return f"  {label}: {msg_id}"
    return f"  {label}: (slot: {slot}, pid: {pid}, counter: {counter})"


def _field(label: str, value) -> str:
    value = "" if value is None else str(value)
    return f"  {label}:" + (f" {value}" if value else "")


def render(m: MailMessage, body: bytes | None, body_error: str | None = None) -> str:
    """One message in the layout of executable.ec_show (-s)."""
    peer = f"{m.peer_ip}:{m.peer_port}" if m.peer_ip else ""
    lines = [f"Message: {m.id}", _idline("ID", m.id), _idline("BatchID", m.batch_id),
             _idline("ConnID", m.conn_id), "  Swapped: Yes", f"  Created: {_stamp(m.received_at)}",
             f"  Next Attempt: {_stamp(m.next_attempt or m.received_at)}",
             f"  Retries: {m.attempts}", _field("Received From", f"{m.protocol.upper()} {peer}".strip()),
             _field("Received Via", m.listener_addr), _field("Sender", m.mailfrom),
             _field("Recipient", m.rcptto), _field("Code", m.code), f"  Size: {m.size}"]
    for label, ctx in (("Connection Context", m.ctx_conn), ("Message Context", m.ctx_mess)):
        lines.append(f"  {label}: [")
        lines.extend(f'  {k} = "{v}"' for k, v in ctx.items())
        lines.append("  ]")
    lines.append("")
    if body is None:
        lines.append(f"(body unreadable: {body_error})")
    else:
        text = body.replace(b"\r\n", b"\n").decode("utf-8", "replace")
        lines.append(text[:-1] if text.endswith("\n") else text)
    lines.append(".")
    return "\n".join(lines) + "\n"


def _show(reader: SpoolReader, m: MailMessage, out) -> None:
    try:
        body, err = reader.body(m.id), None
    except SpoolError as exc:
        body, err = None, str(exc)
    out.write(render(m, body, err))


def run(args, out=sys.stdout, err=sys.stderr) -> int:
    try:
        keep = Filter(args)
    except (ValueError, re.error) as exc:
        print(f"ec_show: {exc}", file=err)
        return 2
    try:
        base = spoolbase(args)
    except Exception as exc:  # ConfigError and friends: say which file and why
        print(f"ec_show: cannot read the configuration: {exc}", file=err)
        return 1
    try:
        reader = SpoolReader(base)
    except SpoolError as exc:
        print(f"ec_show: {exc}", file=err)
        return 1
    try:
        if args.message:
            try:
                m = reader.get(args.message)
            except (SpoolError, ValueError) as exc:
                print(f"ec_show: {exc}", file=err)
                return 1
            _show(reader, m, out)
            return 0
        shown = 0
        for m, bad in reader.rows():
            if bad is not None:
                print(f"ec_show: message {bad[0]} is unreadable ({bad[1]})", file=err)
                continue
            if not keep(m):
                continue
            if not args.count:
                if shown:
                    out.write("\n")
                _show(reader, m, out)
            shown += 1
        if args.count:
            out.write(f"{shown}\n")
        return 0
    finally:
        reader.close()


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args)
    except BrokenPipeError:   # `ec_show -s | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
