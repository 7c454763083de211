"""Fixtures of the durability tests: every test starts with a healthy fake broker."""

from __future__ import annotations

import pytest

from tests.durability.harness import FlakyConnector


@pytest.fixture(autouse=True)
def _healthy_broker() -> None:
    FlakyConnector.fail_lookups = False
    FlakyConnector.fail_positions = False
    FlakyConnector.mute_stream = False
