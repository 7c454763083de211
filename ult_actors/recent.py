"""A bounded, ordered dict: remember the latest entries, forget the oldest.

The one copy of "keep the last N": the router's recently submitted orders,
the broker actor's tracked orders and published fills, the books' finished
orders, OANDA's caches and the journal's window of recent orders all use it.
Entries are kept in insertion order (or recency order, with ``refresh``);
once there are more than ``limit``, the oldest are dropped, and ``on_evict``
hears of each one that goes, so a caller can drop what it keyed on it.

The entries live in a plain ``dict`` (an insert is about half an
``OrderedDict``'s, and several happen per order). A ``dict`` cannot give its
oldest entry cheaply, though: it leaves a hole where a deleted entry was and
iterates over every hole from its start until it next resizes (a scan of all
the entries forgotten before: ~20-30 us per ``put`` past a limit of 20,000).
So a ``Recent`` that forgets one entry per insert once full also lists its
keys in the order they came (``_order``, read from ``_head``); a key that
moved to the newest end (``refresh``) or was popped leaves an older place
there that is skipped (``_stale`` counts them per key), and the list is
rebuilt from the dict once it is twice as long as needed.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, ItemsView, Iterator, ValuesView
from itertools import islice
from typing import Final, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: ``_order`` may hold this many places beyond twice the entries before it is rebuilt.
_SLACK: Final = 32


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
        #: in steady state then forgets it in ``put`` or ``add`` itself, not in ``trim``,
        #: and finds it in ``_order``. The others find what to forget by iterating.
        self._one_out = evictable is None and self._trim_to == limit
        self._items: dict[K, V] = {}
        #: (``_one_out``) Every key from ``_head`` on, oldest first, each live key once at
        #: its place; older places of keys refreshed or popped since are stale.
        self._order: list[K] = []
        self._head = 0
        #: (``_one_out``) Per key, how many of its places in ``_order`` are stale.
        self._stale: dict[K, int] = {}
        #: ``get(key, default=None)``: the entry's value, or ``default``. The dict's own
        #: method, not a method wrapping it: the broker, the router and the journal look
        #: orders up per order, and a Python call costs more than the look-up.
        self.get = self._items.get

    def put(self, key: K, value: V) -> None:
        """Insert or replace ``key``, then forget the oldest if past ``limit``."""
        items = self._items
        held = len(items)
        items[key] = value  # a known key keeps its place; whether it was known: the count
        if len(items) > held:
            if self._one_out:
                self._came(key)
                return
        elif self._refresh:
            items[key] = items.pop(key)  # now the newest
            if self._one_out:
                self._moved(key)
                return
        elif self._one_out:
            return
        if len(items) > self.limit:
            self.trim(self._trim_to)  # a replaced entry may have become evictable

    def add(self: Recent[K, None], key: K) -> bool:
        """Remember ``key`` (a set of keys); ``True`` if it was not known."""
        items = self._items
        held = len(items)
        items.setdefault(key, None)  # one look-up; a known key keeps its place and value
        if len(items) == held:
            if self._refresh:
                items[key] = items.pop(key)  # now the newest, as it was
                if self._one_out:
                    self._moved(key)
            return False
        if self._one_out:
            self._came(key)
        elif len(items) > self.limit:
            self.trim(self._trim_to)
        return True

    def _came(self, key: K) -> None:
        """(``_one_out``) ``key`` was added: list it, then forget the oldest if past ``limit``."""
        order = self._order
        order.append(key)
        items = self._items
        if len(items) > self.limit:
            stale = self._stale
            head = self._head
            gone = order[head]
            head += 1
            while stale and gone in stale:  # an older place of a key moved or popped
                left = stale[gone] - 1
                if left:
                    stale[gone] = left
                else:
                    del stale[gone]
                gone = order[head]
                head += 1
            self._head = head
            value = items.pop(gone)
            if self._on_evict is not None:
                self._on_evict(gone, value)
        if len(order) > 2 * len(items) + _SLACK:
            self._relist()

    def _moved(self, key: K) -> None:
        """(``_one_out``) ``key`` moved to the newest end: its older place is stale now."""
        self._order.append(key)
        self._stale[key] = self._stale.get(key, 0) + 1
        if len(self._order) > 2 * len(self._items) + _SLACK:
            self._relist()

    def _relist(self) -> None:
        """List the keys again from the dict (its order is theirs), with no stale places."""
        self._order = list(self._items)
        self._head = 0
        self._stale.clear()

    def trim(self, down_to: int | None = None) -> None:
        """Forget the oldest (evictable) entries until at most ``down_to`` remain."""
        items = self._items
        excess = len(items) - (self.limit if down_to is None else down_to)
        if excess <= 0:
            return
        accept = self._evictable
        if accept is None:
            gone = list(islice(items, excess))
        else:
            gone = list(islice((k for k, v in items.items() if accept(v)), excess))
        for key in gone:
            value = items.pop(key)
            if self._on_evict is not None:
                self._on_evict(key, value)
        if self._one_out:
            self._relist()

    def pop(self, key: K, default: V | None = None) -> V | None:
        """Forget ``key`` now (no ``on_evict``); its value, or ``default``."""
        items = self._items
        if key not in items:
            return default
        if self._one_out:
            self._stale[key] = self._stale.get(key, 0) + 1
        return items.pop(key)

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
