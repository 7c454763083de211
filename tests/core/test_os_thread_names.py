"""The service's threads carry their names for the OS, so an operator's ``top -H`` (or
``/proc/<pid>/task/*/comm``) shows which of them spends the CPU."""

from __future__ import annotations

import random
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import trio

from ult_actors.config import load_config
from ult_actors.messages import OrderReply, OrderRequest, Submit
from ult_actors.service import build_service

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="names are read from /proc")


def _os_thread_names() -> set[str]:
    return {comm.read_text().strip() for comm in Path("/proc/self/task").glob("*/comm")}


async def test_the_journal_s_and_the_paper_file_s_threads_are_named_for_the_os(
    tmp_path: Path,
) -> None:
    # The default config: the journal's file (its fold and its log's fsync threads) and
    # the paper account's file (its writer thread, from the account's first order).
    config = tmp_path / "ult.toml"
    config.write_text(f'[service]\nstate_dir = "{tmp_path}"\n[brokers.paper]\nkind = "paper"\n')
    service = build_service(load_config(config, env={}), env={}, rng=random.Random(1))
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        order = OrderRequest(symbol="AAPL", side="buy", qty=Decimal(1), client_order_id="t-1")
        assert isinstance(await service.gateway.handle(Submit(id=1, order=order)), OrderReply)
        names = _os_thread_names()
        nursery.cancel_scope.cancel()
    # The OS keeps a name's first 15 bytes.
    assert {"journal-fold:jo", "log-sync:journa"} <= names, names
    assert any(name.startswith("paper-writer:") for name in names), names
