"""An append-only log of records in numbered segment files next to a file.

Records are appended with one ``write`` each, so once ``append`` returns
the record is in the operating system's page cache: a ``kill -9`` right
after keeps it (a machine crash may not, until the segment is fsynced).
A store that folds the log into its own file later uses it to make a
change durable at the cost of one system call.

The segments of ``<file>`` are ``<file>.log.1``, ``<file>.log.2``, ...;
each record is a little-endian 4-byte length and that many bytes. A
segment grown past ``segment_bytes`` is closed and the next one opened;
its owner deletes a closed segment once everything in it has been folded.
Reading stops at a record cut short (a crash or a full disk during its
write: nobody was told of it) and goes on with the next segment: a
segment after such a cut was opened by a live process whose callers were
answered.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import trio

#: A segment this big is closed and the next one opened.
SEGMENT_BYTES = 4 << 20
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
    """The records of one segment, up to the first one cut short."""
    data = segment.read_bytes()
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
    """``payload`` as the log holds it: its length, then itself."""
    return _LENGTH.pack(len(payload)) + payload


class SegmentLog:
    """The open segment of the log of one file; one writer appends."""

    def __init__(self, path: str | Path) -> None:
        """Start a new segment after any already there (replayed ones are gone by now)."""
        self.path = str(path)
        existing = segments(path)
        self._number = int(existing[-1].name.rsplit(".", 1)[1]) if existing else 0
        #: The open segment's descriptor (-1 once closed).
        self.fd = -1
        self.segment = Path()
        #: Bytes in the open segment.
        self.size = 0
        self._open_next()

    def _open_next(self) -> None:
        self._number += 1
        self.segment = Path(f"{self.path}.log.{self._number}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self.fd = os.open(self.segment, flags, 0o600)
        self.size = 0

    def append(self, record: bytes) -> None:
        """Write one ``framed`` record (or several) to the open segment: ``OSError`` if it
        cannot (some of it may be written: the reader stops there)."""
        view = memoryview(record)
        while view:
            view = view[os.write(self.fd, view) :]
        self.size += len(record)

    def rotate(self) -> Path:
        """Close the open segment and open the next; the closed one's path."""
        closed = self.segment
        self.close()
        self._open_next()
        return closed

    def close(self) -> None:
        """Close the open segment (it stays on disk); safe to call twice."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


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
