"""The README's two commands: ``make serve`` installs only what serving needs."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _dry_run(target: str, venv: Path) -> str:
    """What ``make TARGET`` would run on a fresh machine (a venv that does not exist yet)."""
    result = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True,
        check=True,
    )
    return result.stdout


def test_make_serve_installs_no_test_tools(tmp_path: Path) -> None:
    serve = _dry_run("serve", tmp_path / "venv")
    assert "pip install -q -e ." in serve and "conveyor serve examples/app.py" in serve
    assert "[dev]" not in serve


def test_make_test_installs_the_test_tools(tmp_path: Path) -> None:
    assert "pip install -q -e '.[dev]'" in _dry_run("test", tmp_path / "venv")
