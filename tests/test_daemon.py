"""The daemon as an operator runs it: embedded default config, ec_ctl, signals, reloads,
module list, and the actor restart rule."""

import os
import signal
import smtplib
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from ecmta.tests.harness import Daemon, free_port, short_tmpdir


def _poll(fn, timeout=20.0, every=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_embedded_default_config_serves_console_and_smtp():
    """`ecelerity -d` with no -c: /tmp/2025, 127.0.0.1:2025 and 127.0.0.1:2525."""
    if _port_busy(2525) or _port_busy(2025):
        pytest.skip("ports 2525/2025 are in use on this machine")
    home = short_tmpdir("ecdef")
    env = dict(os.environ, ECMTA_HOME=home)
    err = open(os.path.join(home, "stderr"), "wb")
    proc = subprocess.Popen([sys.executable, "-m", "ecmta", "-d"], env=env, stdout=err, stderr=err, cwd=home)
    try:
        def console(*args):
            return subprocess.run(["ec_console", "/tmp/2025", *args], capture_output=True, text=True,
                                  timeout=30, env=env)
        _poll(lambda: console("pid").returncode == 0 or proc.poll() is not None)
        assert proc.poll() is None, open(os.path.join(home, "stderr")).read()
        out = console("threads", "stats")
        assert out.returncode == 0 and "IO thread pool: concurrency 50" in out.stdout
        out = console("config", "set", "threadpool", "IO", "concurrency", "10")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "IO thread pool: concurrency 10" in console("threads", "stats").stdout
        actors = console("threads", "actors").stdout
        for kind in ("threadpool", "reception", "spool", "logwriter"):
            assert kind in actors
        with smtplib.SMTP("127.0.0.1", 2525, timeout=10) as s:
            s.sendmail("a@localhost.test", ["b@example.invalid"], b"Subject: t\r\n\r\nhi\r\n")
        # everything lives under the state directory
        assert os.path.exists(os.path.join(home, "spool", "spool.db"))
        _poll(lambda: os.path.exists(os.path.join(home, "log", "mainlog.ec")))
        assert console("shutdown").returncode == 0
        assert proc.wait(30) == 0
        assert not os.path.exists(os.path.join(home, "ecelerity.pid"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_ec_ctl_start_status_stop(tmp_path):
    home = short_tmpdir("ecctl")
    conf = os.path.join(home, "ecelerity.conf")
    sock = os.path.join(home, "ctl")
    with open(conf, "w") as fh:
        fh.write(f'pidfile = "{home}/run/ecelerity.pid"\nspoolbase = "{home}/spool"\n'
                 f'Control_Listener {{ Listen "{sock}" {{ }} }}\n')
    env = dict(os.environ, ECMTA_HOME=home)

    def ctl(action):
        return subprocess.run(["ec_ctl", "-c", conf, action], capture_output=True, text=True, env=env, timeout=120)
    assert ctl("status").returncode == 3
    started = ctl("start")
    assert started.returncode == 0, started.stdout + started.stderr
    pid = int(open(f"{home}/run/ecelerity.pid").read())
    assert "running" in ctl("status").stdout and ctl("status").returncode == 0
    assert "already running" in ctl("start").stdout
    assert ctl("stop").returncode == 0
    _poll(lambda: not os.path.exists(f"/proc/{pid}"))
    assert ctl("status").returncode == 3


def test_sighup_reloads_and_a_bad_reload_keeps_the_running_config(daemon_factory):
    d = daemon_factory('ThreadPool "Extra" { Concurrency = 2 }\n').start()
    assert "EXTRA thread pool: concurrency 2" in d.ok("threads stats")
    with open(d.conf) as fh:
        text = fh.read()
    with open(d.conf, "w") as fh:
        fh.write(text.replace("Concurrency = 2", "Concurrency = 7"))
    d.signal(signal.SIGHUP)
    _poll(lambda: "EXTRA thread pool: concurrency 7" in d.ok("threads stats"))
    with open(d.conf, "w") as fh:
        fh.write(text.replace("Concurrency = 2", "Concurrency = lots"))
    d.signal(signal.SIGHUP)
    _poll(lambda: "configuration reload failed" in d.paniclog())
    assert "EXTRA thread pool: concurrency 7" in d.ok("threads stats")
    assert f"{d.conf}:" in d.paniclog()
    ok, out = d.console("config reload")
    assert not ok and f"{d.conf}:" in out and "Concurrency" in out
    assert d.stop() == 0


def test_sigterm_stops_gracefully_and_removes_the_pidfile(daemon_factory):
    port = free_port()
    d = daemon_factory('spoolbase = "$home/spool"\nrelay_hosts = ( "127.0.0.0/8" )\n'
                       'ESMTP_Listener { Listen "127.0.0.1:$smtp" { } }\n', ports={"smtp": port}).start()
    s = smtplib.SMTP("127.0.0.1", port, timeout=10)
    s.ehlo()
    s.sendmail("a@x.test", ["b@y.test"], b"Subject: t\r\n\r\nhi\r\n")
    pidfile = os.path.join(d.home, "ecelerity.pid")
    assert os.path.exists(pidfile)
    d.signal(signal.SIGTERM)
    assert d.proc.wait(30) == 0
    assert not os.path.exists(pidfile)
    with pytest.raises(OSError):
        smtplib.SMTP("127.0.0.1", port, timeout=2)


def test_module_list_shows_configured_modules(daemon_factory):
    d = daemon_factory('ec_logger "ec_logger" { mainlog = "$home/m.ec" }\n'
                       'scriptlet "scriptlet" { script "boot" { source = "msys.boot" } }\n').start()
    out = d.ok("module list")
    assert "Module: ec_logger:ec_logger\n  Scope_Name: ec_logger\n  Instance_Name: ec_logger\n" \
           "  Enabled: enabled\n  API: Logger\n" in out
    assert "Module: scriptlet:scriptlet" in out


def test_unknown_service_and_bad_config_exit_1(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("ThreadPool \"IO\" {\n  Concurrency = lots\n}\n")
    p = subprocess.run([sys.executable, "-m", "ecmta", "-d", "-c", str(bad)], capture_output=True, text=True,
                       timeout=60, env=dict(os.environ, ECMTA_HOME=str(tmp_path)))
    assert p.returncode == 1 and f"{bad}:2:" in p.stderr
    p = subprocess.run([sys.executable, "-m", "ecmta", "-d", "-n", "bogus"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and "unknown service 'bogus'" in p.stderr


ACTOR_SCRIPT = textwrap.dedent('''
    from gevent import monkey; monkey.patch_all()
    import sys
    import gevent
    from ecmta.actors.base import EcActor
    from ecmta.actors.supervisor import Supervisor
    from ecmta.loggers import panic

    seen = []
    class Fragile(EcActor):
        kind = "fragile"
        def on_receive(self, msg):
            if msg == "boom":
                raise ValueError("boom")
            seen.append(msg)
        def on_restart(self):
            seen.append("restarted")

    lines = []
    panic.set_sink(lines.append)
    sup = Supervisor()
    ref = sup.spawn(Fragile, "f1", key="fragile")
    for m in ["a", "boom", "b", "c"]:
        ref.tell(m)                      # all queued before the failure is handled
    stats = ref.proxy().ec_stats().get(timeout=5)
    assert seen == ["a", "restarted", "b", "c"], seen
    assert stats["restarts"] == 1 and stats["handled"] == 4, stats
    assert any("actor fragile/f1 failed (ValueError: boom" in l for l in lines), lines
    # a dead actor is started again by the supervisor
    ref.stop()
    assert sup.check_actors() == 1
    assert sup.ref("fragile").is_alive()
    assert any("died; starting it again" in l for l in lines), lines
    sup.ref("fragile").stop()
    print("OK")
''')


def test_a_failing_actor_is_restarted_in_place_and_loses_no_queued_message():
    p = subprocess.run([sys.executable, "-c", ACTOR_SCRIPT], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "OK" in p.stdout, p.stdout + p.stderr


POLICY = '''
local mod = {}
function mod:validate_ehlo(str, accept, vctx)
  vctx:set_code(550, "{word}")
  return msys.core.VALIDATE_DONE
end
msys.registerModule("ehlo_policy", mod)
'''


def test_config_reload_reads_changed_scripts_again(daemon_factory):
    port = free_port()
    d = daemon_factory('ESMTP_Listener { Listen "127.0.0.1:$smtp" { } }\n'
                       'scriptlet "scriptlet" { script "ehlo_policy" { source = "ehlo_policy" } }\n',
                       ports={"smtp": port})
    with open(os.path.join(d.home, "ehlo_policy.lua"), "w") as fh:
        fh.write(POLICY.replace("{word}", "first"))
    d.start()

    def ehlo_reply():
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            return s.ehlo("client.test")
    assert ehlo_reply() == (550, b"first")
    with open(os.path.join(d.home, "ehlo_policy.lua"), "w") as fh:
        fh.write(POLICY.replace("{word}", "second"))
    d.ok("config reload")
    assert ehlo_reply() == (550, b"second")
