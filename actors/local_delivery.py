"""Local delivery at reception: the maildir and pipe_transport I/O modules.

Owns: reading the `maildir "name" { ... }` and `pipe_transport "name" { ... }` stanzas
(modules.maildir, modules.pipe_transport) into one `Router` per configuration generation,
deciding which accepted instances they cover (by routing domain), and delivering those
instances instead of spooling them: a maildir writer (qmail maildir: write into tmp/, fsync,
rename into new/, fsync new/) and a pipe runner (the message on the program's stdin, its
exit status decides the reply).

Talks to: the SMTP session driver (actors/reception.py `SmtpSession._commit`), which builds a
`LocalDeliveries` over the instances it is about to commit, calls `run()` before the spool
commit (a returned Reply is the session's answer for the whole message), spools only
`spooled`, publishes the R lines for every instance and then calls `log()` (the D lines).
File work runs in the IO pool (pure jobs); programs run under gevent.subprocess on the hub.

Decisions (the pages leave them open):
- Coverage is by the instance's routing domain (msg:routing_domain, else the recipient's
  domain), case-insensitive; the first enabled stanza in configuration order that covers it
  wins (`all_domains = true` covers every domain). `enabled = false` stanzas are passive.
- The reply: every local delivery of the message must succeed before 250 is sent. They run
  one at a time in recipient order and stop at the first failure, whose reply answers the
  whole DATA (so nothing is stored for recipients the client will retry or bounce); nothing
  is spooled then. A pipe `code` entry with a 2xx reply is a success and its text is the
  250 reply (`"0" = "250 ok"`); otherwise the usual `250 2.0.0 OK queued as <id>`.
- maildir `createusers = false` and a missing mailbox: `550 5.1.1`, decided at data time.
  Momentum's maildir is an I/O module that replaces the spool write ("subverts the regular
  spooling actions"), and the page says "the message will be rejected"; also the routing
  domain and recipient that select the mailbox are final only after the data phases
  (msg:routing_domain, vctx recipient edits, each_rcpt). Every mailbox of the message is
  checked before anything is written, so a missing one stores nothing for the others.
- Layout: basedir/[rcpt_domain/]localpart/{tmp,new,cur}; the local part is used as written
  (RFC 5321: case-sensitive) and refused (550 5.1.3) if it is empty, "." or "..", or holds
  "/" or NUL. Directories are created with `dirmode`, files with `filemode` (chmod'ed, so the
  umask does not narrow them); both are octal digits as on the page (`dirmode = 775`).
  With createusers, missing basedir/domain/user directories are created; an existing user
  directory without tmp/new/cur gets them. The file is the message exactly as received
  (with the Return-Path and Received trace headers reception added), CRLF line ends.
- Unique names (cr.yp.to/proto/maildir.html, modern form):
  `<sec>.M<usec>P<pid>Q<deliveries>R<random>.<host>` with / and : in the host escaped.
- Maildir I/O errors: 452 4.3.1 (no space), 452 4.2.2 (quota), else 451 4.3.0; details go
  to the paniclog, never to the client.
- pipe_transport: `program_name` is split like a shell word list (no shell runs); the
  program runs once per recipient instance in its own process group with the daemon's
  environment plus qmail-command's SENDER, RECIPIENT, LOCAL and HOST. stdout/stderr are
  appended to output_file/error_file (default /dev/null; relative paths under the state
  directory). Exit 0 -> 250; a `code` entry maps a status to its reply; any other status ->
  `504 5.5.0 pipe transport gave exit status %d` (a program killed by signal N reports
  128+N). `program_timeout` (ecmta extension, default 300 s) kills the process group and answers
  `451 4.4.1`. A program that cannot be started answers 451 4.3.0.
- Misconfigured stanzas (no basedir/program_name, bad mode, bad code entry) still claim
  their domains and answer 451 4.3.5, with one paniclog line per generation, so mail is
  never silently sent elsewhere.

Logs (mainlog, through the log bus): D for each local delivery (dest domain = routing
domain, retries 0, remote ip field = `maildir:<name>` or `pipe_transport:<name>`), P for a
5xx failure, T for a 4xx one (the R lines come from reception; the rejectlog line from the
refusal). Fails: never raises to the session for delivery problems; they become replies.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import shlex
import signal
import socket
import time
from dataclasses import dataclass, field

import gevent
from gevent import subprocess as gsubprocess

from ecmta import paths, pools
from ecmta.loggers import bus, records
from ecmta.loggers.panic import panic
from ecmta.transports.smtp_replies import Reply

MAILDIR, PIPE = "maildir", "pipe_transport"
POOL = "IO"
DEFAULT_PIPE_TIMEOUT = 300
KILL_WAIT = 5.0
NOT_CONFIGURED = Reply(451, "4.3.5", "Local delivery is not configured correctly; try again later")
MAILDIR_FAILED = Reply(451, "4.3.0", "Local delivery to the mailbox failed; try again later")
NO_SPACE = Reply(452, "4.3.1", "Insufficient system storage")
MAILBOX_FULL = Reply(452, "4.2.2", "Mailbox full")
PIPE_START_FAILED = Reply(451, "4.3.0", "pipe transport could not run its program; try again later")
STAGE_RCPT, STAGE_BODY, STAGE_CONFIRM = 4, 8, 9     # log_formats.connection.stages


class MailboxMissing(Exception):
    pass


# -- configuration ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One enabled maildir or pipe_transport stanza."""
    module: str
    name: str
    domains: frozenset
    all_domains: bool = False
    problem: str | None = None          # misconfigured: answers NOT_CONFIGURED
    # maildir
    basedir: str = ""
    dirmode: int = 0o700
    filemode: int = 0o600
    createusers: bool = False
    domain_in_path: bool = False
    # pipe_transport
    argv: tuple = ()
    output_file: str = os.devnull
    error_file: str = os.devnull
    codes: dict = field(default_factory=dict)
    timeout: float = DEFAULT_PIPE_TIMEOUT

    @property
    def label(self) -> str:
        return f"{self.module}:{self.name}"

    def covers(self, domain: str) -> bool:
        return self.all_domains or domain in self.domains


