"""Each item's genres, as the ranking head uses them (side information, as in LightFM).

The catalog stores genres pipe-separated, as MovieLens writes them ("Comedy|Crime"). Here
they become compressed rows: the genre indices of item row r are
`index[indptr[r]:indptr[r + 1]]`, which is what `torch.nn.functional.embedding_bag` takes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# MovieLens' word for "none"; a genre of its own would tie unrelated films together.
NO_GENRES = "(no genres listed)"


def split_genres(text: str | None) -> list[str]:
    """The genres of one pipe-separated string, without blanks, duplicates or NO_GENRES."""
    seen: dict[str, None] = {}
    for part in (text or "").split("|"):
        name = part.strip()
        if name and name != NO_GENRES:
            seen[name] = None
    return list(seen)


@dataclass(frozen=True, eq=False)
class Genres:
    names: tuple[str, ...]
    indptr: np.ndarray
    index: np.ndarray

    def __post_init__(self) -> None:
        if len(self.indptr) == 0 or self.indptr[-1] != len(self.index):
            raise ValueError("genre rows do not match their index")
        if len(self.index) and (self.index.min() < 0 or self.index.max() >= len(self.names)):
            raise ValueError("genre index out of range of the genre names")

    @classmethod
    def parse(cls, per_item: Sequence[str | None]) -> Genres:
        """From one pipe-separated string (or None) per item row."""
        names: dict[str, int] = {}
        rows = [sorted(names.setdefault(g, len(names)) for g in split_genres(t)) for t in per_item]
        index = [genre for row in rows for genre in row]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(row) for row in rows], out=indptr[1:])
        return cls(tuple(names), indptr, np.asarray(index, dtype=np.int64))

    @property
    def n_items(self) -> int:
        return len(self.indptr) - 1

    @property
    def n_genres(self) -> int:
        return len(self.names)

    def of(self, row: int) -> list[str]:
        return [self.names[g] for g in self.index[self.indptr[row] : self.indptr[row + 1]]]
