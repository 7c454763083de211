"""structlog configured once, by ``serve``: JSON lines for journald, console on a TTY.

The code logs through structlog as ever (bound loggers, contextvars). What runs
on the calling thread is only what must: the level filter (a call below the
level builds nothing), merging the contextvars, the level name, the time (taken
now, not when written) and the exception being handled. The record is then
handed to a ``LogWriter`` whose thread redacts secrets, renders exceptions
(no local variables: they would carry API keys) and renders the line: JSON via
msgspec, with the separators ``json.dumps`` uses. The console renderer on a
terminal runs inline: a person reads along, nobody measures it.

A line logged on every request (``info_lines``) skips even structlog's layers:
the calling thread hands over the call's parts and the writer thread makes of
them the record structlog would have made, so the line is the same byte for
byte and keeps its place among the others (one queue).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog

from ult_actors.logrender import Fields, Lines, Record, fields_dict
from ult_actors.logrender import redact_secrets as redact_secrets
from ult_actors.logwriter import DEFAULT_CAPACITY, InfoLines, LogWriter, Render

EventDict = MutableMapping[str, Any]


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
        Lines() if use_json else _console_render(colors=out.isatty()),
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


#: ``emit(event, fields)``: one info line with these fields (a dict: ``logrender.Fields``).
InfoLine = Callable[[str, Fields], None]


def info_line(log: Any) -> InfoLine:
    """``emit(event, fields)`` writing the line ``log.info(event, **fields)`` writes
    (``info_lines``' ``emit``)."""
    return info_lines(log).emit


def info_lines(log: Any) -> InfoLines:
    """``emit(event, fields, source)`` writing the line ``log.info(event, **fields)`` writes.

    For a bound logger made under ``configure_logging`` the call only hands the
    writer the line's parts (no structlog layers on this thread); below the
    logger's level it does nothing. Any other logger, or a chain changed since
    (``structlog.testing.capture_logs``), gets the call itself. ``fields`` is
    the writer thread's once emitted: pass a fresh dict and leave it alone (or
    ``FixedFields`` and a ``source`` nobody changes any more).
    """
    handover = getattr(log, "_logger", None)
    processors = getattr(log, "_processors", None)

    def as_call(event: str, fields: Fields, source: Any) -> None:
        log.info(event, **fields_dict(fields, source))

    if not isinstance(handover, _HandOver) or not isinstance(processors, list):
        return InfoLines(None, {}, time.time, [], None, as_call)
    if not log.is_enabled_for(logging.INFO):
        return InfoLines(None, {}, time.time, [], None, _nothing)
    return InfoLines(
        handover.writer,
        log._context,
        handover.clock,
        processors,
        _as_argument,
        as_call,
    )


def _nothing(_event: str, _fields: Fields, _source: Any) -> None:
    pass


def _console_render(*, colors: bool) -> Render:
    console = structlog.dev.ConsoleRenderer(colors=colors)
    finish = Lines().finish

    def render(record: Record) -> str:
        return str(console(None, "", finish(record))) + "\n"

    return render