def _opt(scope, name, default=None):
    v = scope.options.get(name)
    return default if v is None else v.value


def parse_mode(value) -> int:
    """A dirmode/filemode Value read as octal digits (the page writes `dirmode = 775`)."""
    raw = str(value.raw).strip().strip('"')
    if re.fullmatch(r"[0-7]+", raw):
        mode = int(raw, 8)
    elif re.fullmatch(r"0[xX][0-9a-fA-F]+", raw):
        mode = int(raw, 16)
    else:
        raise ValueError(f"{value.option} = {raw}: expected an octal file mode such as 0644")
    if mode > 0o7777:
        raise ValueError(f"{value.option} = {raw}: not a file mode")
    return mode


def _domains(*lists) -> frozenset:
    names = (str(d).strip().rstrip(".").lower() for lst in lists for d in (lst or ()))
    return frozenset(n for n in names if n)


def _maildir_target(scope, state_dir: str) -> Target:
    name = scope.name or MAILDIR
    domains = _domains(_opt(scope, "domain"), _opt(scope, "domains"))
    create = _opt(scope, "create_users", _opt(scope, "createusers", False))
    kw = dict(module=MAILDIR, name=name, domains=domains, all_domains=bool(_opt(scope, "all_domains", False)),
              createusers=bool(create), domain_in_path=bool(_opt(scope, "domain_in_path", False)))
    try:
        for opt in ("dirmode", "filemode"):
            if scope.options.get(opt) is not None:
                kw[opt] = parse_mode(scope.options[opt])
        base = _opt(scope, "basedir")
        if not base:
            raise ValueError("basedir is not set")
        kw["basedir"] = paths.resolve(str(base), state_dir)
    except ValueError as exc:
        kw["problem"] = str(exc)
    return Target(**kw)


def parse_codes(mapping) -> dict:
    """`code = [ 100 = "550 command failed" ]` -> {100: Reply}; ValueError names a bad entry."""
    out = {}
    for key, text in dict(mapping or {}).items():
        k = str(key).strip()
        m = re.fullmatch(r"\s*([245]\d\d)(?:[ -](.*))?", str(text), re.S)
        if not re.fullmatch(r"\d+", k) or m is None:
            raise ValueError(f'code entry {key} = "{text}": expected exit status = "NNN text"')
        out[int(k)] = Reply.parse(int(m.group(1)), (m.group(2) or "").strip())
    return out


