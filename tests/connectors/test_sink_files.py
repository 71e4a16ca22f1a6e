"""Rotating JSONL files: .part while open, complete when rotated or closed, fsync policy."""

from __future__ import annotations

import os

import pytest

from connectors.sinks import files
from connectors.sinks.files import RotatingJsonlWriter


def lines(n: int, start: int = 0) -> list[bytes]:
    return [b'{"i":%d}\n' % i for i in range(start, start + n)]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_without_rotation_the_file_is_part_until_closed(tmp_path):
    path = tmp_path / "out" / "f.jsonl"
    w = RotatingJsonlWriter(path)
    w.write_lines(lines(3))
    assert not path.exists() and (tmp_path / "out" / "f.jsonl.part").read_bytes() == b"".join(lines(3))
    w.close()
    w.close()  # idempotent
    assert path.read_bytes() == b"".join(lines(3))
    assert not (tmp_path / "out" / "f.jsonl.part").exists()
    assert w.completed == [path]


def test_a_run_without_records_leaves_an_empty_complete_file(tmp_path):
    w = RotatingJsonlWriter(tmp_path / "f.jsonl")
    w.close()
    assert (tmp_path / "f.jsonl").read_bytes() == b"" and not list(tmp_path.glob("*.part"))
    rotating = RotatingJsonlWriter(tmp_path / "r.jsonl", rotate_s=60)
    rotating.close()
    assert not list(tmp_path.glob("r*"))


def test_rotation_by_size_never_splits_a_line_and_loses_nothing(tmp_path):
    w = RotatingJsonlWriter(tmp_path / "f.jsonl", rotate_bytes=40)
    for i in range(0, 20, 3):
        w.write_lines(lines(3, i))
    w.close()
    segments = w.completed
    assert len(segments) > 3
    assert all(s.name.startswith("f-") and s.suffix == ".jsonl" for s in segments)
    assert all(len(s.read_bytes()) <= 40 for s in segments)
    assert b"".join(s.read_bytes() for s in segments) == b"".join(lines(21))
    assert not list(tmp_path.glob("*.part"))


def test_rotation_by_time_completes_the_segment_on_the_next_write(tmp_path):
    clock = Clock()
    w = RotatingJsonlWriter(tmp_path / "f.jsonl", rotate_s=60, clock=clock)
    w.write_lines(lines(2))
    first = w.current
    clock.t += 59
    w.write_lines(lines(1, 2))
    assert w.completed == [] and w.current == first
    clock.t += 2
    w.write_lines(lines(1, 3))
    assert w.completed == [first] and first.read_bytes() == b"".join(lines(3))
    assert w.current != first and w.current.with_name(w.current.name + ".part").exists()
    w.close()
    assert [s.read_bytes() for s in w.completed] == [b"".join(lines(3)), b"".join(lines(1, 3))]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("always", 3 + 1), ("rotate", 1), ("never", 0), ("interval", 1 + 1)],
)
def test_fsync_policy(tmp_path, monkeypatch, policy, expected):
    calls = []
    monkeypatch.setattr(files.os, "fsync", lambda fd: calls.append(fd))
    clock = Clock()
    w = RotatingJsonlWriter(tmp_path / "f.jsonl", fsync=policy, fsync_s=5, clock=clock)
    for _ in range(3):
        clock.t += 3  # interval: the second batch is 6 s after the open, the third only 3 s later
        w.write_lines(lines(1))
    w.close()
    assert len(calls) == expected


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError):
        RotatingJsonlWriter(tmp_path / "f.jsonl", rotate_bytes=0)
    with pytest.raises(ValueError):
        RotatingJsonlWriter(tmp_path / "f.jsonl", fsync="sometimes")  # type: ignore[arg-type]


def test_real_fsync_runs(tmp_path):
    w = RotatingJsonlWriter(tmp_path / "f.jsonl", fsync="always")
    w.write_lines(lines(2))
    w.close()
    assert os.path.getsize(tmp_path / "f.jsonl") == len(b"".join(lines(2)))
