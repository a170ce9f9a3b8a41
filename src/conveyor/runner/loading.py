"""Loading a handler's file in a worker process, the way every load of it names things alike."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any


def load_handler(code_root: str | os.PathLike[str], handler: str) -> Any:
    """Import ``"relative/path.py:attr"`` under ``code_root`` and return the attribute.

    The module is named after its path (``pkg/app.py`` → ``pkg.app``) and ``code_root`` goes
    first on ``sys.path``, so the file's own imports of sibling modules work, and classes it
    defines get the same qualified names wherever the file is loaded this way.
    """
    file_part, sep, attr = handler.rpartition(":")
    if not sep or not file_part or not attr:
        raise ImportError(f"handler {handler!r} must look like 'path/to/file.py:function'")
    root = Path(code_root).resolve()
    if str(root) not in sys.path[:1]:
        sys.path.insert(0, str(root))
    module = _import_file(root, (root / file_part).resolve())
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ImportError(f"{file_part} has no attribute {attr!r}") from None
    return value


def _import_file(root: Path, path: Path) -> ModuleType:
    if not path.is_file():
        raise ImportError(f"handler file {str(path)!r} does not exist")
    relative = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
    name = ".".join(relative.with_suffix("").parts)
    existing = sys.modules.get(name)
    if existing is not None:
        if getattr(existing, "__file__", None) == str(path):
            return existing
        raise ImportError(
            f"handler module {name!r} clashes with an already imported module; rename {path.name}"
        )
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
