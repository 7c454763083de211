"""IB settings: ``IB_*`` overrides, live-port guard, account choice, unreachable TWS."""

from __future__ import annotations

import socket

import pytest
import trio

from ult_actors.brokers.ib.connector import IbConnector
from ult_actors.brokers.ib.settings import IbSettings, ib_settings_from_env
from ult_actors.errors import BrokerUnavailable, ConfigError
from ult_actors.sim.ib import TwsSimulator


def test_environment_overrides_host_port_client_id_and_account() -> None:
    env = {"IB_HOST": "10.0.0.5", "IB_PORT": "4002", "IB_CLIENT_ID": "17", "IB_ACCOUNT": "DU42"}
    s = ib_settings_from_env(env, IbSettings())
    assert (s.host, s.port, s.client_id, s.account) == ("10.0.0.5", 4002, 17, "DU42")
    assert ib_settings_from_env({}, IbSettings()) == IbSettings()  # 127.0.0.1:7497, paper TWS


@pytest.mark.parametrize(
    ("var", "value"), [("IB_PORT", "seventy"), ("IB_PORT", "70000"), ("IB_CLIENT_ID", "x")]
)
def test_bad_environment_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        ib_settings_from_env({var: value}, IbSettings())


@pytest.mark.parametrize("port", [7496, 4001])
async def test_live_ports_need_explicit_confirmation(port: int) -> None:
    connector = IbConnector("ib-live", IbSettings(port=port))
    with pytest.raises(ConfigError, match="live_trading_confirmed"):
        await connector.connect()


async def test_an_unreachable_tws_is_broker_unavailable_naming_the_address() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connector = IbConnector("ib", IbSettings(port=port, connect_timeout_s=5))
    with trio.fail_after(10), pytest.raises(BrokerUnavailable, match=f"127.0.0.1:{port}"):
        await connector.connect()
    await connector.disconnect()
    await connector.disconnect()


async def test_an_account_the_login_does_not_manage_is_a_config_error() -> None:
    sim = TwsSimulator(tick_interval_s=None, account="DU1234567")
    async with trio.open_nursery() as nursery:
        port = await nursery.start(sim.serve)
        connector = IbConnector("ib", IbSettings(port=port, account="DU0000001"))
        with trio.fail_after(10), pytest.raises(ConfigError, match="DU1234567"):
            await connector.connect()
        await connector.disconnect()
        nursery.cancel_scope.cancel()
