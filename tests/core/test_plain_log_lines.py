"""A hot line of fixed fields written straight as its text (``Lines.plain``): the very bytes
its record's render writes (``Lines.json``), whatever its values, or none at all."""

from __future__ import annotations

import contextvars
import io
import threading
from decimal import Decimal
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from ult_actors.ipc.dispatch import _SUBMIT_FIELDS
from ult_actors.logrender import FixedFields, Line, Lines, record_of
from ult_actors.logwriter import LogWriter
from ult_actors.messages import OrderRequest, Submit
from ult_actors.secrets import Secret

#: Text msgspec writes as it is: printable, non-ASCII included.
_PLAIN_TEXT = st.one_of(
    st.sampled_from(["AAPL", "buy", "market", "paper", "c-1", "", " ", "é", "日本", "Submit"]),
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=10).filter(
        lambda text: text.isprintable() and '"' not in text and "\\" not in text
    ),
)
#: Any text: quotes, backslashes, control characters, lone surrogates, separators.
_ANY_TEXT = st.one_of(
    st.text(st.sampled_from('"\\\n\t\x00\x1f\x7f\x80\u2028\ud800a-é'), min_size=1, max_size=6),
    st.text(st.characters(blacklist_categories=()), min_size=1, max_size=8),
)
_PLAIN_VALUE = st.one_of(
    _PLAIN_TEXT,
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.none(),
    st.booleans(),
)
#: A value that may be anything a caller could bind or a test could build.
_ANY_VALUE = st.one_of(
    _ANY_TEXT,
    _PLAIN_VALUE,
    st.floats(),
    st.decimals(),
    st.lists(_PLAIN_VALUE, max_size=2),
    st.dictionaries(st.sampled_from(["token", "a"]), _PLAIN_VALUE, max_size=2),
    st.builds(Secret, st.text(max_size=3)),
)
_ANY_KEY = st.one_of(
    # the fields' own keys, the record's own, secret-looking ones, in any case
    st.sampled_from(["kind", "qty", "broker", "event", "level", "timestamp", "exc_info"]),
    st.sampled_from(["token", "Authorization", "API_KEY", "secret_key"]),
    _ANY_TEXT,
)
_CONTEXT = st.dictionaries(
    st.one_of(st.sampled_from(["actor", "peer_uid", "peer_pid", "conn"]), _PLAIN_TEXT),
    _PLAIN_VALUE,
    max_size=4,
)
#: A usual submit line's parts, then a few of them made anything at all.
_PARTS = st.fixed_dictionaries(
    {
        "client_order_id": st.one_of(_PLAIN_TEXT, st.none()),
        "symbol": _PLAIN_TEXT,
        "side": st.sampled_from(["buy", "sell"]),
        "qty": st.decimals(allow_nan=False, allow_infinity=False),
        "type": st.sampled_from(["market", "limit"]),
        "broker": st.one_of(_PLAIN_TEXT, st.none()),
        "id": st.integers(min_value=0, max_value=2**64),
        "event": st.just("request"),
        "stamp": st.one_of(st.floats(min_value=0, max_value=4e9), st.integers(0, 4_000_000_000)),
    }
)
_ODD_PARTS = st.lists(
    st.tuples(
        st.sampled_from(["client_order_id", "symbol", "side", "qty", "type", "broker", "id"]),
        _ANY_VALUE,
    )
    | st.tuples(st.just("event"), _ANY_TEXT)
    | st.tuples(st.just("stamp"), st.one_of(_ANY_VALUE, st.floats())),
    max_size=2,
)

#: One for every example, as the writer has one for every line: what it remembers of one
#: example (keys, quoted values, the second) must not show in another's.
_LINES = Lines()


def _variables(bound: dict[str, Any]) -> contextvars.Context:
    """The contextvars a caller with ``bound`` bound through structlog hands over."""

    def copy() -> contextvars.Context:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**bound)
        return contextvars.copy_context()

    return contextvars.Context().run(copy)


def _record_text(line: Line) -> str | None:
    """The line as its record's render writes it; None if that render raises (the writer
    then writes the record's event and the error: ``LogWriter._render_one``)."""
    try:
        return _LINES.json(record_of(line))
    except Exception:
        return None


