"""Zip a code folder for ``conveyor deploy``, honouring a ``.conveyorignore``.

The ignore file takes gitignore-like lines, matched with :mod:`fnmatch`: ``#`` comments and
blank lines are skipped; a pattern without ``/`` matches a name at any depth; a pattern with
a ``/`` (a leading one anchors it) matches the path from the folder's root; a trailing ``/``
matches folders only; ``!`` re-includes. The last matching line wins, and the contents of an
ignored folder are never visited (as in git).
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

IGNORE_FILE = ".conveyorignore"
#: Never bundled, whatever the ignore file says: VCS data, caches, virtualenvs, local state.
ALWAYS_SKIPPED = frozenset({".git", "__pycache__", ".venv", ".conveyor"})
#: A fixed timestamp makes the same files give the same bundle bytes.
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class Rule:
    pattern: str
    negated: bool
    dir_only: bool
    anchored: bool

    @classmethod
    def parse(cls, line: str) -> Rule | None:
        text = line.strip()
        if not text or text.startswith("#"):
            return None
        negated = text.startswith("!")
        text = text.removeprefix("!")
        dir_only = text.endswith("/")
        text = text.rstrip("/")
        anchored = "/" in text
        text = text.lstrip("/")
        return cls(text, negated, dir_only, anchored) if text else None

    def matches(self, path: PurePosixPath, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        if self.anchored:
            return fnmatchcase(str(path), self.pattern)
        return fnmatchcase(path.name, self.pattern)


@dataclass(frozen=True, slots=True)
class Bundle:
    data: bytes
    files: tuple[str, ...]


def read_rules(root: Path) -> list[Rule]:
    ignore = root / IGNORE_FILE
    if not ignore.is_file():
        return []
    rules = (Rule.parse(line) for line in ignore.read_text().splitlines())
    return [rule for rule in rules if rule is not None]


def is_ignored(path: PurePosixPath, is_dir: bool, rules: list[Rule]) -> bool:
    """Whether ``path`` (relative to the root) is left out: the last matching rule decides."""
    if path.name in ALWAYS_SKIPPED:
        return True
    ignored = False
    for rule in rules:
        if rule.matches(path, is_dir):
            ignored = not rule.negated
    return ignored


def bundle_files(root: Path) -> list[str]:
    """Relative POSIX paths of the files to bundle, sorted."""
    rules = read_rules(root)
    found: list[str] = []
    for folder, dirs, files in os.walk(root):
        here = PurePosixPath(Path(folder).relative_to(root).as_posix())
        dirs[:] = sorted(d for d in dirs if not is_ignored(here / d, True, rules))
        found.extend(str(here / f) for f in files if not is_ignored(here / f, False, rules))
    return sorted(found)


def make_bundle(root: Path) -> Bundle:
    """Zip the folder's files (minus the ignored ones) with their permission bits."""
    files = bundle_files(root)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in files:
            source = root / name
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = (source.stat().st_mode & 0o777) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, source.read_bytes())
    return Bundle(buffer.getvalue(), tuple(files))
