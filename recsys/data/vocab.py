"""Vocabulary: external ids (strings) <-> dense row numbers of the embedding tables.

External ids never reach tensors (LensKit's `Vocabulary` does the same); an id the model has
not seen maps to -1, and the caller decides the fallback.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

UNKNOWN = -1


class Vocabulary:
    """An ordered, duplicate-free list of ids; row `n` of an embedding belongs to `ids[n]`."""

    __slots__ = ("_ids", "_index")

    def __init__(self, ids: Iterable[str]) -> None:
        self._ids: list[str] = [str(x) for x in ids]
        self._index: dict[str, int] = {x: n for n, x in enumerate(self._ids)}
        if len(self._index) != len(self._ids):
            raise ValueError("vocabulary ids must be unique")

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external_id: object) -> bool:
        return external_id in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._ids == other._ids

    def __hash__(self) -> int:
        return hash(tuple(self._ids))

    def __repr__(self) -> str:
        head = ", ".join(self._ids[:3])
        return f"Vocabulary({len(self)} ids: {head}{', ...' if len(self) > 3 else ''})"

    @property
    def ids(self) -> list[str]:
        return self._ids

    def index(self, external_id: str) -> int:
        """Row of one id, or UNKNOWN (-1)."""
        return self._index.get(str(external_id), UNKNOWN)

    def indices(self, external_ids: Sequence[str]) -> np.ndarray:
        """Rows of many ids as int64, UNKNOWN (-1) where an id is not in the vocabulary."""
        get = self._index.get
        return np.fromiter(
            (get(str(x), UNKNOWN) for x in external_ids), dtype=np.int64, count=len(external_ids)
        )

    def id_of(self, row: int) -> str:
        return self._ids[row]

    def ids_of(self, rows: Iterable[int]) -> list[str]:
        """Ids of rows given as Python ints (numpy ints index too, but slower)."""
        return list(map(self._ids.__getitem__, rows))