def _pipe_target(scope, state_dir: str) -> Target:
    name = scope.name or PIPE
    kw = dict(module=PIPE, name=name, domains=_domains(_opt(scope, "domain")),
              timeout=float(_opt(scope, "program_timeout", DEFAULT_PIPE_TIMEOUT) or DEFAULT_PIPE_TIMEOUT))
    try:
        program = _opt(scope, "program_name")
        if not program:
            raise ValueError("program_name is not set")
        kw["argv"] = tuple(shlex.split(str(program)))
        if not kw["argv"]:
            raise ValueError("program_name is empty")
        for opt in ("output_file", "error_file"):
            kw[opt] = paths.resolve(str(_opt(scope, opt, os.devnull) or os.devnull), state_dir)
        kw["codes"] = parse_codes(_opt(scope, "code"))
    except ValueError as exc:
        kw["problem"] = str(exc)
    return Target(**kw)


class Router:
    """The enabled local delivery stanzas of one configuration, in configuration order."""

    def __init__(self, cfg, state_dir: str) -> None:
        self.targets: list[Target] = []
        self.reported: set = set()
        for scope in cfg.root.children:
            kind = (scope.module or scope.kind or "").lower()
            if kind not in (MAILDIR, PIPE) or _opt(scope, "enabled", True) is False:
                continue
            make = _maildir_target if kind == MAILDIR else _pipe_target
            self.targets.append(make(scope, state_dir))

    def target(self, domain: str) -> Target | None:
        d = (domain or "").rstrip(".").lower()
        for t in self.targets:
            if t.covers(d):
                return t
        return None

    def report(self, t: Target) -> None:
        if t.label not in self.reported:
            self.reported.add(t.label)
            panic(f'{t.module} "{t.name}": {t.problem}; mail for its domains is answered '
                  f"{NOT_CONFIGURED}", subsystem=t.module, level="ERROR")


_cache: tuple = (None, None)


def router_for(cfg, state_dir: str) -> Router:
    """The Router of `cfg` (built once per configuration generation)."""
    global _cache
    held, router = _cache
    if held is not cfg:
        router = Router(cfg, state_dir)
        _cache = (cfg, router)
    return router


# -- maildir (pool jobs: arguments in, value out) ---------------------------------------------

_HOST = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
_deliveries = itertools.count(1)


