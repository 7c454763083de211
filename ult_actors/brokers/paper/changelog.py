"""The paper accounts' change log: what the venues changed, on disk before anyone is told.

A venue call's changes (a ``Batch`` of rows) are appended to the log with
one ``write`` on the trio thread before its answer or updates go out; the
writer's thread folds them into the SQLite file later, many calls per
transaction (``paper.writer``). A ``write`` is in the operating system's
page cache when it returns, so a ``kill -9`` loses nothing anybody was
told; a machine crash may lose the last writes, as the file's
``synchronous=NORMAL`` may.

The log is a run of segment files next to the accounts file
(``<file>.log.<n>``); each record is a length and a msgpack ``Batch``. A
segment grown past ``SEGMENT_BYTES`` is closed and the next one opened;
the writer's thread deletes a closed segment once everything in it is in
the file. Opening the file (``PaperStore``) replays every segment left
over, in order, then deletes them: replaying rows the file has already is
harmless (upserts; a fill is inserted once), so a crash at any point
between the append and the delete leaves the file right after the replay.
A record cut short (the disk filled during its write) ends the replay:
its call failed, so nobody was told of it.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from ult_actors.brokers.paper.batch import Batch

#: A segment this big is closed and the next one opened.
SEGMENT_BYTES = 4 << 20
_LENGTH = struct.Struct("<I")


class _Record(msgspec.Struct, array_like=True):
    """A batch as the log holds it: its rows, keyed again when read."""

    seq: int
    orders: list[tuple[Any, ...]]
    fills: list[tuple[Any, ...]]
    positions: list[tuple[Any, ...]]
    prices: list[tuple[Any, ...]]
    accounts: list[tuple[Any, ...]]


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Record).decode


def _record(batch: Batch) -> _Record:
    return _Record(
        batch.seq,
        list(batch.orders.values()),
        batch.fills,
        list(batch.positions.values()),
        list(batch.prices.values()),
        list(batch.accounts.values()),
    )


def _batch(record: _Record) -> Batch:
    # Every keyed row starts with its key: (account, id) or (account, symbol); an
    # account row with its name.
    return Batch(
        record.seq,
        orders={(r[0], r[1]): r for r in record.orders},
        fills=record.fills,
        positions={(r[0], r[1]): r for r in record.positions},
        prices={(r[0], r[1]): r for r in record.prices},
        accounts={r[0]: r for r in record.accounts},
    )


def segments(path: str) -> list[Path]:
    """The log segments of the accounts file ``path``, oldest first."""
    base = Path(path)
    found = []
    for segment in base.parent.glob(f"{base.name}.log.*"):
        number = segment.name.rsplit(".", 1)[1]
        # Only regular files: reading anything else (a pipe) could block the open.
        if number.isdigit() and segment.is_file():
            found.append((int(number), segment))
    return [segment for _, segment in sorted(found)]


def read(path: str) -> Iterator[Batch]:
    """Every batch the log of ``path`` holds, oldest first, up to a record cut short."""
    for segment in segments(path):
        data = segment.read_bytes()
        at = 0
        while at + _LENGTH.size <= len(data):
            (size,) = _LENGTH.unpack_from(data, at)
            end = at + _LENGTH.size + size
            if end > len(data):
                return
            try:
                yield _batch(_decode(data[at + _LENGTH.size : end]))
            except msgspec.DecodeError:
                return
            at = end
        if at != len(data):
            return


def remove(path: str) -> None:
    """Delete every log segment of ``path`` (once the file holds all of them)."""
    for segment in segments(path):
        segment.unlink(missing_ok=True)


class ChangeLog:
    """The open segment of the log of one accounts file (the trio thread appends)."""

    def __init__(self, path: str) -> None:
        """Start a new segment after any already there (replayed ones are gone by now)."""
        self.path = path
        existing = segments(path)
        self._number = int(existing[-1].name.rsplit(".", 1)[1]) if existing else 0
        self._fd = -1
        self.segment = Path()
        self.size = 0
        self._open_next()

    def _open_next(self) -> None:
        self._number += 1
        self.segment = Path(f"{self.path}.log.{self._number}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self._fd = os.open(self.segment, flags, 0o600)
        self.size = 0

    def append(self, batch: Batch) -> None:
        """Write ``batch`` (one record) to the open segment: ``OSError`` if it cannot."""
        payload = _encode(_record(batch))
        record = _LENGTH.pack(len(payload)) + payload
        view = memoryview(record)
        while view:
            view = view[os.write(self._fd, view) :]
        self.size += len(record)

    def rotate(self) -> Path:
        """Close the open segment and open the next; the closed one's path."""
        closed = self.segment
        os.close(self._fd)
        self._fd = -1
        self._open_next()
        return closed

    def close(self) -> None:
        """Close the open segment (it stays on disk); safe to call twice."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
