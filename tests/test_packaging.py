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


def test_every_package_folder_is_listed_in_pyproject():
    """A folder with an __init__.py that pyproject.toml does not list would be missing
    from the wheel (the package list is explicit, see docs/design.md §1)."""
    import tomllib
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for init in ROOT.rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if any(part.startswith(".") or part in ("build", "dist") for part in rel.parts):
            continue
        found.add(".".join(("ecmta",) + rel.parts))
    assert found <= listed, sorted(found - listed)
