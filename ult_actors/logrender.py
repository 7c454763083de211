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
#: Contexts (a connection's bound logger's each) remembered as written, at most.
_CONTEXTS_REMEMBERED: Final = 1024
#: A plain line's members remembered for one place, at most (then forgotten at once).
_VALUES_REMEMBERED: Final = 4096


#: ``str.isprintable`` called as a function: compiled code then skips a method look-up.
_isprintable: Final[Callable[[str], bool]] = str.isprintable


def _plain_text(text: str) -> bool:
    """Whether msgspec writes ``text`` as it is between its quotes (it escapes only control
    characters, quotes and backslashes; every printable character is written raw)."""
    return _isprintable(text) and '"' not in text and "\\" not in text


class FixedFields:
    """A hot line's fields that are always the same keys in the same order, their values
    read from a source object on the writer's thread (a ``Line``'s ``fields`` and
    ``source``): filled into a record for the generic render, or written straight as the
    line's text (``Lines.plain``). ``values(source)`` gives them in ``keys``' order;
    the keys must be plain text, not secret-looking and none of the record's own.
    ``fresh`` names the keys whose text values are new on every line (an id): a plain
    line writes them without remembering them."""

    def __init__(
        self,
        keys: tuple[str, ...],
        values: Callable[[Any], tuple[Any, ...]],
        *,
        fresh: tuple[str, ...] = (),
    ) -> None:
        for key in keys:
            if not _plain_text(key) or key.lower() in SECRET_KEYS or key in _RESERVED_KEYS:
                raise ValueError(f"not a plain line's key: {key!r}")
        for key in fresh:
            if key not in keys:
                raise ValueError(f"not one of the fields' keys: {key!r}")
        self.keys = keys
        self.names = frozenset(keys)
        self.fresh = frozenset(fresh)
        self._values = values

    def values(self, source: Any) -> tuple[Any, ...]:
        """The fields' values of ``source``, in ``keys``' order."""
        return self._values(source)

    def fill(self, record: Record, source: Any) -> None:
        """Write the fields of ``source``, in their order, into ``record``."""
        for key, value in zip(self.keys, self.values(source), strict=True):
            record[key] = value


#: A hot line's fields: a dict, or ``FixedFields`` read from the line's source on the
#: writer's thread (the loop then builds no dict of them: a request's line is read from
#: the request itself there).
Fields = dict[str, Any] | FixedFields
#: A hot line's parts, as handed over without structlog's layers, in one tuple: the bound
#: logger's context, the call's fields, their source (``FixedFields``; else ``None``),
#: event, level, time (epoch seconds, as the clock gave them: ``Any``, so compiled code
#: passes an ``int`` on as one, as structlog's chain does) and the caller's contextvars
#: (the copy is O(1); they are looked through on the writer thread).
Line = tuple[dict[str, Any], Fields, Any, str, str, Any, contextvars.Context]


def record_of(line: Line) -> Record:
    """The record structlog's chain makes of the same call, keys in the same order:
    context, fields, event, contextvars not already there, level, time."""
    context, fields, source, event, level, stamp, variables = line
    record = context.copy()
    if isinstance(fields, dict):
        record.update(fields)
    else:
        fields.fill(record, source)
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


def fields_dict(fields: Fields, source: Any = None) -> dict[str, Any]:
    """``fields`` as a dict: ``FixedFields`` filled from ``source`` into a new one."""
    if isinstance(fields, dict):
        return fields
    made: dict[str, Any] = {}
    fields.fill(made, source)
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


def _seconds_and_micros(stamp: float) -> tuple[float, int]:
    """``stamp``'s whole second and microseconds, rounded as ``datetime`` rounds them."""
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
    return second, micros


#: A time's milliseconds and then its microseconds' last three digits with the end of a
#: plain line after them, by their value: a line's time costs two look-ups, not a format.
_MILLIS: Final = tuple(f".{n:03}" for n in range(1000))
_MICROS_END: Final = tuple(f'{n:03}Z"}}\n' for n in range(1000))


