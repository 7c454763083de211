"""``conforms``: a protocol check worked out once per connector class, asked anew of wrappers."""

from __future__ import annotations

from typing import Any

from tests.fakes import FakeConnector, FakeVenue
from ult_actors.brokers.base import (
    AnswersAtOnce,
    AnswersInProcess,
    AnswersWithNews,
    SupportsQuotes,
    SupportsReplace,
    SupportsResync,
    SupportsStreamState,
    SupportsValidatedOrders,
    conforms,
)
from ult_actors.brokers.paper.connector import PaperConnector
from ult_actors.brokers.paper.settings import PaperSettings

PROTOCOLS = (
    AnswersAtOnce,
    AnswersInProcess,
    AnswersWithNews,
    SupportsQuotes,
    SupportsReplace,
    SupportsResync,
    SupportsStreamState,
    SupportsValidatedOrders,
)


class _NoReplace(FakeConnector):
    replace = None  # type: ignore[assignment]  # ``None`` marks a protocol method absent


class _Wrapper:
    """Finds its attributes on what it wraps, as ``FencedConnector`` does."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_conforms_answers_as_isinstance_for_every_connector_class() -> None:
    connectors: list[object] = [
        PaperConnector("p", PaperSettings()),
        FakeConnector("f", FakeVenue()),
        _NoReplace("n", FakeVenue()),
    ]
    for connector in connectors * 2:  # the second round from what the first learnt
        for protocol in PROTOCOLS:
            assert conforms(connector, protocol) == isinstance(connector, protocol), (
                type(connector).__name__,
                protocol.__name__,
            )


def test_a_wrapper_is_asked_each_time_what_its_inner_connector_offers() -> None:
    with_replace = _Wrapper(FakeConnector("f", FakeVenue()))
    without = _Wrapper(_NoReplace("n", FakeVenue()))
    assert conforms(with_replace, SupportsReplace)
    assert not conforms(without, SupportsReplace)  # same class, another answer
