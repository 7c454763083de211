"""Run a coroutine in the calling task and learn whether it had to wait.

The connection's reading task answers what it read and only hands the reading on
to another task if an answer waits (``connection.py``): most answers finish in
the step that read their request, and then the same task reads the next one, a
task wake-up fewer. ``run_noting_suspension`` is how it learns, at the moment
the answer first gives the scheduler back its turn, that it is waiting.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any


@types.coroutine
def run_noting_suspension(
    coro: Coroutine[Any, Any, None], on_suspend: Callable[[], None]
) -> Generator[Any, Any, bool]:
    """Await ``coro`` in this task; True if it finished without suspending once.

    If it suspends, ``on_suspend`` is called before the task gives up its turn
    (once), and the rest of ``coro`` runs as if awaited directly: what the
    scheduler sends or throws in is passed on to it.
    """
    try:
        signal = coro.send(None)
    except StopIteration:
        return True
    on_suspend()
    while True:
        try:
            sent = yield signal
        except BaseException as exc:  # thrown in (a foreign await, a close): pass it on
            try:
                signal = coro.throw(exc)
            except StopIteration:
                return False
        else:
            try:
                signal = coro.send(sent)
            except StopIteration:
                return False
