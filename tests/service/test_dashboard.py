"""The dashboard in a real headless Chromium (Playwright driving /usr/bin/chromium) against a
real `recsys serve` process: every page draws data, the buttons act on the registry, nothing
logs a console error, and nothing is shown without the operator credential."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, sync_playwright

from recsys import registry
from recsys.config import RatingScale
from recsys.training.runs import train_from_database
from tests.service.conftest import GENRE_CONFIG, Served
from tests.service.live import running

CHROMIUM = "/usr/bin/chromium"
TOKEN = "dashboard-test-token"
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed (make test installs it)"
)


@pytest.fixture(scope="module")
def live(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A served model, a candidate waiting, traffic with feedback: then a running service."""
    log_dir = tmp_path_factory.mktemp("dash")
    settings = {
        "operator_token": TOKEN,
        "impression_flush_s": "0.1",
        "recommend_min_support": "1",
        "explore_share": "0.2",  # one slot of five: the off-policy table has traffic to judge
    }
    with running(served, log_dir, **settings) as (base, _):
        traffic(base)
        link_title(base)
        yield base


LINK = '<a href="https://evil.example/login">Session expired: sign in again</a>'


def link_title(base: str) -> None:
    """A client sets a film's title to a link; wait until the service's catalog has it."""
    with httpx.Client(base_url=base, timeout=10) as c:
        assert c.put("/v1/items/film2", json={"title": LINK}).status_code == 200
        assert c.put("/v1/items/brand-new", json={"title": "Brand new film"}).status_code == 200
        auth = {"Authorization": f"Bearer {TOKEN}"}
        deadline = time.monotonic() + 30
        while LINK not in c.get("/v1/monitoring/item-map", headers=auth).json()["title"]:
            assert time.monotonic() < deadline, "the catalog did not take the new title"
            time.sleep(0.2)


def traffic(base: str) -> None:
    with httpx.Client(base_url=base, timeout=10) as c:
        for n in range(40):
            user = f"user{n}"
            listed = c.get(f"/v1/users/{user}/recommendations", params={"k": 5}).json()
            answers = [("rating", 4.5), ("click", None), ("skip", None)]
            events: list[dict[str, object]] = [
                {"user_id": user, "item_id": it["item_id"], "kind": kind, "value": value,
                 "recommendation_id": listed["recommendation_id"]}
                for it, (kind, value) in zip(listed["items"], answers, strict=False)
            ]  # fmt: skip
            events.append({"user_id": user, "item_id": "film1", "kind": "rating", "value": 2.0})
            assert c.post("/v1/feedback", json={"events": events}).status_code == 201
    time.sleep(0.5)  # the impression writer flushes every 0.1 s


def new_page(browser: Browser, errors: list[str]) -> Page:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page


# (version, colour) of every trace named after a model version, on every chart of the page.
COLOURS_JS = """() => [...document.querySelectorAll('.chart')].flatMap((el) =>
  (el.data || []).filter((t) => /^v\\d{8}-/.test(t.name || '')).map((t) =>
    [t.name.split(' ')[0], (t.line && t.line.color) || (t.marker && t.marker.color)]))"""


def open_item(page: Page, search: str, item: str, where: str, text: str) -> None:
    """Search the Items page, click `item` among the results, wait until the element at
    `where` shows `text`."""
    page.fill("#search", search)
    page.click("#search-go")
    page.click(f"#results a[data-item='{item}']")
    page.wait_for_function(f"document.querySelector('{where}')?.textContent.includes('{text}')")


