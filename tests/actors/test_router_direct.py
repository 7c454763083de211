"""The router's step is run by the asker (the gateway's task) while the router is idle.

A bug there still crashes the router, which its supervisor restarts; the
asker gets the crash as an answer and carries on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from tests.actors.harness import paper_service, submit
from ult_actors.errors import Internal
from ult_actors.validation import validate_order


async def test_a_bug_in_the_router_s_step_run_by_the_asker_crashes_the_router_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = validate_order
    ran_in: list[trio.lowlevel.Task] = []

    def buggy_once(*args: Any, **kwargs: Any) -> None:
        ran_in.append(trio.lowlevel.current_task())
        if len(ran_in) == 1:
            raise ZeroDivisionError("a bug")
        real(*args, **kwargs)

    async with paper_service(tmp_path) as (svc, _made):
        await submit(svc, qty=1)  # the router is idle from now on
        monkeypatch.setattr(svc.router_deps, "validate", buggy_once)
        with pytest.raises(Internal) as info:
            await submit(svc, qty=1)
        assert ran_in == [trio.lowlevel.current_task()]  # run in the asker's task
        assert "crashed actor router (ZeroDivisionError)" in info.value.message
        with trio.fail_after(10):
            while svc.root.child("router").health.restarts < 1:
                await trio.sleep(0.01)
        # The asker carries on, the router is back, and nothing else was restarted.
        assert (await submit(svc, qty=1)).status == "filled"
        assert len(ran_in) == 2
        for other in ("journal", "brokers", "positions", "risk"):
            assert svc.root.child(other).health.restarts == 0, other
