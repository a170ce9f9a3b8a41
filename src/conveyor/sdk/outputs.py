"""Files a task hands back: ``Output(path).save()`` inside a handler.

Saved outputs go to a collector in this process. The worker process empties it before each
task and sends what it holds with the task's result; ``TaskQueue.local`` empties it before
its call, so :func:`collected` shows the files of the last local run.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from conveyor.errors import InvalidOutput

_collected: list[tuple[str, bytes]] = []


class Output:
    """A file, a directory (sent as ``<dirname>.zip``) or bytes to attach to the current task.

    Parameters
    ----------
    path
        A file or directory to save. Read when :meth:`save` is called.
    """

    __slots__ = ("_data", "_path", "name")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path: Path | None = Path(os.path.abspath(path))
        self._data: bytes | None = None
        self.name = self._path.name + (".zip" if self._path.is_dir() else "")
        _check_name(self.name)

    @classmethod
    def from_bytes(cls, name: str, data: bytes | bytearray | memoryview) -> Output:
        """An output made of ``data`` under the file name ``name``."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidOutput(f"output data must be bytes, got {type(data).__name__}")
        _check_name(name)
        output = cls.__new__(cls)
        output._path = None
        output._data = bytes(data)
        output.name = name
        return output

    def read(self) -> bytes:
        """The bytes this output stands for (a directory is zipped)."""
        if self._data is not None:
            return self._data
        assert self._path is not None
        if self._path.is_dir():
            return _zip_dir(self._path)
        if not self._path.is_file():
            raise InvalidOutput(f"output path {str(self._path)!r} is not a file or directory")
        return self._path.read_bytes()

    def save(self) -> Output:
        """Attach this output to the task being run."""
        _collected.append((self.name, self.read()))
        return self

    def __repr__(self) -> str:
        return f"Output(name={self.name!r})"


def collected() -> list[tuple[str, bytes]]:
    """Outputs saved since the collector was last emptied, as ``(name, data)`` pairs."""
    return list(_collected)


def take() -> list[tuple[str, bytes]]:
    """Return the saved outputs and empty the collector."""
    items = _collected[:]
    _collected.clear()
    return items


def reset() -> None:
    """Empty the collector (before a task runs)."""
    _collected.clear()


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip():
        raise InvalidOutput(f"output name must be a non-empty string, got {name!r}")
    if "/" in name or "\\" in name or name in {".", ".."} or "\x00" in name:
        raise InvalidOutput(f"output name {name!r} must be a plain file name without separators")


def _zip_dir(folder: Path) -> bytes:
    import zipfile  # rarely needed; every worker process imports this module

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()
