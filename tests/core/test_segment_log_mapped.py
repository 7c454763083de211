"""The segment log's appends through a shared mapping of the segment: no ``write``, in the page
cache at once (a ``kill -9`` keeps them), ``write`` only past the mapping's end, and a cut back
that never shortens the mapped file."""

from __future__ import annotations

import errno
import mmap
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ult_actors import segment_log
from ult_actors.segment_log import SegmentLog, framed

ROOT = Path(__file__).resolve().parents[2]

#: Appends records with ``os.write`` made to fail (so they can only go through the
#: mapping), says how many, then waits to be killed.
_CHILD = textwrap.dedent(
    """
    import os, sys
    from ult_actors.segment_log import SegmentLog, framed

    def no_write(fd, data):
        raise OSError("an append made a write system call")

    os.write = no_write
    log = SegmentLog(sys.argv[1], segment_bytes=1 << 20)
    count = int(sys.argv[2])
    for i in range(count):
        log.append(framed(b"record %d " % i * 8))
    print(count, flush=True)
    sys.stdin.read()
    """
)


def test_records_stored_through_the_mapping_survive_a_kill9_of_the_writer(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path), "500"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        appended = child.stdout.readline().strip()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert appended == "500"
    # Nothing closed, unmapped or synced: the page cache held every record at the kill.
    assert list(segment_log.read(path)) == [b"record %d " % i * 8 for i in range(500)]


class Writes:
    """``os.write``, counting the calls on log segments."""

    def __init__(self) -> None:
        self.calls = 0
        self._write = os.write

    def __call__(self, fd: int, data: Any) -> int:
        if ".log." in os.readlink(f"/proc/self/fd/{fd}"):
            self.calls += 1
        return self._write(fd, data)


def test_a_segment_made_short_takes_records_in_its_mapping_then_writes_past_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fallocate = os.posix_fallocate

    def room_for_100(fd: int, offset: int, length: int) -> None:
        real_fallocate(fd, offset, 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", room_for_100)
    writes = Writes()
    monkeypatch.setattr(os, "write", writes)
    log = SegmentLog(tmp_path / "store.db", segment_bytes=4096)
    assert log.segment.stat().st_size == 100
    records = [bytes([n]) * 52 for n in (1, 2, 3)]  # 60 bytes each, framed
    for record in records:
        log.append(framed(record))
    # The first in the 100 bytes made; the second across their end and the third by ``write``.
    assert writes.calls == 2
    assert log.segment.stat().st_size == 180
    log.close()
    assert list(segment_log.read(tmp_path / "store.db")) == records


def test_a_record_longer_than_the_room_left_is_written_past_the_segments_end(
    tmp_path: Path,
) -> None:
    log = SegmentLog(tmp_path / "store.db", segment_bytes=4096)
    log.append(framed(b"a" * 4000))
    log.append(framed(b"b" * 500))  # 92 bytes of room left
    log.append(framed(b"c"))
    assert log.segment.stat().st_size == 4000 + 500 + 1 + 3 * 8
    log.close()
    assert list(segment_log.read(tmp_path / "store.db")) == [b"a" * 4000, b"b" * 500, b"c"]


def test_a_cut_back_zeroes_the_records_taken_back_and_never_shortens_the_mapped_file(
    tmp_path: Path,
) -> None:
    log = SegmentLog(tmp_path / "store.db", segment_bytes=4096)
    log.append(framed(b"kept"))
    kept = log.size
    log.append(framed(b"x" * 100))  # its fsync failed, say
    log.cut_back(kept)
    assert log.segment.stat().st_size == 4096
    assert list(segment_log.read_segment(log.segment)) == [b"kept"]  # zeros where it was
    log.append(framed(b"y" * 5000))  # across the mapping's end, by ``write``: the file grows
    log.cut_back(kept)
    # Back to the size it was made with, no shorter: a store past a mapped file's end
    # would kill the process (SIGBUS).
    assert log.segment.stat().st_size == 4096
    log.append(framed(b"after"))
    log.append(framed(b"z" * 3000))  # in the mapping, pages past where it was cut
    log.close()
    assert list(segment_log.read(tmp_path / "store.db")) == [b"kept", b"after", b"z" * 3000]


def test_with_no_mapping_to_be_had_appends_go_by_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_mapping(*args: Any, **kwargs: Any) -> mmap.mmap:
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(mmap, "mmap", no_mapping)
    writes = Writes()
    monkeypatch.setattr(os, "write", writes)
    log = SegmentLog(tmp_path / "store.db", segment_bytes=4096)
    log.append(framed(b"one"))
    log.append(framed(b"two"))
    kept = log.size
    log.append(framed(b"taken back"))
    log.cut_back(kept)
    log.append(framed(b"three"))
    log.close()
    assert writes.calls == 4
    assert list(segment_log.read(tmp_path / "store.db")) == [b"one", b"two", b"three"]


def test_a_payload_appended_unframed_is_the_framed_record_in_or_past_the_mapping(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = Writes()
    monkeypatch.setattr(os, "write", writes)
    log = SegmentLog(tmp_path / "store.db", segment_bytes=4096)
    log.append_payload(b"a" * 3000)
    log.append(framed(b"b" * 100))
    assert writes.calls == 0  # both in the mapping
    log.append_payload(b"c" * 1000)  # past its end: by ``write``, as ``append`` does
    assert writes.calls == 1
    log.close()
    data = (tmp_path / "store.db.log.1").read_bytes()
    records = framed(b"a" * 3000) + framed(b"b" * 100) + framed(b"c" * 1000)
    assert data[: len(records)] == records
    assert list(segment_log.read(tmp_path / "store.db")) == [b"a" * 3000, b"b" * 100, b"c" * 1000]
