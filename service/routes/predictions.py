"""Predicted ratings for (user, item) pairs, with the fallbacks of the model."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from recsys.store.tables import EXTERNAL_ID_LENGTH
from service.deps import ModelDep, SettingsDep, check_batch
from service.errors import ERROR_RESPONSES
from service.model_holder import LoadedModel
from service.schemas import Basis, PredictionPublic, PredictionsCreate, PredictionsPublic

router = APIRouter(prefix="/v1", tags=["predictions"], responses=ERROR_RESPONSES)

IdQuery = Annotated[str, Query(min_length=1, max_length=EXTERNAL_ID_LENGTH)]


def _basis(model: LoadedModel, user_id: str, item_id: str) -> Basis:
    user = model.recommender.is_known_user(user_id)
    item = model.recommender.is_known_item(item_id)
    if user and item:
        return "model"
    if user:
        return "user_bias"
    return "item_bias" if item else "global_mean"


def _predict(model: LoadedModel, pairs: list[tuple[str, str]]) -> list[PredictionPublic]:
    values = model.recommender.predict([u for u, _ in pairs], [i for _, i in pairs])
    return [
        PredictionPublic(
            user_id=u,
            item_id=i,
            predicted_rating=float(v),
            basis=_basis(model, u, i),
            model_version=model.version,
        )
        for (u, i), v in zip(pairs, values, strict=True)
    ]


@router.get("/predictions")
async def predict_one(user_id: IdQuery, item_id: IdQuery, model: ModelDep) -> PredictionPublic:
    """The rating the model expects `user_id` to give `item_id`. Unknown ids fall back to the
    biases that are known, then to the global mean; `basis` says which."""
    return _predict(model, [(user_id, item_id)])[0]


@router.post("/predictions")
async def predict_many(
    body: PredictionsCreate, model: ModelDep, settings: SettingsDep
) -> PredictionsPublic:
    """Predicted ratings for a batch of pairs, in the order given."""
    check_batch(len(body.pairs), settings, "pairs")
    return PredictionsPublic(
        model_version=model.version,
        predictions=_predict(model, [(p.user_id, p.item_id) for p in body.pairs]),
    )
