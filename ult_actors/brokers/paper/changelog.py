"""The paper accounts' change log: what the venues changed, on disk before anyone is told.

A venue call's changes (one record, ``batch.stage_change``'s encode) are appended
to the log (one copy into the segment's mapping) on the trio thread before
its answer or updates go out; the writer's thread folds them into the
SQLite file later, many calls per transaction (``paper.writer``). An
append is in the operating system's page cache when it returns
(``segment_log``), so a ``kill -9`` loses nothing anybody was told; a
machine crash may lose the last appends, as the file's
``synchronous=NORMAL`` may.

The log is a ``segment_log`` next to the accounts file
(``<file>.log.<n>``); each record is a ``batch.Change`` (logs of the four
earlier versions, whose records had their bodies without their rows' keys, had
their bodies as maps, were a copy of the venue's objects, or were the file's
rows with JSON bodies, are read too). A segment grown
past ``SEGMENT_BYTES`` is closed and the next one opened; the writer's
thread deletes a closed segment once everything in it is in the file.
Opening the file (``PaperStore``) replays every segment left over, in
order, then deletes them: replaying rows the file has already is harmless
(upserts; a fill is inserted once), so a crash at any point between the
append and the delete leaves the file right after the replay. A record
cut short (the disk filled during its write) ends the replay: its call
failed, so nobody was told of it.

Compiled by mypyc in the compiled build: the earlier versions' record
classes, declared with class keywords, live in ``paper.records``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec

from ult_actors import segment_log
from ult_actors.brokers.paper.batch import Change, WorkingOrder, decode_change
from ult_actors.brokers.paper.records import (
    ArrayBodiesChange,
    MapBodiesChange,
    ObjectsRecord,
    RowsRecord,
)
from ult_actors.messages import Fill
from ult_actors.segment_log import remove, segments

__all__ = ["SEGMENT_BYTES", "ChangeLog", "read", "remove", "segments"]

#: A segment this big is closed and the next one opened.
SEGMENT_BYTES = segment_log.SEGMENT_BYTES


_encode = msgspec.msgpack.Encoder().encode


_decode_objects = msgspec.msgpack.Decoder(ObjectsRecord).decode
_decode_rows = msgspec.msgpack.Decoder(RowsRecord).decode
_order_json = msgspec.json.Decoder(WorkingOrder).decode
_fill_json = msgspec.json.Decoder(Fill).decode


# Both earlier versions' bodies become maps, as the version between them wrote them.
def _from_objects(record: ObjectsRecord) -> ArrayBodiesChange:
    return MapBodiesChange(
        account=record.account,
        orders={w.order.id: msgspec.Raw(_encode(w)) for w, _ in record.orders},
        ended=[w.order.id for w, is_open in record.orders if not is_open],
        fills=[msgspec.Raw(_encode(fill)) for fill in record.fills],
        holdings=record.holdings,
        prices=record.prices,
        cash=record.cash,
        created_at=record.created_at,
        next_order=record.next_order,
        next_fill=record.next_fill,
    )


def _from_rows(record: RowsRecord) -> ArrayBodiesChange:
    # A venue call staged its own account's rows, with exactly one account row.
    ((name, cash, created_at, next_order, next_fill),) = record.accounts
    return MapBodiesChange(
        account=name,
        orders={row[1]: msgspec.Raw(_encode(_order_json(row[4]))) for row in record.orders},
        ended=[row[1] for row in record.orders if not row[3]],
        fills=[msgspec.Raw(_encode(_fill_json(row[3]))) for row in record.fills],
        holdings=[row[1:] for row in record.positions],
        prices=[row[1:] for row in record.prices],
        cash=cash,
        created_at=created_at,
        next_order=next_order,
        next_fill=next_fill,
    )


def _change(payload: bytes) -> Change | ArrayBodiesChange:
    try:
        change: Change | ArrayBodiesChange = decode_change(payload)
        return change
    except msgspec.DecodeError:
        pass
    try:
        return _from_objects(_decode_objects(payload))
    except msgspec.DecodeError:
        return _from_rows(_decode_rows(payload))


def read(path: str) -> Iterator[Change | ArrayBodiesChange]:
    """Every record the log of ``path`` holds, oldest first, up to a record cut short."""
    for payload in segment_log.read(path):
        try:
            yield _change(payload)
        except (msgspec.DecodeError, ValueError):
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

    def append(self, record: bytes) -> None:
        """Write ``record`` to the open segment: ``OSError`` if it cannot."""
        self._log.append_payload(record)

    def rotate(self) -> Path:
        """Close the open segment and open the next; the closed one's path."""
        return self._log.rotate()

    def close(self) -> None:
        """Close the open segment (it stays on disk); safe to call twice."""
        self._log.close()
