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

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorPublic, "description": text}
    for code, text in (
        (404, "Not found"),
        (409, "Conflicts with the current state"),
        (422, "Invalid input"),
        (503, "No model yet, or the database is unavailable"),
    )
}

CLIENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    401: {"model": ErrorPublic, "description": "No client key (X-API-Key)"},
    403: {"model": ErrorPublic, "description": "Wrong client key, or none configured"},
    413: {"model": ErrorPublic, "description": "Request body too large"},
}

OPERATOR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    401: {"model": ErrorPublic, "description": "No operator credential"},
    403: {"model": ErrorPublic, "description": "Wrong credential, or operator actions disabled"},
    413: {"model": ErrorPublic, "description": "Upload too large"},
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
