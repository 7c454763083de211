"""The simulators' shared fault board: what each broker accepts, what a request trips, counts."""

from __future__ import annotations

import msgspec
import pytest

from ult_actors.sim.alpaca import faults as alpaca_faults
from ult_actors.sim.faults import FaultBoard, decode_faults
from ult_actors.sim.oanda import faults as oanda_faults


def test_each_simulator_accepts_only_its_own_kinds() -> None:
    [beat] = decode_faults({"kind": "heartbeat_stop"}, oanda_faults.Fault)
    assert beat.kind == "heartbeat_stop"
    with pytest.raises(msgspec.ValidationError, match="heartbeat_stop"):
        decode_faults([{"kind": "drop"}, {"kind": "heartbeat_stop"}], alpaca_faults.Fault)


def test_a_fault_with_no_path_trips_only_requests_under_the_api_prefix() -> None:
    board = FaultBoard(alpaca_faults.API_PREFIX)
    board.arm(alpaca_faults.Fault(kind="status", method="post", count=2))
    assert board.take_request_fault("POST", "/_sim/state") is None
    assert board.take_request_fault("GET", "/v2/orders") is None
    before = board.armed()
    tripped = board.take_request_fault("POST", "/v2/orders")
    assert tripped is not None and tripped.kind == "status"
    assert before[0].count == 2  # an earlier listing keeps what it saw
    assert board.listing()["armed"][0]["count"] == 1
    assert board.take_request_fault("POST", "/v2/orders") is not None
    assert board.report() == {"faults": [], "fired": {"status": 2}}


def test_stream_drop_fires_after_the_given_number_of_events() -> None:
    board = FaultBoard(oanda_faults.API_PREFIX)
    board.arm(oanda_faults.Fault(kind="stream_drop", after_events=3))
    assert [board.stream_cut_due() for _ in range(4)] == [False, False, True, False]
    assert board.fired == {"stream_drop": 1}


@pytest.mark.parametrize("spec", [{"count": 0}, {"kind": "status", "status": 200}, {"delay_s": -1}])
def test_a_fault_that_cannot_work_is_refused_when_armed(spec: dict[str, object]) -> None:
    fault = msgspec.convert({"kind": "slow", **spec}, alpaca_faults.Fault)
    with pytest.raises(ValueError):
        FaultBoard("/v2").arm(fault)
