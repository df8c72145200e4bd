"""chunk_logger (modules.chunk_logger) in real daemons: a scriptlet policy calls
msys.beta.chunk_logger_int.log / msys.ts.chunk_logger.log in validation phases while mail
is sent with smtplib; the exact items in the destination (timestamp_format, add_newline on
and off, numbers, a non-string argument), `reopen logs` after a rename, config reloads that
add, change and remove the stanza, the Lua error without a stanza, and validate_config's
errors for the module's options."""

import os
import re
import subprocess
import sys
import time
from datetime import datetime

from ecmta.tests.custom_logger.helpers import read_lines, start, wait_for, wait_lines
from ecmta.tests.harness import free_port

PORTS = ("sink", "defer", "fail", "closed")   # nothing listens: only the reception matters

POLICY = """\
require("msys.core");
require("msys.extended.message");
require("msys.beta.chunk_logger_int");
local mod = {};
function mod:validate_rcptto(msg, str, ac, vctx)
  msys.beta.chunk_logger_int.log("validate_rcptto " .. str)
  return msys.core.VALIDATE_CONT
end
function mod:validate_data_spool_each_rcpt(msg, ac, vctx)
  msys.ts.chunk_logger.log("each " .. msg:rcptto())
  msys.beta.chunk_logger_int.log(42)
  local ok, err = pcall(msys.beta.chunk_logger_int.log, {})
  msys.beta.chunk_logger_int.log(tostring(ok) .. " " .. err)
  local rcpt = msg:rcptto()
  msys.runInPool("IO", function() msys.ts.chunk_logger.log("in pool " .. rcpt) end)
  return msys.core.VALIDATE_CONT
end
msys.registerModule("chunk", mod);
"""

# add_newline = false: the items are written as given, the script writes the line ends
RAW_POLICY = """\
require("msys.core");
require("msys.beta.chunk_logger_int");
local mod = {};
function mod:validate_rcptto(msg, str, ac, vctx)
  msys.beta.chunk_logger_int.log("<")
  msys.beta.chunk_logger_int.log(str)
  msys.ts.chunk_logger.log(">\\n")
  return msys.core.VALIDATE_CONT
end
msys.registerModule("chunk", mod);
"""

SCRIPTLET = 'scriptlet "scriptlet" {\n  script "chunk" {\n    source = "policy/chunk"\n  }\n}\n'

CHUNK = """\
chunk_logger chunk_logger1
{
  timestamp_format = "%m:%d:%H:%M:%S"
  destination = "log/chunk.log"
  add_newline = "true"
}
"""

TS = re.compile(r"^(\d\d:\d\d:\d\d:\d\d:\d\d) (.*)$")
NOT_STRING = "false bad argument #1 to 'log' (string expected, got table)"


def _items_of(rcpt: str) -> list[str]:
    """What POLICY logs for a message to one recipient."""
    return [f"validate_rcptto rcpt TO:<{rcpt}>", f"each {rcpt}", "42", NOT_STRING, f"in pool {rcpt}"]


def _start(daemon_factory, tail: str, policy: str = POLICY):
    ports = {name: free_port() for name in PORTS}
    return start(daemon_factory, ports, SCRIPTLET + tail, files={"policy/chunk.lua": policy})


def _items(lines, t0: float, t1: float) -> list[str]:
    """The texts of timestamped lines, each stamp checked against the sending window."""
    out = []
    for line in lines:
        m = TS.match(line)
        assert m, line
        stamp = f"{datetime.now().year}:{m.group(1)}"
        when = datetime.strptime(stamp, "%Y:%m:%d:%H:%M:%S").timestamp()
        assert t0 - 2 <= when <= t1 + 2, (line, t0, t1)
        out.append(m.group(2))
    return out


def test_items_timestamped_one_per_line(daemon_factory):
    m = _start(daemon_factory, CHUNK)
    path = m.path("log", "chunk.log")          # relative destination: under the state directory
    t0 = time.time()
    m.send("alice@sender.test", ["bob@sink.test", "carol@sink.test"])
    lines = wait_lines(path, lambda ls: len(ls) >= 10, "the chunk_logger items")
    t1 = time.time()
    assert _items(lines, t0, t1) == [
        "validate_rcptto rcpt TO:<bob@sink.test>",
        "validate_rcptto rcpt TO:<carol@sink.test>",
        "each bob@sink.test", "42", NOT_STRING, "in pool bob@sink.test",
        "each carol@sink.test", "42", NOT_STRING, "in pool carol@sink.test",
    ]
    assert "ecmta.chunk_logger" in m.d.ok("module list")


