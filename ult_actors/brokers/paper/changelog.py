"""The paper accounts' change log: what the venues changed, on disk before anyone is told.

A venue call's changes (a ``Batch`` of rows) are appended to the log with
one ``write`` on the trio thread before its answer or updates go out; the
writer's thread folds them into the SQLite file later, many calls per
transaction (``paper.writer``). A ``write`` is in the operating system's
page cache when it returns, so a ``kill -9`` loses nothing anybody was
told; a machine crash may lose the last writes, as the file's
``synchronous=NORMAL`` may.

The log is a ``segment_log`` next to the accounts file
(``<file>.log.<n>``); each record is a msgpack ``Batch``. A segment grown
past ``SEGMENT_BYTES`` is closed and the next one opened; the writer's
thread deletes a closed segment once everything in it is in the file.
Opening the file (``PaperStore``) replays every segment left over, in
order, then deletes them: replaying rows the file has already is harmless
(upserts; a fill is inserted once), so a crash at any point between the
append and the delete leaves the file right after the replay. A record
cut short (the disk filled during its write) ends the replay: its call
failed, so nobody was told of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from ult_actors import segment_log
from ult_actors.brokers.paper.batch import Batch
from ult_actors.segment_log import remove, segments

__all__ = ["SEGMENT_BYTES", "ChangeLog", "read", "remove", "segments"]

#: A segment this big is closed and the next one opened.
SEGMENT_BYTES = segment_log.SEGMENT_BYTES


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


def read(path: str) -> Iterator[Batch]:
    """Every batch the log of ``path`` holds, oldest first, up to a record cut short."""
    for payload in segment_log.read(path):
        try:
            yield _batch(_decode(payload))
        except msgspec.DecodeError:
            return


class ChangeLog:
    """The open segment of the log of one accounts file (the trio thread appends)."""

    def __init__(self, path: str) -> None:
        """Start a new segment after any already there (replayed ones are gone by now)."""
        self.path = path
        self._log = segment_log.SegmentLog(path)

    @property
    def segment(self) -> Path:
        """The open segment's path."""
        return self._log.segment

    @property
    def size(self) -> int:
        """Bytes in the open segment."""
        return self._log.size

    def append(self, batch: Batch) -> None:
        """Write ``batch`` (one record) to the open segment: ``OSError`` if it cannot."""
        self._log.append(segment_log.framed(_encode(_record(batch))))

    def rotate(self) -> Path:
        """Close the open segment and open the next; the closed one's path."""
        return self._log.rotate()

    def close(self) -> None:
        """Close the open segment (it stays on disk); safe to call twice."""
        self._log.close()
