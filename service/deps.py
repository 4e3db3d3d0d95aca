"""Everything a route needs, declared once as an `Annotated` dependency.

The providers are `async def` although they do not await: FastAPI runs a plain `def`
dependency in its thread pool, and those hops cost more than a whole recommendation. They
take the `Request` rather than one another: FastAPI solves every sub-dependency afresh on each
request (its cache only skips the call), about 15 us a node on the hot paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import Engine

from recsys.config import Settings
from service.auth import ApiKeyHeader, check_reader
from service.model_holder import LoadedModel
from service.state import AppState, app_state


async def get_state(request: Request) -> AppState:
    return app_state(request)


StateDep = Annotated[AppState, Depends(get_state)]

GenreQuery = Annotated[
    list[str],
    Query(
        max_length=100,
        description="Genre filter, applied before the top k is cut: `genre` keeps items of any "
        "of the genres given, `exclude_genre` drops items of any of them (repeat the key).",
    ),
]


async def get_settings(state: StateDep) -> Settings:
    return state.settings


async def get_engine(state: StateDep) -> Engine:
    return state.engine


def current_model(state: AppState) -> LoadedModel:
    model = state.models.current
    if model is None:
        raise HTTPException(
            503,
            "no model is in production yet: train one with `recsys train` (it is promoted when "
            "it beats the baselines); the service picks it up within seconds",
        )
    return model


async def get_model(request: Request) -> LoadedModel:
    return current_model(app_state(request))


@dataclass(frozen=True)
class Reading:
    state: AppState
    model: LoadedModel


def read_access(request: Request) -> Reading:
    """Everything a read route needs, once the reader's key is checked: the state and the
    serving model. Routes take it as ReadingDep; the hottest calls it (see service.query)."""
    state = app_state(request)
    check_reader(state, request.headers.get("x-api-key"))
    return Reading(state, current_model(state))


async def get_reading(request: Request, x_api_key: ApiKeyHeader = None) -> Reading:
    """One dependency where the reader check, state and model made three: FastAPI's cost is
    per dependency. `x_api_key` is declared for the API docs; `read_access` reads it."""
    return read_access(request)


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
ModelDep = Annotated[LoadedModel, Depends(get_model)]
ReadingDep = Annotated[Reading, Depends(get_reading)]
"""For routes that answer from the model; it does the reader check, so they need no ReaderDep."""


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


def as_json(body: BaseModel) -> Response:
    """Serialise a response we built ourselves. Returning a model makes FastAPI validate it
    again against the response model; on the hot paths that doubled the time per request.
    The route still declares `response_model` for the OpenAPI schema."""
    return Response(body.model_dump_json(), media_type="application/json")


def json_response(body: Mapping[str, Any]) -> Response:
    """Serialise a body built as plain data; the route declares the model it follows as
    `response_model`. orjson wrote a MovieLens list of 10 in 2 us, pydantic-core's `to_json`
    in 8 (the same bytes): a few percent of a first visit (benchmarks/README.md)."""
    return Response(orjson.dumps(body), media_type="application/json")
