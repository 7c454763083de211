"""Smoke test of ``python -m bench.journal_calls``: what it runs under valgrind journals every order."""

from __future__ import annotations

import pytest

from bench import journal_calls


@pytest.mark.parametrize("kind", journal_calls.STORES)
@pytest.mark.parametrize("mode", ["seq", "window"])
def test_every_driven_order_is_answered_filled_by_the_journal(kind: str, mode: str) -> None:
    assert journal_calls.drive(kind, mode, 300) == 300
