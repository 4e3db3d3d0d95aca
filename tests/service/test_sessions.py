"""Dashboard sessions against a real `recsys serve`: a page of another origin on the same site
cannot act through the operator's signed-in Chromium (CSRF), signing out and revoking a key
end sessions, and operator keys sign in."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright
from sqlalchemy import func, select

from recsys import keys, registry
from recsys.config import RatingScale
from recsys.store.db import session_scope
from recsys.store.tables import ratings, users
from recsys.training.runs import train_from_database
from tests.service.conftest import GENRE_CONFIG, Served
from tests.service.live import running

CHROMIUM = "/usr/bin/chromium"
TOKEN = "session-test-token"
COOKIE = "recsys_operator"


@pytest.fixture(scope="module")
def live(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_dir = tmp_path_factory.mktemp("sessions")
    with running(served, log_dir, operator_token=TOKEN, reload_interval_s="0.2") as (base, _):
        yield base


@pytest.fixture
def attacker(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static site on another port of the same host: same site, another origin."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        server.shutdown()


def ratings_of(served: Served, user: str) -> int:
    with session_scope(served.engine) as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(ratings.join(users))
                .where(users.c.external_id == user)
            )
            or 0
        )


def sign_in(base: str, secret: str) -> str:
    r = httpx.post(f"{base}/dashboard/login", data={"token": secret}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return r.cookies[COOKIE]


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed")
def test_a_page_of_another_origin_cannot_act_with_the_session(
    live: str, served: Served, attacker: tuple[str, Path]
) -> None:
    production = registry.production(served.engine)["version"]  # type: ignore[index]
    candidate = train_from_database(
        served.engine, served.artifact_dir, GENRE_CONFIG, RatingScale(), promote=False
    ).version
    site, folder = attacker
    (folder / "attack.html").write_text(
        f"""<!doctype html><form id="f" method="post"
        action="{live}/v1/models/{candidate}/promote"></form>
        <script>
        fetch("{live}/v1/ingest/ratings", {{method: "POST", mode: "no-cors",
              credentials: "include", headers: {{"Content-Type": "text/plain"}},
              body: "user_id,item_id,rating\\ncsrf-victim,film0,5\\n"}})
          .finally(() => document.getElementById("f").submit());
        </script>"""
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{live}/dashboard/login")
        page.fill("#token", TOKEN)
        page.click("#sign-in")
        page.wait_for_url(f"{live}/dashboard")
        page.goto(f"{site}/attack.html")
        page.wait_for_url(f"{live}/v1/models/{candidate}/promote")
        # The browser did send the session cookie (same site); the service refused.
        assert "cross-site request refused" in page.inner_text("body")
        # The operator's own pages still act (their requests carry this host's Origin).
        page.goto(f"{live}/dashboard/models")
        page.wait_for_selector("body[data-ready='1']")
        page.once("dialog", lambda dialog: dialog.accept("no cross-site promotion"))
        page.click(f"button[data-action='reject'][data-version='{candidate}']")
        page.wait_for_function(
            "document.querySelector('#action-result').textContent"
            f".includes('reject: production is {production}')"
        )
        browser.close()
    assert registry.production(served.engine)["version"] == production  # type: ignore[index]
    assert registry.get_version(served.engine, candidate)["status"] == "rejected"
    assert ratings_of(served, "csrf-victim") == 0


def test_sign_out_ends_the_session_everywhere(live: str) -> None:
    first, second = sign_in(live, TOKEN), sign_in(live, TOKEN)
    assert first != second  # a new random id per sign-in, not a function of the token
    assert httpx.get(f"{live}/v1/models", cookies={COOKIE: first}).status_code == 200
    # Signing out is refused to other pages (any page could post the form), and ends nothing.
    elsewhere = {"Origin": "http://elsewhere.example"}
    refused = httpx.post(f"{live}/dashboard/logout", cookies={COOKIE: first}, headers=elsewhere)
    assert refused.status_code == 403 and "cross-site" in refused.json()["detail"]
    bare = httpx.post(f"{live}/dashboard/logout", cookies={COOKIE: first})
    assert bare.status_code == 403
    assert httpx.get(f"{live}/v1/models", cookies={COOKIE: first}).status_code == 200
    own = {"Origin": live}
    httpx.post(f"{live}/dashboard/logout", cookies={COOKIE: first}, headers=own)
    # A copy of the cookie kept elsewhere is dead too; the other session lives on.
    assert httpx.get(f"{live}/v1/models", cookies={COOKIE: first}).status_code == 403
    assert httpx.get(f"{live}/v1/models", cookies={COOKIE: second}).status_code == 200
    page = httpx.get(f"{live}/dashboard/models", cookies={COOKIE: first})
    assert page.status_code == 303 and page.headers["location"] == "/dashboard/login"


def test_operator_keys_sign_in_and_revoking_the_key_ends_its_sessions(
    live: str, served: Served
) -> None:
    key = keys.create(served.engine, "dash-operator", keys.OPERATOR)
    client_key = keys.create(served.engine, "dash-client", keys.CLIENT)
    time.sleep(1.0)  # the service reloads keys every 0.2 s
    try:
        cookie = sign_in(live, key)
        assert httpx.get(f"{live}/dashboard/models", cookies={COOKIE: cookie}).status_code == 200
        assert httpx.get(f"{live}/v1/models", cookies={COOKIE: cookie}).status_code == 200
        refused = httpx.post(f"{live}/dashboard/login", data={"token": client_key})
        assert refused.status_code == 401  # a client key is no operator credential
        keys.revoke(served.engine, "dash-operator")
        time.sleep(1.0)
        assert httpx.get(f"{live}/v1/models", cookies={COOKIE: cookie}).status_code == 403
    finally:
        keys.revoke(served.engine, "dash-client")