@settings(max_examples=3000, deadline=None)
@given(
    context=_CONTEXT,
    odd_context=st.dictionaries(_ANY_KEY, _ANY_VALUE, max_size=1),
    parts=_PARTS,
    odd_parts=_ODD_PARTS,
    bound=st.dictionaries(st.sampled_from(["session", "kind", "actor"]), _ANY_VALUE, max_size=1),
)
def test_a_line_written_straight_is_its_records_line_byte_for_byte(
    context: dict[str, Any],
    odd_context: dict[str, Any],
    parts: dict[str, Any],
    odd_parts: list[tuple[str, Any]],
    bound: dict[str, Any],
) -> None:
    parts.update(odd_parts)
    # Built without validation, as a test may: values a decoded request never holds too.
    order = OrderRequest(
        symbol=parts["symbol"], side=parts["side"], qty=parts["qty"], type=parts["type"],
        broker=parts["broker"], client_order_id=parts["client_order_id"],
    )  # fmt: skip
    line: Line = (
        {**context, **odd_context},
        _SUBMIT_FIELDS,
        Submit(id=parts["id"], order=order),
        parts["event"],
        "info",
        parts["stamp"],
        _variables(bound),
    )
    plain = _LINES.plain(line)
    if plain is not None:
        assert plain == _record_text(line)
    # Into a batch's parts, as the writer renders: the same text after what was there, or
    # nothing added at all.
    batch = ["earlier line\n"]
    if _LINES.plain_into(batch, line, 7):
        assert "".join(batch) == f"earlier line\n{plain}"
    else:
        assert batch == ["earlier line\n"]
        assert plain is None


def _usual(**context: Any) -> Line:
    return _usual_order(context or {"actor": "ipc", "peer_uid": 1000, "peer_pid": 42})


def _usual_order(context: dict[str, Any], **terms: Any) -> Line:
    """A usual submit's line in ``context``, with these of its order's terms changed."""
    order = OrderRequest(
        **{
            "symbol": "AAPL",
            "side": "buy",
            "qty": Decimal("2.50"),
            "broker": "paper",
            "client_order_id": "c-1",
            **terms,
        }
    )
    return (
        context,
        _SUBMIT_FIELDS,
        Submit(id=7, order=order),
        "request",
        "info",
        1_700_000_000.25,
        contextvars.copy_context(),
    )


def test_the_usual_submit_line_is_written_straight() -> None:
    line = _usual()
    assert Lines().plain(line) == (
        '{"actor": "ipc", "peer_uid": 1000, "peer_pid": 42, "kind": "Submit", "request_id": 7,'
        ' "client_order_id": "c-1", "symbol": "AAPL", "side": "buy", "qty": "2.50",'
        ' "type": "market", "broker": "paper", "event": "request", "level": "info",'
        ' "timestamp": "2023-11-14T22:13:20.250000Z"}\n'
    )
    assert Lines().plain(line) == Lines().json(record_of(line))


@pytest.mark.parametrize(
    ("context", "why"),
    [
        ({"token": "tok-1"}, "a secret-looking key: masked by the record's render"),
        ({"actor": Secret("s")}, "a Secret: masked by the record's render"),
        ({"qty": "9"}, "a key of the fields': the record keeps the context's place"),
        ({"exc_info": True}, "the record's render writes the exception"),
        ({"actor": 1.5}, "a float: msgspec's digits, not Python's"),
        ({"actor": 'a "quoted" name'}, "a string msgspec escapes"),
    ],
)
def test_a_line_that_is_not_the_usual_one_is_left_to_its_records_render(
    context: dict[str, Any], why: str
) -> None:
    assert Lines().plain(_usual(**context)) is None, why


def test_a_line_with_a_structlog_contextvar_is_left_to_its_records_render() -> None:
    line = _usual()
    variables = _variables({"session": "s-1"})
    assert Lines().plain((*line[:6], variables)) is None
    assert Lines().plain((*line[:6], _variables({}))) is not None


@pytest.mark.parametrize("key", ["event", "timestamp", "exc_info", "Token", 'a"b', "tab\t"])
def test_fixed_fields_refuse_a_key_a_plain_line_cannot_carry(key: str) -> None:
    with pytest.raises(ValueError, match="not a plain line's key"):
        FixedFields(("kind", key), lambda source: ("k", source))


def test_a_context_changed_in_place_is_written_as_it_now_is() -> None:
    # A context's text is remembered by the dict's identity: a change to the dict itself
    # (no bound logger makes one, but nothing forbids it) must still show.
    lines = Lines()
    line = _usual()
    context = line[0]
    first = lines.plain(line)
    assert first is not None and '"peer_pid": 42' in first

    def changed() -> None:
        context["peer_pid"] = 43

    def added() -> None:
        context["conn"] = 7

    def moved() -> None:  # the same keys and values, in another order
        context["actor"] = context.pop("actor")

    def renamed() -> None:  # the same values in the same places, a key another
        items = list(context.items())
        context.clear()
        context.update(("who" if key == "actor" else key, value) for key, value in items)

    texts = [first]
    for change in (changed, added, moved, renamed):
        change()
        text = lines.plain(line)
        assert text == lines.json(record_of(line)) == Lines().plain(line)
        texts.append(text)
    assert len(set(texts)) == 5


