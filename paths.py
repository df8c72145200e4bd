"""Where ecmta keeps its state when a path in the config is relative.

Momentum installs under /opt/msys/ecelerity and needs root; ecmta runs anywhere. Every
relative path option (spoolbase, log files, pidfile, scriptlet sources...) is resolved
against the state directory:

    $ECMTA_HOME, else $XDG_STATE_HOME/ecmta, else ~/.local/state/ecmta

Absolute paths are used as written.
"""

from __future__ import annotations

import os


def state_dir() -> str:
    home = os.environ.get("ECMTA_HOME")
    if home:
        return os.path.abspath(home)
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(xdg, "ecmta")


def resolve(path: str, base: str | None = None) -> str:
    """Absolute form of a path option; relative ones live under the state directory."""
    path = os.path.expanduser(path)
    if os.path.isabs(path):
        return path
    return os.path.join(base or state_dir(), path)


def ensure_parent(path: str) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return path


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Write `text` to `path` through a hidden temporary file (".<name>.<pid>.tmp"), fsync
    and a rename (blocking: pool only)."""
    directory, base = os.path.split(path)
    os.makedirs(directory or ".", exist_ok=True)
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.tmp")     # hidden from readers
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.replace(tmp, path)
