"""msys.audit_series: named, time-windowed counters shared by every Lua runtime.

Owns: the process-wide `STORE` of series (lua.ref.msys.audit_series.define/add/count/
remove_item), their persisted form (inbound_audit's serialize_dir) and the snapshot text
the journals write (loggers/as_logger.py). Who talks to it: the Lua side through
`lua_api()` (policy/runtime.py registers it, policy/lua/ecmta/bootstrap.lua wraps it as
msys.audit_series.*), the daemon's `AuditSeriesService` (policy/audit_series_service.py:
loads and saves persisted series) and the journal actors (as_logger, serialize).

Model. A series has a type (`cidr`: IPv4 addresses, `cidr_ipv6`: IPv6 addresses, `string`:
any text), an `interval` in seconds and `num_windows`. Buckets are computed from the wall
clock, never from timers: the bucket of time t is floor(t / interval), window 0 is the
current bucket, window k the bucket k intervals before it; buckets older than num_windows
are dropped when the series is next used. Counts are numbers (any sign, integral or not);
a key whose count returns to 0 is forgotten.

Keys. cidr series: an address, "[v6]" brackets allowed, an IPv4-mapped IPv6 address counts
as IPv4; an accept construct (`ac`) or the string "accept_construct" means its peer; no key
means the peer of the session whose callout is running (a Lua error outside a callout). An
address of the other family is not counted (add, remove_item: nothing; count: 0), because
a series is either IPv4 or IPv6 (the define page's warning). count takes "ip/mask" or
"/mask" (the current peer under that mask) and sums every address inside (one lookup for
a /32 or /128; a shorter mask scans the keys of the windows summed). string series:
the key is required (a Lua error names the function otherwise); an `ac` means its peer's
address as text. count sums windows `startv`..`endv` (default 0..0, clipped to the series).

Options of define: `serialize` (journaled to inbound_audit's log_dir every
maintenance_interval, not reset), `persist` (saved to serialize_dir at shutdown and read
back at start; a saved series whose type, interval or num_windows changed is dropped),
`replicate`: "none"; "cluster" on this single node means, as the define page warns, that
the series never increments (add does nothing); "manager" is accepted and the series stays
local (there is no cluster manager here). A repeated define with the same type, interval
and windows keeps the counts (init() runs in every Lua runtime and at each reload); with
other values it starts the series afresh. Operations on a name never defined are Lua errors.

Threads: Lua may call in from a msys.runInPool closure on a pool thread, so the store is
guarded by an OS-level lock held only for dictionary work (microseconds; no I/O, no greenlet
switch under it). Files are read and written by the callers, in the IO pool.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from gevent.monkey import get_original

from ecmta import paths

TYPES = ("cidr", "cidr_ipv6", "string")
REPLICATE = ("none", "cluster", "manager")
BITS = {"cidr": 32, "cidr_ipv6": 128}
AC_WORD = "accept_construct"
PERSIST_SUFFIX = ".json"
PERSIST_VERSION = 1

_allocate_lock = get_original("_thread", "allocate_lock")


class AuditSeriesError(ValueError):
    """A misuse the calling script is to blame for; the text names the Lua function."""


# -- series ------------------------------------------------------------------------------
@dataclass
class Series:
    name: str
    type: str
    interval: int
    num_windows: int
    serialize: bool = False
    persist: bool = False
    replicate: str = "none"
    buckets: dict = field(default_factory=dict)     # bucket index -> {key: count}
    since: float = 0.0                               # creation or last reset (wall clock)

    def shape(self) -> tuple:
        return (self.type, self.interval, self.num_windows)

    def now_index(self, now: float) -> int:
        return int(now // self.interval)

    def prune(self, now: float) -> int:
        """Drop buckets that left the series; returns the current bucket index."""
        idx = self.now_index(now)
        oldest = idx - self.num_windows + 1
        for b in [b for b in self.buckets if b < oldest or b > idx]:
            del self.buckets[b]
        return idx

    def add(self, key, count, now: float) -> None:
        bucket = self.buckets.setdefault(self.prune(now), {})
        value = bucket.get(key, 0) + count
        if value == 0:
            bucket.pop(key, None)
        else:
            bucket[key] = value

    def count(self, key, mask: int | None, startv: int, endv: int, now: float):
        idx = self.prune(now)
        lo, hi = sorted((startv, endv))
        lo, hi = max(lo, 0), min(hi, self.num_windows - 1)
        total = 0
        for k in range(lo, hi + 1):
            bucket = self.buckets.get(idx - k)
            if bucket:
                total += self._sum(bucket, key, mask)
        return total

    def _sum(self, bucket: dict, key, mask: int | None):
        if mask is None or mask == BITS.get(self.type):
            return bucket.get(key, 0)
        shift = BITS[self.type] - mask
        net = key >> shift
        return sum(v for k, v in bucket.items() if k >> shift == net)

    def remove(self, key, mask: int | None, now: float) -> None:
        self.prune(now)
        for bucket in self.buckets.values():
            if mask is None or mask == BITS.get(self.type):
                bucket.pop(key, None)
                continue
            shift = BITS[self.type] - mask
            for k in [k for k in bucket if k >> shift == key >> shift]:
                del bucket[k]

    def totals(self, now: float) -> dict:
        """key -> sum over every window the series holds."""
        self.prune(now)
        out: dict = {}
        for bucket in self.buckets.values():
            for k, v in bucket.items():
                out[k] = out.get(k, 0) + v
        return {k: v for k, v in out.items() if v != 0}

    def key_text(self, key) -> str:
        if self.type == "cidr":
            return str(ipaddress.IPv4Address(key))
        if self.type == "cidr_ipv6":
            return str(ipaddress.IPv6Address(key))
        return key

    def key_from_text(self, text: str):
        if self.type == "string":
            return text
        return int(ipaddress.ip_address(text))


# -- keys --------------------------------------------------------------------------------
def _address(text: str, series: Series, fn: str):
    """The series' integer form of an address, or None when it is of the other family."""
    raw = text.strip()
    if raw.startswith("[") and raw.endswith("]"):
        raw = raw[1:-1]
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        raise AuditSeriesError(f"msys.audit_series.{fn}: '{text}' is not an IP address "
                               f"(series '{series.name}' is of type {series.type})") from None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    want = 4 if series.type == "cidr" else 6
    return int(ip) if ip.version == want else None


