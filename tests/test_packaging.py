"""pyproject.toml: every package under kzoo/ is listed (a new one is not left out of the wheel), the configs ship
as kzoo.configs, and the version is the package's."""

from pathlib import Path

import tomllib
from setuptools import find_packages

import kzoo

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_is_listed():
    listed = set(PROJECT["tool"]["setuptools"]["packages"])
    found = set(find_packages(str(ROOT), include=["kzoo", "kzoo.*"]))
    assert listed == found | {"kzoo.configs"}, (sorted(found - listed), sorted(listed - found))
    assert PROJECT["tool"]["setuptools"]["package-dir"] == {"kzoo.configs": "configs"}
    assert any(ROOT.joinpath("configs").glob("*.yaml"))


def test_entry_point_and_version():
    assert PROJECT["project"]["scripts"] == {"kzoo": "kzoo.cli:main"}
    assert PROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "kzoo.__version__"}
    assert kzoo.__version__
    assert not (ROOT / "setup.py").exists()
