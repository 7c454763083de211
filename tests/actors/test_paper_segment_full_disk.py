"""The disk fills under the paper change log's segments: the room made takes orders, then
the answers must not lie.

A segment is made at its full size, so the order after the disk filled
still fits in the open one; the next segment cannot be made whole, and the
order that would grow it fails (``ENOSPC``): the broker actor goes down with
the submit in flight and cannot come back while the disk is full. Once space
is back, the service's reconciliation finishes the journaled order, placed once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.actors.test_paper_restart import journaled, paper_config, running, submit, venue_book
from tests.full_disk import FullLogDisk
from ult_actors.brokers.paper import changelog
from ult_actors.errors import BrokerUnavailable


async def test_a_full_disk_takes_the_order_that_fits_then_answers_outcome_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = FullLogDisk(monkeypatch, "paper.db.log.")
    monkeypatch.setattr(changelog, "SEGMENT_BYTES", 1)  # a new segment after every append
    async with running(paper_config(tmp_path)) as svc:
        assert (await submit(svc, "q-0")).status == "filled"
        disk.full = True
        assert (await submit(svc, "q-1")).status == "filled"  # in the room made before
        with pytest.raises(BrokerUnavailable) as refused:
            await submit(svc, "q-2")
        assert "outcome is unknown" in refused.value.message
        disk.full = False
        with trio.fail_after(20):
            while (found := await journaled(svc, "q-2")).status != "filled":
                await trio.sleep(0.05)
    orders, position = await venue_book(tmp_path / "paper.db")
    assert {coid: o.status for coid, o in orders.items()} == dict.fromkeys(
        ("q-0", "q-1", "q-2"), "filled"
    )
    assert found.id == orders["q-2"].id
    assert position == 3 * orders["q-0"].qty  # each placed once, never twice