def test_dashboard_pages_buttons_and_access(live: str, served: Served) -> None:
    OUTPUT.mkdir(exist_ok=True)
    # One set of screenshots per database: the two may be taken at once (pytest -n 2).
    backend = served.engine.dialect.name
    candidate = train_from_database(
        served.engine, served.artifact_dir, GENRE_CONFIG, RatingScale(), promote=False
    ).version
    production = registry.production(served.engine)["version"]  # type: ignore[index]
    # Without the credential: the API refuses, the pages send to the sign-in form.
    assert httpx.get(f"{live}/v1/monitoring/summary").status_code == 401
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = new_page(browser, errors)
        page.goto(f"{live}/dashboard/loop")
        assert page.url.endswith("/dashboard/login")
        page.fill("#token", "wrong")
        page.click("#sign-in")
        assert "neither the operator token" in page.inner_text("#error")
        # The browser logs the refused sign-in's 401 itself; nothing else may be logged.
        errors[:] = [e for e in errors if "status of 401" not in e]
        page.fill("#token", TOKEN)
        page.click("#sign-in")
        page.wait_for_url(f"{live}/dashboard")

        colours: dict[str, set[str]] = {}
        for name in ("", "loop", "models", "items", "alerts", "users"):
            page.goto(f"{live}/dashboard/{name}")
            page.wait_for_selector("body[data-ready='1']", timeout=20_000)
            # Which colour each model version is drawn in, on every chart of the page.
            drawn = page.evaluate(COLOURS_JS)
            for version, colour in drawn:
                colours.setdefault(version, set()).add(colour)
            if name == "":  # upload a CSV: a bad line is named, a good file is applied
                bad = b"user_id,item_id,rating\ndash,film0,4\ndash,film1,eleven\n"
                page.set_input_files(
                    "#upload-file", {"name": "bad.csv", "mimeType": "text/csv", "buffer": bad}
                )
                page.click("#upload-go")
                page.wait_for_selector("#upload-errors li")
                assert "line 3" in page.inner_text("#upload-errors")
                good = b"user_id,item_id,rating\ndash,film0,4\n"
                page.set_input_files(
                    "#upload-file", {"name": "good.csv", "mimeType": "text/csv", "buffer": good}
                )
                page.click("#upload-go")
                page.wait_for_function(
                    "document.querySelector('#upload-result').textContent.includes('1 new')"
                )
                # The browser logs the refused file's 422 itself; nothing else may be logged.
                errors[:] = [e for e in errors if "status of 422" not in e]
            if name == "users":  # a user's list, history and feedback, by id
                page.fill("#user-id", "user3")
                page.click("#user-go")
                page.wait_for_function("document.querySelectorAll('#user-list tr').length > 1")
                assert "served by v" in page.inner_text("#user-summary")
                # Every item of the list says why it is there, as a person would.
                whys = page.eval_on_selector_all(
                    "#user-list tr td:last-child", "(cells) => cells.map((c) => c.textContent)"
                )
                assert whys and all(
                    w.startswith("you liked ")
                    or w in ("popular with users like you", "exploration")
                    for w in whys
                ), whys
                assert len(page.query_selector_all("#user-ratings tr")) > 1
                page.fill("#user-id", "nobody-at-all")
                page.click("#user-go")
                page.wait_for_function(
                    "document.querySelector('#user-summary').textContent.includes('no ratings')"
                )
                # The browser logs the 404 itself; nothing else may be logged.
                errors[:] = [e for e in errors if "status of 404" not in e]
            if name == "loop":  # exposure per exploration share
                shares = page.inner_text("#explore-shares")
                assert "20.0 %" in shares and "positive per slot" in shares, shares
            if name == "items":
                # A title written by a client key is text in the map's hover, not a link.
                drawn = page.evaluate(
                    "document.getElementById('chart-map').data[0].text"
                    ".find((t) => t.includes('evil.example'))"
                )
                assert drawn and "&lt;a href" in drawn and "<a" not in drawn, drawn
                assert page.query_selector("#chart-map a[href*='evil.example']") is None
                open_item(page, "Film number 1", "film1", "#item h4", "Film number 1")
                # All of the fixture's traffic lies in one hour: its bar is still drawn wide.
                bar = page.query_selector("#chart-exposure .bars path")
                box = bar.bounding_box() if bar else None
                assert box and box["width"] > 5, box
                # A film of the catalog that the model has not learned: said, not a blank.
                open_item(page, "Brand new film", "brand-new", "#item p", "brand-new")
                assert "not in the serving model" in page.inner_text("#item")
                errors[:] = [e for e in errors if "status of 404" not in e]
                open_item(page, "Film number 1", "film1", "#item h4", "Film number 1")
            charts = page.query_selector_all(".chart")
            for chart in charts:
                chart_id = chart.get_attribute("id")
                points = int(chart.get_attribute("data-points") or 0)
                assert points > 0, f"{name or 'overview'}: {chart_id} drew no data"
                assert chart.query_selector("svg.main-svg"), chart_id
                # Both axes say what they show (Plotly draws no title given as a string).
                for axis in ("xtitle", "ytitle"):
                    title = chart.query_selector(f"text.{axis}")
                    assert title and (title.text_content() or "").strip(), f"{chart_id}: no {axis}"
            page.screenshot(
                path=str(OUTPUT / f"dashboard-{name or 'overview'}-{backend}.png"), full_page=True
            )
            if name in ("alerts", ""):  # every check is listed, with a state and a reason
                table = "#alerts" if name else "#health"
                rows = page.query_selector_all(f"{table} tr[data-state]")
                assert len(rows) == 9, name
                states = {r.get_attribute("data-state") for r in rows}
                assert states <= {"green", "amber", "red", "grey"}, states

        assert colours and all(len(c) == 1 for c in colours.values()), colours
        # The operator picks the window and bucket; the choice holds between visits.
        page.goto(f"{live}/dashboard/loop")
        page.wait_for_selector("body[data-ready='1']")
        page.select_option("#bucket", "h")
        page.wait_for_url("**bucket=h**")
        page.wait_for_selector("body[data-ready='1']")
        page.goto(f"{live}/dashboard/loop")
        page.wait_for_selector("body[data-ready='1']")
        assert page.input_value("#bucket") == "h"
        # One hour bucket: the time axis spans hours, not fractions of a millisecond.
        span = page.evaluate(
            "() => { const r = document.getElementById('chart-gini').layout.xaxis.range;"
            " return Date.parse(r[1]) - Date.parse(r[0]); }"
        )
        assert span >= 2 * 3600 * 1000, span

        # The buttons act on the registry, only where the action is valid, after a
        # confirmation that asks for the reason the audit trail keeps.
        page.goto(f"{live}/dashboard/models")
        page.wait_for_selector("body[data-ready='1']")
        # The ticked versions side by side, what differs between them highlighted.
        compared = page.inner_text("#compare")
        assert production in compared and candidate in compared and "metric: ndcg@10" in compared
        assert page.query_selector_all("#compare tr.differs")
        # Each ticked version judged on the logged lists, beside what production observed.
        page.wait_for_function(
            "document.querySelectorAll('#off-policy tr').length > 2 && ![...document"
            ".querySelectorAll('#off-policy td')].some((td) => td.textContent === '…' ||"
            " td.textContent.startsWith('computing'))",
            timeout=120_000,  # a report not in within 3 s is asked again after 5 s
        )
        judged = page.inner_text("#off-policy")
        assert candidate in judged and f"{production}: " in judged, judged
        assert "no estimate" not in judged and "[" in judged, judged
        assert "min ago" in judged, judged  # when each report was computed
        # Each judged version has a verdict in words with what it rests on: production is
        # the reference, the candidate better, worse, no clear difference or not enough
        # evidence, with the reason.
        calls = page.evaluate(
            "[...document.querySelectorAll('#off-policy tr')].slice(1).map((tr) =>"
            " [tr.cells[0].textContent, tr.cells[1].textContent])"
        )
        verdicts = dict(calls)
        assert verdicts[production].startswith("reference: this is production"), verdicts
        assert verdicts[candidate].split(":")[0] in (
            "better", "worse", "no clear difference", "not enough evidence",
        ), verdicts  # fmt: skip
        assert len(verdicts[candidate].split(": ", 1)[1]) > 20, verdicts  # the reason
        # Why each version passed or failed its gates, every gate in words.
        gates = page.evaluate(
            "[...document.querySelectorAll('#versions tr')].slice(1).map((tr) =>"
            " tr.cells[6].textContent)"
        )
        assert any(g.startswith(("passed [", "failed: ")) and "✓" in g for g in gates), gates
        assert page.query_selector_all(f"button[data-version='{production}']") == []
        page.once("dialog", lambda dialog: dialog.dismiss())
        page.click(f"button[data-action='approve'][data-version='{candidate}']")
        page.wait_for_function("document.querySelector('#action-result').textContent")
        assert "cancelled" in page.inner_text("#action-result")
        assert registry.production(served.engine)["version"] == production  # type: ignore[index]
        page.once("dialog", lambda dialog: dialog.accept("offline metrics checked"))
        page.click(f"button[data-action='approve'][data-version='{candidate}']")
        page.wait_for_function(
            f"document.querySelector('#action-result').textContent.includes('{candidate}')"
        )
        assert registry.production(served.engine)["version"] == candidate  # type: ignore[index]
        page.once("dialog", lambda dialog: dialog.accept("bad lists for new users"))
        page.click("#rollback")
        page.wait_for_function(
            f"document.querySelector('#action-result').textContent.includes('{production}')"
        )
        assert registry.production(served.engine)["version"] == production  # type: ignore[index]
        page.wait_for_function(
            "document.querySelector('#history').textContent.includes('bad lists for new users')"
        )
        trail = page.inner_text("#history")
        assert "offline metrics checked" in trail and "bad lists for new users" in trail
        assert "operator token (dashboard)" in trail, trail
        [latest, approved] = registry.history(served.engine, 2)
        assert (latest["action"], latest["from_version"], latest["to_version"]) == (
            "rollback",
            candidate,
            production,
        )
        assert (approved["action"], approved["from_version"]) == ("approve", production)
        page.screenshot(path=str(OUTPUT / f"dashboard-models-after-rollback-{backend}.png"))
        browser.close()
    assert errors == [], errors


def test_api_docs_render_offline(live: str) -> None:
    """/docs and /redoc draw the operations with every request outside the service refused
    (their assets must come from the service, not a CDN)."""
    errors: list[str] = []
    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = new_page(browser, errors)

        def only_the_service(route: Route) -> None:
            if route.request.url.startswith(live):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", only_the_service)
        page.goto(f"{live}/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=20_000)
        paths = {e.inner_text() for e in page.query_selector_all(".opblock-summary-path")}
        assert "/v1/users/{user_id}/recommendations" in {p.replace("\u200b", "") for p in paths}
        page.goto(f"{live}/redoc")
        page.wait_for_selector("h2", timeout=20_000)
        assert "recommendations" in page.inner_text("body").lower()
        browser.close()
    # ReDoc's bundle links its "by Redocly" logo from its CDN: the pages' Content-Security-
    # Policy refuses it before any request leaves (the browser logs the refusal).
    assert outside == []
    assert [e for e in errors if "cdn.redoc.ly/redoc/logo" not in e] == [], errors
