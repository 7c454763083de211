"""The kill switch outlives a restart: trading resumes only when a person says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.actors.harness import paper_service, req
from ult_actors.actors.trading_state import FILE_NAME
from ult_actors.errors import ConfigError, RiskRejected
from ult_actors.messages import OrderReply, SetKillSwitch, SetTradingState, Submit


async def test_the_kill_switch_and_a_brokers_state_survive_a_restart(tmp_path: Path) -> None:
    async with paper_service(tmp_path) as (svc, _):
        await svc.gateway.handle(SetKillSwitch(id=1, on=True))
    async with paper_service(tmp_path) as (svc, _):
        assert svc.health().trading_state == "halted"
        with pytest.raises(RiskRejected, match="halted"):
            await svc.gateway.handle(Submit(id=2, order=req(broker=None)))
        await svc.gateway.handle(SetKillSwitch(id=3, on=False))
        await svc.gateway.handle(SetTradingState(id=4, state="reducing", broker="paper"))
    async with paper_service(tmp_path) as (svc, _):
        assert svc.health().trading_state == "active"
        assert svc.risk_state.broker_trading == {"paper": "reducing"}
        await svc.gateway.handle(SetTradingState(id=5, state="active"))
        reply = await svc.gateway.handle(Submit(id=6, order=req(broker=None)))
        assert isinstance(reply, OrderReply) and reply.order.status == "filled"


async def test_a_damaged_saved_state_refuses_to_start_rather_than_trade(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text("{not json")
    with pytest.raises(ConfigError, match="damaged"):
        async with paper_service(tmp_path):
            pass
