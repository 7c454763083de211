"""An append-only log of records in numbered segment files next to a file.

Records are appended with one ``write`` each, so once ``append`` returns
the record is in the operating system's page cache: a ``kill -9`` right
after keeps it (a machine crash may not, until the segment is fsynced).
A store that folds the log into its own file later uses it to make a
change durable at the cost of one system call.

The segments of ``<file>`` are ``<file>.log.1``, ``<file>.log.2``, ...;
each record is a header (its length, flagged, and its CRC-32) and that
many bytes. A segment is created at its full size (``segment_bytes``, of
zeros on disk) with its size and its name fsynced, before anything is
written to it: an append then overwrites zeros in place, so an fsync of it
flushes the record's pages and no metadata (a growing file's size is
metadata, and costs an fsync a journal commit). The segment after the
open one is made so on a thread of its own once the open one is half
full, so that a rotation costs the appender only a ``close``. A segment
grown past ``segment_bytes`` is closed and the next one opened; its owner
deletes a closed segment once everything in it has been folded.

Reading a segment stops at the zeros after its last record (a header is
never all zeros), and at a record cut short or torn (a crash or a full
disk during its write: nobody was told of it); it goes on with the next
segment: a segment after such a cut was opened by a live process whose
callers were answered. A segment of an earlier version (records with a
bare length, no flag) is read as it was written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import struct
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import trio

#: A segment this big is closed and the next one opened.
SEGMENT_BYTES = 4 << 20
#: A record's header: its length with ``_FLAG`` set, then the CRC-32 of its bytes.
_HEADER = struct.Struct("<II")
#: Set in every header's length: no header is zeros, and none is an earlier version's.
_FLAG = 1 << 31
#: An earlier version's header: the bare length.
_LENGTH = struct.Struct("<I")


def segments(path: str | Path) -> list[Path]:
    """The log segments of ``path``, oldest first."""
    base = Path(path)
    found = []
    for segment in base.parent.glob(f"{base.name}.log.*"):
        number = segment.name.rsplit(".", 1)[1]
        # Only regular files: reading anything else (a pipe) could block the open.
        if number.isdigit() and segment.is_file():
            found.append((int(number), segment))
    return [segment for _, segment in sorted(found)]


def read(path: str | Path) -> Iterator[bytes]:
    """Every record the log of ``path`` holds, oldest first; a record cut short ends its
    segment."""
    for segment in segments(path):
        yield from read_segment(segment)


def read_segment(segment: Path) -> Iterator[bytes]:
    """The records of one segment, up to the zeros after the last one or the first one cut
    short or torn."""
    data = segment.read_bytes()
    first = _LENGTH.unpack_from(data)[0] if len(data) >= _LENGTH.size else 0
    if first and not first & _FLAG:  # an earlier version's
        yield from _read_unchecked(data)
        return
    at = 0
    while at + _HEADER.size <= len(data):
        flagged, crc = _HEADER.unpack_from(data, at)
        if not flagged & _FLAG:
            return  # the zeros after the last record
        start = at + _HEADER.size
        end = start + (flagged & ~_FLAG)
        payload = data[start:end]
        if end > len(data) or zlib.crc32(payload) != crc:
            return
        yield payload
        at = end


def _read_unchecked(data: bytes) -> Iterator[bytes]:
    """The records of a segment an earlier version wrote (bare lengths)."""
    at = 0
    while at + _LENGTH.size <= len(data):
        (size,) = _LENGTH.unpack_from(data, at)
        end = at + _LENGTH.size + size
        if end > len(data):
            return
        yield data[at + _LENGTH.size : end]
        at = end


def remove(path: str | Path) -> None:
    """Delete every log segment of ``path`` (once everything in them is folded)."""
    for segment in segments(path):
        segment.unlink(missing_ok=True)


def sync_entry(segment: Path, fsync: Callable[[int], None] = os.fsync) -> None:
    """Fsync the directory holding ``segment``: its name survives a machine crash
    (fsyncing a new file makes its bytes durable, not its entry in the directory)."""
    fd = os.open(segment.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def framed(payload: bytes) -> bytes:
    """``payload`` as the log holds it: its header, then itself."""
    return _HEADER.pack(len(payload) | _FLAG, zlib.crc32(payload)) + payload


def create_segment(segment: Path, size: int) -> int:
    """Create ``segment`` ``size`` bytes long (as much as the disk has room for) and fsync
    its size and name; its descriptor, open for writing at its start. ``OSError`` if it
    cannot be created (then it is not left behind). Blocks for the fsyncs: call it off the
    trio thread when it can be."""
    fd = os.open(segment, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):  # not a pipe a test put there
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                # A full disk: the segment grows as records come, and the first append the
                # disk has no room for fails, as it would have without preallocation.
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
            os.fdatasync(fd)
            sync_entry(segment, os.fsync)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            segment.unlink()
        raise
    return fd


class SegmentLog:
    """The open segment of the log of one file; one writer appends."""

    def __init__(self, path: str | Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        """Start a new segment after any already there (replayed ones are gone by now);
        ``OSError`` if it cannot be created. Blocks for its fsyncs."""
        self.path = str(path)
        self.segment_bytes = segment_bytes
        existing = segments(path)
        self._number = int(existing[-1].name.rsplit(".", 1)[1]) if existing else 0
        self.segment = self._path(self._number + 1)
        #: The open segment's descriptor (-1 once closed).
        self.fd = create_segment(self.segment, segment_bytes)
        self._number += 1
        #: Bytes of records in the open segment.
        self.size = 0
        #: Past this size the next segment is made, on a thread (none once it is asked for).
        self._spare_at = segment_bytes // 2
        self._spare_maker: threading.Thread | None = None
        self._spare = -1  # the next segment's descriptor, once made

    def _path(self, number: int) -> Path:
        return Path(f"{self.path}.log.{number}")

    def append(self, record: bytes) -> None:
        """Write one ``framed`` record (or several) to the open segment: ``OSError`` if it
        cannot (some of it may be written: the reader stops there, and the next record
        goes where this one began)."""
        view = memoryview(record)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError:
            with contextlib.suppress(OSError):  # a pipe cannot seek; nothing else fails
                os.lseek(self.fd, self.size, os.SEEK_SET)
            raise
        self.size += len(record)
        if self.size >= self._spare_at:
            self._spare_at = sys.maxsize  # asked for: once a segment
            self._spare_maker = threading.Thread(
                target=self._make_spare, name=f"segment-log:{self.segment.name}", daemon=True
            )
            self._spare_maker.start()

    def _make_spare(self) -> None:
        # A failure is left to ``rotate``, which tries again and raises it.
        with contextlib.suppress(OSError):
            self._spare = create_segment(self._path(self._number + 1), self.segment_bytes)

    def rotate(self) -> Path:
        """Close the open segment and open the next; the closed one's path. ``OSError`` if
        the next cannot be created (the open one stays open)."""
        fd = self._take_spare()
        if fd < 0:
            fd = create_segment(self._path(self._number + 1), self.segment_bytes)
        closed = self.segment
        self.close()
        self._number += 1
        self.fd, self.segment, self.size = fd, self._path(self._number), 0
        self._spare_at = self.segment_bytes // 2
        return closed

    def _take_spare(self) -> int:
        if self._spare_maker is not None:
            self._spare_maker.join()  # made long ago, unless the half segment took less time
            self._spare_maker = None
        fd, self._spare = self._spare, -1
        return fd

    def close(self) -> None:
        """Close the open segment (it stays on disk) and delete the next one if it was made
        (nothing is in it); safe to call twice."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        spare = self._take_spare()
        if spare >= 0:
            os.close(spare)
            with contextlib.suppress(OSError):
                self._path(self._number + 1).unlink()


#: Trio tasks waiting for a log's folding thread to reach a count (of appends, of
#: batches): the count each waits for and the event that wakes it.
Waiters = list[tuple[int, trio.Event]]


def wake_reached(waiters: Waiters, reached: int, *, failed: bool) -> Waiters:
    """Wake the waiters whose count is ``reached`` (all of them if the folding ``failed``);
    the ones still waiting."""
    waiting = []
    for count, done in waiters:
        if count <= reached or failed:
            done.set()
        else:
            waiting.append((count, done))
    return waiting
