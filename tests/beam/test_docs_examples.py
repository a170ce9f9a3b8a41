"""The examples of docs/api.md's "Using Beam's clients" run as written, against a real
``conveyor serve`` of ``examples/app.py:square``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.beam.conftest import Gateway, run_script

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def example(language: str) -> str:
    """The section's one code block in ``language``."""
    section = API_DOC.read_text().split("## Using Beam's clients", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)
    return str(code)


def _env(gateway: Gateway) -> dict[str, str]:
    return {"CONVEYOR_URL": gateway.url, "CONVEYOR_TOKEN": gateway.token}


def test_the_python_example(beta9_python: Path, gateway: Gateway) -> None:
    printed = run_script([str(beta9_python), "-c", example("python")], gateway.server.folder,
                         {**_env(gateway), "STUB_ID": gateway.stubs["square"]})
    lines = printed.splitlines()
    assert lines[1] == "{'x': 7, 'square': 49}" and lines[2] == "[] True"
    assert lines[3] == "{'x': 7, 'square': 49}"
    assert lines[-2] == "COMPLETE" and lines[-1] == "{'x': 8, 'square': 64}"


def test_the_javascript_example(beam_js: Path, gateway: Gateway) -> None:
    printed = run_script(["node", "-e", example("js")], gateway.server.folder,
                         {**_env(gateway), "NODE_PATH": str(beam_js)})
    lines = printed.splitlines()
    url = f"{gateway.url}/taskqueue/id/{gateway.stubs['square']}"
    assert lines[0] == f"square 1 taskqueue/serve {url}"
    assert lines[1].endswith(" COMPLETE { x: 7, square: 49 }")
