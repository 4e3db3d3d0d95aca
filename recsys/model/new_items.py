"""Items added to the catalog after training: a model extended with their genre vectors.

`with_new_items` returns a copy of a trained model whose item vocabulary ends with the new
items, each with the vectors of its genres (`recsys.model.genre_prior`). Lists, predictions,
nearest items and exploration then treat them as items like the others (`Recommender.is_new`
marks them), without a retrain; the next retrain learns them from their ratings. Users' rows
and everything the model learned are shared with the trained model, not copied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from recsys.data.vocab import Vocabulary
from recsys.model.recommender import Recommender


def addable(model: Recommender, catalog: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """The items of `catalog` (genres by item id) that `model` could add: not in its
    vocabulary, with at least one genre it learned; each with those genres."""
    prior = model.genre_prior
    if prior is None:
        return {}
    vocab = model.item_vocab
    found = {}
    for item_id, genres in catalog.items():
        if genres and item_id not in vocab:
            known = prior.known(genres)
            if known:
                found[item_id] = known
    return found


def with_new_items(model: Recommender, items: Mapping[str, Sequence[str]]) -> Recommender:
    """`model` with `items` (genres by item id, ids not in its vocabulary) appended as new
    items; `model` itself when there are none or it has no genre prior. Rows added earlier
    stay first among the new rows."""
    prior = model.genre_prior
    fresh = [i for i in items if i not in model.item_vocab]
    if prior is None or not fresh:
        return model
    x = prior.design([items[i] for i in fresh])
    rating = (x @ prior.rating.astype(np.float64)).astype(np.float32)
    k = model.item_factors.shape[1]
    ranking = model.ranking
    if ranking is not None and prior.ranking_bias is not None:
        assert prior.typical_out is not None and prior.typical_in is not None
        out = np.tile(prior.typical_out, (len(fresh), 1))
        if ranking.genre_out is not None:
            out += (x[:, 1:] @ ranking.genre_out.astype(np.float64)).astype(np.float32)
        ranking = dataclasses.replace(
            ranking,
            item_in=np.vstack([ranking.item_in, np.tile(prior.typical_in, (len(fresh), 1))]),
            item_out=np.vstack([ranking.item_out, out]),
            item_bias=np.concatenate(
                [ranking.item_bias, (x @ prior.ranking_bias).astype(np.float32)]
            ),
        )
    return dataclasses.replace(
        model,
        item_factors=np.vstack([model.item_factors, rating[:, :k]]),
        item_bias=np.concatenate([model.item_bias, rating[:, k]]),
        item_vocab=Vocabulary([*model.item_vocab.ids, *fresh]),
        item_counts=np.concatenate([model.item_counts, np.zeros(len(fresh), dtype=np.int64)]),
        ranking=ranking,
        new_items=model.new_items + len(fresh),
    )
