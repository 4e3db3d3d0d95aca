"""Operator API: credential checks, canary routing by user, approve and roll back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from recsys import keys, registry
from recsys.config import RatingScale
from recsys.rollout import in_canary
from recsys.store.db import session_scope
from recsys.store.tables import model_versions
from recsys.training.runs import train_from_database
from service.app import create_app
from tests.service.conftest import GENRE_CONFIG, Served

TOKEN = "s3cret-operator-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def operator(served: Served) -> Iterator[TestClient]:
    settings = served.settings(operator_token=TOKEN, canary_share=0.5)
    with TestClient(create_app(settings)) as c:
        yield c


def test_operator_actions_need_the_credential(operator: TestClient, served: Served) -> None:
    assert operator.get("/v1/models").status_code == 401
    wrong = operator.get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and "wrong" in wrong.json()["detail"]
    assert operator.get("/v1/models", headers=AUTH).status_code == 200
    # With no token configured, operator actions are off for everyone.
    with TestClient(create_app(served.settings())) as plain:
        r = plain.post("/v1/models/production/promote", headers=AUTH)
        assert r.status_code == 403 and "RECSYS_OPERATOR_TOKEN" in r.json()["detail"]


def test_canary_serves_its_share_then_approve_and_rollback(
    operator: TestClient, served: Served
) -> None:
    production = registry.production(served.engine)["version"]  # type: ignore[index]
    candidate = train_from_database(
        served.engine, served.artifact_dir, GENRE_CONFIG, RatingScale(), promote=False
    ).version
    registry.start_canary(served.engine, candidate)
    operator.app.state.recsys.models.refresh()  # type: ignore[attr-defined]
    users = [f"user{n}" for n in range(60)]
    served_by = {
        u: operator.get(f"/v1/users/{u}/recommendations", params={"k": 2}).json()["model_version"]
        for u in users
    }
    for u in users:
        assert served_by[u] == (candidate if in_canary(u, 0.5) else production)
    assert len(set(served_by.values())) == 2
    # Online figures per version, from the logged impressions.
    operator.app.state.recsys.impressions.wait_idle(10)  # type: ignore[attr-defined]
    online = operator.get("/v1/models/online", headers=AUTH).json()
    assert online[candidate]["lists_served"] == sum(v == candidate for v in served_by.values())
    # A conflict is a 409 with a message, not a 500.
    r = operator.post(f"/v1/models/{production}/approve", headers=AUTH)
    assert r.status_code == 409 and "production" in r.json()["detail"]
    r = operator.post(f"/v1/models/{candidate}/approve", headers=AUTH)
    assert r.status_code == 200
    assert r.json() == {
        "action": "approve", "version": candidate, "production": candidate, "canary": None
    }  # fmt: skip
    after = operator.get("/v1/users/user1/recommendations").json()["model_version"]
    assert after == candidate
    r = operator.post("/v1/models/rollback", headers=AUTH)
    assert r.status_code == 200 and r.json()["production"] == production
    shown = operator.get(f"/v1/models/{candidate}", headers=AUTH).json()
    assert shown["status"] == "rejected" and shown["metrics"]["rmse"] > 0
    assert operator.get("/v1/models/nope", headers=AUTH).status_code == 404
    assert operator.get("/v1/jobs", headers=AUTH).status_code == 200


def test_a_corrupt_artifact_is_refused_and_readyz_says_what_is_served(
    operator: TestClient, served: Served
) -> None:
    production = registry.production(served.engine)["version"]  # type: ignore[index]
    broken = train_from_database(
        served.engine, served.artifact_dir, GENRE_CONFIG, RatingScale(), promote=False
    ).version
    tensors = served.artifact_dir / broken / "model.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-7] + b"garbage")
    for action in ("promote", "approve"):
        r = operator.post(f"/v1/models/{broken}/{action}", headers=AUTH)
        assert r.status_code == 409, r.text
        assert broken in r.json()["detail"] and "checksum" in r.json()["detail"]
    assert registry.production(served.engine)["version"] == production  # type: ignore[index]
    ready = operator.get("/readyz").json()
    assert ready["registry_version"] == ready["model_version"] == production
    # Were the registry changed behind the service's back, readiness tells the difference.
    with session_scope(served.engine) as s:
        for version, status in ((production, "retired"), (broken, "production")):
            s.execute(
                model_versions.update()
                .where(model_versions.c.version == version)
                .values(status=status)
            )
    try:
        operator.app.state.recsys.models.refresh()  # type: ignore[attr-defined]
        r = operator.get("/readyz")
        body = r.json()
        assert r.status_code == 200 and body["model_version"] == production
        assert body["registry_version"] == broken
        assert f"registry names {broken}" in body["detail"] and "refused" in body["detail"]
    finally:
        registry.set_status(served.engine, broken, "rejected")
        registry.promote(served.engine, production)
        operator.app.state.recsys.models.refresh()  # type: ignore[attr-defined]


def test_every_registry_action_is_in_the_audit_trail_with_who_and_why(
    operator: TestClient, served: Served
) -> None:
    production = registry.production(served.engine)["version"]  # type: ignore[index]
    candidate = train_from_database(
        served.engine, served.artifact_dir, GENRE_CONFIG, RatingScale(), promote=False
    ).version
    key = keys.create(served.engine, f"ops-{candidate[-6:]}", keys.OPERATOR)
    operator.app.state.recsys.models.refresh()  # type: ignore[attr-defined]
    r = operator.post(
        f"/v1/models/{candidate}/promote", headers=AUTH, json={"reason": "better NDCG"}
    )
    assert r.status_code == 200, r.text
    back = operator.post("/v1/models/rollback", headers={"Authorization": f"Bearer {key}"})
    assert back.status_code == 200, back.text
    # Production has nothing to approve: a clear 409, and nothing is recorded.
    refused = operator.post(f"/v1/models/{production}/approve", headers=AUTH)
    assert refused.status_code == 409 and "only a candidate" in refused.json()["detail"]
    trail = operator.get("/v1/models/history", params={"limit": 2}, headers=AUTH).json()
    assert [(t["action"], t["from_version"], t["to_version"]) for t in trail] == [
        ("rollback", candidate, production),
        ("promote", production, candidate),
    ]
    assert trail[0]["actor"] == f"key ops-{candidate[-6:]}" and trail[0]["reason"] is None
    assert trail[1]["actor"] == "operator token" and trail[1]["reason"] == "better NDCG"
    assert trail[1]["at"].endswith("Z")
    # A reason is text of bounded size.
    long = operator.post(
        f"/v1/models/{candidate}/promote", headers=AUTH, json={"reason": "x" * 1001}
    )
    assert long.status_code == 422 and "reason" in long.json()["detail"]
    assert registry.production(served.engine)["version"] == production  # type: ignore[index]


def test_a_users_page_shows_their_list_history_and_answers(
    operator: TestClient, served: Served
) -> None:
    listed = operator.get("/v1/users/user4/recommendations", params={"k": 3}).json()
    shown = listed["items"][0]["item_id"]
    body = {"user_id": "user4", "item_id": shown, "kind": "click",
            "recommendation_id": listed["recommendation_id"]}  # fmt: skip
    assert operator.post("/v1/feedback", json=body).status_code == 201
    operator.app.state.recsys.impressions.wait_idle(10)  # type: ignore[attr-defined]
    r = operator.get("/v1/monitoring/users/user4", headers=AUTH)
    assert r.status_code == 200, r.text
    user = r.json()
    # The click since training moves their list (a live user), and the clicked film leaves it.
    assert user["in_model"] and user["strategy"] == "live" and len(user["recommendations"]) == 10
    assert shown not in {x["item_id"] for x in user["recommendations"]}
    assert user["served_by"] == listed["model_version"]
    rated = {h["item_id"] for h in user["ratings"]}
    assert rated and not rated & {x["item_id"] for x in user["recommendations"]}
    assert user["ratings"][0]["rated_at"].endswith("Z")
    assert listed["recommendation_id"] in {x["recommendation_id"] for x in user["lists"]}
    answer = next(
        f for f in user["feedback"] if f["recommendation_id"] == listed["recommendation_id"]
    )
    assert (answer["item_id"], answer["kind"]) == (shown, "click")
    assert answer["model_version"] == listed["model_version"]
    missing = operator.get("/v1/monitoring/users/nobody-at-all", headers=AUTH)
    assert missing.status_code == 404 and "no ratings" in missing.json()["detail"]
