"""The layers the README draws, enforced: import-linter's contracts in
pyproject.toml (a module imports only layers below its own; the dialog
policy and the recognisers import no network or storage code; no two modules
or packages import each other, directly or around a circle)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Contracts: 4 kept, 0 broken." in done.stdout
