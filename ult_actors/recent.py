"""A bounded, ordered dict: remember the latest entries, forget the oldest.

The one copy of "keep the last N": the router's recently submitted orders,
the broker actor's tracked orders and published fills, the books' finished
orders, OANDA's caches and the journal's window of recent orders all use it.
Entries are kept in insertion order (or recency order, with ``refresh``);
once there are more than ``limit``, the oldest are dropped, and ``on_evict``
hears of each one that goes, so a caller can drop what it keyed on it.

The entries live in an ``OrderedDict``, not a ``dict``: a ``dict`` leaves a
hole where its oldest entry was deleted and iterates over every hole from its
start until it next resizes, so forgetting the oldest one entry per ``put``
(a full ``Recent`` in steady state) cost a scan of all the entries forgotten
before: ~20-30 us per ``put`` past a limit of 20,000. ``OrderedDict`` takes
its oldest entry at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, ItemsView, Iterator, ValuesView
from itertools import islice
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Recent(Generic[K, V]):
    """A dict that remembers at most ``limit`` keys, forgetting the oldest first.

    ``evictable``: only entries it accepts may be forgotten (the others stay,
    even beyond ``limit``). ``on_evict(key, value)``: called for each entry
    forgotten (what it returns is ignored). ``refresh``: ``put`` of a known key moves it to the newest end
    (recency order); without it the key keeps its place (insertion order).
    ``trim_to``: how far to shrink once past ``limit`` (default ``limit``); a
    lower mark means trimming is rarer and each trim forgets more.
    """

    def __init__(
        self,
        limit: int,
        *,
        evictable: Callable[[V], bool] | None = None,
        on_evict: Callable[[K, V], object] | None = None,
        refresh: bool = False,
        trim_to: int | None = None,
    ) -> None:
        self.limit = limit
        self._trim_to = limit if trim_to is None else trim_to
        self._evictable = evictable
        self._on_evict = on_evict
        self._refresh = refresh
        #: Past ``limit``, only the oldest entry goes (no filter, no low mark): a full one
        #: in steady state then forgets it in ``put`` or ``add`` itself, not in ``trim``.
        self._one_out = evictable is None and self._trim_to == limit
        self._items: OrderedDict[K, V] = OrderedDict()
        #: ``get(key, default=None)``: the entry's value, or ``default``. The dict's own
        #: method, not a method wrapping it: the broker, the router and the journal look
        #: orders up per order, and a Python call costs more than the look-up.
        self.get = self._items.get

    def put(self, key: K, value: V) -> None:
        """Insert or replace ``key``, then forget the oldest if past ``limit``."""
        items = self._items
        if self._refresh and key in items:
            items.move_to_end(key)  # now the newest
        items[key] = value
        if len(items) > self.limit:
            if self._one_out:  # as ``trim`` would, without its call (once per put when full)
                gone, its_value = items.popitem(last=False)
                if self._on_evict is not None:
                    self._on_evict(gone, its_value)
            else:
                self.trim(self._trim_to)

    def add(self: Recent[K, None], key: K) -> bool:
        """Remember ``key`` (a set of keys); ``True`` if it was not known."""
        items = self._items
        if key in items:
            if self._refresh:
                items.move_to_end(key)
            return False
        items[key] = None
        if len(items) > self.limit:
            if self._one_out:  # as in ``put``
                gone, _ = items.popitem(last=False)
                if self._on_evict is not None:
                    self._on_evict(gone, None)
            else:
                self.trim(self._trim_to)
        return True

    def trim(self, down_to: int | None = None) -> None:
        """Forget the oldest (evictable) entries until at most ``down_to`` remain."""
        items = self._items
        excess = len(items) - (self.limit if down_to is None else down_to)
        if excess <= 0:
            return
        if self._evictable is None:
            for _ in range(excess):
                key, value = items.popitem(last=False)
                if self._on_evict is not None:
                    self._on_evict(key, value)
            return
        accept = self._evictable
        for key in list(islice((k for k, v in items.items() if accept(v)), excess)):
            value = items.pop(key)
            if self._on_evict is not None:
                self._on_evict(key, value)

    def pop(self, key: K, default: V | None = None) -> V | None:
        """Forget ``key`` now (no ``on_evict``); its value, or ``default``."""
        return self._items.pop(key, default)

    def items(self) -> ItemsView[K, V]:
        return self._items.items()

    def values(self) -> ValuesView[V]:
        return self._items.values()

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __getitem__(self, key: K) -> V:
        return self._items[key]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"Recent(limit={self.limit}, {self._items!r})"
