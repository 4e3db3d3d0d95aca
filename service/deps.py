"""Everything a route needs, declared once as an `Annotated` dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from sqlalchemy import Engine

from recsys.config import Settings
from service.model_holder import LoadedModel
from service.state import AppState


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.recsys
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_settings(state: StateDep) -> Settings:
    return state.settings


def get_engine(state: StateDep) -> Engine:
    return state.engine


def get_model(state: StateDep) -> LoadedModel:
    model = state.models.current
    if model is None:
        raise HTTPException(
            503,
            "no model is in production yet: train one with `recsys train` (it is promoted when "
            "it beats the baselines); the service picks it up within seconds",
        )
    return model


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
ModelDep = Annotated[LoadedModel, Depends(get_model)]


def check_k(k: int, settings: Settings) -> None:
    if k > settings.max_k:
        raise HTTPException(422, f"k={k} is above the limit of {settings.max_k}")


def check_batch(size: int, settings: Settings, what: str) -> None:
    if size > settings.max_batch:
        raise HTTPException(
            422, f"{size} {what} in one request is above the limit of {settings.max_batch}"
        )


def check_rating(value: float, settings: Settings, where: str) -> None:
    scale = settings.rating_scale
    if not scale.min <= value <= scale.max:
        raise HTTPException(
            422, f"{where}: rating {value} is outside the scale {scale.min}..{scale.max}"
        )
