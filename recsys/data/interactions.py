"""`Interactions`: the one container of ratings that training and evaluation share.

Compact arrays (int32 rows, float32 values), checked when built, as in spotlight's
`Interactions`: a broken container fails at construction, not three functions later.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from recsys.data.genres import Genres
from recsys.data.vocab import Vocabulary

if TYPE_CHECKING:  # pandas takes a third of a second to import; only notebooks hand it in
    import pandas as pd


def is_sorted(values: np.ndarray) -> bool:
    """Whether `values` never decrease (snapshots are sorted by user, then item)."""
    return bool(len(values) < 2 or (values[1:] >= values[:-1]).all())


def is_sorted_by_pair(users: np.ndarray, items: np.ndarray) -> bool:
    """Whether the pairs are sorted by user, then item, without repeats (as snapshots come)."""
    if len(users) < 2:
        return True
    same = users[1:] == users[:-1]
    return bool(np.all((users[1:] > users[:-1]) | (same & (items[1:] > items[:-1]))))


@dataclass(frozen=True, eq=False)
class Interactions:
    """Ratings of `users[n]` on `items[n]`, as rows of `user_vocab` and `item_vocab`."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    user_vocab: Vocabulary
    item_vocab: Vocabulary
    timestamps: np.ndarray | None = field(default=None)
    # The newest rating's Unix time; known even when the per-rating times were not loaded.
    max_timestamp: int | None = field(default=None)
    # Each item row's genres, where the catalog has them (the ranking head uses them).
    genres: Genres | None = field(default=None)

    def __post_init__(self) -> None:
        n = len(self.users)
        lengths = {len(self.items), len(self.ratings)}
        if self.timestamps is not None:
            lengths.add(len(self.timestamps))
        if lengths != {n}:
            raise ValueError("users, items, ratings and timestamps must have the same length")
        object.__setattr__(self, "users", np.ascontiguousarray(self.users, dtype=np.int32))
        object.__setattr__(self, "items", np.ascontiguousarray(self.items, dtype=np.int32))
        object.__setattr__(self, "ratings", np.ascontiguousarray(self.ratings, dtype=np.float32))
        if self.timestamps is not None:
            object.__setattr__(self, "timestamps", np.asarray(self.timestamps, dtype=np.int64))
            if n and self.max_timestamp is None:
                object.__setattr__(self, "max_timestamp", int(self.timestamps.max()))
        if n:
            if self.users.min() < 0 or self.users.max() >= len(self.user_vocab):
                raise ValueError("user rows out of range of the user vocabulary")
            if self.items.min() < 0 or self.items.max() >= len(self.item_vocab):
                raise ValueError("item rows out of range of the item vocabulary")
            if not np.isfinite(self.ratings).all():
                raise ValueError("ratings must be finite numbers")
        if self.genres is not None and self.genres.n_items != self.n_items:
            raise ValueError("genres must have one row per item of the vocabulary")

    def __len__(self) -> int:
        return len(self.users)

    def __repr__(self) -> str:
        density = len(self) / max(1, self.n_users * self.n_items)
        return (
            f"<Interactions: {len(self):,} ratings of {self.n_users:,} users on "
            f"{self.n_items:,} items, density {density:.4%}>"
        )

    @property
    def n_users(self) -> int:
        return len(self.user_vocab)

    @property
    def n_items(self) -> int:
        return len(self.item_vocab)

    def subset(self, index: np.ndarray) -> Interactions:
        """The rows selected by a boolean mask or integer index; vocabularies are kept."""
        ts = None if self.timestamps is None else self.timestamps[index]
        return Interactions(
            self.users[index],
            self.items[index],
            self.ratings[index],
            self.user_vocab,
            self.item_vocab,
            ts,
            genres=self.genres,
        )

    def concat(self, other: Interactions) -> Interactions:
        """These ratings followed by `other`'s, which must share the vocabularies."""
        if other.user_vocab is not self.user_vocab or other.item_vocab is not self.item_vocab:
            raise ValueError("only interactions over the same vocabularies can be concatenated")
        if (self.timestamps is None) != (other.timestamps is None):
            raise ValueError("both or neither of the interactions must have timestamps")
        ts = None
        if self.timestamps is not None and other.timestamps is not None:
            ts = np.concatenate([self.timestamps, other.timestamps])
        return Interactions(
            np.concatenate([self.users, other.users]),
            np.concatenate([self.items, other.items]),
            np.concatenate([self.ratings, other.ratings]),
            self.user_vocab,
            self.item_vocab,
            ts,
            genres=self.genres,
        )

    def with_genres(self, genres_by_id: Mapping[str, str | None]) -> Interactions:
        """The same ratings with each item's genres (pipe-separated, by external id)."""
        genres = Genres.parse([genres_by_id.get(i) for i in self.item_vocab.ids])
        return dataclasses.replace(self, genres=genres)

    def item_counts(self) -> np.ndarray:
        return np.bincount(self.items, minlength=self.n_items)

    def user_counts(self) -> np.ndarray:
        return np.bincount(self.users, minlength=self.n_users)

    @classmethod
    def from_arrays(
        cls,
        user_ids: np.ndarray,
        item_ids: np.ndarray,
        ratings: np.ndarray,
        timestamps: np.ndarray | None = None,
    ) -> Interactions:
        """Build from raw ids of any type; vocabularies are the sorted unique ids."""
        u_keys, u_rows = np.unique(np.asarray(user_ids).astype(str), return_inverse=True)
        i_keys, i_rows = np.unique(np.asarray(item_ids).astype(str), return_inverse=True)
        return cls(
            u_rows, i_rows, np.asarray(ratings), Vocabulary(u_keys), Vocabulary(i_keys), timestamps
        )

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        user_col: str = "user_id",
        item_col: str = "item_id",
        rating_col: str = "rating",
        timestamp_col: str | None = "timestamp",
    ) -> Interactions:
        """Build from a DataFrame, for notebooks: no database needed."""
        ts = None
        if timestamp_col is not None and timestamp_col in frame:
            ts = frame[timestamp_col].to_numpy()
        return cls.from_arrays(
            frame[user_col].to_numpy(), frame[item_col].to_numpy(), frame[rating_col].to_numpy(), ts
        )
