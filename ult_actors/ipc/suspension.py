"""Finish, in the calling task, a coroutine that was stepped by hand and suspended.

The connection's reading task answers what it read and only hands the reading on
to another task if an answer waits (``connection.py``): most answers finish in
the step that read their request, and then the same task reads the next one, a
task wake-up fewer. It learns which by taking the answer's first step itself
(``coro.send(None)``: ``StopIteration`` is an answer that did not wait), in
compiled code, where a generator around every answer cost a lone request an
interpreted frame; one that suspended is handed here to run to its end.
"""

from __future__ import annotations

import types
from collections.abc import Coroutine, Generator
from typing import Any


@types.coroutine
def finish(coro: Coroutine[Any, Any, None], signal: Any) -> Generator[Any, Any, None]:
    """Await the rest of ``coro``, whose first step (taken by the caller) suspended it
    yielding ``signal``: the rest runs as if ``coro`` was awaited directly, what the
    scheduler sends or throws in is passed on to it."""
    while True:
        try:
            sent = yield signal
        except BaseException as exc:  # thrown in (a foreign await, a close): pass it on
            try:
                signal = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                signal = coro.send(sent)
            except StopIteration:
                return
