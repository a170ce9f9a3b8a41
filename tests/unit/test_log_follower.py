"""Following a log stream across connections (``LogFollower``): what the next request sends,
which lines it yields, when it gives up. Pure: lines in, decisions out."""

from __future__ import annotations

import pytest

from conveyor.errors import ConnectionFailed
from conveyor.sdk.calls import LogFollower, SseReader

FRAMES = [
    "id: 7", "event: log", 'data: {"attempt": 1, "stream": "stdout", "line": "a"}', "",
    ": ping", "",
    "id: 9", "event: log", 'data: {"attempt": 1, "stream": "stderr", "line": "b"}', "",
]


def fed(follower: LogFollower, lines: list[str]) -> list[str]:
    return [item["line"] for line in lines if (item := follower.feed(line)) is not None]


def test_each_line_once_and_the_next_request_resumes_after_the_last() -> None:
    follower = LogFollower("t/1", None)
    first = follower.call()
    assert first.path == "/v2/task/t%2F1/logs/stream" and "Last-Event-ID" not in first.headers
    assert fed(follower, FRAMES) == ["a", "b"]
    assert not follower.ended
    assert follower.call().headers == {"Last-Event-ID": "9"}
    # A connection cut inside a frame: the half frame is dropped, the next starts clean.
    assert fed(follower, ["id: 10", "event: log"]) == []
    again = follower.call()
    assert again.headers == {"Last-Event-ID": "9"}
    assert fed(follower, ["event: end", 'data: {"status": "COMPLETE"}', ""]) == []
    assert follower.ended


def test_a_given_cursor_is_the_first_resume_point() -> None:
    assert LogFollower("t", "41").call().headers == {"Last-Event-ID": "41"}


def test_it_gives_up_after_connections_in_a_row_that_bring_nothing() -> None:
    follower = LogFollower("t", None)
    failure = ConnectionFailed("cannot reach the conveyor gateway at http://x")
    pauses = [follower.pause(failure) for _ in range(LogFollower.MAX_RETRIES)]
    assert pauses == sorted(pauses) and pauses[0] > 0 and pauses[-1] <= 2.0
    with pytest.raises(ConnectionFailed, match="cannot reach"):
        follower.pause(failure)
    with pytest.raises(ConnectionFailed, match="keeps closing early"):
        follower.pause(None)
    fed(follower, [": ping"])  # anything received starts the count again
    assert follower.pause(None) == pauses[0]


def test_sse_reader_joins_data_lines_and_skips_empty_events() -> None:
    reader = SseReader()
    events = [reader.feed(line) for line in ["event: x", "data: 1", "data: 2", "", "", ": c",
                                             "", "data:3", ""]]
    whole = [e for e in events if e is not None]
    assert [(e.name, e.data, e.id) for e in whole] == [("x", "1\n2", None),
                                                      ("message", "3", None)]