def parse_key(series: Series, key, peer, fn: str, *, masked: bool = False):
    """(key, mask) for a series from what the script gave. `key` is text, None, or the peer
    already resolved by the Lua glue (an ac); `peer()` is the running session's peer
    address. Returns (None, None) for an address of the other family."""
    if series.type == "string":
        if key is None:
            raise AuditSeriesError(f"msys.audit_series.{fn}: a key is required for string "
                                   f"series '{series.name}'")
        return str(key), None
    mask = None
    if key is not None and masked and "/" in key:
        key, _, m = key.partition("/")
        bits = BITS[series.type]
        if not m.isdigit() or int(m) > bits:
            raise AuditSeriesError(f"msys.audit_series.{fn}: bad mask '/{m}' (0 to {bits})")
        mask = int(m)
    if key is None or key == "" or key == AC_WORD:
        key = peer()
        if not key:
            raise AuditSeriesError(f"msys.audit_series.{fn}: no key given and no connected "
                                   "peer to default to (call it from a validation callout)")
    addr = _address(key, series, fn)
    if addr is None:
        return None, None
    return addr, mask


# -- the store ---------------------------------------------------------------------------
class Store:
    """Every series of the process by name (see the module docstring)."""

    def __init__(self, clock=time.time) -> None:
        self.clock = clock
        self._lock = _allocate_lock()
        self._series: dict[str, Series] = {}
        self._staged: dict[str, dict] = {}       # persisted payloads waiting for define()
        self.dropped: list[str] = []             # staged payloads refused (shape changed)

    # Lua functions --------------------------------------------------------------------
    def define(self, name: str, type_: str, interval, num_windows, *, serialize=False,
               persist=False, replicate="none") -> Series:
        if not name:
            raise AuditSeriesError("msys.audit_series.define: the series name must not be empty")
        if type_ not in TYPES:
            raise AuditSeriesError(f"msys.audit_series.define: unknown type '{type_}' "
                                   f"(cidr, cidr_ipv6 or string)")
        interval, num_windows = _whole(interval, "interval"), _whole(num_windows, "num_windows")
        replicate = (replicate or "none").lower()
        if replicate not in REPLICATE:
            raise AuditSeriesError(f"msys.audit_series.define: replicate must be none, cluster "
                                   f"or manager, not '{replicate}'")
        with self._lock:
            old = self._series.get(name)
            if old is not None and old.shape() == (type_, interval, num_windows):
                series = old
            else:
                series = Series(name, type_, interval, num_windows, since=self.clock())
                self._series[name] = series
            series.serialize, series.persist, series.replicate = serialize, persist, replicate
            staged = self._staged.pop(name, None) if persist else None
            if staged is not None:
                self._restore(series, staged)
            return series

    def add(self, name: str, key, count=1, peer=lambda: None) -> None:
        series = self.get(name, "add")
        k, _ = parse_key(series, key, peer, "add")
        if k is None or series.replicate == "cluster" or count == 0:
            return
        with self._lock:
            series.add(k, count, self.clock())

    def count(self, name: str, key, startv=0, endv=0, peer=lambda: None):
        series = self.get(name, "count")
        k, mask = parse_key(series, key, peer, "count", masked=True)
        if k is None:
            return 0
        with self._lock:
            return series.count(k, mask, int(startv), int(endv), self.clock())

    def remove_item(self, name: str, key, peer=lambda: None) -> None:
        series = self.get(name, "remove_item")
        k, mask = parse_key(series, key, peer, "remove_item", masked=True)
        if k is None:
            return
        with self._lock:
            series.remove(k, mask, self.clock())

    # helpers ----------------------------------------------------------------------------
    def get(self, name: str, fn: str) -> Series:
        series = self._series.get(name)
        if series is None:
            raise AuditSeriesError(f"msys.audit_series.{fn}: no series named '{name}' "
                                   "(define it with msys.audit_series.define first)")
        return series

    def names(self) -> list[str]:
        return sorted(self._series)

    def series(self) -> list[Series]:
        with self._lock:
            return list(self._series.values())

    def clear(self) -> None:
        """Forget every series and staged payload (tests; a fresh daemon)."""
        with self._lock:
            self._series.clear()
            self._staged.clear()
            self.dropped.clear()

    def snapshot(self, name: str, *, reset: bool):
        """(series, totals, start, end) of one series now; reset empties it. None if the
        series is gone."""
        with self._lock:
            series = self._series.get(name)
            if series is None:
                return None
            now = self.clock()
            totals = series.totals(now)
            start = series.since
            if reset:
                series.buckets.clear()
                series.since = now
            else:
                start = max(start, (series.now_index(now) - series.num_windows + 1) * series.interval)
            return series, totals, start, now

    # persistence ------------------------------------------------------------------------
    def persist_payloads(self) -> dict[str, dict]:
        """name -> the JSON-able state of every series defined with persist = true."""
        with self._lock:
            now = self.clock()
            out = {}
            for s in self._series.values():
                if s.persist:
                    s.prune(now)
                    out[s.name] = {
                        "version": PERSIST_VERSION, "name": s.name, "type": s.type,
                        "interval": s.interval, "num_windows": s.num_windows, "saved": now,
                        "since": s.since,
                        "buckets": {str(b): [[s.key_text(k), v] for k, v in d.items()]
                                    for b, d in s.buckets.items() if d},
                    }
            return out

    def stage(self, payloads: dict[str, dict]) -> None:
        """Persisted state read at start; each series takes its own at define()."""
        with self._lock:
            for name, payload in payloads.items():
                series = self._series.get(name)
                if series is not None and series.persist:
                    self._restore(series, payload)
                else:
                    self._staged[name] = payload

    def _restore(self, series: Series, payload: dict) -> None:
        shape = (payload.get("type"), payload.get("interval"), payload.get("num_windows"))
        if shape != series.shape():
            self.dropped.append(series.name)
            return
        for b, items in payload.get("buckets", {}).items():
            bucket = series.buckets.setdefault(int(b), {})
            for text, v in items:
                k = series.key_from_text(text)
                bucket[k] = bucket.get(k, 0) + v
        series.since = min(series.since, float(payload.get("since", series.since)))
        series.prune(self.clock())


