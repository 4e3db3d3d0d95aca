"""A query string read into one pydantic model, and path parameters read by hand, for the
hottest route.

FastAPI solves each declared parameter and dependency on every request with Python-level
introspection: on GET /v1/users/{id}/recommendations its four query parameters and the reader
dependency cost more than the recommendation itself (about 100 of 400 us a request, FastAPI
0.165), and the one path parameter another 40-60 us. Here the query is validated by one
`model_validate` and a path parameter by a `TypeAdapter`, errors are raised as FastAPI's own
`RequestValidationError` (so clients get the same 422), and `openapi_parameters` documents them
as the parameters that FastAPI would have listed.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any, TypeVar, cast, get_origin

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.datastructures import QueryParams

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


@cache
def _fields(model: type[BaseModel]) -> tuple[tuple[str, bool], ...]:
    """(name, repeated) per field: a list field takes every value of a repeated key."""
    return tuple(
        (name, get_origin(field.annotation) is list) for name, field in model.model_fields.items()
    )


CACHED_LENGTH = 256
"""Query strings up to this long are parsed once (`_parsed`): clients ask again and again with
the same few options, and validating them cost 10 us a request. Longer ones (long exclusion
lists) are rarely the same twice, and would make the cache large."""


def parse_query(request: Request, model: type[M]) -> M:
    """The request's query string as `model` (frozen: a parsed query is shared by requests);
    unknown keys are ignored, as FastAPI does."""
    raw: bytes = request.scope.get("query_string", b"")
    if len(raw) <= CACHED_LENGTH:
        return cast(M, _parsed(model, raw))
    return _validated(request.query_params, model)


@lru_cache(maxsize=1024)
def _parsed(model: type[BaseModel], raw: bytes) -> BaseModel:
    return _validated(QueryParams(raw), model)


def _validated(params: QueryParams, model: type[M]) -> M:
    values: dict[str, Any] = {}
    for name, repeated in _fields(model):
        if name in params:
            values[name] = params.getlist(name) if repeated else params[name]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise _invalid(exc, "query") from None


def path_value(request: Request, name: str, adapter: TypeAdapter[T]) -> T:
    """The path parameter `name`, validated by `adapter`."""
    try:
        return adapter.validate_python(request.path_params[name])
    except ValidationError as exc:
        raise _invalid(exc, "path", name) from None


def _invalid(exc: ValidationError, *where: str) -> RequestValidationError:
    """pydantic's errors, located as FastAPI locates those of the parameters it reads."""
    errors = exc.errors(include_url=False, include_context=False)
    return RequestValidationError([{**e, "loc": (*where, *e["loc"])} for e in errors])


def openapi_parameters(
    model: type[BaseModel],
    *headers: tuple[str, str],
    path: dict[str, TypeAdapter[Any]] | None = None,
) -> dict[str, Any]:
    """`openapi_extra` for a route that reads its query with `parse_query`: the fields of
    `model` as optional query parameters, `headers` as (name, description) pairs, and the
    parameters it reads with `path_value` as `path` (name: adapter)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": adapter.json_schema()}
        for name, adapter in (path or {}).items()
    ]
    for name, prop in schema["properties"].items():
        prop = dict(prop)
        description = prop.pop("description", None)
        parameter = {"name": name, "in": "query", "required": False, "schema": prop}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    for name, description in headers:
        parameters.append(
            {
                "name": name,
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": description,
            }
        )
    return {"parameters": parameters}
