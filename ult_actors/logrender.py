"""Log records made into lines, on the log writer's thread: compiled (``compiled.py``).

A line's render runs holding the GIL, so the loop waits for every microsecond of
it that falls on an order's way: what runs here is kept to what a line needs and
compiled by mypyc. ``Lines`` masks secrets, writes the time as ISO 8601 UTC and
renders a record as one JSON object a line (msgspec, with the separators
``json.dumps`` uses); ``record_of`` makes of a hot line's parts (``Line``) the
record structlog's chain makes of the same call. A hot line of ``FixedFields`` with
plain values (every order's request line) is written straight as its text
(``Lines.plain``): no record, no encode, no re-spacing pass, the same text.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any, Final, cast

import msgspec
import structlog
from structlog.contextvars import STRUCTLOG_KEY_PREFIX

from ult_actors.secrets import MASK, Secret

#: One log record: the event dict as the loop's processors left it.
Record = dict[str, Any]
#: Keys whose values are always masked, at any depth of an event dict.
SECRET_KEYS: Final = frozenset(
    {
        "api_key",
        "api_secret",
        "secret",
        "token",
        "api_token",
        "password",
        "authorization",
        "cookie",
        "apca-api-key-id",
        "apca-api-secret-key",
        "key_id",
        "secret_key",
    }
)

#: Types that hold no secret-bearing parts: no need to look inside (exact types only).
_PLAIN_TYPES: Final = frozenset({str, int, float, bool, type(None)})
#: Top-level keys remembered as not secret, at most: a line's keys are nearly always
#: the same few names.
_KEYS_REMEMBERED: Final = 4096
_PREFIX_LENGTH: Final = len(STRUCTLOG_KEY_PREFIX)
#: Keys the record's own render gives a meaning or a place of their own: never a plain
#: line's context or fixed field.
_RESERVED_KEYS: Final = frozenset({"event", "level", "timestamp", "exc_info"})
#: A plain line's member texts remembered for one key, at most (then forgotten at once).
_VALUES_REMEMBERED: Final = 4096
#: Contexts (a connection's bound logger's each) remembered as written, at most.
_CONTEXTS_REMEMBERED: Final = 1024


def _plain_text(text: str) -> bool:
    """Whether msgspec writes ``text`` as it is between its quotes (it escapes only control
    characters, quotes and backslashes; every printable character is written raw)."""
    return text.isprintable() and '"' not in text and "\\" not in text


class FixedFields:
    """A hot line's fields that are always the same keys in the same order, their values
    read from a source object on the writer's thread (``Fields``' ``(fixed, source)``
    form): filled into a record for the generic render, or written straight as the
    line's text (``Lines.plain``). ``values(source)`` gives them in ``keys``' order;
    the keys must be plain text, not secret-looking and none of the record's own."""

    def __init__(self, keys: tuple[str, ...], values: Callable[[Any], tuple[Any, ...]]) -> None:
        for key in keys:
            if not _plain_text(key) or key.lower() in SECRET_KEYS or key in _RESERVED_KEYS:
                raise ValueError(f"not a plain line's key: {key!r}")
        self.keys = keys
        self.names = frozenset(keys)
        self.values = values
        #: Each field's text before its value, as ``json.dumps``' separators space it.
        self.heads = tuple(f', "{key}": ' for key in keys)

    def fill(self, record: Record, source: Any) -> None:
        """Write the fields of ``source``, in their order, into ``record``."""
        for key, value in zip(self.keys, self.values(source), strict=True):
            record[key] = value


#: A hot line's fields: a dict, or ``(fixed, source)``, read from the source on the
#: writer's thread (the loop then builds no dict of them: a request's line is read
#: from the request itself there).
Fields = dict[str, Any] | tuple[FixedFields, Any]
#: A hot line's parts, as handed over without structlog's layers: the bound logger's
#: context, the call's fields, event, level, time (epoch seconds, as the clock gave them:
#: ``Any``, so compiled code passes an ``int`` on as one, as structlog's chain does) and
#: the caller's contextvars (the copy is O(1); they are looked through on the writer thread).
Line = tuple[dict[str, Any], Fields, str, str, Any, contextvars.Context]


def record_of(line: Line) -> Record:
    """The record structlog's chain makes of the same call, keys in the same order:
    context, fields, event, contextvars not already there, level, time."""
    context, fields, event, level, stamp, variables = line
    record = context.copy()
    if isinstance(fields, dict):
        record.update(fields)
    else:
        fixed, source = fields
        fixed.fill(record, source)
    record["event"] = event
    for var in variables:
        name: str = var.name
        if name.startswith(STRUCTLOG_KEY_PREFIX):
            value = variables[var]
            if value is not Ellipsis:
                record.setdefault(name[_PREFIX_LENGTH:], value)
    record["level"] = level
    record["timestamp"] = stamp
    return record


