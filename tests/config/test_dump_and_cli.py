"""ec_dump_config XML (shape and round trip) and the validate_config / ec_dump_config
executables (exit codes and messages, run as real subprocesses)."""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from ecmta.config import ConfigError, load_config, load_default_config
from ecmta.config import xmldump
from ecmta.tests.config.test_validate import EXAMPLE_15_3, EXAMPLE_B, EXAMPLE_C
from ecmta.tests.config.util import write


def run(module, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


# -- XML ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [EXAMPLE_15_3, EXAMPLE_B, EXAMPLE_C], ids=["15.3", "b", "c"])
def test_round_trip_of_the_digest_examples(tmp_path, text):
    cfg = load_config(write(tmp_path, "x.conf", text), allow_unbuilt=True)
    back = xmldump.loads(xmldump.dumps(cfg), allow_unbuilt=True)
    assert back == cfg
    assert back.structure() == cfg.structure()
    assert back.generation == cfg.generation and back.path == cfg.path


def test_round_trip_of_the_default_config_and_odd_text():
    cfg = load_default_config()
    assert xmldump.loads(xmldump.dumps(cfg)) == cfg
    odd = load_config_text_unbuilt('Binding "b\x01" {\n  EHLO_Hostname = "ctl\x02 <&> \\"q\\""\n}\n')
    text = xmldump.dumps(odd)
    ET.fromstring(text)                       # well-formed despite the control characters
    assert xmldump.loads(text) == odd


def load_config_text_unbuilt(text):
    from ecmta.config import load_config_text
    return load_config_text(text, "odd.conf", allow_unbuilt=True)


def test_xml_shape(tmp_path):
    cfg = load_config(write(tmp_path, "x.conf", EXAMPLE_C), allow_unbuilt=True)
    root = ET.fromstring(xmldump.dumps(cfg))
    assert root.tag == "ecelerity_config" and root.get("format") == "1"
    (glob,) = root
    assert glob.tag == "scope" and glob.get("kind") == "Global"
    c1 = [s for s in glob.findall("scope") if s.get("name") == "customer-1"][0]
    assert c1.get("kind") == "Binding" and c1.get("keyword") == "binding"
    assert [loc.get("line") for loc in c1.findall("location")] == ["20", "33"]
    thr = [o for o in c1.findall("option") if o.get("name") == "Outbound_Throttle_Messages"][0]
    assert thr.get("raw") == '"60/3"' and thr.get("line") == "21"
    assert thr[0].tag == "rate" and (thr[0].get("count"), thr[0].get("seconds")) == ("60", "3")
    listen = glob.find("scope[@kind='ESMTP_Listener']/scope[@name=':587']")
    enable = listen.find("option[@name='Enable']")
    assert enable.find("bool").text == "false"
    io = glob.find("scope[@kind='ThreadPool'][@name='IO']")
    assert io.get("implicit") == "true"


@pytest.mark.parametrize("bad", ["not xml", "<other/>", '<ecelerity_config format="1"/>',
                                 '<ecelerity_config format="1"><scope kind="Global"><option name="x"/>'
                                 "</scope></ecelerity_config>"])
def test_loads_rejects_other_documents(bad):
    with pytest.raises(ConfigError, match="bad configuration XML"):
        xmldump.loads(bad)


# -- ec_dump_config -------------------------------------------------------------------------

def test_ec_dump_config_default_stdout_and_file(tmp_path):
    res = run("ecmta.cli.ec_dump_config")
    assert res.returncode == 0, res.stderr
    assert xmldump.loads(res.stdout) == load_default_config()
    good = write(tmp_path, "good.conf", 'ThreadPool "IO" {\n  Concurrency = 9\n}\n')
    out = str(tmp_path / "dump.xml")
    res = run("ecmta.cli.ec_dump_config", "-c", good, "-f", out, "-e", str(tmp_path))
    assert res.returncode == 0 and res.stdout == ""
    assert xmldump.loads(open(out).read()) == load_config(good)


def test_ec_dump_config_invalid_config(tmp_path):
    bad = write(tmp_path, "bad.conf", "pidfile = x\n\ninvalid_option = 1\n")
    out = str(tmp_path / "dump.xml")
    res = run("ecmta.cli.ec_dump_config", "-c", bad, "-f", out)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.splitlines() == [f"{bad}:3: unknown option 'invalid_option'", "Global configuration error."]
    assert not os.path.exists(out)
    res = run("ecmta.cli.ec_dump_config", "-c", str(tmp_path / "missing.conf"))
    assert res.returncode == 1 and "not found" in res.stderr
    res = run("ecmta.cli.ec_dump_config", "-e", str(tmp_path / "no-dir"))
    assert res.returncode == 1 and "does not exist" in res.stderr


# -- validate_config ------------------------------------------------------------------------

def test_validate_config_exit_codes(tmp_path):
    res = run("ecmta.cli.validate_config")
    assert (res.returncode, res.stdout, res.stderr) == (0, "Configuration valid\n", "")
    good = write(tmp_path, "good.conf", 'Control_Listener {\n  Listen "/tmp/x" {\n    File_Mode = 0600\n  }\n}\n')
    res = run("ecmta.cli.validate_config", "-c", good)
    assert (res.returncode, res.stdout) == (0, "Configuration valid\n")
    res = run("ecmta.cli.validate_config", "-c", str(tmp_path / "none.conf"))
    assert (res.returncode, res.stdout) == (1, "No configuration found\n")
    bad = write(tmp_path, "bad.conf", 'ThreadPool "IO" {\n  Concurrency = x\n}\nAdaptive_Enabled = true\n')
    res = run("ecmta.cli.validate_config", "-c", bad)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.splitlines() == [
        f"{bad}:2: bad value for option 'Concurrency': expected an integer, got \"x\"",
        f"{bad}:4: option 'Adaptive_Enabled' is not available in this version"]


def test_entry_points_are_declared():
    text = open(os.path.join(os.path.dirname(__file__), "..", "..", "pyproject.toml")).read()
    assert 'validate_config = "ecmta.cli.validate_config:main"' in text
    assert 'ec_dump_config = "ecmta.cli.ec_dump_config:main"' in text
