"""Who may do what. Reads are open, or need a client key (`RECSYS_READS_REQUIRE_KEY`);
writes (feedback, catalog) need a client key in `X-API-Key`; operator actions need
`Authorization: Bearer <operator token>` or the dashboard's session cookie. Keys come from
`RECSYS_CLIENT_API_KEYS` or the database (`recsys keys create`, stored hashed); every
comparison takes constant time. 401: no credential; 403: a wrong one."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Cookie, Depends, Header, HTTPException, Request

from recsys import keys
from service.state import AppState, app_state

SESSION_COOKIE = "recsys_operator"


def session_value(token: str) -> str:
    """The dashboard's session cookie: an HMAC of a fixed label under the operator token.
    It proves the browser once presented the token, without storing the token itself, and
    stops working when the token is changed."""
    return hmac.new(token.encode(), b"recsys-dashboard-session", hashlib.sha256).hexdigest()


def _any_equal(given: str, candidates: list[str]) -> bool:
    found = False
    for candidate in candidates:  # no early exit: timing says nothing about the keys
        found |= hmac.compare_digest(given.encode(), candidate.encode())
    return found


def operator_ok(state: AppState, authorization: str | None, cookie: str | None) -> bool | None:
    """True for a valid operator credential, False for a wrong one, None when none was sent.
    Raises 403 while operator actions are disabled (no token, development mode)."""
    token = (
        state.settings.operator_token.get_secret_value() if state.settings.operator_token else ""
    )
    operator_keys = state.models.key_hashes
    if not token and OPERATOR_ROLE not in operator_keys.values():
        raise HTTPException(
            403, "operator actions are disabled: set RECSYS_OPERATOR_TOKEN to enable them"
        )
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and given:
        return (bool(token) and _any_equal(given, [token])) | keys.matches(
            given, operator_keys, keys.OPERATOR
        )
    if cookie:
        return bool(token) and _any_equal(cookie, [session_value(token)])
    return None


OPERATOR_ROLE = keys.OPERATOR


# The dependencies take the request, not StateDep: FastAPI solves each sub-dependency on every
# request, and on the read paths that cost as much as the answer (see service.deps).
async def require_operator(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    recsys_operator: Annotated[str | None, Cookie()] = None,
) -> None:
    ok = operator_ok(app_state(request), authorization, recsys_operator)
    if ok is None:
        raise HTTPException(
            401,
            "operator credential required: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not ok:
        raise HTTPException(403, "the operator credential is wrong")


def _client(state: AppState, api_key: str | None, what: str) -> None:
    configured = state.settings.client_keys()
    stored = state.models.key_hashes
    if not configured and keys.CLIENT not in stored.values():
        if state.settings.dev_mode:
            return  # development: open, as the start-up banner says
        raise HTTPException(
            403,
            f"{what} need a client key and none is configured: set RECSYS_CLIENT_API_KEYS "
            "or run `recsys keys create NAME`",
        )
    if not api_key:
        raise HTTPException(401, f"{what} need a client key in the X-API-Key header")
    if not (_any_equal(api_key, configured) | keys.matches(api_key, stored, keys.CLIENT)):
        raise HTTPException(403, "the X-API-Key is not a valid client key")


def check_reader(state: AppState, api_key: str | None) -> None:
    if state.settings.reads_require_key:
        _client(state, api_key, "reads")


ApiKeyHeader = Annotated[str | None, Header()]
API_KEY_HEADER = ("x-api-key", "A client key (RECSYS_CLIENT_API_KEYS or `recsys keys create`).")
"""The header as `service.query.openapi_parameters` documents it."""


async def require_writer(request: Request, x_api_key: ApiKeyHeader = None) -> None:
    _client(app_state(request), x_api_key, "writes")


async def require_reader(request: Request, x_api_key: ApiKeyHeader = None) -> None:
    check_reader(app_state(request), x_api_key)


OperatorDep = Depends(require_operator)
WriterDep = Depends(require_writer)
ReaderDep = Depends(require_reader)
