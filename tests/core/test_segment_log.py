"""The segment log: records appended to numbered files, read back up to one cut short."""

from __future__ import annotations

from pathlib import Path

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
