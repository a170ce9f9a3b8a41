from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import InvalidOutput, Output
from conveyor.sdk import outputs


@pytest.fixture(autouse=True)
def empty_collector() -> Iterator[None]:
    outputs.reset()
    yield
    outputs.reset()


def test_file_output_is_named_after_the_file(tmp_path: Path) -> None:
    path = tmp_path / "result.txt"
    path.write_bytes(b"hello")
    saved = Output(path=path).save()
    assert saved.name == "result.txt"
    assert outputs.collected() == [("result.txt", b"hello")]


def test_file_is_read_at_save_time(tmp_path: Path) -> None:
    path = tmp_path / "late.txt"
    path.write_text("first")
    output = Output(str(path))
    path.write_text("second")
    output.save()
    assert outputs.collected() == [("late.txt", b"second")]


def test_directory_output_is_a_zip(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("A")
    (folder / "sub" / "b.txt").write_text("B")
    Output(path=f"{folder}/").save()  # a trailing slash keeps the folder's name
    [(name, data)] = outputs.collected()
    assert name == "frames.zip"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == ["a.txt", "sub/b.txt"]
        assert archive.read("sub/b.txt") == b"B"


def test_from_bytes() -> None:
    Output.from_bytes("report.csv", b"a,b\n1,2\n").save()
    Output.from_bytes("raw.bin", bytearray(b"\x00\x01")).save()
    assert outputs.collected() == [("report.csv", b"a,b\n1,2\n"), ("raw.bin", b"\x00\x01")]


def test_take_empties_the_collector() -> None:
    Output.from_bytes("x", b"1").save()
    assert outputs.take() == [("x", b"1")]
    assert outputs.collected() == []


@pytest.mark.parametrize("name", ["", "  ", "a/b.txt", "a\\b", "..", ".", "bad\x00name"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidOutput):
        Output.from_bytes(name, b"data")


def test_bytes_only() -> None:
    with pytest.raises(InvalidOutput, match="must be bytes"):
        Output.from_bytes("a.txt", "text")  # type: ignore[arg-type]


def test_missing_path_fails_on_save(tmp_path: Path) -> None:
    output = Output(tmp_path / "nope.txt")
    with pytest.raises(InvalidOutput, match="not a file or directory"):
        output.save()
    assert outputs.collected() == []
