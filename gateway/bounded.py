"""Memory that stops growing: an LRU map bounded by entry count and by estimated bytes.

Every structure that grows with conversations, requests, keys or time keeps its entries in a
`BoundedLRU` (or states its own fixed bound), and reports `usage()` for the `/stats` memory block
and the `glm_gateway_memory_*` gauges. Sizes are estimates (`sys.getsizeof` of what an entry
holds plus the map's own slot), good for a bound and a trend, not an exact accounting.

Imports nothing from the gateway, so any module may use it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

# What one OrderedDict slot costs beyond its key and value (hash table entry and linked node).
SLOT_BYTES = 104


class BoundedLRU(Generic[K, V]):
    """A mapping of at most `max_items` entries and `max_bytes` estimated bytes (None: no byte
    bound). `put` inserts or replaces an entry as the most recent, then evicts the least recently
    used ones until both bounds hold; `get` marks an entry recent. `sizeof(key, value)` estimates
    an entry's bytes; without it every entry counts SLOT_BYTES. `on_evict(key, value)` hears
    every eviction made to keep the bounds (not `pop`s).

    An entry's size is estimated when it is put and again when it leaves, so a value must not
    change size while held unless it is taken out and put back; with `mutable=True` each
    entry's size is remembered instead (about 100 bytes more per entry), for values changed in
    place and then `put` again."""

    __slots__ = (
        "_data",
        "_sizes",
        "bytes",
        "evicted",
        "max_bytes",
        "max_items",
        "on_evict",
        "sizeof",
    )

    def __init__(
        self,
        max_items: int,
        *,
        max_bytes: int | None = None,
        sizeof: Callable[[K, V], int] | None = None,
        on_evict: Callable[[K, V], None] | None = None,
        mutable: bool = False,
    ) -> None:
        if max_items < 1:
            raise ValueError("max_items must be >= 1")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.sizeof = sizeof
        self.on_evict = on_evict
        self._data: OrderedDict[K, V] = OrderedDict()
        self._sizes: dict[K, int] | None = {} if mutable else None
        self.bytes = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def values(self) -> Iterator[V]:
        return iter(self._data.values())

    def items(self) -> Iterator[tuple[K, V]]:
        return iter(self._data.items())

    def peek(self, key: K) -> V | None:
        """The entry without marking it recent."""
        return self._data.get(key)

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def oldest(self) -> tuple[K, V] | None:
        """The least recently used entry, if any."""
        for item in self._data.items():
            return item
        return None

    def _size(self, key: K, value: V) -> int:
        return SLOT_BYTES + (self.sizeof(key, value) if self.sizeof is not None else 0)

    def _held(self, key: K, value: V) -> int:
        """The size counted for an entry being removed or replaced."""
        if self._sizes is not None:
            return self._sizes.pop(key, 0)
        return self._size(key, value)

    def put(self, key: K, value: V, size: int | None = None) -> None:
        """Insert or replace `key` as the most recent entry; `size`: its `sizeof`, when the
        caller has it already."""
        # On every request's path: inlined rather than split into helpers.
        data, sizes = self._data, self._sizes
        if size is None:
            size = self.sizeof(key, value) if self.sizeof is not None else 0
        size += SLOT_BYTES
        if key in data:
            if sizes is not None:
                self.bytes -= sizes.get(key, 0)
            else:
                self.bytes -= self._size(key, data[key])
            data.move_to_end(key)
        self.bytes += size
        if sizes is not None:
            sizes[key] = size
        data[key] = value
        if len(data) > self.max_items or (
            self.max_bytes is not None and self.bytes > self.max_bytes
        ):
            self._enforce()

    def resize(self, key: K) -> None:
        """Re-estimate an entry whose value changed in place, then enforce the bounds."""
        value = self._data.get(key)
        if value is not None:
            self.put(key, value)

    def pop(self, key: K) -> V | None:
        value = self._data.pop(key, None)
        if value is not None:
            self.bytes -= self._held(key, value)
        return value

    def clear(self) -> None:
        self._data.clear()
        if self._sizes is not None:
            self._sizes.clear()
        self.bytes = 0

    def _over(self) -> bool:
        if len(self._data) > self.max_items:
            return True
        return self.max_bytes is not None and self.bytes > self.max_bytes

    def _enforce(self) -> None:
        # The newest entry stays even when it alone is over the byte bound: an entry larger than
        # the bound is the caller's to refuse (see `fits`).
        while len(self._data) > 1 and self._over():
            key, value = self._data.popitem(last=False)
            self.bytes -= self._held(key, value)
            self.evicted += 1
            if self.on_evict is not None:
                self.on_evict(key, value)

    def fits(self, size: int) -> bool:
        """Whether an entry of `size` estimated bytes may ever be held (the byte bound)."""
        return self.max_bytes is None or size + SLOT_BYTES <= self.max_bytes

    def usage(self) -> dict[str, Any]:
        """`{"size", "bound", "bytes", "bytes_bound", "evicted"}` for /stats and /metrics."""
        return {
            "size": len(self._data),
            "bound": self.max_items,
            "bytes": self.bytes,
            "bytes_bound": self.max_bytes,
            "evicted": self.evicted,
        }
