"""Data stored before today's rules keeps the service answering: a rating dated in year
33658 (ingestion refuses such timestamps now; older databases may hold them)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import update

from recsys.config import RatingScale
from recsys.store.db import session_scope
from recsys.store.tables import ratings
from recsys.training.runs import train_from_database
from service.app import create_app
from tests.service.conftest import GENRE_CONFIG, Served


def test_monitoring_survives_a_far_future_rating(served: Served) -> None:
    with session_scope(served.engine) as s:
        first = s.execute(ratings.select().limit(1)).mappings().one()
        s.execute(
            update(ratings)
            .where(ratings.c.user_id == first["user_id"], ratings.c.item_id == first["item_id"])
            .values(rated_at=10**12)
        )
    train_from_database(served.engine, served.artifact_dir, GENRE_CONFIG, RatingScale())
    settings = served.settings(operator_token="legacy-operator-token")
    auth = {"Authorization": "Bearer legacy-operator-token"}
    with TestClient(create_app(settings), headers=auth) as c:
        r = c.get("/v1/monitoring/summary")
        assert r.status_code == 200, r.text
        assert r.json()["drift"]["since"] is None
        assert c.get("/dashboard", follow_redirects=False).status_code == 200