def _whole(value, what: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AuditSeriesError(f"msys.audit_series.define: {what} must be a number") from None
    if not math.isfinite(number) or number < 1 or number != int(number):
        raise AuditSeriesError(f"msys.audit_series.define: {what} must be a whole number of "
                               f"at least 1, not {value}")
    return int(number)


STORE = Store()


# -- files: snapshots and persistence (run these in a pool) -------------------------------
def file_stem(name: str) -> str:
    """A series name as a file name (anything but letters, digits and -_.@+= %-escaped)."""
    stem = quote(name, safe="-_.@+=")
    return stem if stem not in (".", "..") else stem.replace(".", "%2E")


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".%03dZ" % int((ts % 1) * 1000)


def _num(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return repr(v) if isinstance(v, float) else str(v)


def render_snapshot(series: Series, totals: dict, start: float, end: float) -> str:
    """The journal file text: a header line, then `key<TAB>count` per key, sorted."""
    head = (f"# audit_series {_esc(series.name)} type={series.type} interval={series.interval} "
            f"windows={series.num_windows} start={_iso(start)} end={_iso(end)}\n")
    lines = [f"{_esc(series.key_text(k))}\t{_num(v)}\n" for k, v in sorted(totals.items())]
    return head + "".join(lines)


def save_persisted(directory: str, payloads: dict[str, dict]) -> list[str]:
    """Write each payload to `<directory>/<name>.json` (blocking: pool only)."""
    written = []
    for name, payload in payloads.items():
        path = os.path.join(directory, file_stem(name) + PERSIST_SUFFIX)
        paths.write_atomic(path, json.dumps(payload, sort_keys=True) + "\n", 0o600)
        written.append(path)
    return written


def load_persisted(directory: str) -> tuple[dict[str, dict], list[str]]:
    """(name -> payload, problems) of the files in `directory` (blocking: pool only)."""
    payloads, problems = {}, []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return payloads, problems
    for fname in names:
        if not fname.endswith(PERSIST_SUFFIX):
            continue
        path = os.path.join(directory, fname)
        try:
            with open(path, encoding="utf-8") as fh:
                payload = json.load(fh)
            name = payload["name"]
            if payload.get("version") != PERSIST_VERSION or not isinstance(name, str):
                raise ValueError("not a persisted audit series")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            problems.append(f"{path}: {exc}")
            continue
        if file_stem(name) + PERSIST_SUFFIX != fname:
            problems.append(f"{path}: holds series '{name}', not the one its name says")
            continue
        payloads[name] = payload
    return payloads, problems


# -- the Lua side (policy/lua/ecmta/bootstrap.lua) ------------------------------------------
def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return None if value is None else str(value)


def _flag(value) -> bool:
    if isinstance(value, (bytes, str)):
        return _text(value).strip().lower() in ("true", "1", "yes", "on", "enabled")
    return bool(value)


def _number(value, fn: str, what: str):
    if isinstance(value, (bytes, str)):
        try:
            value = float(_text(value))
        except ValueError:
            raise AuditSeriesError(f"msys.audit_series.{fn}: {what} must be a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AuditSeriesError(f"msys.audit_series.{fn}: {what} must be a number")
    return int(value) if float(value).is_integer() else value


def lua_api(peer, store: Store | None = None) -> dict:
    """The api.* functions bootstrap.lua wraps. `peer()` is the remote address of the
    session whose callout is running (None outside one); `key` arrives as a Lua string,
    nil, or the Python object of an `ac` proxy. Each returns (nil, value) or (error text)."""

    def key_of(key):
        if key is None or isinstance(key, (bytes, str)):
            return _text(key)
        if isinstance(key, (int, float)) and not isinstance(key, bool):
            return _text(key)
        addr = getattr(key, "peer_addr", None)
        if addr is None:
            raise AuditSeriesError("msys.audit_series: a key must be a string or an "
                                   "accept construct")
        return peer_ip(addr)

    def call(fn):
        def wrapped(*args):
            try:
                return None, fn(store or STORE, *args)
            except AuditSeriesError as exc:
                return str(exc).encode("utf-8", "surrogateescape"), None
        return wrapped

    def define(st, name, type_, interval, num_windows, serialize, persist, replicate):
        st.define(_text(name) or "", _text(type_) or "", interval, num_windows,
                  serialize=_flag(serialize), persist=_flag(persist),
                  replicate=_text(replicate) or "none")
        return True

    def add(st, name, key, count):
        count = 1 if count is None else _number(count, "add", "count")
        st.add(_text(name) or "", key_of(key), count, peer)

    def count(st, name, key, startv, endv):
        s = 0 if startv is None else int(_number(startv, "count", "startv"))
        e = 0 if endv is None else int(_number(endv, "count", "endv"))
        total = st.count(_text(name) or "", key_of(key), s, e, peer)
        return int(total) if isinstance(total, float) and total.is_integer() else total

    def remove_item(st, name, key):
        st.remove_item(_text(name) or "", key_of(key), peer)

    return {b"audit_series_define": call(define), b"audit_series_add": call(add),
            b"audit_series_count": call(count), b"audit_series_remove_item": call(remove_item)}


def peer_ip(addr: str) -> str:
    """The address of an accept construct's `peer_addr` ("ip:port", "[v6]:port", "v6:port")."""
    if not addr:
        return ""
    if addr.startswith("["):
        return addr[1:].partition("]")[0]
    host, sep, port = addr.rpartition(":")
    if sep and port.isdigit():
        try:
            ipaddress.ip_address(host)
            return host
        except ValueError:
            pass
    return addr
