"""Ranges of configuration values, declared once as msgspec annotations.

The service's sections (``config.py``) and every broker kind's settings use
these types, so decoding the TOML file refuses a value out of range with an
error naming its key (``ult config check`` and ``ult serve`` alike), and
nothing has to check the same range by hand again. msgspec cannot constrain
a ``Decimal``; ``check_decimal_setting`` covers those.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated

import msgspec

_DAY_S = 86_400.0
_HOUR_MS = 3_600_000

#: A duration in seconds: above 0 (0 or less would spin or never wait), at most a day.
Seconds = Annotated[float, msgspec.Meta(gt=0.0, le=_DAY_S)]
#: A duration in seconds where 0 means "none" (e.g. a stopped clock), at most a day.
SecondsOrZero = Annotated[float, msgspec.Meta(ge=0.0, le=_DAY_S)]
#: A delay in milliseconds, 0 to an hour.
Millis = Annotated[int, msgspec.Meta(ge=0, le=_HOUR_MS)]
#: How many times something may happen (restarts, retries): 0 to 1000.
Times = Annotated[int, msgspec.Meta(ge=0, le=1000)]
#: How long a commit may wait for its background fsync, in milliseconds: 1 ms to 10 s
#: (a machine crash loses at most this much of the journal).
SyncIntervalMs = Annotated[int, msgspec.Meta(ge=1, le=10_000)]
#: A size or count that must be at least one (queues, connections, limits).
Count = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
#: A growth factor of a backoff: at least 1 (below it delays shrink), at most 100.
Multiplier = Annotated[float, msgspec.Meta(ge=1.0, le=100.0)]
#: A rate per second: above 0, at most a billion (a benchmark sets 10 million: checked, never hit).
PerSecond = Annotated[float, msgspec.Meta(gt=0.0, le=1e9)]
#: A TCP port.
Port = Annotated[int, msgspec.Meta(ge=1, le=65_535)]
#: A user or group id.
PosixId = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 2)]
#: Largest IPC frame: at least 1 KiB (a submit must fit), at most 64 MiB.
FrameBytes = Annotated[int, msgspec.Meta(ge=1024, le=64 << 20)]
#: A name or pattern that must not be empty.
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]

#: Decimal settings (money, quantities, basis points) stay below this: far beyond any
#: real limit, and keeps arithmetic with them inside the default decimal context.
MAX_DECIMAL_SETTING = Decimal(10) ** 15


def check_decimal_setting(value: Decimal, *, allow_zero: bool) -> str | None:
    """What is wrong with a decimal setting (``None`` if nothing): it must be finite,
    above 0 (or at least 0 with ``allow_zero``) and below ``MAX_DECIMAL_SETTING``."""
    if not value.is_finite() or value.adjusted() >= 15:
        return f"must be a number below {MAX_DECIMAL_SETTING:,}, got {value}"
    if value < 0 or (value == 0 and not allow_zero):
        return f"must be {'>= 0' if allow_zero else '> 0'}, got {value}"
    return None


_RANGE = re.compile(r"^Expected `\w+` ([<>]=? \S+)$")


def key_error(exc: msgspec.ValidationError, prefix: str = "") -> str:
    """msgspec's "Expected `int` >= 0 - at `$.retry.max_retries`" said as a TOML key and
    a rule: "retry.max_retries: must be >= 0" (``prefix`` goes before the key)."""
    message, sep, where = str(exc).partition(" - at `$")
    key = (prefix + where.rstrip("`")).lstrip(".") if sep else prefix
    message = _RANGE.sub(r"must be \1", message)
    if message == "Expected `str` of length >= 1":
        message = "must not be empty"
    return f"{key}: {message}" if key else message
