"""A replaced order whose own submit answer a crash kept from the journal ends settled.

A ``kill -9`` may lose the brokers' news (the answer that gave the order its
venue id) while the replace's durable record survives. Restart reconciliation
finds the replacement at the venue and ends the old order ``replaced``: with
the venue's record of it (its id, a definitive outcome), not the journal's
``pending_new`` guess with its outcome still unknown.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.durability.harness import at_venue, config, journal_of, order, running
from tests.fakes import FakeVenue


async def test_a_replacement_found_at_start_settles_the_order_whose_answer_was_lost(
    tmp_path: Path,
) -> None:
    venue = FakeVenue()
    cfg = config(tmp_path)
    limit: dict[str, Any] = {"type": "limit", "limit_price": Decimal(90)}
    # The venue took c-1 and then its replace by c-2; the journal kept only what was
    # durable: c-1 and c-2 before they left (the news of c-1's answer and of its
    # pending replace were lost).
    at_venue(venue, order("c-1", "replaced", oid="1", replaced_by="c-2", **limit))
    at_venue(venue, order("c-2", "accepted", oid="2", replaces="c-1", **limit))
    async with running(cfg, venue) as svc:
        store = await svc.journal.get()
        await store.record(order("c-1", "pending_new", age_s=5, **limit), event="submit")
        await store.record(
            order("c-2", "pending_new", replaces="c-1", age_s=5, **limit), event="replace"
        )
    async with running(cfg, venue) as svc:
        replacement = await journal_of(svc, "c-2")
        assert (replacement.status, replacement.replaces) == ("accepted", "c-1")
        replaced = await journal_of(svc, "c-1")
        assert (replaced.status, replaced.replaced_by) == ("replaced", "c-2")
        assert (replaced.id, replaced.outcome) == ("1", "definitive")
        assert venue.submits == 0 and venue.replaces == 0  # nothing was sent again
