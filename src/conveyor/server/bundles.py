"""Code bundles on the server: the checks deploy and the agent's unpack share (DESIGN A13).

A bundle is a zip whose members stay inside its folder, at most ``MAX_FILES`` entries and
``MAX_UNPACKED_BYTES`` unpacked. The zip's directory is checked first (cheap), then the bytes
are counted while they are decompressed, since a directory can lie about its sizes. Deploy
runs the same walk without writing (``check_bundle``), so a bundle the agent would refuse is
refused with a 400 instead of being stored and never run.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Protocol

from conveyor.errors import ConfigError

MAX_UNPACKED_BYTES = 512 * 1024 * 1024
MAX_FILES = 10_000
_CHUNK = 1024 * 1024


def check_bundle(bundle: bytes, handler: str | None = None) -> None:
    """Refuse (``ConfigError``) a bundle ``unpack`` would refuse, or one without the file
    ``handler`` (``"path/file.py:function"``) names."""
    with _open(bundle) as archive:
        members = _members(archive)
        if handler is not None:
            _has_handler(members, handler)
        _walk(archive, members, lambda _info, _path: _Discard())


def unpack(bundle: bytes, dest: Path) -> None:
    """Unzip a code bundle into ``dest`` (an empty folder), within the bounds of
    ``check_bundle``; ``ConfigError`` names what is wrong (the caller removes ``dest``)."""
    root = dest.resolve()

    def sink(info: zipfile.ZipInfo, path: PurePosixPath) -> _Sink | None:
        target = root.joinpath(*path.parts)
        if not target.resolve().is_relative_to(root):
            raise ConfigError(f"code bundle member escapes its folder: {info.filename}")
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        return open(target, "wb")  # closed by _walk

    with _open(bundle) as archive:
        _walk(archive, _members(archive), sink)


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)

    def close(self) -> None:
        pass


def _open(bundle: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(bundle))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ConfigError(f"code bundle is not a zip file: {exc}") from None


def _members(archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    infos = archive.infolist()
    if len(infos) > MAX_FILES:
        raise ConfigError(f"code bundle has {len(infos)} entries; the limit is {MAX_FILES}")
    declared = sum(info.file_size for info in infos)
    if declared > MAX_UNPACKED_BYTES:
        raise ConfigError(
            f"code bundle unpacks to {declared} bytes; the limit is {MAX_UNPACKED_BYTES}"
        )
    members = []
    for info in infos:
        name = info.filename
        path = PurePosixPath(name)
        if (
            not name
            or "\x00" in name
            or "\\" in name
            or path.is_absolute()
            or ".." in path.parts
            or (path.parts and ":" in path.parts[0])
        ):
            raise ConfigError(f"code bundle member escapes its folder: {name!r}")
        members.append((info, path))
    return members


def _has_handler(members: list[tuple[zipfile.ZipInfo, PurePosixPath]], handler: str) -> None:
    file_part, sep, attr = handler.rpartition(":")
    if not sep or not file_part or not attr:
        raise ConfigError(f"handler {handler!r} must look like 'path/to/file.py:function'")
    wanted = PurePosixPath(os.path.normpath(file_part))
    if wanted.is_absolute() or ".." in wanted.parts:
        raise ConfigError(f"handler {handler!r} must name a file inside the code bundle")
    if not any(path == wanted and not info.is_dir() for info, path in members):
        raise ConfigError(f"handler file {file_part!r} is not in the code bundle")


class _Sink(Protocol):
    """What ``_walk`` writes a member to: a file, or nothing."""

    def write(self, data: bytes, /) -> int: ...

    def close(self) -> None: ...


def _walk(
    archive: zipfile.ZipFile,
    members: list[tuple[zipfile.ZipInfo, PurePosixPath]],
    sink: Callable[[zipfile.ZipInfo, PurePosixPath], _Sink | None],
) -> None:
    """Decompress every member into its sink, counting the bytes as they come."""
    total = 0
    try:
        for info, path in members:
            out = sink(info, path)
            if out is None:
                continue
            try:
                with archive.open(info) as source:
                    written = 0
                    while chunk := source.read(_CHUNK):
                        written += len(chunk)
                        total += len(chunk)
                        if written > info.file_size or total > MAX_UNPACKED_BYTES:
                            raise ConfigError(
                                "code bundle unpacks to more than its directory says or "
                                f"than {MAX_UNPACKED_BYTES} bytes (at {info.filename!r})"
                            )
                        out.write(chunk)
            finally:
                out.close()
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        NotImplementedError,
        EOFError,
    ) as exc:
        raise ConfigError(f"code bundle is not a valid zip file: {exc}") from None
    except (RuntimeError, ValueError) as exc:  # encrypted member, bad compression data
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"code bundle cannot be unpacked: {exc}") from None
