"""Errors as JSON with a message a client can act on; bad input is a 4xx, never a 500."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException

from recsys.errors import (
    ArtifactError,
    DatabaseUnavailableError,
    InvalidInputError,
    NoModelError,
    NotFoundError,
    RecsysError,
    StateConflictError,
    ValidationFailedError,
)
from service.schemas import ErrorPublic

log = logging.getLogger("recsys.service")

# What each error status means, for the OpenAPI document. A router declares what all its
# routes can answer; a route adds what only it can (`responses(404)`), so /docs lists the
# codes a route really returns.
_MEANING = {
    404: "Not found",
    408: "Request body sent too slowly (RECSYS_BODY_READ_TIMEOUT_S)",
    409: "Conflicts with the current state",
    413: "Request body too large",
    415: "Not text/csv",
    422: "Invalid input",
    503: "No model yet, or the database is unavailable or busy (Retry-After)",
}
_CLIENT_AUTH = {401: "No client key (X-API-Key)", 403: "Wrong client key, or none configured"}
_OPERATOR_AUTH = {
    401: "No operator credential",
    403: "Wrong credential, or operator actions disabled",
}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses of these error statuses, each an `ErrorPublic`."""
    return {code: {"model": ErrorPublic, "description": _MEANING[code]} for code in codes}


BODY = (408, 413)
"""What any route that reads a request body can answer besides."""

CLIENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **responses(422, 503),
    **{code: {"model": ErrorPublic, "description": text} for code, text in _CLIENT_AUTH.items()},
}
OPERATOR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **responses(422, 503),
    **{code: {"model": ErrorPublic, "description": t} for code, t in _OPERATOR_AUTH.items()},
}


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in errors[:10])
    return JSONResponse(ErrorPublic(detail=detail, errors=errors).model_dump(), status_code=422)


def _status_for(exc: RecsysError) -> int:
    if isinstance(exc, NoModelError | ArtifactError | DatabaseUnavailableError):
        return 503
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, InvalidInputError | ValidationFailedError):
        return 422
    if isinstance(exc, StateConflictError):
        return 409
    return 400


def _file(_: Request, exc: Exception) -> JSONResponse:
    """A refused file: the first bad lines, each with its number, and nothing written."""
    assert isinstance(exc, ValidationFailedError)
    errors = [{"line": e.line, "message": e.message} for e in exc.errors]
    body = ErrorPublic(detail=str(exc).split("\n", 1)[0], errors=errors)
    return JSONResponse(body.model_dump(), status_code=422)


def _recsys(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RecsysError)
    return JSONResponse({"detail": str(exc)}, status_code=_status_for(exc))


def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _database(_: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable: %s", exc)
    return JSONResponse(
        {"detail": "the database is unavailable right now; nothing was written, retry later"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def _data(_: Request, exc: Exception) -> JSONResponse:
    # A value the database cannot store slipped past validation: the client's input, not us.
    log.warning("database refused a value: %s", exc)
    return JSONResponse(
        {"detail": "a value in the request cannot be stored (nothing was written)"},
        status_code=422,
    )


def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return JSONResponse({"detail": "internal error; it has been logged"}, status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(ValidationFailedError, _file)
    app.add_exception_handler(RecsysError, _recsys)
    app.add_exception_handler(DataError, _data)
    app.add_exception_handler(OperationalError, _database)
    app.add_exception_handler(InterfaceError, _database)
    # Every pooled connection busy for pool_timeout seconds: overloaded, not broken.
    app.add_exception_handler(PoolTimeoutError, _database)
    app.add_exception_handler(Exception, _unexpected)
