"""A broker account's request budget: a token bucket served by priority (issue 18).

Every venue limits how fast one account may call it (Alpaca requests per
minute, OANDA requests per second, TWS messages per second) and punishes
going over: a 429, then a ban, or at TWS error 100 and a dropped socket. One
``RateBudget`` per account keeps the service under the limit, and decides who
goes first when the budget is short:

- classes in order ``cancel`` > ``replace`` > ``order`` > ``query``: a cancel
  takes the next token even with thousands of new orders waiting;
- every other class leaves ``cancel_reserve`` tokens untouched, so a cancel
  arriving while new orders keep the budget saturated finds a token at once
  instead of waiting for the next one (and for a timer's wake-up, late by up
  to a scheduler round on a busy host). The reserve refills before any order
  goes again, so a cancel waits only when more than ``cancel_reserve``
  cancels came within the time the bucket needs to refill them. The venue's
  limit is kept all the same: the reserve is part of the bucket, which is
  never overdrawn;
- ``query`` (reconciliation sweeps, position pulls) also leaves a reserve of
  tokens untouched, so background work slows down before orders do; but it
  is not starved: a query that has waited ``query_patience_s`` goes next
  after cancels and replaces (a position pull that never comes back would
  put risk in ``reducing``);
- a request with a deadline that cannot be served in time is refused at once
  (``RateLimited`` with ``retry_after``), never sent late;
- ``pause(retry_after)`` (the venue answered 429 anyway) empties the bucket
  and stops every class until then: the account, not one request, backs off;
- at a venue that says in each reply what is left of its window (Alpaca's
  ``X-RateLimit-Remaining`` and ``-Reset``: a count per key, whoever sent the
  requests), the connector passes that word on (``heard``) and the budget
  keeps to it as well as to its own bucket: until the window's reset it grants
  no more than the venue has left (the reserves kept), so a service restarted
  after ``kill -9`` (or a second process on the key) never spends requests the
  minute no longer has. Until it has heard the venue, and again once a
  window it knew of has ended, it grants one request at a time (one a token
  interval at most) instead of a burst: the first reply tells what is left.

Waiting is fair within a class (first come, first served), and only the
first waiter sleeps on the clock; the others sleep until they reach the head.

Every request a connector sends is counted, not only the one a command asked
for: a connector calls ``charge`` before each request. Inside ``charged_as``
(the broker actor wraps each command in one) the first request is the one
``prepay`` already paid for, and any further one (a lookup after a lost
reply, the next page of a listing) is charged at the command's class;
outside any (the stream's backfill, a resync's pages) it is a ``query``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal, get_args

import trio

from ult_actors.errors import RateLimited
from ult_actors.messages import RequestBudget

#: What a request is for, most urgent first.
RequestClass = Literal["cancel", "replace", "order", "query"]
REQUEST_CLASSES: tuple[RequestClass, ...] = get_args(RequestClass)


_ROUNDING = 1e-9
#: Two words of the venue whose resets are this close (seconds) are about one window:
#: its reset is given in whole seconds, and a window lasts far longer (Alpaca: a minute).
_SAME_WINDOW_S = 1.0


class _Waiter:
    __slots__ = ("kind", "since", "wake")

    def __init__(self, kind: RequestClass, since: float) -> None:
        self.kind = kind
        self.since = since
        self.wake = trio.Event()


class _Charge:
    """The class the current task's requests are charged at, and the tokens it prepaid."""

    __slots__ = ("kind", "paid")

    def __init__(self, kind: RequestClass) -> None:
        self.kind = kind
        self.paid = 0


_charge: ContextVar[_Charge | None] = ContextVar("ult_request_charge", default=None)


@contextmanager
def charged_as(kind: RequestClass) -> Iterator[None]:
    """Charge the requests sent by this task (and tasks it starts) at class ``kind``."""
    token = _charge.set(_Charge(kind))
    try:
        yield
    finally:
        _charge.reset(token)


