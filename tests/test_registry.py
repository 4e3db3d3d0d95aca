"""The registry under races and against broken artifacts, on SQLite and PostgreSQL: exactly
one production version whatever operators and jobs do at once, and no version becomes
production (or canary) unless its artifact loads."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import IntegrityError

from recsys import registry
from recsys.config import RatingScale
from recsys.errors import NotFoundError, StateConflictError
from recsys.model import artifact
from recsys.model.recommender import Recommender
from recsys.store import migrate
from recsys.store.db import make_engine, session_scope
from recsys.store.tables import model_versions
from recsys.training.pipeline import fit
from tests.conftest import CHECKERBOARD_CONFIG, checkerboard

VERSIONS = [f"v{n}" for n in range(5)]


@pytest.fixture(scope="module")
def model() -> Recommender:
    data, _ = checkerboard()
    config = CHECKERBOARD_CONFIG.model_copy(update={"epochs": 2, "rank_epochs": 2})
    return fit(data, config, RatingScale(min=1.0, max=5.0)).recommender


@pytest.fixture
def versions(engine: Engine, model: Recommender, tmp_path: Path) -> list[str]:
    """Five registered versions with real artifacts; v0 in production."""
    for name in VERSIONS:
        folder, checksum = artifact.save(model, tmp_path / "artifacts", name)
        registry.register_version(
            engine, version=name, run_id=None, artifact_path=str(folder), checksum=checksum,
            metrics={},
        )  # fmt: skip
    registry.promote(engine, VERSIONS[0])
    return VERSIONS


def count(engine: Engine, status: str) -> int:
    with session_scope(engine) as s:
        return int(
            s.execute(select(func.count()).where(model_versions.c.status == status)).scalar_one()
        )


def reset(engine: Engine, production: str) -> None:
    with session_scope(engine) as s:
        s.execute(model_versions.update().values(status="candidate", promoted_at=None))
        s.execute(
            model_versions.update()
            .where(model_versions.c.version == production)
            .values(status="production", promoted_at=registry.now())
        )


def test_racing_actions_leave_exactly_one_production_version(
    engine: Engine, versions: list[str]
) -> None:
    """20 rounds of 12 racing calls (promote two versions, approve and reject the same
    candidate, canaries, rollbacks): a watcher sees exactly one production version at every
    observation, and the losers get a conflict, never another error."""
    rng = random.Random(0)
    outcomes: Counter[str] = Counter()
    observed: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            observed.append(count(engine, "production"))

    def act(call: Callable[[], object], barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            call()
            outcomes["ok"] += 1
        except StateConflictError:
            outcomes["conflict"] += 1
        except NotFoundError:  # a rollback with nothing earlier to go back to
            outcomes["nothing to roll back"] += 1
        except Exception as exc:  # any other error fails the test
            outcomes[f"{type(exc).__name__}: {exc}"] += 1

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(20):
            reset(engine, rng.choice(versions))
            a, b = rng.sample(versions, 2)
            calls: list[Callable[[], object]] = [
                partial(registry.promote, engine, a),
                partial(registry.promote, engine, b),
                partial(registry.approve, engine, b),
                partial(registry.reject, engine, b),
                partial(registry.approve, engine, a),
                partial(registry.reject, engine, a),
                partial(registry.start_canary, engine, a),
                partial(registry.start_canary, engine, b),
                partial(registry.rollback, engine),
                partial(registry.rollback, engine),
                partial(registry.promote, engine, rng.choice(versions)),
                partial(registry.approve, engine, rng.choice(versions)),
            ]
            rng.shuffle(calls)
            barrier = threading.Barrier(len(calls))
            threads = [threading.Thread(target=act, args=(c, barrier)) for c in calls]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert count(engine, "production") == 1
            assert count(engine, "canary") <= 1
    finally:
        stop.set()
        watcher.join()
    unexpected = {k: v for k, v in outcomes.items() if k not in ("ok", "conflict")}
    unexpected.pop("nothing to roll back", None)
    assert not unexpected, unexpected
    assert sum(outcomes.values()) == 240
    assert outcomes["ok"] > 0 and outcomes["conflict"] > 0
    assert len(observed) > 20 and set(observed) == {1}, Counter(observed)


def test_the_schema_refuses_a_second_production_version(
    engine: Engine, versions: list[str]
) -> None:
    with pytest.raises(IntegrityError), session_scope(engine) as s:
        s.execute(
            model_versions.update()
            .where(model_versions.c.version == versions[1])
            .values(status="production")
        )
    assert count(engine, "production") == 1


def corrupt(engine: Engine, version: str) -> None:
    tensors = Path(registry.get_version(engine, version)["artifact_path"]) / "model.safetensors"
    data = bytearray(tensors.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tensors.write_bytes(bytes(data))


def test_a_corrupt_artifact_is_never_made_production(engine: Engine, versions: list[str]) -> None:
    corrupt(engine, versions[1])
    for action in (registry.promote, registry.approve, registry.start_canary):
        with pytest.raises(registry.UnservableVersionError, match="checksum"):
            action(engine, versions[1])
    assert registry.production(engine)["version"] == versions[0]  # type: ignore[index]
    assert registry.get_version(engine, versions[1])["status"] == "candidate"
    # Rollback to a corrupt earlier version is refused too, and changes nothing.
    registry.promote(engine, versions[2])
    corrupt(engine, versions[0])
    with pytest.raises(registry.UnservableVersionError):
        registry.rollback(engine)
    assert registry.production(engine)["version"] == versions[2]  # type: ignore[index]


def test_migration_keeps_the_latest_of_two_production_versions(empty_db_url: str) -> None:
    """A registry that the race left with two production rows is repaired by 0005."""
    migrate.upgrade(empty_db_url, "0004")
    engine = make_engine(empty_db_url)
    try:
        with session_scope(engine) as s:
            for n, promoted in enumerate(("2026-01-01", "2026-02-01", None)):
                s.execute(
                    text(
                        "insert into model_versions (version, artifact_path, checksum, status, "
                        "created_at, promoted_at) values (:v, 'x', 'x', 'production', "
                        "'2026-01-01', :p)"
                    ),
                    {"v": f"v{n}", "p": promoted},
                )
        migrate.upgrade(empty_db_url)
        assert count(engine, "production") == 1
        assert registry.production(engine)["version"] == "v1"  # type: ignore[index]
    finally:
        engine.dispose()
