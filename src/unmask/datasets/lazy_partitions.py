"""A read-only ``{partition_id: job}`` mapping that stores columns, not one object per partition.

The data stages return one lazy job per image. A dict of 200,000 small job objects costs a few
hundred bytes each (the object, its fields, the key, the dict slot); :class:`LazyPartitions` keeps
the sorted keys in one NumPy string array and builds each job from the stage's own column arrays
when it is asked for, so a stage's output costs tens of bytes per image and the saving dataset
streams it in key order without ever holding all the jobs.
"""

from __future__ import annotations

from collections.abc import Callable, ItemsView, Iterator, Mapping, Sequence
from typing import Generic, TypeVar

import numpy as np

V = TypeVar("V")

__all__ = ["LazyPartitions"]


class _SortedItems(ItemsView):
    def __iter__(self) -> Iterator[tuple[str, V]]:
        return self._mapping.iter_items()


class LazyPartitions(Mapping[str, V], Generic[V]):
    """``{key: make(position)}`` for ``keys[position]``; iteration is in sorted key order.

    ``make`` receives the key's position in the original ``keys`` sequence. Keys must be unique.
    """

    def __init__(self, keys: Sequence[str] | np.ndarray, make: Callable[[int], V]) -> None:
        array = np.asarray(keys, dtype=str) if len(keys) else np.empty(0, dtype="<U1")
        order = np.argsort(array, kind="stable")
        self._keys = array[order]
        self._positions = order.astype(np.int64)
        if len(self._keys) > 1:
            same = self._keys[1:] == self._keys[:-1]
            if same.any():
                raise ValueError(f"duplicate partition ids, e.g. {str(self._keys[1:][same][0])!r}")
        self._make = make

    def _find(self, key: object) -> int | None:
        if not isinstance(key, str) or not len(self._keys):
            return None
        i = int(np.searchsorted(self._keys, key))
        return i if i < len(self._keys) and self._keys[i] == key else None

    def __getitem__(self, key: str) -> V:
        i = self._find(key)
        if i is None:
            raise KeyError(key)
        return self._make(int(self._positions[i]))

    def __contains__(self, key: object) -> bool:
        return self._find(key) is not None

    def __iter__(self) -> Iterator[str]:
        return (str(k) for k in self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def items(self) -> ItemsView[str, V]:
        return _SortedItems(self)

    def iter_items(self) -> Iterator[tuple[str, V]]:
        """``(key, value)`` in key order, without a key lookup per item."""
        for key, position in zip(self._keys, self._positions):
            yield str(key), self._make(int(position))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} partitions)"
