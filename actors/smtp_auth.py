"""SMTP AUTH credentials (inbound_smtp): where passwords come from and how they are checked.

Owns: the credential sources named by the `uri` of AuthLoginParameters /
AuthPlainParameters / AuthCramMD5Parameters:
  file:///path     `user:password` lines, `#` comments (inbound_smtp 19.5.4)
  digest:///path   ec_md5passwd files `user:realm:md5(user:realm:password)`; usable by
                   LOGIN/PLAIN only (CRAM-MD5 needs the clear text)
  sqlite:///path   table `users(username TEXT PRIMARY KEY, password TEXT)` (clear text)
With no uri the source is the SQLite database `auth.db` in the state directory.

Reading a source is blocking file/SQLite work: `verify()` runs it in the IO pool and the
session greenlet waits cooperatively. Files are re-read when their mtime changes.
Fails closed: an unreadable source or unknown user is a failed authentication (535),
never an exception into the session; the reason goes to the paniclog once per change.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3

from ecmta import paths, pools
from ecmta.loggers.panic import panic
from ecmta.transports.smtp_server import cram_md5_ok

DEFAULT_DB = "auth.db"
_cache: dict[str, tuple] = {}
_reported: set[str] = set()


def source_path(uri: str, state_dir: str | None = None) -> tuple[str, str]:
    """(scheme, path) of a credential uri."""
    if not uri:
        return "sqlite", paths.resolve(DEFAULT_DB, state_dir)
    if "://" not in uri:
        return "file", paths.resolve(uri, state_dir)
    scheme, rest = uri.split("://", 1)
    scheme = scheme.lower()
    if scheme not in ("file", "digest", "sqlite"):
        raise ValueError(f"authentication uri scheme '{scheme}://' is not available in this version")
    return scheme, paths.resolve(rest, state_dir)


def _read_file(path: str) -> dict:
    users = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.rstrip("\r\n")
            if not line or line.lstrip().startswith("#") or ":" not in line:
                continue
            user, rest = line.split(":", 1)
            users[user] = rest
    return users


def _read_sqlite(path: str) -> dict:
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return dict(conn.execute("SELECT username, password FROM users"))
    finally:
        conn.close()


def _load(scheme: str, path: str) -> dict:
    """Pool job: the user table of a source, re-read only when the file changed."""
    st = os.stat(path)
    stamp = (st.st_mtime_ns, st.st_size)
    hit = _cache.get(path)
    if hit and hit[0] == stamp:
        return hit[1]
    users = _read_sqlite(path) if scheme == "sqlite" else _read_file(path)
    _cache[path] = (stamp, users)
    return users


def _check(scheme: str, users: dict, ev) -> bool:
    stored = users.get(ev.authcid)
    if stored is None:
        return False
    if ev.mechanism == "CRAM-MD5":
        if scheme == "digest":
            return False
        return cram_md5_ok(stored, ev.challenge, ev.response)
    password = ev.password or ""
    if scheme == "digest":
        realm, _, digest = stored.partition(":")
        want = hashlib.md5(f"{ev.authcid}:{realm}:{password}".encode()).hexdigest()
        return digest.lower() == want
    return _const_eq(stored, password)


def _const_eq(a: str, b: str) -> bool:
    import hmac
    return hmac.compare_digest(a.encode(), b.encode())


def verify(source, ev, state_dir: str | None = None) -> bool:
    """Check an AuthAttempt against its configured source (cooperative, IO pool)."""
    try:
        scheme, path = source_path(source.uri if source else "", state_dir)
        users = pools.run("IO", _load, scheme, path)
    except Exception as exc:
        key = f"{getattr(source, 'uri', '')}:{exc!r}"
        if key not in _reported:
            _reported.add(key)
            panic(f"SMTP AUTH source {getattr(source, 'uri', '') or '(default)'} unusable: {exc}",
                  subsystem="auth")
        return False
    return _check(scheme, users, ev)


def add_user(path: str, username: str, password: str) -> None:
    """Create or update a user in a SQLite credential database (used by tests and tools)."""
    paths.ensure_parent(path)
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS users (username TEXT PRIMARY KEY, password TEXT)")
        conn.execute("INSERT OR REPLACE INTO users VALUES (?, ?)", (username, password))
        conn.commit()
    finally:
        conn.close()