def fields_dict(fields: Fields) -> dict[str, Any]:
    """``fields`` as a dict: a ``(fixed, source)`` pair filled into a new one."""
    if isinstance(fields, dict):
        return fields
    fixed, source = fields
    made: dict[str, Any] = {}
    fixed.fill(made, source)
    return made


def _redact_value(value: Any) -> Any:
    if type(value) in _PLAIN_TYPES:
        return value
    if isinstance(value, Secret):
        return MASK if value else ""
    if isinstance(value, dict):
        return {
            k: (MASK if str(k).lower() in SECRET_KEYS else _redact_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact_value(v) for v in value]
    return value


def _redact(record: MutableMapping[str, Any], not_secret: set[str] | None) -> None:
    """Mask, in place, values under secret-looking keys and every ``Secret``, recursively;
    keys found not secret are added to ``not_secret`` (a bounded memory), if given."""
    for key, value in list(record.items()):
        if key.lower() in SECRET_KEYS:
            record[key] = MASK
            continue
        if not_secret is not None and len(not_secret) < _KEYS_REMEMBERED:
            not_secret.add(key)
        if type(value) not in _PLAIN_TYPES:
            record[key] = _redact_value(value)


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask values under secret-looking keys and every ``Secret``, recursively (a structlog
    processor)."""
    _redact(event_dict, None)
    return event_dict


class UtcText:
    """Epoch seconds as ISO 8601 UTC text with a ``Z``, to the microsecond (none shown when
    it is 0), exactly as ``datetime.fromtimestamp(stamp, UTC).isoformat()`` rounds it; the
    date and time of day are formatted once per second and remembered."""

    def __init__(self) -> None:
        self._second = 0.5  # no whole second: nothing remembered yet
        self._text = ""

    def text(self, stamp: float) -> str:
        """``stamp`` as ISO 8601 UTC text."""
        second = float(int(stamp))  # towards zero, as math.modf; the difference is exact
        # Half to even, as datetime rounds: ``round`` is a call through Python's (~500
        # instructions); what is cut off by ``int`` is exact, so tested as it is.
        scaled = (stamp - second) * 1e6
        micros = int(scaled)
        cut = scaled - micros
        if cut > 0.5 or (cut == 0.5 and micros & 1):
            micros += 1
        elif cut < -0.5 or (cut == -0.5 and micros & 1):
            micros -= 1
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        elif micros < 0:
            second, micros = second - 1, micros + 1_000_000
        if second != self._second:
            self._text = datetime.fromtimestamp(second, UTC).isoformat()[:19]
            self._second = second
        if micros:
            return f"{self._text}.{str(1_000_000 + micros)[1:]}Z"
        return f"{self._text}Z"


class Lines:
    """Renders records: what every renderer needs first (``finish``), and JSON lines."""

    def __init__(self) -> None:
        self._utc = UtcText()
        # Keys seen not to be secret; a record of those with plain values is left alone.
        self._not_secret: set[str] = set()
        # Unknown types as their repr, as structlog's JSONRenderer does.
        self._encode: Callable[[Any], bytes] = msgspec.json.Encoder(enc_hook=repr).encode
        self._format: Callable[..., bytes] = msgspec.json.format
        # A plain line's context as written, by the context's id (a connection's lines
        # share one), and its other members as written by key and value: most repeat.
        self._openings: dict[int, _Opening] = {}
        self._members: dict[str, dict[Any, str]] = {}

    def finish(self, record: Record) -> Record:
        """Secrets masked, the time as ISO UTC text, an exception as text (``exc_info``)."""
        if "exc_info" in record:  # first: redaction would turn its tuple into a list
            record = dict(structlog.processors.format_exc_info(None, "", record))
        not_secret = self._not_secret
        for key, value in record.items():
            kind = type(value)  # _PLAIN_TYPES, by identity: cheaper than a set's lookup
            if key not in not_secret or not (
                kind is str or kind is int or value is None or kind is float or kind is bool
            ):
                # Not the usual line (keys seen before, plain values): look at each.
                _redact(record, not_secret)
                break
        stamp = record.get("timestamp")
        if isinstance(stamp, float):
            record["timestamp"] = self._utc.text(stamp)
        return record

    def json(self, record: Record) -> str:
        """``record`` finished, as one JSON object and a newline (``json.dumps``' separators)."""
        return self._format(self._encode(self.finish(record)), indent=0).decode() + "\n"

    def plain(self, line: Line) -> str | None:
        """The text ``json(record_of(line))`` gives, written straight from the line's parts,
        or ``None`` when the line is not the usual one: fields not ``FixedFields``, a
        structlog contextvar set, a context key of the fields' or the record's own or
        secret-looking, a value other than a plain ``str``, ``int``, ``bool`` or ``None``,
        a string msgspec would escape, or anything raising on the way."""
        try:
            return self._plain(line)
        except Exception:
            return None  # the record's way says what is wrong, as it did before

    def _plain(self, line: Line) -> str | None:
        context, fields, event, level, stamp, variables = line
        if isinstance(fields, dict):
            return None
        fixed, source = fields
        for var in variables:
            if var.name.startswith(STRUCTLOG_KEY_PREFIX) and variables[var] is not Ellipsis:
                return None  # a key the record would add after the event
        opening = self._opening(context, fixed)
        if opening is None:
            return None
        parts = [opening]
        values = fixed.values(source)
        if len(values) != len(fixed.heads):
            return None  # the record's fill says what is wrong
        for i, head in enumerate(fixed.heads):
            if not self._member(parts, head, values[i]):
                return None
        if not self._member(parts, ', "event": ', event):
            return None
        if not self._member(parts, ', "level": ', level):
            return None
        if isinstance(stamp, float):
            parts.append(', "timestamp": "')
            parts.append(self._utc.text(stamp))
            parts.append('"}\n')
        else:
            if not self._member(parts, ', "timestamp": ', stamp):
                return None
            parts.append("}\n")
        text = "".join(parts)
        return text if context else "{" + text[3:]  # no context: no ", " before the first

    def _opening(self, context: dict[str, Any], fixed: FixedFields) -> str | None:
        """``{`` and the context's members as written, or None if it cannot be a plain
        line's; remembered for the context by identity, each of its keys and values
        checked to be the very objects it was written of (immutable, as plain values are)."""
        known = self._openings.get(id(context))
        if known is not None and known.fixed is fixed and known.holds(context):
            return known.text
        parts = ["{"]
        names = fixed.names
        for key, value in context.items():
            if not _plain_text(key) or key.lower() in SECRET_KEYS or key in _RESERVED_KEYS:
                return None
            if key in names:
                return None  # the fields' value would take the context's place
            text = _json(value)
            if text is None:
                return None
            parts.append(f'"{key}": ' if len(parts) == 1 else f', "{key}": ')
            parts.append(text)
        opening = "".join(parts)
        if len(self._openings) >= _CONTEXTS_REMEMBERED:
            self._openings.clear()
        self._openings[id(context)] = _Opening(context, fixed, opening)
        return opening

    def _member(self, parts: list[str], head: str, value: Any) -> bool:
        """Append ``head`` and ``value``'s JSON text to ``parts``, as msgspec writes it;
        False, and nothing appended, if it is not a plain value."""
        kind = type(value)
        if kind is int:  # not remembered: a request's id is new every line
            parts.append(head)
            parts.append(str(value))
            return True
        if not (kind is str or value is None or kind is bool):
            return False
        members = self._members.get(head)
        if members is None:
            if len(self._members) >= _KEYS_REMEMBERED:
                self._members.clear()
            members = self._members[head] = {}
        member = members.get(value)
        if member is None:
            text = _json(value)
            if text is None:
                return False
            if len(members) >= _VALUES_REMEMBERED:
                members.clear()  # most values repeat: what is current comes back
            member = members[value] = head + text
        parts.append(member)
        return True


class _Opening:
    """A plain line's context as written (``Lines._opening``): the text, and the keys and
    values it was written of."""

    def __init__(self, context: dict[str, Any], fixed: FixedFields, text: str) -> None:
        self.context = context  # held: its id names no other dict while remembered
        self.fixed = fixed
        self.items = [item for pair in context.items() for item in pair]
        self.text = text

    def holds(self, context: dict[str, Any]) -> bool:
        """Whether ``context`` holds the very keys and values, in order, written here."""
        items = self.items
        if len(context) * 2 != len(items):
            return False
        i = 0
        for key, value in context.items():
            if key is not items[i] or value is not items[i + 1]:
                return False
            i += 2
        return True


def _json(value: Any) -> str | None:
    """A plain value's JSON text as msgspec writes it; None for any other value."""
    kind = type(value)
    if kind is str:
        text = cast(str, value)
        return f'"{text}"' if _plain_text(text) else None
    if kind is int:
        return str(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    return None
