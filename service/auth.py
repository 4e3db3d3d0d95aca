"""Who may do what. Reads are open, or need a client key (`RECSYS_READS_REQUIRE_KEY`);
writes (feedback, catalog) need a client key in `X-API-Key`; operator actions need
`Authorization: Bearer <operator token>` (or an operator key) or the dashboard's session
cookie. Keys come from `RECSYS_CLIENT_API_KEYS` or the database (`recsys keys create`, stored
hashed); every comparison takes constant time. 401: no credential; 403: a wrong one.

A cookie is sent by the browser on its own, also to requests that another page on the same
site makes (SameSite does not look at ports: a page on localhost:9000 is same-site for
localhost:8000). So a state-changing request authenticated by the cookie must come from a
page of this service: its Origin (or Referer) must name this host. Bearer calls are not
affected: no browser adds that header by itself."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Cookie, Depends, Header, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from recsys import keys, sessions
from service.state import AppState, app_state

SESSION_COOKIE = "recsys_operator"


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def token_fingerprint(token: str) -> str:
    """What a session keeps of the operator token it was opened with: an HMAC of a fixed
    label, so that a new token ends the sessions of the old one without storing either."""
    return hmac.new(token.encode(), b"recsys-dashboard-session", hashlib.sha256).hexdigest()


def _token(state: AppState) -> str:
    return state.settings.operator_token.get_secret_value() if state.settings.operator_token else ""


def sign_in(state: AppState, given: str) -> tuple[str, str] | None:
    """(credential, reference) for a session opened with `given`, if it is the operator token
    or an active operator key; else None."""
    token = _token(state)
    if token and _any_equal(given, [token]):
        return sessions.TOKEN, token_fingerprint(token)
    if keys.matches(given, state.models.key_hashes, keys.OPERATOR):
        return sessions.KEY, keys.digest(given)
    return None


def _session_ok(state: AppState, session_id: str) -> bool:
    found = sessions.find(state.engine, session_id)
    if found is None:
        return False
    if found.credential == sessions.TOKEN:
        token = _token(state)
        return bool(token) and _any_equal(found.reference, [token_fingerprint(token)])
    return state.models.key_hashes.get(found.reference) == keys.OPERATOR


def _any_equal(given: str, candidates: list[str]) -> bool:
    found = False
    for candidate in candidates:  # no early exit: timing says nothing about the keys
        found |= hmac.compare_digest(given.encode(), candidate.encode())
    return found


def operator_ok(state: AppState, authorization: str | None, cookie: str | None) -> bool | None:
    """True for a valid operator credential, False for a wrong one, None when none was sent.
    Raises 403 while operator actions are disabled (no token, development mode)."""
    token = _token(state)
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
        return _session_ok(state, cookie)
    return None


def operator_identity(state: AppState, authorization: str | None, cookie: str | None) -> str:
    """Who an accepted operator credential names, for the registry's audit trail: "operator
    token" or "key NAME", and "(dashboard)" when it came through a session."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and given:
        token = _token(state)
        if token and _any_equal(given, [token]):
            return "operator token"
        return keys.label(state.engine, keys.digest(given))
    found = sessions.find(state.engine, cookie) if cookie else None
    if found is None:
        return "operator"
    if found.credential == sessions.TOKEN:
        return "operator token (dashboard)"
    return f"{keys.label(state.engine, found.reference)} (dashboard)"


def acting_operator(request: Request) -> str:
    """The identity `require_operator` found for this (state-changing) request."""
    return str(getattr(request.state, "operator", "operator"))


def same_origin(request: Request) -> bool:
    """Whether the request names this host as its origin (Origin, else Referer). The scheme
    is not compared: behind a proxy that ends TLS the app sees http for an https page."""
    source = request.headers.get("origin") or request.headers.get("referer")
    host = request.headers.get("host")
    return bool(source and host) and urlsplit(source).netloc == host


OPERATOR_ROLE = keys.OPERATOR


# The dependencies take the request, not StateDep: FastAPI solves each sub-dependency on every
# request, and on the read paths that cost as much as the answer (see service.deps).
# Declared as security schemes (not plain headers), so that the OpenAPI document says which
# credential each operation takes and "Authorize" in /docs works. Neither refuses by itself
# (auto_error=False): the checks below answer 401 or 403 with their own messages.
OPERATOR_SCHEME = HTTPBearer(
    auto_error=False,
    scheme_name="operatorToken",
    description="RECSYS_OPERATOR_TOKEN, or a key from `recsys keys create NAME --role operator`.",
)
CLIENT_KEY_SCHEME = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="clientKey",
    description="A client key: RECSYS_CLIENT_API_KEYS, or `recsys keys create NAME`.",
)


async def require_operator(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(OPERATOR_SCHEME)] = None,
    recsys_operator: Annotated[str | None, Cookie()] = None,
) -> None:
    authorization = f"Bearer {bearer.credentials}" if bearer is not None else None
    state = app_state(request)
    # A session is looked up in the database: off the event loop.
    ok = await run_in_threadpool(operator_ok, state, authorization, recsys_operator)
    by_cookie = ok and not (authorization or "").lower().startswith("bearer ")
    if by_cookie and request.method not in SAFE_METHODS and not same_origin(request):
        raise HTTPException(
            403,
            "cross-site request refused: a dashboard session acts only from the dashboard's "
            "own pages (Origin or Referer must name this host); scripts send the bearer token",
        )
    if ok is None:
        raise HTTPException(
            401,
            "operator credential required: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not ok:
        raise HTTPException(403, "the operator credential is wrong")
    if request.method not in SAFE_METHODS:
        request.state.operator = await run_in_threadpool(
            operator_identity, state, authorization, recsys_operator
        )


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


async def require_writer(
    request: Request, x_api_key: Annotated[str | None, Security(CLIENT_KEY_SCHEME)] = None
) -> None:
    _client(app_state(request), x_api_key, "writes")


async def require_reader(request: Request, x_api_key: ApiKeyHeader = None) -> None:
    check_reader(app_state(request), x_api_key)


OperatorDep = Depends(require_operator)
WriterDep = Depends(require_writer)
ReaderDep = Depends(require_reader)
