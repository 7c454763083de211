"""What one fold writes into the journal's tables, from the records it takes in any order:
each order's history keeps every record made before it left and its latest state per
fold, and ``orders`` gets each order's last state."""

from __future__ import annotations

import random

from tests.journal.harness import order
from ult_actors.journal.changelog import log_row
from ult_actors.journal.sqlite import tables


def test_a_folds_rows_cut_each_orders_run_of_updates_to_its_last_in_sequence_order() -> None:
    records = [
        log_row(1, "submit", 10, order("c-1")),
        log_row(2, "submit", 11, order("c-2")),
        log_row(3, "update", 12, order("c-1", "accepted", oid="b-1")),
        log_row(4, "update", 13, order("c-2", "accepted", oid="b-2")),
        log_row(5, "update", 14, order("c-1", "filled", oid="b-1")),
        log_row(6, "resend", 15, order("c-2", "accepted", oid="b-2")),
        log_row(7, "update", 16, order("c-2", "filled", oid="b-2")),
    ]
    random.Random(7).shuffle(records)  # the fold takes them as they came, not by number

    events, latest = tables(records)

    # c-1's two updates are one row, the later one, where the earlier was; c-2's update
    # before its resend stays, as the resend ends the run.
    assert [(seq, coid, event) for seq, coid, event, _, _ in events] == [
        (1, "c-1", "submit"),
        (2, "c-2", "submit"),
        (5, "c-1", "update"),
        (4, "c-2", "update"),
        (6, "c-2", "resend"),
        (7, "c-2", "update"),
    ]
    assert [(coid, oid, status, seq) for coid, oid, _, status, _, seq in latest] == [
        ("c-1", "b-1", "filled", 5),
        ("c-2", "b-2", "filled", 7),
    ]
    # An order's body is read from its event of the same number (``ORDER_BODY_SQL``).
    assert {seq for *_, seq in latest} <= {seq for seq, *_ in events}
