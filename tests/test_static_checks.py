"""Lint and type checks as part of the suite, so the README's test command
(and so CI) fails on a lint or type error as on a failing test. The rules
live in pyproject.toml ([tool.ruff], [tool.mypy])."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LINTED = ("voicebot", "tests", "benchmarks", "scripts")


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing():
    done = _run(str(BIN / "ruff"), "check", "--no-cache", *LINTED)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


def test_mypy_strict_finds_nothing():
    done = _run(str(BIN / "mypy"))  # strict, on voicebot/: [tool.mypy] in pyproject.toml
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
    assert done.stdout.startswith("Success: no issues found")


def test_mypy_is_strict_on_the_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert config["strict"] is True and config["files"] == ["voicebot"]


def test_package_ships_its_type_marker():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["voicebot"]
    assert (ROOT / "voicebot" / "py.typed").is_file()
