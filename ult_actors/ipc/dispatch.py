"""From a request's bytes to its reply: decode, prepare, log, answer; one for every transport.

The Unix socket (``connection.py``) and NATS (``ult_actors.nats.commands``)
both hand each payload to a ``Dispatcher``: bad bytes become a
``bad_request`` reply naming what was wrong, a mutating request is prepared
by the gateway (a submit gets its client order id) and logged, and the
answer, or the ``UltError`` raised on the way, becomes the reply.
"""

from __future__ import annotations

from collections.abc import Awaitable
from decimal import Decimal
from typing import Any, Final

import msgspec
from msgspec.structs import astuple

from ult_actors.errors import BadRequest, Internal, UltError
from ult_actors.ipc.framing import RequestCodec
from ult_actors.ipc.gateway import BeginsAnswers, Gateway
from ult_actors.logrender import FixedFields
from ult_actors.logsetup import info_lines
from ult_actors.logwriter import InfoLines
from ult_actors.messages import (
    Cancel,
    ErrorReply,
    OrderReply,
    OrderRequest,
    Replace,
    Reply,
    Request,
    SetKillSwitch,
    SetTradingState,
    Submit,
    SubmitList,
)

_MUTATING = (Submit, Replace, SubmitList, Cancel, SetKillSwitch, SetTradingState)


class Dispatcher:
    """Turns request payloads into requests and requests into replies for one gateway."""

    def __init__(self, gateway: Gateway, log: Any) -> None:
        self.gateway = gateway
        self.log = log
        self.codec = RequestCodec()
        # The one line every order writes: handed to the log writer without structlog's
        # layers, by a call compiled code makes directly (a native class's method).
        self._request_line: InfoLines = info_lines(log)
        #: The gateway's plain-call answers, if it gives them (``begin``).
        self._begin = gateway.begin if isinstance(gateway, BeginsAnswers) else None

    def decode(self, payload: bytes) -> Request | ErrorReply:
        """The request as it will be handled, or the ``bad_request`` reply for bad bytes."""
        try:
            request = self.codec.decode(payload)
        except BadRequest as exc:
            self.log.info("bad request", error=exc.message)
            return ErrorReply(id=self.codec.request_id(payload), error=exc.to_info())
        if type(request) is Submit:  # the usual request: prepared only without its id
            if request.order.client_order_id is None:
                request = self.gateway.prepare(request)
            self._log_mutation(request)
        elif isinstance(request, _MUTATING):
            request = self.gateway.prepare(request)
            self._log_mutation(request)
        return request

    def begin(self, request: Request, peer: Any = None) -> Reply | Awaitable[Reply]:
        """``answer``'s reply by a plain call when the gateway gives it without a wait
        (``BeginsAnswers``: most submits), else the coroutine of the rest, which the
        caller awaits at once. No checkpoint on the way: the caller checks for its own
        cancellation before it begins a request."""
        begin = self._begin
        if begin is None:
            return self.answer(request, peer)
        try:
            answer = begin(request, peer)
        except Exception as exc:
            return self._error_reply(request, exc)
        # A reply (every ``Reply`` is a Struct); a submit's by a pointer compare.
        if type(answer) is OrderReply or isinstance(answer, msgspec.Struct):
            return answer
        return self._answered(request, answer)

    async def answer(self, request: Request, peer: Any = None) -> Reply:
        """The gateway's reply; an error on the way is the error reply, never an exception."""
        return await self._answered(request, self.gateway.handle(request, peer))

    async def _answered(self, request: Request, answer: Awaitable[Reply]) -> Reply:
        try:
            return await answer
        except Exception as exc:
            return self._error_reply(request, exc)

    def _error_reply(self, request: Request, exc: Exception) -> ErrorReply:
        """The reply for what answering ``request`` raised: its ``UltError``, or ``internal``."""
        if isinstance(exc, UltError):
            return ErrorReply(id=request.id, error=exc.to_info())
        self.log.exception("request failed inside the service", kind=type(request).__name__)
        return ErrorReply(
            id=request.id,
            error=Internal(
                f"the service failed on this {type(request).__name__} request;"
                " see the service log"
            ).to_info(),
        )

    def _log_mutation(self, request: Request) -> None:
        # Each kind's fields as one dict display: kind and request id first, then what
        # names the order, as operators read them. A submit's (every order's) are read
        # from it on the log writer's thread instead (``_SUBMIT_FIELDS``).
        if type(request) is _SUBMIT or isinstance(request, Submit):  # the first: a compare
            self._request_line.emit("request", _SUBMIT_FIELDS, request)
            return
        kind, request_id = type(request).__name__, request.id
        fields: dict[str, Any]
        if isinstance(request, Replace):
            change = request.change
            fields = {
                "kind": kind,
                "request_id": request_id,
                "order_id": change.order_id,
                "client_order_id": change.client_order_id,
                "qty": _text(change.qty),
                "limit_price": _text(change.limit_price),
                "stop_price": _text(change.stop_price),
            }
        elif isinstance(request, SubmitList):
            orders = request.orders
            fields = {
                "kind": kind,
                "request_id": request_id,
                "contingency": orders.contingency,
                "list_id": orders.list_id,
                "legs": [leg.client_order_id for leg in orders.legs],
            }
        elif isinstance(request, Cancel):
            fields = {"kind": kind, "request_id": request_id, "order_id": request.order_id}
        elif isinstance(request, SetKillSwitch):
            fields = {"kind": kind, "request_id": request_id, "on": request.on}
        elif isinstance(request, SetTradingState):
            fields = {
                "kind": kind,
                "request_id": request_id,
                "state": request.state,
                "broker": request.broker,
            }
        else:
            fields = {"kind": kind, "request_id": request_id}
        self._request_line.emit("request", fields)


#: Where ``msgspec.structs.astuple`` puts an order's fields the request line reads (one
#: call and a tuple are cheaper than six attribute reads from compiled code).
_ORDER_FIELDS: Final = OrderRequest.__struct_fields__
_SYMBOL: Final = _ORDER_FIELDS.index("symbol")
_SIDE: Final = _ORDER_FIELDS.index("side")
_QTY: Final = _ORDER_FIELDS.index("qty")
_TYPE: Final = _ORDER_FIELDS.index("type")
_BROKER: Final = _ORDER_FIELDS.index("broker")
_CLIENT_ORDER_ID: Final = _ORDER_FIELDS.index("client_order_id")
#: Module constants, so compiled code reads them without a look-up in the module's dict.
_ASTUPLE: Final = astuple
_SUBMIT: Final = Submit


def _submit_values(request: Submit) -> tuple[Any, ...]:
    """A submit's request line values, in ``_SUBMIT_FIELDS``' order (read on the writer's
    thread: a decoded request is never changed, so it reads the same there as here)."""
    order = _ASTUPLE(request.order)
    return (
        "Submit" if type(request) is _SUBMIT else type(request).__name__,
        request.id,
        order[_CLIENT_ORDER_ID],
        order[_SYMBOL],
        order[_SIDE],
        str(order[_QTY]),
        order[_TYPE],
        order[_BROKER],
    )


#: A submit's request line fields: kind and request id, then what names the order.
_SUBMIT_FIELDS: Final = FixedFields(
    ("kind", "request_id", "client_order_id", "symbol", "side", "qty", "type", "broker"),
    _submit_values,
    fresh=("client_order_id",),
)


def _text(value: Decimal | None) -> str | None:
    """A decimal as the log line writes it: its text, or ``None`` when absent."""
    return None if value is None else str(value)
