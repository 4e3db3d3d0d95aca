"""The operator dashboard: HTML pages that draw `/v1/monitoring` with Plotly, served by the
app itself (Plotly's own `plotly.min.js` from its Python package: no CDN, works offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs

import plotly
from fastapi import APIRouter, Cookie, HTTPException, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from recsys import sessions
from service.auth import SESSION_COOKIE, operator_ok, same_origin, sign_in
from service.deps import StateDep

router = APIRouter(prefix="/dashboard", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parent.parent / "templates")
STATIC = Path(__file__).resolve().parent.parent / "static"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
PAGES = {
    "": ("overview", "Overview"),
    "loop": ("loop", "Feedback loop"),
    "models": ("models", "Models"),
    "items": ("items", "Items"),
    "users": ("users", "Users"),
    "alerts": ("alerts", "Alerts"),
}


@router.get("/static/plotly.min.js")
def plotly_js() -> FileResponse:
    return FileResponse(PLOTLY_JS, headers={"Cache-Control": "public, max-age=86400"})


@router.get("/static/app.js")
def app_js() -> FileResponse:
    return FileResponse(STATIC / "app.js", media_type="text/javascript")


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    return templates.TemplateResponse(request, "login.html", {"error": None})


@router.post("/login")
async def login(request: Request, state: StateDep) -> Response:
    """Exchange the operator token for a session cookie (HttpOnly, SameSite=Strict)."""
    form = parse_qs((await request.body()).decode(errors="replace"))
    token = (form.get("token") or [""])[0]
    signed = sign_in(state, token) if token else None
    if signed is None:
        return templates.TemplateResponse(
            request,
            "login.html",
            {"error": "That is neither the operator token nor an operator key."},
            401,
        )
    session_id = await run_in_threadpool(sessions.start, state.engine, *signed)
    response = RedirectResponse("/dashboard", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=int(sessions.LIFETIME.total_seconds()),
    )
    return response


@router.post("/logout")
async def logout(
    request: Request, state: StateDep, recsys_operator: Annotated[str | None, Cookie()] = None
) -> Response:
    """End the session: its id stops working everywhere, not only in this browser. Only from
    the dashboard's own pages: any other page could otherwise sign the operator out."""
    if not same_origin(request):
        raise HTTPException(
            403,
            "cross-site request refused: sign out from the dashboard's own page (Origin or "
            "Referer must name this host)",
        )
    if recsys_operator:
        await run_in_threadpool(sessions.end, state.engine, recsys_operator)
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def _page(name: str) -> None:
    template, title = PAGES[name]

    async def page(
        request: Request,
        state: StateDep,
        recsys_operator: Annotated[str | None, Cookie()] = None,
    ) -> Response:
        authorization = request.headers.get("authorization")
        if not await run_in_threadpool(operator_ok, state, authorization, recsys_operator):
            return RedirectResponse("/dashboard/login", status_code=303)
        return templates.TemplateResponse(
            request, f"{template}.html", {"title": title, "page": template, "pages": PAGES}
        )

    router.add_api_route(f"/{name}" if name else "", page, methods=["GET"])


for _name in PAGES:
    _page(_name)
