"""The catalog as the service holds it: titles and genres by item id, and genre filters.

Kept in memory so that lists need no database round trip, and still work while the
database is away. Genres are lists here, as every answer gives them; storage keeps them
pipe-separated (`recsys.data.genres`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import Engine

from recsys.data.genres import split_genres
from recsys.errors import InvalidInputError
from recsys.model.lru import LruCache
from recsys.model.recommender import Recommender
from recsys.store import queries
from recsys.store.db import session_scope

Entry = tuple[str | None, list[str]]
"""(title, genres) of one item."""


class UnknownGenreError(InvalidInputError):
    """A filter names a genre no item of the catalog has."""


@dataclass(frozen=True)
class GenreFilter:
    """Items in any of `genres` (none: every item), and in none of `excluded`; names are
    matched without regard to case."""

    genres: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()

    @classmethod
    def of(cls, genres: Sequence[str], excluded: Sequence[str]) -> GenreFilter | None:
        """The filter of a request; None when it asks for none."""
        if not genres and not excluded:
            return None
        return cls(
            tuple(sorted({g.casefold() for g in genres})),
            tuple(sorted({g.casefold() for g in excluded})),
        )


_MaskKey = tuple[tuple[int, datetime | None], GenreFilter]


@dataclass
class Catalog:
    entries: dict[str, Entry] = field(default_factory=dict)
    state: tuple[int, datetime | None] = (0, None)
    # Item ids by case-folded genre, and each genre's name as the catalog spells it.
    by_genre: dict[str, frozenset[str]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    # Masks over a model's item rows, by (catalog state, filter), for the last two models
    # asked about (production and a canary): a filter costs a vocabulary lookup of every item
    # in its genres once per model. Older models are let go, so a reload frees them.
    _masks: list[tuple[Recommender, LruCache[_MaskKey, np.ndarray]]] = field(default_factory=list)

    def get(self, item_id: str) -> Entry:
        return self.entries.get(item_id, (None, []))

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.entries

    def describe(self, item_ids: Sequence[str]) -> list[Entry]:
        """`get` of each item, in order (ten on every list served)."""
        get = self.entries.get
        return [get(item_id) or (None, []) for item_id in item_ids]

    def refresh(self, engine: Engine) -> None:
        """Read the items changed since the last refresh; nothing when the catalog's count
        and latest update are as they were (the common case: one aggregate query)."""
        with session_scope(engine) as s:
            state = queries.catalog_state(session=s)
            if state == self.state:
                return
            # Overlap the previous latest update: writers' clocks differ a little.
            latest = self.state[1]
            since = latest - timedelta(seconds=2) if latest is not None else None
            rows = queries.catalog(session=s, updated_since=since)
        for ext, title, stored, _ in rows:
            self.entries[ext] = (title, split_genres(stored))
        by_genre: dict[str, set[str]] = {}
        names: dict[str, str] = {}
        for ext, (_, genres) in list(self.entries.items()):
            for genre in genres:
                by_genre.setdefault(genre.casefold(), set()).add(ext)
                names.setdefault(genre.casefold(), genre)
        # Swapped whole: requests read these while a refresh runs.
        self.by_genre = {g: frozenset(ids) for g, ids in by_genre.items()}
        self.names = names
        self.state = state

    def allowed(self, rec: Recommender, wanted: GenreFilter) -> np.ndarray:
        """Which of `rec`'s item rows pass the filter. Raises UnknownGenreError for a genre
        no item has: a misspelt filter would otherwise answer an empty list."""
        unknown = [g for g in (*wanted.genres, *wanted.excluded) if g not in self.by_genre]
        if unknown:
            known = ", ".join(sorted(self.names.values())) or "none yet"
            raise UnknownGenreError(
                f"no item has the genre {', '.join(map(repr, unknown))}; genres: {known}"
            )
        cache = self._masks_of(rec)
        key = (self.state, wanted)
        found = cache.get(key)
        if found is not None:
            return found
        n_items = len(rec.item_vocab)
        mask = np.zeros(n_items, dtype=bool) if wanted.genres else np.ones(n_items, dtype=bool)
        for genre in wanted.genres:
            mask[self._rows(rec, genre)] = True
        for genre in wanted.excluded:
            mask[self._rows(rec, genre)] = False
        cache.put(key, mask)
        return mask

    def _masks_of(self, rec: Recommender) -> LruCache[_MaskKey, np.ndarray]:
        for owner, masks in self._masks:
            if owner is rec:
                return masks
        fresh: LruCache[_MaskKey, np.ndarray] = LruCache(32)
        self._masks = [(rec, fresh), *self._masks][:2]  # replaced whole: readers see either
        return fresh

    def _rows(self, rec: Recommender, genre: str) -> np.ndarray:
        rows = rec.item_vocab.indices(list(self.by_genre[genre]))
        known: np.ndarray = rows[rows >= 0]
        return known