def test_a_context_written_for_one_line_is_checked_again_for_anothers_fields() -> None:
    lines = Lines()
    other = FixedFields(("other",), lambda source: (source,))
    line = _usual(actor="ipc", side="buy")
    assert lines.plain((line[0], other, 1, *line[3:])) is not None
    assert lines.plain(line) is None  # the submit's own "side" would take the context's place


def test_fresh_fields_must_be_among_the_keys() -> None:
    with pytest.raises(ValueError, match="not one of the fields' keys"):
        FixedFields(("kind", "qty"), lambda source: ("k", source), fresh=("client_order_id",))


def test_a_value_at_a_place_is_written_as_itself_not_as_an_equal_one_written_before() -> None:
    # A place remembers the members it wrote by value: 1.0 == True, 0.0 == False, but
    # their texts differ (and a float is not written straight at all).
    lines = Lines()
    context = {"actor": "ipc"}
    for broker in (True, 1.0, 1, "1", False, 0.0, 0, None, "paper", True):
        line = _usual_order(context, broker=broker)
        text = lines.plain(line)
        assert text is None or text == Lines().json(record_of(line)), broker
    assert lines.plain(_usual_order(context, broker=True)) is not None


class _Writes(io.StringIO):
    """A stream that counts its writes and signals each."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.wrote = threading.Semaphore(0)

    def write(self, text: str) -> int:
        written = super().write(text)
        self.writes += 1
        self.wrote.release()
        return written


def test_a_batch_is_its_lines_record_texts_one_after_another_whatever_fails_on_the_way() -> None:
    handed_over = threading.Event()
    out = _Writes()
    # The writer's first window ends once every line is handed over: one batch of them.
    writer = LogWriter(out, Lines(), now=lambda: 0.0, sleep=lambda _s: handed_over.wait())
    one = {"actor": "ipc", "peer_uid": 1000, "peer_pid": 42}
    other = {"actor": "ipc", "peer_uid": 1000, "peer_pid": 43}
    cancel: Line = (
        one, {"kind": "Cancel", "request_id": 3}, None, "request", "info", 1.5,
        contextvars.copy_context(),
    )  # fmt: skip
    lines = [
        _usual_order(one),
        _usual_order(one, client_order_id='c-"2"'),  # refused at a fresh field, half written
        _usual_order(other, symbol="MSFT", qty=Decimal(3)),
        cancel,  # a dict of fields: the record's way
        _usual_order(one, broker=1.5),  # refused at the last field
        _usual_order(one, client_order_id="c-3", symbol="MSFT"),
        _usual_order({}, client_order_id="c-4"),  # no context
    ]
    for line in lines:
        writer.hand_over(line)
    handed_over.set()
    assert out.wrote.acquire(timeout=10)
    assert writer.close()
    assert out.writes == 1
    assert out.getvalue() == "".join(Lines().json(record_of(line)) for line in lines)


def test_a_context_changed_in_place_between_batches_is_written_as_it_now_is() -> None:
    # A context is checked once a batch: the next batch checks it again.
    out = _Writes()
    writer = LogWriter(out, Lines(), now=lambda: 0.0)
    context: dict[str, Any] = {"actor": "ipc", "peer_pid": 42}
    writer.hand_over(_usual_order(context))
    assert out.wrote.acquire(timeout=10)
    context["peer_pid"] = 43
    writer.hand_over(_usual_order(context))
    assert out.wrote.acquire(timeout=10)
    assert writer.close()
    first, second = out.getvalue().splitlines()
    assert '"peer_pid": 42' in first
    assert '"peer_pid": 43' in second


def test_a_structlog_contextvar_unset_on_one_line_and_set_on_the_next_shows_on_the_next() -> None:
    # The last line's contextvars are remembered when none is structlog's: one that is,
    # even unset (``unbind_contextvars``), may be set on the next line with the same vars.
    def unset() -> contextvars.Context:
        structlog.contextvars.bind_contextvars(session="s-0")
        structlog.contextvars.unbind_contextvars("session")
        return contextvars.copy_context()

    lines = Lines()
    line = _usual()
    first: Line = (*line[:6], contextvars.Context().run(unset))
    second: Line = (*line[:6], _variables({"session": "s-1"}))
    assert lines.plain(first) == Lines().json(record_of(first))
    text = lines.plain(second)
    assert text is None or text == Lines().json(record_of(second))
    assert '"session": "s-1"' in Lines().json(record_of(second))
