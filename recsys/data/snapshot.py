"""Snapshot: the ratings table as an `Interactions`, read once, in chunks, without ORM objects."""

from __future__ import annotations

import hashlib

import numpy as np
from sqlalchemy.orm import Session

from recsys.data.interactions import Interactions
from recsys.data.vocab import Vocabulary
from recsys.store import queries
from recsys.store.tables import items, users


def read_snapshot(*, session: Session) -> Interactions:
    """Every rating in the database; vocabularies hold only users and items that have ratings."""
    user_pk, item_pk, values, rated_at = queries.read_ratings_arrays(session=session)
    user_keys, user_rows = np.unique(user_pk, return_inverse=True)
    item_keys, item_rows = np.unique(item_pk, return_inverse=True)
    return Interactions(
        users=user_rows,
        items=item_rows,
        ratings=values,
        user_vocab=Vocabulary(queries.external_ids(session=session, table=users, ids=user_keys)),
        item_vocab=Vocabulary(queries.external_ids(session=session, table=items, ids=item_keys)),
        timestamps=rated_at,
    )


def fingerprint(data: Interactions) -> str:
    """A short hash of the data, so a model can say exactly which snapshot it learned from."""
    h = hashlib.sha256()
    for arr in (data.users, data.items, data.ratings):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update("\x1f".join(data.user_vocab.ids).encode())
    h.update("\x1f".join(data.item_vocab.ids).encode())
    return h.hexdigest()[:16]
