"""An append-only log of records in numbered segment files next to a file.

A segment is created at its full size (``segment_bytes``, of zeros on
disk) with its size and its name fsynced, before anything is written to
it, and mapped into memory (``MAP_SHARED``). An append copies its record
into the mapping: no system call, and the trio thread keeps the GIL (a
``write`` lets it go and then waits for it behind the threads that fold
the log). A store through a shared mapping is a store into the file's page
in the operating system's page cache (the mapping *is* that page), so once
``append`` returns the record is there, as after a ``write``: a ``kill -9``
right after keeps it, and a reader (``read_segment`` in another process)
sees it. A machine crash may lose it until the segment is fsynced: the
first store to a clean page of a shared mapping faults and the kernel
marks the page dirty in the page cache (and writing the page back makes it
clean and write-protected again), so an ``fsync``/``fdatasync`` of the
file, on any descriptor, writes it back with the pages ``write`` dirtied;
Linux's ``msync(MS_SYNC)`` is itself that fsync (mm/msync.c). An append
overwrites zeros in place, so that fsync flushes the record's pages and no
metadata (a growing file's size is metadata, and costs an fsync a journal
commit). A store never goes past the mapping, which is never longer than
the file: no ``SIGBUS``. What does not fit in the mapping (a record longer
than the room left, a segment the disk had no room to make whole, a pipe a
test put there) is written with ``write`` at its place, so a full disk
fails that append with ``OSError`` as it always did. (On a file system that
cannot promise the room it preallocated, copy-on-write ones, a lack of room
shows at the fsync instead: ``full``'s fsync before the ack, ``normal``'s
sync thread.)

The segments of ``<file>`` are ``<file>.log.1``, ``<file>.log.2``, ...;
each record is a header (its length, flagged, and its CRC-32) and that
many bytes. The segment after the open one is made on a thread of its own
once the open one is half full, so that a rotation costs the appender only
a ``close`` and a mapping. A segment grown past ``segment_bytes`` is closed
and the next one opened; its owner deletes a closed segment once
everything in it has been folded.

Reading a segment stops at the zeros after its last record (a header is
never all zeros), and at a record cut short or torn (a crash or a full
disk during its write: nobody was told of it); it goes on with the next
segment: a segment after such a cut was opened by a live process whose
callers were answered. A segment of an earlier version (records with a
bare length, no flag) is read as it was written. ``cut_back`` takes back
appends (a record whose fsync failed): their bytes become zeros again, in
the mapping (cutting a mapped file short would make a later store there a
``SIGBUS``), and the file is cut back only past the mapping.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import stat
import struct
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import trio

#: A segment this big is closed and the next one opened.
SEGMENT_BYTES = 4 << 20
#: A record's header: its length with ``_FLAG`` set, then the CRC-32 of its bytes.
_HEADER: Final = struct.Struct("<II")
#: Set in every header's length: no header is zeros, and none is an earlier version's.
_FLAG: Final = 1 << 31
#: An earlier version's header: the bare length.
_LENGTH: Final = struct.Struct("<I")
#: Bound once: compiled (mypyc), ``_HEADER.pack`` and ``zlib.crc32`` in ``framed`` would
#: look up the method and the module's attribute at every record (~270 instructions).
_pack_header: Final = _HEADER.pack
_pack_header_into: Final = _HEADER.pack_into
_HEADER_BYTES: Final = _HEADER.size
_crc32: Final = zlib.crc32


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


def framed(payload: bytes | bytearray) -> bytes:
    """``payload`` as the log holds it: its header, then itself."""
    return _pack_header(len(payload) | _FLAG, _crc32(payload)) + payload


def create_segment(segment: Path, size: int) -> int:
    """Create ``segment`` ``size`` bytes long (as much as the disk has room for) and fsync
    its size and name; its descriptor, open for reading and writing at its start. ``OSError`` if it
    cannot be created (then it is not left behind). Blocks for the fsyncs: call it off the
    trio thread when it can be."""
    fd = os.open(segment, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
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


def map_segment(fd: int) -> mmap.mmap | None:
    """A shared, writable mapping of the segment open on ``fd``, exactly as long as the file
    is now (so no store through it is ever past the file's end); ``None`` if it is empty or
    not a regular file."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
        return None
    return mmap.mmap(fd, info.st_size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)


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
        self.fd = -1
        self._open(create_segment(self.segment, segment_bytes))
        self._number += 1
        #: Past this size the next segment is made, on a thread (none once it is asked for).
        self._spare_at = segment_bytes // 2
        self._spare_maker: threading.Thread | None = None
        self._spare = -1  # the next segment's descriptor, once made

    def _open(self, fd: int) -> None:
        try:
            self._map = map_segment(fd)
        except OSError:  # no room for a mapping (or its descriptor): appends go by ``write``
            self._map = None
        self._mapped = len(self._map) if self._map is not None else 0
        self._seekable = stat.S_ISREG(os.fstat(fd).st_mode)  # not a pipe a test put there
        self.fd = fd
        #: Bytes of records in the open segment.
        self.size = 0
        # Bytes from the segment's start that appends may have written (a failed one too).
        self._reach = 0

    def _path(self, number: int) -> Path:
        return Path(f"{self.path}.log.{number}")

    def append(self, record: bytes) -> None:
        """Write one ``framed`` record (or several) to the open segment: ``OSError`` if it
        cannot (some of it may be written: the reader stops there, and the next record
        goes where this one began)."""
        at = self.size
        end = at + len(record)
        self._reach = max(self._reach, end)
        if end <= self._mapped:
            assert self._map is not None
            self._map[at:end] = record
        else:
            self._write(at, record)
        self._appended(end)

    def append_payload(self, payload: bytes | bytearray) -> None:
        """``append(framed(payload))`` without making the framed bytes: the header is packed
        into the mapping and the payload copied after it (one copy, not two)."""
        at = self.size
        size = len(payload)
        start = at + _HEADER_BYTES
        end = start + size
        if end > self._mapped:
            self.append(framed(payload))
            return
        if end > self._reach:
            self._reach = end
        mapped = self._map
        assert mapped is not None
        _pack_header_into(mapped, at, size | _FLAG, _crc32(payload))
        mapped[start:end] = payload
        self._appended(end)

    def _appended(self, end: int) -> None:
        self.size = end
        if end >= self._spare_at:
            self._spare_at = sys.maxsize  # asked for: once a segment
            self._spare_maker = threading.Thread(
                target=self._make_spare, name=f"segment-log:{self.segment.name}", daemon=True
            )
            self._spare_maker.start()

    def _write(self, at: int, record: bytes) -> None:
        # Past the mapping: the file grows (or fails to, on a full disk) as without one.
        if self._seekable:
            os.lseek(self.fd, at, os.SEEK_SET)
        view = memoryview(record)
        while view:
            # Apart, not in the slice: compiled (mypyc), a call in a slice's bound runs twice.
            written = os.write(self.fd, view)
            view = view[written:]

    def cut_back(self, size: int) -> None:
        """Take back what was appended past ``size`` (a record whose fsync failed, one cut
        short): its bytes are zeros again, where a reader stops, and the next record goes
        at ``size``. ``OSError`` if the file cannot be cut back (then the segment may end
        in a record cut short: open the next one)."""
        stop = min(self._reach, self._mapped)
        if size < stop:
            assert self._map is not None
            self._map[size:stop] = bytes(stop - size)
        if self._reach > self._mapped:
            # Never into the mapping: a store past the file's end would be a SIGBUS.
            os.ftruncate(self.fd, max(size, self._mapped))
        self.size = self._reach = size

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
        self.segment = self._path(self._number)
        self._open(fd)
        self._spare_at = self.segment_bytes // 2
        return closed

    def _take_spare(self) -> int:
        if self._spare_maker is not None:
            self._spare_maker.join()  # made long ago, unless the half segment took less time
            self._spare_maker = None
        fd, self._spare = self._spare, -1
        return fd

    def close(self) -> None:
        """Close the open segment (it stays on disk, with everything stored through its
        mapping) and delete the next one if it was made (nothing is in it); safe to call
        twice."""
        if self._map is not None:
            self._map.close()
            self._map, self._mapped = None, 0
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
