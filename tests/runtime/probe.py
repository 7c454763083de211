"""A controllable actor body for supervisor tests.

Each child reads commands ("crash", "exit") from a channel that outlives its
incarnations, records its starts and stops, and counts live incarnations so
tests can see leaks or doubled incarnations.
"""

from __future__ import annotations

import math
from typing import Any

import trio

from ult_actors.runtime.actor import ActorContext


class Probe:
    def __init__(self) -> None:
        self.starts: dict[str, int] = {}
        self.live: dict[str, int] = {}
        self.events: list[tuple[str, str]] = []  # (child, "start" | "stop")
        self.max_live: dict[str, int] = {}
        self._commands: dict[str, trio.MemorySendChannel[str]] = {}
        self._receivers: dict[str, trio.MemoryReceiveChannel[str]] = {}
        self._changed = trio.Event()
        self.stop_delay: dict[str, float] = {}

    def body(self, child_id: str) -> Any:
        send, recv = trio.open_memory_channel[str](math.inf)
        self._commands[child_id] = send
        self._receivers[child_id] = recv
        self.starts[child_id] = 0
        self.live[child_id] = 0
        self.max_live[child_id] = 0

        async def start(ctx: ActorContext[Any]) -> None:
            self.starts[child_id] += 1
            self.live[child_id] += 1
            self.max_live[child_id] = max(self.max_live[child_id], self.live[child_id])
            self.events.append((child_id, "start"))
            self._notify()
            try:
                ctx.started()
                command = await recv.receive()
                if command == "crash":
                    raise RuntimeError(f"{child_id} crashed on purpose")
            finally:
                delay = self.stop_delay.get(child_id, 0.0)
                if delay:
                    with trio.CancelScope(shield=True):
                        await trio.sleep(delay)
                self.live[child_id] -= 1
                self.events.append((child_id, "stop"))
                self._notify()

        return start

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def crash(self, child_id: str) -> None:
        self._commands[child_id].send_nowait("crash")

    def exit(self, child_id: str) -> None:
        self._commands[child_id].send_nowait("exit")

    async def wait_starts(self, child_id: str, count: int) -> None:
        with trio.fail_after(600):
            while self.starts[child_id] < count:
                await self._changed.wait()
