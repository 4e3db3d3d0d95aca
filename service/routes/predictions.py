"""Predicted ratings for (user, item) pairs, with the fallbacks of the model."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from recsys.store.tables import EXTERNAL_ID_LENGTH
from service.deps import ReadingDep, check_batch
from service.errors import BODY, CLIENT_RESPONSES, responses
from service.model_holder import LoadedModel
from service.schemas import NO_NUL, Basis, PredictionPublic, PredictionsCreate, PredictionsPublic
from service.state import AppState

# Every route takes ReadingDep, which checks the reader's key.
router = APIRouter(prefix="/v1", tags=["predictions"], responses=CLIENT_RESPONSES)

IdQuery = Annotated[str, Query(min_length=1, max_length=EXTERNAL_ID_LENGTH, pattern=NO_NUL)]


def _basis(model: LoadedModel, user_id: str, item_id: str) -> Basis:
    rec = model.recommender
    user = rec.is_known_user(user_id)
    item = rec.is_known_item(item_id)
    if user and item:
        return "genres" if rec.new_items and rec.is_new[rec.item_vocab.index(item_id)] else "model"
    if user:
        return "user_bias"
    return "item_bias" if item else "global_mean"


def _predict(
    state: AppState, production: LoadedModel, pairs: list[tuple[str, str]]
) -> list[PredictionPublic]:
    """Each pair by the model that serves its user (the canary for users in its share). An
    item neither the model nor the catalog knows is a 404, as for its similar items: a
    prediction for an id that names nothing is a client's mistake, not a fallback."""
    catalog = state.models.catalog
    known = production.recommender.is_known_item
    unknown = sorted({i for _, i in pairs if not known(i) and i not in catalog})
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise HTTPException(404, f"item {unknown[0]!r} is not in the catalog{more}")
    models = [state.models.for_user(u, production) for u, _ in pairs]
    out: list[PredictionPublic | None] = [None] * len(pairs)
    for model in {id(m): m for m in models}.values():
        rows = [n for n, m in enumerate(models) if m is model]
        values = model.recommender.predict([pairs[n][0] for n in rows], [pairs[n][1] for n in rows])
        for n, v in zip(rows, values, strict=True):
            u, i = pairs[n]
            out[n] = PredictionPublic(
                user_id=u,
                item_id=i,
                predicted_rating=float(v),
                basis=_basis(model, u, i),
                model_version=model.version,
            )
    return [p for p in out if p is not None]


@router.get("/predictions", responses=responses(404))
async def predict_one(user_id: IdQuery, item_id: IdQuery, reading: ReadingDep) -> PredictionPublic:
    """The rating the model expects `user_id` to give `item_id`. A user or a catalog item
    the model has not learned falls back to the biases that are known, then to the global
    mean; `basis` says which. An item the catalog does not hold is a 404."""
    return _predict(reading.state, reading.model, [(user_id, item_id)])[0]


@router.post("/predictions", responses=responses(404, *BODY))
async def predict_many(body: PredictionsCreate, reading: ReadingDep) -> PredictionsPublic:
    """Predicted ratings for a batch of pairs, in the order given."""
    state, model = reading.state, reading.model
    check_batch(len(body.pairs), state.settings, "pairs")
    return PredictionsPublic(
        model_version=model.version,
        predictions=_predict(state, model, [(p.user_id, p.item_id) for p in body.pairs]),
    )