class UtcText:
    """Epoch seconds as ISO 8601 UTC text with a ``Z``, to the microsecond (none shown when
    it is 0), exactly as ``datetime.fromtimestamp(stamp, UTC).isoformat()`` rounds it; the
    date and time of day are formatted once per second and remembered."""

    def __init__(self) -> None:
        self._second = 0.5  # no whole second: nothing remembered yet
        self._text = ""
        #: A plain line's time member up to the second's end: ``, "timestamp": "...:20``.
        self._member = ""

    def _date(self, second: float) -> str:
        if second != self._second:
            self._text = datetime.fromtimestamp(second, UTC).isoformat()[:19]
            self._member = f', "timestamp": "{self._text}'
            self._second = second
        return self._text

    def text(self, stamp: float) -> str:
        """``stamp`` as ISO 8601 UTC text."""
        second, micros = _seconds_and_micros(stamp)
        date = self._date(second)
        if micros:
            return f"{date}.{str(1_000_000 + micros)[1:]}Z"
        return f"{date}Z"

    def end_line(self, parts: list[str], stamp: float) -> None:
        """Append ``stamp``'s member and the end of a plain line (``"}`` and a newline)."""
        second, micros = _seconds_and_micros(stamp)
        if second != self._second:
            self._date(second)
        parts.append(self._member)
        if micros:
            parts.append(_MILLIS[micros // 1000])
            parts.append(_MICROS_END[micros % 1000])
        else:
            parts.append('Z"}\n')


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
        # share one), the last one used first.
        self._openings: dict[int, _Opening] = {}
        self._last_opening = _NO_OPENING
        # A plain line's members as written, by place, for each kind of fields.
        self._places: dict[FixedFields, _Places] = {}
        self._last_places = _NO_PLACES
        # Contextvars seen not to be structlog's (a name never changes), and the last
        # line's, none of them structlog's.
        self._foreign: set[contextvars.ContextVar[Any]] = set()
        self._variables: tuple[contextvars.ContextVar[Any], ...] = ()

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
        or ``None`` when the line is not the usual one (``plain_into``)."""
        parts: list[str] = []
        return "".join(parts) if self.plain_into(parts, line, 0) else None

    def plain_into(self, parts: list[str], line: Line, batch: int) -> bool:
        """Append the text ``json(record_of(line))`` gives to ``parts``, written straight
        from the line's parts (one join of a whole batch's makes its lines), or append
        nothing and return False when the line is not the usual one: fields not
        ``FixedFields``, a structlog contextvar set, a context key of the fields' or the
        record's own or secret-looking, a value other than a plain ``str``, ``int``,
        ``bool`` or ``None``, a string msgspec would escape, or anything raising on the way.

        ``batch`` (not 0) numbers the writer's batch the line is rendered in: every line
        of a batch was handed over before the batch's first is rendered, so a context
        checked for one of them is as it was after each was handed over, and is not
        checked again for the others (each batch its own number)."""
        start = len(parts)
        try:
            if self._plain(parts, line, batch):
                return True
        except Exception:
            pass  # the record's way says what is wrong, as it did before
        del parts[start:]
        return False

    def _plain(self, parts: list[str], line: Line, batch: int) -> bool:
        context, fields, source, event, level, stamp, variables = line
        if isinstance(fields, dict):
            return False
        known = self._variables  # the last line's: these again need no look through
        same = len(variables) == len(known) and all(var in variables for var in known)
        if not same and not self._no_structlog_variable(variables):
            return False  # a key the record would add after the event
        opening = self._opening(context, fields, batch)
        if opening is None:
            return False
        values = fields.values(source)
        count = len(fields.keys)
        if len(values) != count:
            return False  # the record's fill says what is wrong
        places = self._places_of(fields)
        start = len(parts)
        parts.append(opening)
        for i in range(count):
            if not places.write(parts, i, values[i]):
                return False
        if not places.write_event(parts, event, level):
            return False
        if isinstance(stamp, float):
            self._utc.end_line(parts, stamp)
        else:
            if not places.write(parts, count + 2, stamp):
                return False
            parts.append("}\n")
        if not context:  # no ", " before the first member
            parts[start + 1] = parts[start + 1][2:]
        return True

    def _no_structlog_variable(self, variables: contextvars.Context) -> bool:
        """Whether no structlog contextvar is set in ``variables``; if none of them is
        structlog's at all, they are remembered: a later line's that are exactly these
        (as many, each among them) need no look through."""
        foreign = self._foreign
        theirs = False
        for var in variables:
            if var in foreign:
                continue
            if var.name.startswith(STRUCTLOG_KEY_PREFIX):
                if variables[var] is not Ellipsis:
                    return False
                theirs = True  # unset now, but it may be set on a later line
            elif len(foreign) < _CONTEXTS_REMEMBERED:
                foreign.add(var)  # not structlog's: its name is not looked at again
        if not theirs:
            self._variables = tuple(variables)
        return True

    def _places_of(self, fields: FixedFields) -> _Places:
        """What plain lines of ``fields`` wrote at each place, the last kind used first."""
        places = self._last_places
        if places.fields is fields:
            return places
        found = self._places.get(fields)
        if found is None:
            if len(self._places) >= _CONTEXTS_REMEMBERED:
                self._places.clear()
            found = self._places[fields] = _Places(fields)
        self._last_places = found
        return found

    def _opening(self, context: dict[str, Any], fixed: FixedFields, batch: int) -> str | None:
        """``{`` and the context's members as written, or None if it cannot be a plain
        line's; remembered for the context by identity, each of its keys and values
        checked to be the very objects it was written of (immutable, as plain values are),
        once a ``batch``."""
        known = self._last_opening
        if known.context is not context:
            found = self._openings.get(id(context))
            if found is not None:
                known = self._last_opening = found
        if (
            known.context is context
            and known.fixed is fixed
            and ((batch and known.batch == batch) or known.holds(context))
        ):
            known.batch = batch
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
        known = self._openings[id(context)] = self._last_opening = _Opening(
            context, fixed, opening
        )
        known.batch = batch
        return opening


class _Known:
    """A plain line's member as written: the value and its text."""

    def __init__(self, value: object, text: str) -> None:
        self.value = value
        self.text = text


#: A place nothing was written at yet: its value is nobody's.
_UNKNOWN: Final = _Known(object(), "")


class _Places:
    """The members plain lines of one ``FixedFields`` wrote at each place (its fields',
    then the event's, the level's and the time's): a place's last member first (most
    lines repeat it: the very object, a literal or ``None``, or an equal string), then
    those it wrote before, by value. A fresh field's text is checked and written as is."""

    def __init__(self, fields: FixedFields | None) -> None:
        self.fields = fields
        keys = fields.keys if fields is not None else ()
        heads = tuple(f', "{key}": ' for key in (*keys, "event", "level", "timestamp"))
        self.heads = heads
        self.quoted = tuple(f'{head}"' for head in heads)
        fresh = fields.fresh if fields is not None else frozenset()
        self.fresh = tuple(key in fresh for key in (*keys, "event", "level", "timestamp"))
        self.last: list[_Known] = [_UNKNOWN] * len(heads)
        self.known: list[dict[object, _Known]] = [{} for _ in heads]
        #: The event's and the level's members as last written, by the pair of values.
        self.event = _UNKNOWN_EVENT

    def write_event(self, parts: list[str], event: str, level: str) -> bool:
        """Append the event's and the level's members to ``parts`` as one text (every line
        of a kind has the same two literals); False if either is not a plain value."""
        known = self.event
        if event is known.event and level is known.level:
            parts.append(known.text)
            return True
        place = len(self.heads) - 3
        written: list[str] = []
        if not (self.write(written, place, event) and self.write(written, place + 1, level)):
            return False
        text = "".join(written)
        self.event = _Event(event, level, text)
        parts.append(text)
        return True

    def write(self, parts: list[str], place: int, value: Any) -> bool:
        """Append the member of ``value`` at ``place`` to ``parts``, as msgspec writes it;
        False, and nothing appended, if it is not a plain value."""
        kind = type(value)
        if kind is int:  # not remembered: a request's id is new every line
            parts.append(self.heads[place])
            parts.append(str(cast(int, value)))  # typed: mypyc's own int to text
            return True
        if not (kind is str or value is None or kind is bool):
            return False  # and so no float, equal to a bool, reaches the look-up below
        if kind is str and self.fresh[place]:
            fresh = cast(str, value)
            if not _plain_text(fresh):
                return False
            parts.append(self.quoted[place])
            parts.append(fresh)
            parts.append('"')
            return True
        last = self.last[place]
        if value is last.value or (
            kind is str and type(last.value) is str and cast(str, value) == last.value
        ):
            parts.append(last.text)
            return True
        known = self.known[place]
        member = known.get(value)
        if member is None:
            text = _json(value)
            if text is None:
                return False
            if len(known) >= _VALUES_REMEMBERED:
                known.clear()  # most values repeat: what is current comes back
            member = known[value] = _Known(value, self.heads[place] + text)
        self.last[place] = member
        parts.append(member.text)
        return True


class _Event:
    """A plain line's event and level as written: the two values and their members' text."""

    def __init__(self, event: object, level: object, text: str) -> None:
        self.event = event
        self.level = level
        self.text = text


#: No event written yet: its values are nobody's.
_UNKNOWN_EVENT: Final = _Event(object(), object(), "")
#: No fields' places yet.
_NO_PLACES: Final = _Places(None)


class _Opening:
    """A plain line's context as written (``Lines._opening``): the text, and the keys and
    values it was written of."""

    def __init__(self, context: dict[str, Any], fixed: FixedFields | None, text: str) -> None:
        self.context = context  # held: its id names no other dict while remembered
        self.fixed = fixed
        self.items = [item for pair in context.items() for item in pair]
        self.text = text
        #: The writer's batch it was last checked in (``Lines.plain``); 0: none.
        self.batch = 0

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


#: No context remembered yet (its dict is no line's).
_NO_OPENING: Final = _Opening({}, None, "")


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
