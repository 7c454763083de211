"""The segment log: records appended to numbered files made at full size, read back up to
the zeros after the last one or one cut short."""

from __future__ import annotations

import errno
import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from ult_actors import segment_log
from ult_actors.segment_log import SegmentLog, framed


def test_records_are_read_back_in_order_across_segments(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path / "store.db")
    log.append(framed(b"one"))
    log.append(framed(b"two") + framed(b""))  # several records in one write
    closed = log.rotate()
    log.append(framed(b"three"))
    log.close()
    assert closed == tmp_path / "store.db.log.1"
    assert segment_log.segments(tmp_path / "store.db") == [closed, tmp_path / "store.db.log.2"]
    assert list(segment_log.read(tmp_path / "store.db")) == [b"one", b"two", b"", b"three"]
    # A new log starts after the segments already there.
    assert SegmentLog(tmp_path / "store.db").segment == tmp_path / "store.db.log.3"


def test_a_record_cut_short_ends_its_segment_not_the_next(tmp_path: Path) -> None:
    log = SegmentLog(tmp_path / "store.db")
    log.append(framed(b"kept") + framed(b"cut short")[:-3])  # the disk filled mid-write
    log.rotate()  # a live process went on in a new segment; its callers were answered
    log.append(framed(b"after"))
    log.close()
    assert list(segment_log.read(tmp_path / "store.db")) == [b"kept", b"after"]


def test_remove_deletes_only_this_files_segments(tmp_path: Path) -> None:
    for name in ("store.db", "other.db"):
        log = SegmentLog(tmp_path / name)
        log.append(framed(b"x"))
        log.close()
    (tmp_path / "store.db.log.notes").write_text("not a segment")
    segment_log.remove(tmp_path / "store.db")
    assert segment_log.segments(tmp_path / "store.db") == []
    assert len(segment_log.segments(tmp_path / "other.db")) == 1
    assert (tmp_path / "store.db.log.notes").exists()


def recorded(real: Callable[[int], None], synced: list[str]) -> Callable[[int], None]:
    """``real`` (an fsync), noting the path of each descriptor it is given."""

    def sync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    return sync


def test_a_segment_is_made_full_size_and_fsynced_so_an_append_changes_no_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    monkeypatch.setattr(os, "fdatasync", recorded(os.fdatasync, synced))
    monkeypatch.setattr(os, "fsync", recorded(os.fsync, synced))
    log = SegmentLog(tmp_path / "store.db", segment_bytes=64 << 10)
    # Its size and its name are on the disk before anything is written to it...
    assert synced == [str(log.segment), str(tmp_path)]
    assert log.segment.stat().st_size == 64 << 10
    log.append(framed(b"x" * 300))
    log.append(framed(b"y" * 300))
    # ...so an append overwrites zeros in place: the file's size (metadata) never changes.
    assert log.segment.stat().st_size == 64 << 10
    assert list(segment_log.read_segment(log.segment)) == [b"x" * 300, b"y" * 300]
    log.close()


def test_the_zeros_after_the_last_record_end_a_segment_and_so_does_a_torn_record(
    tmp_path: Path,
) -> None:
    log = SegmentLog(tmp_path / "store.db", segment_bytes=4096)
    log.append(framed(b"one") + framed(b""))
    end = log.size
    log.rotate()
    log.append(framed(b"next segment"))
    log.close()
    [first, second] = segment_log.segments(tmp_path / "store.db")
    assert list(segment_log.read(tmp_path / "store.db")) == [b"one", b"", b"next segment"]
    # A machine crash during the next append: its header reached the disk, not all of it.
    with first.open("r+b") as file:
        file.seek(end)
        file.write(framed(b"torn record")[:12])
    assert list(segment_log.read(tmp_path / "store.db")) == [b"one", b"", b"next segment"]
    # A record whose bytes were changed after it was written is torn too.
    data = bytearray(second.read_bytes())
    data[10] ^= 1
    second.write_bytes(data)
    assert list(segment_log.read(tmp_path / "store.db")) == [b"one", b""]


def test_after_a_failed_append_the_next_record_goes_where_it_began(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "posix_fallocate", no_room)  # its records go by ``write``
    log = SegmentLog(tmp_path / "store.db", segment_bytes=4096)
    log.append(framed(b"kept"))
    real_write = os.write

    def fills_mid_write(fd: int, data: bytes) -> int:
        if len(data) > 3:
            return real_write(fd, bytes(data[:3]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", fills_mid_write)
    with pytest.raises(OSError):
        log.append(framed(b"failed"))
    monkeypatch.setattr(os, "write", real_write)
    log.append(framed(b"after"))  # over the failed one's bytes, not after them
    log.close()
    assert list(segment_log.read(tmp_path / "store.db")) == [b"kept", b"after"]


def test_a_segment_an_earlier_version_wrote_is_read_as_it_was_written(tmp_path: Path) -> None:
    old = b"".join(struct.pack("<I", len(p)) + p for p in (b"old", b"older"))
    (tmp_path / "store.db.log.1").write_bytes(old + b"\x09\x00")  # and one cut short
    log = SegmentLog(tmp_path / "store.db", segment_bytes=4096)
    log.append(framed(b"new"))
    log.close()
    assert list(segment_log.read(tmp_path / "store.db")) == [b"old", b"older", b"new"]


def test_the_next_segment_is_made_on_another_thread_before_it_is_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made_on: dict[str, threading.Thread] = {}
    real_fallocate = os.posix_fallocate

    def fallocate(fd: int, offset: int, length: int) -> None:
        made_on[os.readlink(f"/proc/self/fd/{fd}").rsplit(".", 1)[1]] = threading.current_thread()
        real_fallocate(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", fallocate)
    log = SegmentLog(tmp_path / "store.db", segment_bytes=4096)
    log.append(framed(bytes(1000)))
    assert list(made_on) == ["1"]  # under half full: the next is not made yet
    log.append(framed(bytes(1100)))  # past half: made now, on a thread of its own
    closed = log.rotate()
    log.append(framed(b"in the next"))
    log.close()
    assert made_on["1"] is threading.current_thread()  # the first, when the log opens
    assert made_on["2"] is not threading.current_thread()
    assert segment_log.segments(tmp_path / "store.db") == [closed, log.segment]
    assert list(segment_log.read(tmp_path / "store.db"))[-1] == b"in the next"


def test_a_log_closed_with_its_next_segment_made_leaves_no_empty_segment(
    tmp_path: Path,
) -> None:
    log = SegmentLog(tmp_path / "store.db", segment_bytes=4096)
    log.append(framed(bytes(3000)))  # past half: the next segment is made
    log.close()
    assert segment_log.segments(tmp_path / "store.db") == [tmp_path / "store.db.log.1"]


def no_room(fd: int, offset: int, length: int) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_with_no_room_for_a_whole_segment_the_next_one_grows_as_records_come(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = SegmentLog(tmp_path / "store.db", segment_bytes=4096)
    log.append(framed(b"before"))
    monkeypatch.setattr(os, "posix_fallocate", no_room)
    log.rotate()  # as without preallocation: the full disk fails the first append it cannot take
    assert log.segment.stat().st_size == 0
    log.append(framed(b"after"))
    log.close()
    assert list(segment_log.read(tmp_path / "store.db")) == [b"before", b"after"]
