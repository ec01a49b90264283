"""The architecture holds: import contracts (pyproject.toml) and a data worker that starts without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold():
    """No cycles in either package; the build's layers run one way; s2vdata does not depend on s2vmodel."""
    lint = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]


def test_a_data_worker_starts_without_torch():
    code = ("import sys; import s2vdata.cli, s2vdata.build, s2vdata.worker, s2vdata.clips, s2vdata.checks; "
            "print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
