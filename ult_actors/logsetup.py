"""structlog configured once, by ``serve``: JSON lines for journald, console on a TTY.

The code logs through structlog as ever (bound loggers, contextvars). What runs
on the calling thread is only what must: the level filter (a call below the
level builds nothing), merging the contextvars, the level name, the time (taken
now, not when written) and the exception being handled. The record is then
handed to a ``LogWriter`` whose thread redacts secrets, renders exceptions
(no local variables: they would carry API keys) and renders the line: JSON via
msgspec, with the separators ``json.dumps`` uses. The console renderer on a
terminal runs inline: a person reads along, nobody measures it.

A line logged on every request (``info_line``) skips even structlog's layers:
the calling thread hands over the call's parts and the writer thread makes of
them the record structlog would have made, so the line is the same byte for
byte and keeps its place among the others (one queue).
"""

from __future__ import annotations

import contextvars
import logging
import math
import sys
import time
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any, TextIO

import msgspec
import structlog

from ult_actors.logwriter import DEFAULT_CAPACITY, LogWriter, Record, Render
from ult_actors.secrets import MASK, Secret

EventDict = MutableMapping[str, Any]

#: Keys whose values are always masked, at any depth of an event dict.
SECRET_KEYS = frozenset(
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
_PLAIN_TYPES = frozenset({str, int, float, bool, type(None)})


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


#: Top-level keys found not to be secret so far (bounded): a line's keys are nearly
#: always the same few names.
_NOT_SECRET: set[str] = set()
_KEYS_REMEMBERED = 4096


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask values under secret-looking keys and every ``Secret``, recursively."""
    if _NOT_SECRET.issuperset(event_dict) and _PLAIN_TYPES.issuperset(
        map(type, event_dict.values())
    ):
        return event_dict  # the usual line: keys seen before, plain values (looked at in C)
    for key, value in list(event_dict.items()):
        if key.lower() in SECRET_KEYS:
            event_dict[key] = MASK
            continue
        if len(_NOT_SECRET) < _KEYS_REMEMBERED:
            _NOT_SECRET.add(key)
        if type(value) not in _PLAIN_TYPES:
            event_dict[key] = _redact_value(value)
    return event_dict


def configure_logging(
    *,
    json: bool | None = None,
    level: str = "info",
    stream: TextIO | None = None,
    clock: Callable[[], float] = time.time,
    capacity: int = DEFAULT_CAPACITY,
) -> LogWriter:
    """Configure structlog for the process; ``json=None`` picks by whether it is a TTY.

    Returns the writer; ``close`` it on the way out to write what is queued. A
    writer configured before is closed first. ``clock`` stamps each record (epoch
    seconds); ``capacity`` bounds the records waiting to be written.
    """
    out = stream if stream is not None else sys.stderr
    use_json = (not out.isatty()) if json is None else json
    previous = structlog.get_config()["logger_factory"]
    if isinstance(previous, _HandOver):
        previous.writer.close()
    writer = LogWriter(
        out,
        _json_render() if use_json else _console_render(colors=out.isatty()),
        now=clock,
        capacity=capacity,
        threaded=use_json,
    )

    def stamp(_logger: Any, method: str, event_dict: EventDict) -> EventDict:
        event_dict["level"] = _LEVEL_OF_METHOD.get(method, method)
        event_dict["timestamp"] = clock()
        exc_info = event_dict.get("exc_info")
        # sys.exc_info() means nothing on the writer thread: take it here.
        if exc_info is not None and not isinstance(exc_info, tuple | BaseException):
            event_dict["exc_info"] = sys.exc_info() if exc_info else None
        return event_dict

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            stamp,
            _as_argument,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=_HandOver(writer, clock),
        cache_logger_on_first_use=False,
    )
    # httpx logs full URLs at INFO; keep it quiet.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return writer


#: The level a logger method logs at, where the names differ (as structlog's add_log_level).
_LEVEL_OF_METHOD = {"warn": "warning", "exception": "error"}


def _as_argument(
    _logger: Any, _method: str, event_dict: EventDict
) -> tuple[tuple[EventDict], dict[str, Any]]:
    # structlog calls the logger's method with (args, kwargs): the record itself, not a copy.
    return (event_dict,), {}


class _HandOver:
    """structlog's logger factory and the logger it makes: every level hands over the record."""

    def __init__(self, writer: LogWriter, clock: Callable[[], float]) -> None:
        self.writer = writer
        self.clock = clock
        hand_over = writer.hand_over
        self.debug = self.info = self.warning = self.warn = hand_over
        self.error = self.critical = self.exception = self.fatal = self.msg = hand_over

    def __call__(self, *_args: Any) -> _HandOver:
        return self


#: ``emit(event, fields)``: one info line with these fields.
InfoLine = Callable[[str, dict[str, Any]], None]


def info_line(log: Any) -> InfoLine:
    """``emit(event, fields)`` writing the line ``log.info(event, **fields)`` writes.

    For a bound logger made under ``configure_logging`` the call only hands the
    writer the line's parts (no structlog layers on this thread); below the
    logger's level it does nothing. Any other logger, or a chain changed since
    (``structlog.testing.capture_logs``), gets the call itself. ``fields`` is
    the writer thread's once emitted: pass a fresh dict and leave it alone.
    """
    handover = getattr(log, "_logger", None)
    processors = getattr(log, "_processors", None)
    if not isinstance(handover, _HandOver) or not isinstance(processors, list):
        return lambda event, fields: log.info(event, **fields)
    if not log.is_enabled_for(logging.INFO):
        return _nothing
    context: dict[str, Any] = log._context
    hand_over, clock, copy_context = (
        handover.writer.hand_over,
        handover.clock,
        contextvars.copy_context,
    )

    def emit(event: str, fields: dict[str, Any]) -> None:
        if processors[-1] is not _as_argument:  # the chain was swapped for another
            log.info(event, **fields)
            return
        hand_over((context, fields, event, "info", clock(), copy_context()))

    return emit


def _nothing(_event: str, _fields: dict[str, Any]) -> None:
    pass


def _finish(record: EventDict) -> EventDict:
    """What every renderer needs first: secrets masked, ISO UTC time, exception as text."""
    if "exc_info" in record:  # first: redaction would turn its tuple into a list
        record = structlog.processors.format_exc_info(None, "", record)
    redact_secrets(None, "", record)
    stamp = record.get("timestamp")
    if isinstance(stamp, float):
        record["timestamp"] = iso_utc(stamp)
    return record


_second_text: tuple[float, str] = (math.nan, "")


def iso_utc(stamp: float) -> str:
    """``stamp`` (epoch seconds) as ISO 8601 UTC with a ``Z``, to the microsecond (none
    shown when it is 0), exactly as ``datetime.fromtimestamp(stamp, UTC).isoformat()``
    rounds it; the date and time of day are formatted once per second."""
    global _second_text
    fraction, second = math.modf(stamp)
    micros = round(fraction * 1e6)  # half to even, as datetime rounds
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    elif micros < 0:
        second, micros = second - 1, micros + 1_000_000
    cached_second, text = _second_text
    if second != cached_second:
        text = datetime.fromtimestamp(second, UTC).isoformat()[:19]
        _second_text = (second, text)
    return f"{text}.{micros:06d}Z" if micros else f"{text}Z"


def _json_render() -> Render:
    # Unknown types as their repr, as structlog's JSONRenderer does.
    encode = msgspec.json.Encoder(enc_hook=repr).encode
    pretty = msgspec.json.format

    def render(record: Record) -> str:
        return pretty(encode(_finish(record)), indent=0).decode() + "\n"

    return render


def _console_render(*, colors: bool) -> Render:
    console = structlog.dev.ConsoleRenderer(colors=colors)

    def render(record: Record) -> str:
        return str(console(None, "", _finish(record))) + "\n"

    return render
