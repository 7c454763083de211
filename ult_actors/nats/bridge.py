"""An asyncio event loop on its own thread, for nats-py, reachable from trio or asyncio.

nats-py runs only on asyncio, and the service runs on trio. Rather than
mixing the two loops in one thread (trio-asyncio), nats-py gets a loop of its
own on a daemon thread: the two worlds meet only at ``LoopThread.run`` (a
coroutine run there, its result awaited here) and ``LoopThread.call_soon``
(fire and forget), so neither loop can block the other. Nothing crosses
without a bound: the callers of ``run`` wait for their result (a slow NATS
slows them, and they are bounded by whoever calls them), and the NATS side
hands work back to trio only through ``TrioPort``, whose bounded count of
items in flight the NATS side checks before it sends anything.

Cancellation holds both ways: a trio task cancelled while it waits in
``run`` cancels the coroutine on the loop thread; stopping the thread
cancels whatever still runs there and wakes every waiter with
``LoopStopped``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import anyio
import sniffio
import trio

T = TypeVar("T")


class LoopStopped(RuntimeError):
    """The loop thread stopped before the coroutine finished."""


class LoopThread:
    """A private asyncio loop on a daemon thread; ``start`` it, ``stop`` it once."""

    def __init__(self, name: str = "ult-nats") -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name=name, daemon=True)
        self._stopped = False

    def start(self) -> LoopThread:
        """Start the thread; returns ``self``."""
        self._thread.start()
        return self

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            # Cancel what is left, let it unwind, then close: no task outlives its loop.
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            if tasks:
                self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop thread; its future (``cancel()`` cancels the coroutine)."""
        if self._stopped:
            coro.close()
            raise LoopStopped(f"the {self.name} loop thread is stopped")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call_soon(self, fn: Callable[..., object], *args: object) -> None:
        """Call ``fn(*args)`` on the loop thread soon; from any thread, never blocks."""
        if not self._stopped:
            self.loop.call_soon_threadsafe(fn, *args)

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop thread and await its result from trio or asyncio.

        Cancelling the caller cancels the coroutine there (without waiting for it
        to unwind). ``LoopStopped`` if the thread stops first.
        """
        future = self.submit(coro)
        done = anyio.Event()
        wake = _waker()
        future.add_done_callback(lambda _: wake(done.set))
        try:
            await done.wait()
        except BaseException:
            future.cancel()
            raise
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise LoopStopped(f"the {self.name} loop thread stopped") from None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop (tasks still running there are cancelled) and join the thread."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        elif not self.loop.is_closed():
            self.loop.close()


def _waker() -> Callable[[Callable[[], object]], None]:
    """A thread-safe way to run a function on the calling task's own event loop."""
    if sniffio.current_async_library() == "trio":
        token = trio.lowlevel.current_trio_token()

        def wake_trio(fn: Callable[[], object]) -> None:
            with contextlib.suppress(trio.RunFinishedError):  # nobody waits any more
                token.run_sync_soon(fn)

        return wake_trio
    loop = asyncio.get_running_loop()

    def wake_asyncio(fn: Callable[[], object]) -> None:
        with contextlib.suppress(RuntimeError):  # the caller's loop closed: nobody waits
            loop.call_soon_threadsafe(fn)

    return wake_asyncio


class Slot:
    """One of a ``TrioPort``'s slots, held by one item; ``release`` from any thread, once
    or more (only the first counts)."""

    __slots__ = ("_held", "_lock", "_slots")

    def __init__(self, slots: threading.BoundedSemaphore) -> None:
        self._slots = slots
        self._lock = threading.Lock()
        self._held = True

    def release(self) -> None:
        with self._lock:
            if not self._held:
                return
            self._held = False
        self._slots.release()


class TrioPort:
    """Hands items from the loop thread to a trio function, at most ``limit`` at a time.

    ``try_send`` (loop thread) returns False when ``limit`` items are being
    handled, so the sender can refuse at once instead of queueing; each item is
    handled by ``handler(item, slot)`` in its own trio task. The handler may free
    its slot early (``slot.release()``, from either thread: for a request, on
    the loop thread once its reply is handed to NATS, so the next request of a
    client that waited for that reply finds it free); else it is freed when the
    handler returns.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        handler: Callable[[Any, Slot], Coroutine[Any, Any, None]],
        limit: int,
    ) -> None:
        self._nursery = nursery
        self._handler = handler
        self._token = trio.lowlevel.current_trio_token()
        self._slots = threading.BoundedSemaphore(limit)
        self.limit = limit

    def try_send(self, item: Any) -> bool:
        """From the loop thread: hand ``item`` to trio; False if all slots are taken
        or trio has stopped."""
        if not self._slots.acquire(blocking=False):
            return False
        slot = Slot(self._slots)
        try:
            self._token.run_sync_soon(self._start, item, slot)
        except trio.RunFinishedError:
            slot.release()
            return False
        return True

    def _start(self, item: Any, slot: Slot) -> None:
        try:
            self._nursery.start_soon(self._handle, item, slot)
        except RuntimeError:  # the nursery closed meanwhile: the service is stopping
            slot.release()

    async def _handle(self, item: Any, slot: Slot) -> None:
        try:
            await self._handler(item, slot)
        finally:
            slot.release()
