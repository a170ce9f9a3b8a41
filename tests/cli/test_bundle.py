"""The deploy bundle: which files ``.conveyorignore`` and the fixed skips leave out."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from conveyor.sdk.bundle import bundle_files, make_bundle


def tree(root: Path, *paths: str) -> None:
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(path)


def test_fixed_skips_apply_at_any_depth(tmp_path: Path) -> None:
    tree(tmp_path, "app.py", ".git/HEAD", "__pycache__/a.pyc", "pkg/__pycache__/b.pyc",
         ".venv/bin/python", ".conveyor/token", "pkg/mod.py")
    assert bundle_files(tmp_path) == ["app.py", "pkg/mod.py"]


def test_ignore_file_patterns(tmp_path: Path) -> None:
    tree(tmp_path, "app.py", "notes.log", "deep/er/trace.log", "keep.log", "build/out.txt",
         "src/build", "docs/a.md", "sub/docs/b.md", "secret.env")
    (tmp_path / ".conveyorignore").write_text(
        "# comment\n\n*.log\n!keep.log\nbuild/\n/docs\nsecret.*\n"
    )
    assert bundle_files(tmp_path) == [
        ".conveyorignore", "app.py", "keep.log", "src/build", "sub/docs/b.md",
    ]


def test_bundle_is_a_zip_of_the_files_and_repeatable(tmp_path: Path) -> None:
    tree(tmp_path, "app.py", "pkg/data.txt")
    (tmp_path / "app.py").chmod(0o755)
    bundle = make_bundle(tmp_path)
    with zipfile.ZipFile(io.BytesIO(bundle.data)) as archive:
        assert sorted(archive.namelist()) == ["app.py", "pkg/data.txt"]
        assert archive.read("pkg/data.txt") == b"pkg/data.txt"
        assert archive.getinfo("app.py").external_attr >> 16 == 0o755
    assert make_bundle(tmp_path).data == bundle.data
