"""The wheel installs exactly one top-level name, `ecmta`, with every card folder inside it."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(out), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (whl,) = out.glob("ecmta-*.whl")
    return whl


def test_only_top_level_name_is_ecmta(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith((".dist-info", ".data"))}
    assert tops == {"ecmta"}


def test_card_folders_are_subpackages(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("actors", "pools", "transports", "loggers", "config", "policy", "console", "tests"):
        assert f"ecmta/{folder}/__init__.py" in names, folder
    assert "ecmta/config/ecelerity.conf" in names


def test_console_scripts_keep_momentum_names(wheel):
    zf = zipfile.ZipFile(wheel)
    (ep,) = [n for n in zf.namelist() if n.endswith("entry_points.txt")]
    text = zf.read(ep).decode()
    for exe in ("ecelerity", "ec_ctl", "ec_console", "validate_config", "ec_dump_config"):
        assert f"{exe} = ecmta.cli." in text, exe
