"""The paper account's disk fills while an order is being placed: its answer must not lie.

The venue cannot log the order (``ENOSPC``), the broker actor goes down with
the submit in flight and cannot come back while the disk is full. The
client's answer must say the order's outcome is unknown: once space is
back, the service's restart reconciliation finishes the journaled order.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.actors.test_paper_restart import journaled, paper_config, running, submit, venue_book
from ult_actors.errors import BrokerUnavailable


class FullDisk:
    """A disk with no room to make the paper change log's segments whole, so their records
    go by ``os.write`` (``fallocate``); ``write`` fails with ``ENOSPC`` there while ``full``."""

    def __init__(self) -> None:
        self.full = False
        self._write = os.write
        self._fallocate = os.posix_fallocate

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        if "paper.db.log." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._fallocate(fd, offset, length)

    def __call__(self, fd: int, data: Any) -> int:
        # The paper account's log only: the journal has a change log of its own.
        if self.full and "paper.db.log." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._write(fd, data)


async def test_an_order_lost_to_a_full_disk_is_answered_outcome_unknown_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FullDisk()
    monkeypatch.setattr(os, "posix_fallocate", disk.fallocate)
    monkeypatch.setattr(os, "write", disk)
    async with running(paper_config(tmp_path)) as svc:
        assert (await submit(svc, "q-0")).status == "filled"
        disk.full = True
        with pytest.raises(BrokerUnavailable) as refused:
            await submit(svc, "q-1")
        # Not "it was not placed": a client retrying under a new id would buy twice.
        assert "outcome is unknown" in refused.value.message
        assert "check: ult order q-1" in refused.value.message
        disk.full = False
        with trio.fail_after(20):
            while (found := await journaled(svc, "q-1")).status != "filled":
                await trio.sleep(0.05)
    orders, position = await venue_book(tmp_path / "paper.db")
    assert {coid: o.status for coid, o in orders.items()} == {"q-0": "filled", "q-1": "filled"}
    assert found.id == orders["q-1"].id
    assert position == 2 * orders["q-0"].qty  # placed once, never twice