class RateBudget:
    """The request budget of one broker account, shared by every connection to it."""

    def __init__(
        self,
        broker: str,
        *,
        rate_per_s: float,
        burst: int,
        query_reserve: int | None = None,
        cancel_reserve: int | None = None,
        query_patience_s: float = 2.0,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"broker {broker}: a rate budget needs rate_per_s > 0 and burst >= 1")
        self.broker = broker
        self.rate_per_s = rate_per_s
        self.burst = burst
        #: Tokens a query leaves for orders (a quarter of the bucket by default).
        self.query_reserve = burst // 4 if query_reserve is None else query_reserve
        #: Tokens only a cancel may take (two by default; none in a bucket of two or less).
        self.cancel_reserve = min(2, (burst - 1) // 2) if cancel_reserve is None else cancel_reserve
        if self.cancel_reserve < 0 or self.query_reserve < 0:
            raise ValueError(f"broker {broker}: a rate budget's reserves cannot be negative")
        if self.cancel_reserve + self.query_reserve >= burst:
            raise ValueError(
                f"broker {broker}: a rate budget's reserves ({self.cancel_reserve} for cancels,"
                f" {self.query_reserve} from queries) must leave room in its burst of {burst}"
            )
        #: A query waiting this long goes before new orders (it slows down, never starves).
        self.query_patience_s = query_patience_s
        self._clock = clock
        self._tokens = float(burst)
        #: Refilled up to this time; ahead of the clock while paused.
        self._stamp: float | None = None
        self._queues: dict[RequestClass, deque[_Waiter]] = {k: deque() for k in REQUEST_CLASSES}
        self.refused = 0
        #: What the venue allows until ``_venue_until`` (``heard``), beyond what was granted
        #: since; no limit (``inf`` until ``inf``) where the venue does not say.
        self._venue_left = math.inf
        self._venue_until = math.inf
        #: Whether the venue's count is unknown (first word awaited): one request at a time.
        self._unheard = False
        self._listening = False

    async def acquire(self, kind: RequestClass, *, within_s: float | None = None) -> None:
        """Wait for a token for one request of class ``kind``.

        ``within_s``: the request is useless after that many seconds; if it
        cannot be served by then it is refused with ``RateLimited`` (at once
        when the queue ahead of it already says so).
        """
        # A cancelled caller leaves before taking a token; one served at once takes
        # no scheduler round (it is on every order's path).
        await trio.lowlevel.checkpoint_if_cancelled()
        now = self._refill()
        need = self._need(kind)
        if not self._ahead(kind) and self._has(need):
            self._take()
            return
        if within_s is not None:
            eta = self._eta(kind, now)
            if eta > within_s:
                raise self._refusal(kind, eta)
        waiter = _Waiter(kind, now)
        queue = self._queues[kind]
        queue.append(waiter)
        deadline = math.inf if within_s is None else now + within_s
        try:
            with trio.move_on_at(deadline):
                await self._wait_turn(waiter)
                return
            raise self._refusal(kind, self._eta(kind, self._clock()))
        finally:
            if waiter in queue:
                queue.remove(waiter)
                self._wake_head()

    async def prepay(self, kind: RequestClass, *, within_s: float | None = None) -> None:
        """``acquire`` a token the next request ``charge``d in this ``charged_as`` uses."""
        await self.acquire(kind, within_s=within_s)
        charge = _charge.get()
        if charge is not None:
            charge.paid += 1

    async def charge(self) -> None:
        """Pay for one request about to be sent: prepaid, else a token of its class."""
        charge = _charge.get()
        if charge is None:
            await self.acquire("query")
        elif charge.paid > 0:
            charge.paid -= 1
        else:
            await self.acquire(charge.kind)

    def eta_s(self, kind: RequestClass) -> float:
        """Seconds a ``kind`` request asking now would wait for its token (0: it goes at once).

        Exact until someone more urgent asks, the budget is paused or the venue
        tells a new count; what a request takes beyond it is the event loop's
        delay in waking it.
        """
        return self._eta(kind, self._refill())

    def pause(self, retry_after_s: float) -> None:
        """The venue throttled us anyway: no class gets a token for ``retry_after_s``."""
        now = self._refill()
        assert self._stamp is not None
        self._tokens = 0.0
        self._stamp = max(self._stamp, now + max(0.0, retry_after_s))

    def listen_to_venue(self) -> None:
        """The venue's replies will tell what is left of its window (``heard``).

        Until the first word, one request at a time. Repeating it (every
        incarnation of a connection calls it) changes nothing.
        """
        if not self._listening:
            self._listening = True
            self._venue_until = -math.inf  # ended: the first request goes alone (``_refill``)

    def heard(self, remaining: int | None, reset_in_s: float | None) -> None:
        """A venue's reply: ``remaining`` requests left in its window, which resets in ``reset_in_s``.

        ``None`` (a reply without them): the venue does not count now; a
        budget waiting for its first word then keeps to its bucket alone.
        Within one window what is left only goes down: requests granted but
        not yet counted by the venue were taken off already, and the lower of
        the two words is kept. (A reply counts requests the venue saw before
        it; ones of ours still on their way when another client spent the
        window are the few it can miss, and a 429 then pauses the budget.)
        """
        now = self._refill()
        if remaining is None or reset_in_s is None:
            if not self._unheard:
                return  # a reply without a count changes no count known
            left, until = math.inf, math.inf
        else:
            left, until = float(max(0, remaining)), now + max(0.0, reset_in_s)
            known = not self._unheard and self._venue_until != math.inf
            if known and until <= self._venue_until + _SAME_WINDOW_S:
                if until >= self._venue_until - _SAME_WINDOW_S:  # else an older window's
                    self._venue_left = min(self._venue_left, left)
                return
        self._unheard = False
        self._venue_left, self._venue_until = left, until
        self._wake_head()

    def health(self) -> RequestBudget:
        """The budget now: its size, what is spent, who waits."""
        now = self._refill()
        assert self._stamp is not None
        return RequestBudget(
            rate_per_s=self.rate_per_s,
            burst=self.burst,
            used=self.burst - int(self._tokens),
            waiting={k: len(q) for k, q in self._queues.items()},
            paused_for_s=round(max(0.0, self._stamp - now), 3),
            refused=self.refused,
        )

    # -- internals ------------------------------------------------------------

    async def _wait_turn(self, waiter: _Waiter) -> None:
        """Sleep until ``waiter`` is at the head and a token is there; take it."""
        queue = self._queues[waiter.kind]
        while True:
            if self._head() is not waiter:
                waiter.wake = trio.Event()
                # A query also wakes when its patience runs out: it may be the head then
                # (once out of it, it is woken like the others when it reaches the head).
                promoted_at = self._promoted_at(waiter)
                with trio.move_on_at(promoted_at if self._clock() < promoted_at else math.inf):
                    await waiter.wake.wait()
                continue
            now = self._refill()
            need = self._need_of(waiter, now)
            if self._has(need):
                self._take()
                queue.popleft()
                self._wake_head()
                return
            # A more urgent arrival may take the head meanwhile, and the venue's word may
            # raise what it allows (``heard``): both are checked on waking.
            waiter.wake = trio.Event()
            with trio.move_on_at(now + self._until_tokens(need, now)):
                await waiter.wake.wait()

    def _refill(self) -> float:
        now = self._clock()
        if self._stamp is None:
            self._stamp = now
        elif now > self._stamp:
            gained = (now - self._stamp) * self.rate_per_s
            self._tokens = min(float(self.burst), self._tokens + gained)
            self._stamp = now
        if now >= self._venue_until:
            # The venue's window ended (or its first word is awaited): what is left of the
            # next is unknown, so one request goes alone, and its reply tells the rest.
            self._unheard = True
            self._venue_left, self._venue_until = 1.0, now + 1 / self.rate_per_s
        return now

    def _has(self, need: float) -> bool:
        # With a tolerance: refilling by elapsed time * rate falls short by rounding,
        # and a wake-up at the computed instant must find its token.
        return self._tokens >= need - _ROUNDING and self._venue_left >= self._venue_need(need)

    def _venue_need(self, need: float) -> float:
        """What the venue must have left for a request needing ``need`` tokens of the bucket.

        The reserves hold there too; a lone request asking for the venue's
        count takes no reserve into account.
        """
        return 1.0 if self._unheard else need

    def _take(self) -> None:
        self._tokens = max(0.0, self._tokens - 1)
        self._venue_left -= 1

    def _need(self, kind: RequestClass) -> float:
        """Tokens there must be for a ``kind`` request to take one: what it leaves, plus one."""
        if kind == "cancel":
            return 1.0
        return 1.0 + self.cancel_reserve + (self.query_reserve if kind == "query" else 0)

    def _until_tokens(self, need: float, now: float) -> float:
        assert self._stamp is not None
        wait = max(0.0, self._stamp - now) + max(0.0, need - self._tokens) / self.rate_per_s
        if self._venue_left < self._venue_need(need):
            wait = max(wait, self._venue_until - now)
        return wait

    def _ahead(self, kind: RequestClass) -> int:
        """Requests waiting that go before a new one of class ``kind``."""
        rank = REQUEST_CLASSES.index(kind)
        return sum(len(self._queues[k]) for k in REQUEST_CLASSES[: rank + 1])

    def _eta(self, kind: RequestClass, now: float) -> float:
        """Seconds until a new ``kind`` request would get its token (none more urgent coming)."""
        return self._until_tokens(self._ahead(kind) + self._need(kind), now)

    def _head(self) -> _Waiter | None:
        queries = self._queues["query"]
        if queries and self._clock() >= self._promoted_at(queries[0]):
            # A query out of patience goes after cancels and replaces, before orders.
            for kind in ("cancel", "replace"):
                if self._queues[kind]:
                    return self._queues[kind][0]
            return queries[0]
        for kind in REQUEST_CLASSES:
            if self._queues[kind]:
                return self._queues[kind][0]
        return None

    def _promoted_at(self, waiter: _Waiter) -> float:
        """When a waiting query runs out of patience (never for other classes)."""
        return waiter.since + self.query_patience_s if waiter.kind == "query" else math.inf

    def _need_of(self, waiter: _Waiter, now: float) -> float:
        """Tokens ``waiter`` needs to go: a query out of patience leaves only the cancels'."""
        if now >= self._promoted_at(waiter):
            return self._need("order")
        return self._need(waiter.kind)

    def _wake_head(self) -> None:
        head = self._head()
        if head is not None:
            head.wake.set()

    def _refusal(self, kind: RequestClass, eta: float) -> RateLimited:
        self.refused += 1
        return RateLimited(
            f"broker {self.broker}: its request budget ({self.rate_per_s:g}/s) cannot send"
            f" this {kind} before its deadline; not sent (retry in {eta:.2f} s)",
            broker=self.broker,
            retry_after=round(eta, 3),
        )


#: Each venue's default budget, (tokens per second, burst), kept under its published
#: limit in any window: Alpaca 200 requests/min (3/s + 20 = 200 in any minute), OANDA
#: 100 requests/s (90/s + 10), TWS 50 messages/s with margin (40/s + 5 = 45). The
#: paper broker has none.
DEFAULT_BUDGETS: dict[str, tuple[float, int]] = {
    "alpaca": (3.0, 20),
    "oanda": (90.0, 10),
    "ib": (40.0, 5),
}


def budget_for(
    broker: str, kind: str, requests_per_s: float | None, burst: int | None
) -> RateBudget | None:
    """The budget of one configured connection; ``None`` when it has no limit."""
    default_rate, default_burst = DEFAULT_BUDGETS.get(kind, (0.0, 1))
    rate = default_rate if requests_per_s is None else requests_per_s
    if rate <= 0:
        return None
    return RateBudget(broker, rate_per_s=rate, burst=burst or default_burst)