def test_add_newline_false_writes_items_as_given(daemon_factory):
    tail = 'chunk_logger "raw" {\n  destination = "$home/raw/chunk.out"\n  add_newline = false\n}\n'
    m = _start(daemon_factory, tail, RAW_POLICY)
    path = m.path("raw", "chunk.out")
    m.send("alice@sender.test", ["bob@sink.test", "carol@sink.test"])
    expected = "<rcpt TO:<bob@sink.test>>\n<rcpt TO:<carol@sink.test>>\n"
    wait_for(lambda: os.path.exists(path) and open(path).read() == expected, what="the raw items")
    # no timestamp_format: no timestamp; the same items with one
    m.d.config_body = m.d.config_body.replace("add_newline = false",
                                              'add_newline = false\n  timestamp_format = "%Y"')
    m.d.write_config()
    assert m.d.ok("config reload") == ""
    m.send("alice@sender.test", ["dave@sink.test"])
    year = time.strftime("%Y")
    expected += f"{year} <{year} rcpt TO:<dave@sink.test>{year} >\n"
    wait_for(lambda: open(path).read() == expected, what="the stamped raw items")


def test_reopen_logs_after_a_rename(daemon_factory):
    m = _start(daemon_factory, CHUNK.replace('timestamp_format = "%m:%d:%H:%M:%S"\n', ""))
    path = m.path("log", "chunk.log")
    m.send("alice@sender.test", ["bob@sink.test"])
    wait_lines(path, lambda ls: len(ls) == 5, "the first message's items")
    os.rename(path, path + ".1")
    assert "Logs reopened" in m.d.ok("reopen logs")
    m.send("alice@sender.test", ["carol@sink.test"])
    lines = wait_lines(path, lambda ls: len(ls) == 5, "the second message's items")
    assert lines == _items_of("carol@sink.test")
    assert read_lines(path + ".1") == _items_of("bob@sink.test")


def test_lua_error_without_the_stanza_and_reloads(daemon_factory):
    m = _start(daemon_factory, "")
    path, path2 = m.path("log", "chunk.log"), m.path("log", "chunk2.log")
    # no chunk_logger: log() is a Lua error naming it at the script's line; the phase fails
    code, text = m.refused_rcpt("alice@sender.test", "bob@sink.test")
    assert (code, text) == (451, b"4.3.0 Temporary policy failure (script error), try again later")
    wait_for(lambda: "chunk.lua:6: msys.beta.chunk_logger_int.log: no chunk_logger is "
                     "configured" in m.d.paniclog(), what="the Lua error in the paniclog")
    # added by a reload
    m.d.config_body += CHUNK.replace('timestamp_format = "%m:%d:%H:%M:%S"\n', "")
    m.d.write_config()
    assert m.d.ok("config reload") == ""
    m.send("alice@sender.test", ["bob@sink.test"])
    first = _items_of("bob@sink.test")
    wait_lines(path, lambda ls: ls == first, "the items after the stanza was added")
    # changed: another destination and a timestamp
    m.d.config_body = m.d.config_body.replace(
        'destination = "log/chunk.log"', 'destination = "log/chunk2.log"\n  timestamp_format = "%Y"')
    m.d.write_config()
    assert m.d.ok("config reload") == ""
    m.send("alice@sender.test", ["carol@sink.test"])
    year = time.strftime("%Y")
    second = [f"{year} {t}" for t in _items_of("carol@sink.test")]
    wait_lines(path2, lambda ls: ls == second, "the items after the change")
    # a second stanza is refused; the running one stays
    two = 'chunk_logger "two" {\n  destination = "log/two.log"\n}\n'
    m.d.config_body += two
    m.d.write_config()
    assert "chunk_logger supports one log destination" in m.d.ok("config reload")
    m.send("alice@sender.test", ["dave@sink.test"])
    wait_lines(path2, lambda ls: len(ls) == 10 and ls[-1] == f"{year} in pool dave@sink.test",
               "the items after the refused reload")
    # removed: the Lua error again, nothing more written
    m.d.config_body = m.d.config_body[:m.d.config_body.index("chunk_logger chunk_logger1")]
    m.d.write_config()
    assert m.d.ok("config reload") == ""
    code, _ = m.refused_rcpt("alice@sender.test", "erin@sink.test")
    assert code == 451
    assert read_lines(path) == first and len(read_lines(path2)) == 10
    assert not os.path.exists(m.path("log", "two.log"))


def test_validate_config_errors(tmp_path):
    conf = tmp_path / "ecelerity.conf"
    conf.write_text('chunk_logger "c" {\n  destination = "/tmp/x"\n  add_newline = maybe\n'
                    '  timestamp = "%H"\n}\n')
    r = subprocess.run([sys.executable, "-m", "ecmta.cli.validate_config", "-c", str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"{conf}:3: bad value for option 'add_newline': expected a boolean (on/off, true/false, "
        'enabled/disabled, 1/0), got "maybe"',
        f"{conf}:4: unknown option 'timestamp' in module 'chunk_logger'",
    ]
    conf.write_text('chunk_logger chunk_logger1\n{\n  timestamp_format = "%m:%d:%H:%M:%S"\n'
                    '  destination = "/path/to/log/file"\n  add_newline = "true"\n}\n')
    r = subprocess.run([sys.executable, "-m", "ecmta.cli.validate_config", "-c", str(conf)],
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout.strip()) == (0, "Configuration valid"), r.stderr
