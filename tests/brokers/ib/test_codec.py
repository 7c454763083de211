"""TWS API codec: frames, handshake, and every message through both ends of the protocol.

Requests go connector encoder -> simulator reader; server messages go
simulator encoder -> connector decoder, at versions across our range
(157..178) where fields appear or vanish. Where IB's own ``ibapi`` client is
installed it is the third party that checks our layout.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from ult_actors.brokers.ib import encode, wire
from ult_actors.brokers.ib.decode import decode_message
from ult_actors.brokers.ib.fields import FieldError, FieldReader, fmt_decimal
from ult_actors.brokers.ib.protocol import (
    MAX_PAYLOAD,
    FrameBuffer,
    ProtocolError,
    choose_version,
    encode_fields,
    encode_raw,
    parse_version_range,
    split_fields,
    version_range_text,
)
from ult_actors.sim.ib.codec import encode_message, read_request

# 157: lowest; 166: error JSON; 169: cancel time; 170: PEG offsets; 177: no faProfile; 178: max.
VERSIONS = [157, 162, 166, 169, 170, 177, 178]

AAPL = wire.Contract(symbol="AAPL", con_id=265598, local_symbol="AAPL", trading_class="NMS")
LIMIT = wire.IbOrder(
    action="BUY",
    total_quantity=Decimal(100),
    order_type="LMT",
    lmt_price=Decimal("150.25"),
    tif="GTC",
    account="DU1234567",
    order_ref="ult-abc-1",
    outside_rth=True,
    client_id=3,
    perm_id=1000042,
)
STOP_LIMIT = wire.IbOrder(
    action="SELL",
    total_quantity=Decimal("2.5"),
    order_type="STP LMT",
    lmt_price=Decimal("99.5"),
    aux_price=Decimal(100),
    tif="DAY",
    account="DU1234567",
    order_ref="ult-abc-2",
    client_id=3,
    perm_id=1000043,
)
#: A bracket's exit: a child of order 17, one of an OCA group, not transmitted yet.
EXIT = msgspec.structs.replace(
    STOP_LIMIT, parent_id=17, oca_group="ult-oca-17", oca_type=1, transmit=False
)


def frames_of(data: bytes, chunk: int) -> list[bytes]:
    buf = FrameBuffer()
    out = []
    for i in range(0, len(data), chunk):
        buf.feed(data[i : i + chunk])
        while (payload := buf.next_payload()) is not None:
            out.append(payload)
    return out


# -- frames and handshake -------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
def test_frames_survive_any_split_of_the_byte_stream(chunk: int) -> None:
    messages = [["9", "1", "117"], ["4", "2", "-1", "2104", "Market data farm OK", ""], ["53", "1"]]
    data = b"".join(encode_fields(m) for m in messages)
    assert [split_fields(p) for p in frames_of(data, chunk)] == messages


def test_a_frame_is_a_big_endian_length_and_nul_terminated_fields() -> None:
    assert encode_fields(["8", "1", "1"]) == b"\x00\x00\x00\x068\x001\x001\x00"


def test_oversized_frames_are_refused_both_ways() -> None:
    buf = FrameBuffer()
    buf.feed((MAX_PAYLOAD + 1).to_bytes(4, "big"))
    with pytest.raises(ProtocolError):
        buf.next_payload()
    with pytest.raises(ProtocolError):
        encode_fields(["x" * MAX_PAYLOAD])


def test_a_payload_without_final_nul_is_not_the_text_protocol() -> None:
    with pytest.raises(ProtocolError):
        split_fields(b"9\x001")


def test_handshake_version_text_is_exactly_what_tws_expects() -> None:
    assert encode_raw(version_range_text(157, 178)) == b"\x00\x00\x00\tv157..178"
    assert parse_version_range(b"v100..157 +PACEAPI") == (100, 157, "+PACEAPI")
    with pytest.raises(ProtocolError):
        parse_version_range(b"157..178")
    with pytest.raises(ProtocolError):
        parse_version_range(b"v178..157")


@pytest.mark.parametrize(
    ("client", "chosen"),
    [
        ((157, 178), 178),
        ((100, 157), 157),
        ((157, 225), 178),
        ((100, 150), None),
        ((179, 225), None),
    ],
)
def test_server_picks_the_highest_common_version(
    client: tuple[int, int], chosen: int | None
) -> None:
    assert choose_version(*client) == chosen


# -- fields -------------------------------------------------------------------------


def test_unset_sentinels_and_empty_fields_read_as_none() -> None:
    r = FieldReader(["", "1.7976931348623157E308", "2147483647", "12.50", "5.0"])
    assert r.decimal() is None
    assert r.decimal() is None
    assert r.opt_integer() is None
    assert r.decimal() == Decimal("12.50")
    assert r.integer() == 5
    with pytest.raises(FieldError):
        r.text()


def test_decimals_are_written_without_exponents() -> None:
    assert fmt_decimal(Decimal("1E+2")) == "100"
    assert fmt_decimal(Decimal("0.000010")) == "0.00001"
    assert fmt_decimal(None) == ""


# -- requests: connector -> simulator ------------------------------------------------

REQUESTS: list[wire.Request] = [
    wire.StartApi(client_id=7, optional_capabilities=""),
    wire.PlaceOrder(order_id=17, contract=wire.Contract(symbol="AAPL"), order=LIMIT),
    wire.PlaceOrder(order_id=18, contract=wire.Contract(symbol="MSFT"), order=STOP_LIMIT),
    wire.CancelOrder(order_id=17),
    wire.ReqOpenOrders(),
    wire.ReqAllOpenOrders(),
    wire.ReqAutoOpenOrders(auto_bind=True),
    wire.ReqIds(num_ids=1),
    wire.ReqManagedAccts(),
    wire.ReqCurrentTime(),
    wire.ReqGlobalCancel(),
    wire.ReqPositions(),
    wire.CancelPositions(),
    wire.ReqAccountSummary(req_id=5, group="All", tags="NetLiquidation,BuyingPower"),
    wire.CancelAccountSummary(req_id=5),
    wire.ReqExecutions(
        req_id=9, filter=wire.ExecutionFilter(client_id=3, symbol="AAPL", side="BUY")
    ),
    wire.ReqAccountUpdates(subscribe=True, account="DU1234567"),
    wire.ReqAccountUpdatesMulti(req_id=4, account="DU1234567", ledger_and_nlv=True),
    wire.CancelAccountUpdatesMulti(req_id=4),
    wire.ReqCompletedOrders(api_only=False),
    wire.PlaceOrder(order_id=19, contract=wire.Contract(symbol="MSFT"), order=EXIT),
]


def _comparable(request: wire.Request) -> wire.Request:
    # The simulator reads only what TWS acts on; ids it assigns are not on the wire.
    if isinstance(request, wire.PlaceOrder):
        o = request.order
        order = wire.IbOrder(
            action=o.action,
            total_quantity=o.total_quantity,
            order_type=o.order_type,
            lmt_price=o.lmt_price,
            aux_price=o.aux_price,
            tif=o.tif,
            account=o.account,
            order_ref=o.order_ref,
            outside_rth=o.outside_rth,
            transmit=o.transmit,
            parent_id=o.parent_id,
            oca_group=o.oca_group,
            oca_type=o.oca_type,
        )
        return wire.PlaceOrder(order_id=request.order_id, contract=request.contract, order=order)
    return request


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_every_request_reads_back_as_sent(request_: wire.Request, version: int) -> None:
    payload = frames_of(encode_fields(encode.encode_request(request_, version)), 5)[0]
    assert read_request(split_fields(payload), version) == _comparable(request_)


@pytest.mark.parametrize(
    ("version", "count"), [(157, 110), (162, 113), (169, 115), (177, 114), (178, 114)]
)
def test_place_order_has_the_field_count_of_its_version(version: int, count: int) -> None:
    fields = encode.place_order(REQUESTS[1], version)  # type: ignore[arg-type]
    assert len(fields) == count


def test_cancel_order_gains_the_manual_cancel_time_at_169() -> None:
    assert encode.cancel_order(wire.CancelOrder(order_id=17), 168) == ["4", "1", "17"]
    assert encode.cancel_order(wire.CancelOrder(order_id=17), 169) == ["4", "1", "17", ""]


def test_place_order_matches_ibs_own_client_field_for_field() -> None:
    ibapi_client = pytest.importorskip("ibapi.client")
    from ibapi import comm
    from ibapi.contract import Contract
    from ibapi.order import Order

    class Capture:
        def __init__(self) -> None:
            self.sent: list[bytes] = []

        def sendMsg(self, msg: bytes) -> None:
            self.sent.append(msg)

        def isConnected(self) -> bool:
            return True

    client: Any = ibapi_client.EClient(None)
    client.conn = Capture()
    client.serverVersion_ = 157  # the highest version the PyPI ibapi speaks
    client.connState = ibapi_client.EClient.CONNECTED
    contract = Contract()
    contract.symbol, contract.secType, contract.exchange, contract.currency = (
        "AAPL",
        "STK",
        "SMART",
        "USD",
    )
    order = Order()
    order.action, order.totalQuantity, order.orderType, order.lmtPrice = "BUY", 100, "LMT", 150.25
    order.tif, order.orderRef, order.outsideRth, order.account = (
        "GTC",
        "ult-abc-1",
        True,
        "DU1234567",
    )
    client.placeOrder(17, contract, order)
    _, payload, _ = comm.read_msg(client.conn.sent[0])
    theirs = [f.decode() if isinstance(f, bytes) else f for f in comm.read_fields(payload)]
    ours = encode.place_order(REQUESTS[1], 157)  # type: ignore[arg-type]
    assert len(theirs) == len(ours)
    assert theirs[:16] == ours[:16]  # id, order id, contract
    assert read_request(theirs, 157) == read_request(ours, 157)


# -- server messages: simulator -> connector -----------------------------------------

MESSAGES: list[wire.Incoming] = [
    wire.NextValidId(order_id=117),
    wire.ManagedAccounts(accounts=["DU1234567", "DU7654321"]),
    wire.OrderStatus(
        order_id=17,
        status="Submitted",
        filled=Decimal(40),
        remaining=Decimal(60),
        avg_fill_price=Decimal("150.2"),
        perm_id=1000042,
        parent_id=0,
        last_fill_price=Decimal("150.1"),
        client_id=3,
        why_held="",
        mkt_cap_price=None,
    ),
    wire.OpenOrder(order_id=17, contract=AAPL, order=LIMIT, status="Submitted"),
    wire.OpenOrder(order_id=18, contract=AAPL, order=STOP_LIMIT, status="PreSubmitted"),
    wire.OpenOrderEnd(),
    wire.CompletedOrder(
        contract=AAPL,
        order=msgspec.structs.replace(LIMIT, client_id=0),  # not on this message
        status="Filled",
        filled_quantity=Decimal(100),
        completed_time="20261125 16:20:01 UTC",
        completed_status="Filled",
    ),
    wire.CompletedOrdersEnd(),
    wire.ExecDetails(
        req_id=-1,
        order_id=17,
        contract=AAPL,
        exec_id="0000e0d5.6571ab21.01.01",
        time="20261125  16:20:01",
        account="DU1234567",
        exchange="ISLAND",
        side="BOT",
        shares=Decimal(40),
        price=Decimal("150.2"),
        perm_id=1000042,
        client_id=3,
        cum_qty=Decimal(40),
        avg_price=Decimal("150.2"),
        order_ref="ult-abc-1",
        last_liquidity=2,
    ),
    wire.ExecDetailsEnd(req_id=9),
    wire.CommissionReport(
        exec_id="0000e0d5.6571ab21.01.01", commission=Decimal("1.00"), currency="USD"
    ),
    wire.PositionData(
        account="DU1234567", contract=AAPL, position=Decimal(-40), avg_cost=Decimal("150.2")
    ),
    wire.PositionEnd(),
    wire.AccountSummary(
        req_id=5, account="DU1234567", tag="NetLiquidation", value="1000000.00", currency="USD"
    ),
    wire.AccountSummaryEnd(req_id=5),
    wire.ErrorMessage(
        req_id=17, code=201, message="Order rejected - reason:No trading permissions"
    ),
    wire.CurrentTime(epoch_s=1_795_000_000),
    wire.AccountValue(
        key="NetLiquidation", value="1000000.00", currency="USD", account="DU1234567"
    ),
    wire.AccountUpdateTime(time="16:20"),
    wire.AccountDownloadEnd(account="DU1234567"),
    wire.AccountUpdateMulti(
        req_id=4, account="DU1234567", model_code="", key="BuyingPower", value="2", currency="USD"
    ),
    wire.AccountUpdateMultiEnd(req_id=4),
    wire.OpenOrder(
        order_id=19,
        contract=AAPL,
        order=msgspec.structs.replace(EXIT, transmit=True),
        status="PreSubmitted",
    ),
]


def _expected(msg: wire.Incoming) -> wire.Incoming:
    # TWS prints an absent price of an order or status as 0.
    if isinstance(msg, wire.OrderStatus) and msg.mkt_cap_price is None:
        return msgspec.structs.replace(msg, mkt_cap_price=Decimal(0))
    if isinstance(msg, wire.OpenOrder | wire.CompletedOrder):
        order = msgspec.structs.replace(
            msg.order,
            lmt_price=msg.order.lmt_price or Decimal(0),
            aux_price=msg.order.aux_price or Decimal(0),
        )
        return msgspec.structs.replace(msg, order=order)
    return msg


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_server_message_decodes_as_sent(message: wire.Incoming, version: int) -> None:
    payload = frames_of(encode_fields(encode_message(message, version)), 11)[0]
    assert decode_message(split_fields(payload), version) == _expected(message)


def test_open_order_loses_fa_profile_at_177_and_gains_peg_offsets_at_170() -> None:
    msg = MESSAGES[3]
    lengths = {v: len(encode_message(msg, v)) for v in (157, 158, 160, 162, 169, 170, 176, 177)}
    assert lengths[158] == lengths[157] + 1  # duration
    assert lengths[160] == lengths[158] + 1  # postToAts
    assert lengths[162] == lengths[160] + 1  # autoCancelParent
    assert lengths[170] == lengths[169] + 5  # PEG BEST / PEG MID offsets
    assert lengths[177] == lengths[176] - 1  # faProfile gone


def test_execution_gains_pending_price_revision_at_178() -> None:
    msg = MESSAGES[8]
    assert len(encode_message(msg, 178)) == len(encode_message(msg, 177)) + 1


def test_open_order_optional_blocks_are_skipped_to_reach_the_status() -> None:
    """Algo parameters, a hedge and a scale increment push the status further along."""
    fields = encode_message(MESSAGES[3], 178)
    status = fields.index("Submitted")
    # Counting back from the status: whatIf, solicited, algoStrategy, delta-neutral
    # contract flag, notHeld, clearingIntent, clearingAccount, optOutSmartRouting,
    # hedgeType, scalePriceIncrement.
    algo, hedge, scale = status - 3, status - 9, status - 10
    assert fields[algo] == fields[hedge] == fields[scale] == ""
    fields[algo : algo + 1] = ["Adaptive", "1", "adaptivePriority", "Normal"]
    fields[hedge : hedge + 1] = ["D", "0.5"]
    fields[scale : scale + 1] = ["0.05", "0.01", "60", "0.1", "0", "", "", "0"]
    decoded = decode_message(fields, 178)
    assert isinstance(decoded, wire.OpenOrder)
    assert decoded.status == "Submitted"
    assert decoded.order.order_ref == "ult-abc-1"


def test_completed_order_with_conditions_reads_fill_and_completion() -> None:
    fields = encode_message(MESSAGES[6], 178)
    # conditions count sits after status and the two randomize flags
    at = fields.index("Filled") + 3
    assert fields[at] == "0"
    fields[at : at + 1] = ["1", "1", "a", "1", "155.0", "265598", "SMART", "0", "0", "0"]
    decoded = decode_message(fields, 178)
    assert isinstance(decoded, wire.CompletedOrder)
    assert decoded.filled_quantity == Decimal(100)
    assert decoded.completed_status == "Filled"


def test_unknown_ids_are_ignored_and_truncated_messages_are_named() -> None:
    assert decode_message(["2", "6", "1", "0", "100"], 178) is None  # a tick's size
    assert decode_message(["1", "6", "7", "1", "150.0", "100", "0"], 178) == wire.TickPrice(
        req_id=7, field=wire.TICK_BID, price=Decimal("150.0")
    )
    with pytest.raises(FieldError):
        decode_message(["3", "17", "Submitted"], 178)
    with pytest.raises(FieldError):
        decode_message(["x"], 178)
