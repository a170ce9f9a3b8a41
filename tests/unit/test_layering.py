"""The import rules of docs/architecture.md, checked on the source (an AST walk, no import).

Each rule names a part of the package and what it must never import; a violation names the
file and the import, so the fix starts at the right line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "conveyor"

#: Standard-library and third-party modules that do I/O (or spawn, or wait on the clock).
IO_MODULES = (
    "asyncio", "os", "socket", "subprocess", "sqlite3", "threading", "signal", "selectors",
    "io", "shutil", "tempfile", "pathlib", "urllib.request", "httpx", "psycopg", "psycopg_pool",
    "uvicorn", "starlette", "fastapi", "psutil",
)

#: The gateway's modules that hold routes or build the app. The dashboard reads through the
#: others: the answer functions (``answers``, ``streams``) and the plain helpers they use.
GATEWAY_ROUTES = tuple(f"conveyor.server.gateway.{name}" for name in (
    "app", "dispatch", "plain_route", "openapi", "invoke", "task_routes", "queues", "sse",
    "downloads", "deploy", "health", "beam_routes", "schedules",
))

#: (part, forbidden prefixes, why)
RULES = [
    ("conveyor.server.store", ("conveyor.server.gateway", "conveyor.server.agent",
     "conveyor.server.dashboard", "conveyor.server.run", "conveyor.server.callbacks",
     "conveyor.sdk", "conveyor.runner", "conveyor.cli"), "the store imports nothing above it"),
    ("conveyor.server.gateway", ("conveyor.server.agent", "conveyor.server.dashboard",
     "conveyor.server.app", "conveyor.server.run", "conveyor.runner", "conveyor.cli"),
     "the gateway meets the agent only in the store, and serves no page of the dashboard"),
    ("conveyor.server.dashboard", ("conveyor.server.agent", "conveyor.server.run",
     "conveyor.server.app", "conveyor.runner", "conveyor.cli", *GATEWAY_ROUTES),
     "the dashboard reads through the gateway's answer functions, never its route handlers"),
    ("conveyor.server.agent", ("conveyor.server.gateway", "conveyor.server.dashboard",
     "conveyor.server.run", "conveyor.cli"), "the agent meets the gateway only in the store"),
    ("conveyor.runner", ("conveyor.server", "conveyor.cli"),
     "a worker process talks to its agent only over the pipe"),
    ("conveyor.sdk", ("conveyor.server", "conveyor.runner", "conveyor.cli"),
     "what a user imports pulls in no server"),
    # The direct producer (``Client(store=...)``) runs the store's own enqueue in the caller's
    # process: it may import the store and the gateway's plain modules, but a web app that
    # enqueues directly must not load the gateway's web framework, its routes or the agent.
    ("conveyor.direct", ("conveyor.server.agent", "conveyor.server.dashboard",
     "conveyor.server.app", "conveyor.server.run", "conveyor.server.callbacks",
     "conveyor.server.gateway.errors", "conveyor.server.gateway.state",
     "conveyor.server.gateway.auth", "conveyor.server.gateway.app", *GATEWAY_ROUTES,
     "conveyor.runner", "conveyor.cli", "fastapi", "starlette", "uvicorn"),
     "a producer holding the store URL loads the store, not the server"),
    ("conveyor.tasks", ("conveyor.server", "conveyor.sdk", "conveyor.runner", "conveyor.cli",
     *IO_MODULES), "the state machine is pure"),
    ("conveyor.policy", ("conveyor.server", "conveyor.sdk", "conveyor.runner", "conveyor.cli",
     *IO_MODULES), "policies are pure functions"),
    ("conveyor.error_info", ("conveyor.server", "conveyor.sdk", "conveyor.runner", "conveyor.cli",
     *IO_MODULES), "a task's error is a plain record, made by the runner and the server alike"),
    ("conveyor.cron", ("conveyor.server", "conveyor.sdk", "conveyor.runner", "conveyor.cli",
     *IO_MODULES), "a schedule's clock is a pure function of the time it is given"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, absolute, with its line (TYPE_CHECKING ones too)."""
    found = []
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else (
        module_name(path))
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def violations(part: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if name != part and not name.startswith(part + "."):
            continue
        for line, imported in imports_of(path):
            if any(imported == f or imported.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(SRC)}:{line} imports {imported}")
    return sorted(set(found))


#: Knots still being untied (issue 13): listed here, each must fail until it is fixed.
UNTIED: set[str] = set()


@pytest.mark.parametrize(
    ("part", "forbidden", "why"),
    [
        pytest.param(*rule, marks=pytest.mark.xfail(reason="being untied"))
        if rule[0] in UNTIED else rule
        for rule in RULES
    ],
    ids=[r[0] for r in RULES],
)
def test_import_rule(part: str, forbidden: tuple[str, ...], why: str) -> None:
    assert violations(part, forbidden) == [], why


def test_the_sdk_loads_the_direct_producer_only_on_use() -> None:
    """``conveyor.sdk`` reaches ``conveyor.direct`` (and so the store) only inside a function
    or under ``TYPE_CHECKING``: ``import conveyor`` loads no store (tests/direct checks it at
    run time too)."""
    found = []
    for path in sorted((PACKAGE / "sdk").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [
                    node.module or ""]
                if any(n == "conveyor.direct" or n.startswith("conveyor.direct.") for n in names):
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert found == []


def test_the_rules_see_a_violation() -> None:
    """The walk finds imports at all: the gateway's app imports the store's interface."""
    app = PACKAGE / "server" / "gateway" / "app.py"
    assert any(name.startswith("conveyor.server.store") for _, name in imports_of(app))
