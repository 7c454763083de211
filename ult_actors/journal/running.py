"""A store's ``running()`` block: open it, run a task beside the block, close it.

Apart from the stores so their modules can be compiled by mypyc, which compiles no
async generator (an ``asynccontextmanager`` is one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import trio

T = TypeVar("T")


@asynccontextmanager
async def running_beside(
    value: T,
    start: Callable[[], Awaitable[None]],
    serve: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
) -> AsyncIterator[T]:
    """``start()``, then ``serve()`` in a task while the block runs (``value`` is what
    it gets), cancelled at its end; ``stop()`` always, even if ``start`` failed."""
    try:
        await start()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve)
            yield value
            nursery.cancel_scope.cancel()
    finally:
        await stop()