def unique_name(now: float | None = None) -> str:
    """A maildir unique name (modern delivery identifier, cr.yp.to/proto/maildir.html)."""
    now = time.time() if now is None else now
    sec, usec = int(now), int((now % 1) * 1_000_000)
    return f"{sec}.M{usec}P{os.getpid()}Q{next(_deliveries)}R{os.urandom(4).hex()}.{_HOST}"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mkdir(path: str, mode: int) -> bool:
    """Create one directory with exactly `mode`; False if it already existed."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        if not os.path.isdir(path):
            raise
        return False
    os.chmod(path, mode)
    return True


def _make_tree(path: str, mode: int) -> None:
    """Create `path` and its missing parents with `mode`, syncing each new entry's parent."""
    missing = []
    p = path
    while not os.path.isdir(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for d in reversed(missing):
        if _mkdir(d, mode):
            _fsync_dir(os.path.dirname(d))


def missing_mailboxes(mailboxes: list) -> list:
    """The mailboxes of the list that do not exist (one pool job for a whole message)."""
    return [mb for mb in mailboxes if not os.path.isdir(mb)]


def maildir_write(mailbox: str, name: str, data: bytes, dirmode: int, filemode: int,
                  create: bool) -> str:
    """Deliver `data` into the maildir `mailbox`; returns the path in new/ once durable."""
    if create:
        _make_tree(mailbox, dirmode)
    elif not os.path.isdir(mailbox):
        raise MailboxMissing(mailbox)
    made = [sub for sub in ("tmp", "new", "cur") if _mkdir(os.path.join(mailbox, sub), dirmode)]
    if made:
        _fsync_dir(mailbox)
    for attempt in range(10):
        uniq = name if attempt == 0 else f"{name}_{attempt}"
        tmp = os.path.join(mailbox, "tmp", uniq)
        if os.path.lexists(os.path.join(mailbox, "new", uniq)):
            continue                  # rename would replace a delivered message
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, filemode)
        except FileExistsError:
            continue
        break
    else:
        raise FileExistsError(errno.EEXIST, "no free unique name", tmp)
    try:
        try:
            os.fchmod(fd, filemode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        final = os.path.join(mailbox, "new", uniq)
        os.rename(tmp, final)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(os.path.join(mailbox, "new"))
    return final


def _os_reply(exc: OSError) -> Reply:
    if exc.errno == errno.ENOSPC:
        return NO_SPACE
    if exc.errno == errno.EDQUOT:
        return MAILBOX_FULL
    return MAILDIR_FAILED


_BAD_COMPONENT = re.compile(r"[/\x00]")


def _component(text: str) -> str | None:
    """`text` as one path component, or None when it cannot be one safely."""
    if not text or text in (".", "..") or _BAD_COMPONENT.search(text):
        return None
    return text


def mailbox_path(t: Target, m) -> str | None:
    user = _component(m.rcpt_localpart)
    parts = [t.basedir]
    if t.domain_in_path:
        domain = _component(m.rcpt_domain or m.routing_domain)
        if domain is None:
            return None
        parts.append(domain)
    if user is None:
        return None
    parts.append(user)
    return os.path.join(*parts)


# -- pipe_transport ------------------------------------------------------------------------------

def open_outputs(output_file: str, error_file: str) -> tuple[int, int]:
    """Append-mode descriptors of the program's stdout and stderr files (pool job)."""
    fds = []
    try:
        for path in (output_file, error_file):
            if path != os.devnull:
                paths.ensure_parent(path)
            fds.append(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds[0], fds[1]


def _close_fds(*fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def exit_reply(t: Target, status: int) -> Reply | None:
    """The reply an exit status asks for; None = the usual 250 with the queue id."""
    if status in t.codes:
        return t.codes[status]
    if status == 0:
        return None
    return Reply(504, "5.5.0", f"pipe transport gave exit status {status}")


def _env(m) -> dict:
    env = dict(os.environ)
    env.update(SENDER=m.mailfrom or "", RECIPIENT=m.rcptto or "", LOCAL=m.rcpt_localpart,
               HOST=m.rcpt_domain)
    return env


def run_pipe(t: Target, m, data: bytes) -> tuple[bool, Reply | None, int]:
    """Run the program with the message on stdin: (ok, reply, stage). Cooperative."""
    try:
        out_fd, err_fd = pools.run(POOL, open_outputs, t.output_file, t.error_file)
    except OSError as exc:
        panic(f'pipe_transport "{t.name}": cannot open its output files: {exc}', subsystem=PIPE)
        return False, PIPE_START_FAILED, STAGE_BODY
    try:
        proc = gsubprocess.Popen(list(t.argv), stdin=gsubprocess.PIPE, stdout=out_fd, stderr=err_fd,
                                 start_new_session=True, close_fds=True, env=_env(m))
    except OSError as exc:
        panic(f'pipe_transport "{t.name}": cannot run {t.argv[0]}: {exc}', subsystem=PIPE)
        return False, PIPE_START_FAILED, STAGE_BODY
    finally:
        _close_fds(out_fd, err_fd)
    status = _feed_and_wait(proc, data, t.timeout)
    if status is None:
        panic(f'pipe_transport "{t.name}": {t.argv[0]} ran longer than {t.timeout:g} seconds for '
              f"{m.id}; killed", subsystem=PIPE)
        return False, Reply(451, "4.4.1", f"pipe transport program timed out after {t.timeout:g} "
                                          "seconds; try again later"), STAGE_CONFIRM
    reply = exit_reply(t, status)
    return (reply is None or reply.code < 400), reply, STAGE_CONFIRM


def _feed_and_wait(proc, data: bytes, timeout: float) -> int | None:
    """Write the message, close stdin, wait for the exit status; None after a timeout
    (the process group is killed)."""
    timer = gevent.Timeout(timeout)
    timer.start()
    try:
        try:
            proc.stdin.write(data)
            proc.stdin.flush()
        except OSError:
            pass                      # the program stopped reading: its exit status decides
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass
        rc = proc.wait()
    except gevent.Timeout as exc:
        if exc is not timer:
            raise
        _kill(proc)
        return None
    finally:
        timer.close()
    return 128 - rc if rc < 0 else rc


def _kill(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.wait(timeout=KILL_WAIT)
    except Exception:
        pass


# -- one message's local deliveries ---------------------------------------------------------------

class LocalDeliveries:
    """The instances of one commit that local delivery modules cover."""

    def __init__(self, cfg, state_dir: str, instances) -> None:
        router = router_for(cfg, state_dir)
        self.local: list = []
        self.spooled: list = []
        for m in instances:
            t = router.target(m.routing_domain or m.rcpt_domain) if router.targets else None
            if t is None:
                self.spooled.append(m)
            else:
                self.local.append((m, t))
        self.router = router
        self.module = "core"              # the rejectlog M= field of a failure
        self.reply: Reply | None = None   # a custom 2xx (pipe `code`), else None
        self.done: list = []              # (m, target, finished at)

    def run(self) -> Reply | None:
        """Deliver every covered instance; None when all succeeded, else the failure reply."""
        if not self.local:
            return None
        failure = self._check()
        if failure is not None:
            return failure
        for m, t in self.local:
            ok, reply, stage = self._deliver(m, t)
            if not ok:
                return self._failed(m, t, reply, stage)
            self.done.append((m, t, time.time()))
            if reply is not None and self.reply is None:
                self.reply = reply
        return None

    def _check(self) -> Reply | None:
        """Configuration problems, unsafe mailbox names and (createusers off) missing mailboxes,
        before anything is written."""
        lookups = []
        for m, t in self.local:
            if t.problem:
                self.router.report(t)
                return self._failed(m, t, NOT_CONFIGURED, STAGE_RCPT)
            if t.module != MAILDIR:
                continue
            mb = mailbox_path(t, m)
            if mb is None:
                return self._failed(m, t, Reply(550, "5.1.3", f"<{m.rcptto}> is not a valid mailbox name"),
                                    STAGE_RCPT)
            if not t.createusers:
                lookups.append((m, t, mb))
        if lookups:
            try:
                missing = set(pools.run(POOL, missing_mailboxes, [mb for _, _, mb in lookups]))
            except OSError as exc:
                panic(f"maildir: mailbox lookup failed: {exc}", subsystem=MAILDIR)
                m, t, _ = lookups[0]
                return self._failed(m, t, _os_reply(exc), STAGE_RCPT)
            for m, t, mb in lookups:
                if mb in missing:
                    return self._failed(m, t, _missing(m), STAGE_RCPT)
        return None

    def _deliver(self, m, t: Target) -> tuple[bool, Reply | None, int]:
        data = m.body.data
        if t.module == PIPE:
            return run_pipe(t, m, data)
        mb = mailbox_path(t, m)
        try:
            pools.run(POOL, maildir_write, mb, unique_name(), data, t.dirmode, t.filemode, t.createusers)
        except MailboxMissing:
            return False, _missing(m), STAGE_RCPT
        except OSError as exc:
            panic(f'maildir "{t.name}": delivery of {m.id} to {mb} failed: {exc}', subsystem=MAILDIR)
            return False, _os_reply(exc), STAGE_BODY
        return True, None, STAGE_BODY

    def _failed(self, m, t: Target, reply: Reply, stage: int) -> Reply:
        self.module = t.module
        now = time.time()
        text = f"{reply.code} {reply.enhanced + ' ' if reply.enhanced else ''}{reply.text}"
        bus.publish(records.Failure(
            now, m.id, m.batch_id, m.conn_id, m.routing_domain or m.rcpt_domain, 0,
            m.binding_group, m.binding, stage, 0, now - m.received_at, t.label, text,
            reply.code >= 500, m.rcpt_localpart, m.rcpt_domain, m.sender_localpart,
            m.sender_domain, m.size))
        return reply

    def log(self) -> None:
        """The mainlog D lines of the deliveries (after reception's R lines)."""
        for m, t, at in self.done:
            bus.publish(records.Delivery(at, m.id, m.batch_id, m.conn_id,
                                         m.routing_domain or m.rcpt_domain, m.size,
                                         m.binding_group, m.binding, 0, at - m.received_at, t.label))


def _missing(m) -> Reply:
    return Reply(550, "5.1.1", f"<{m.rcptto}> mailbox does not exist")
