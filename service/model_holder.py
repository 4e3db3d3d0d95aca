"""The model being served, swapped for a new production version without a restart.

A poller asks the registry every few seconds which version is in production. A new one is
loaded and verified beside the old one, its neighbour index is built, and only then does one
attribute assignment make it current: requests in flight finish on the model they started
with, and none fails. An artifact that fails verification is refused and the old model keeps
serving.

Items the catalog gained after a model was trained are added to it from their genres
(`recsys.model.new_items`) at the poll that first sees them, the same way on every replica:
the extended model is built beside the one serving and swapped in like a new version.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, RowMapping
from sqlalchemy.exc import SQLAlchemyError

from recsys import keys, registry
from recsys.config import Settings
from recsys.errors import ArtifactError
from recsys.lists.ranker import Ranker
from recsys.model import artifact
from recsys.model.new_items import addable, with_new_items
from recsys.model.recommender import Recommender
from recsys.model.similar import SimilarItems
from recsys.rollout import in_canary
from service.catalog import Catalog
from service.metrics import ServiceMetrics
from service.recent_feedback import RecentFeedback
from service.recent_showings import RecentShowings

log = logging.getLogger("recsys.service")

# A refused artifact is tried again after this long: an operator may restore the file.
_RETRY_REFUSED_S = 60.0


@dataclass(frozen=True)
class LoadedModel:
    recommender: Recommender
    """The model: its vectors, vocabularies and maths."""
    lists: Ranker
    """Its list-maker, with this replica's ranking cache."""
    similar: SimilarItems
    version: str
    checksum: str
    loaded_at: float
    trained: Recommender | None = None
    """The model as trained, when `recommender` extends it with new items; else None."""
    added: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    """The items added after training, with the genres their vectors came from."""
    catalog_state: tuple[int, datetime | None] | None = None
    """The catalog's state (`Catalog.state`) that `added` was read from."""


class ModelHolder:
    def __init__(self, engine: Engine, settings: Settings, metrics: ServiceMetrics) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        self.current: LoadedModel | None = None
        self.canary: LoadedModel | None = None
        # SHA-256 of the active API keys in the database -> role, refreshed with each poll.
        self.key_hashes: dict[str, str] = {}
        self.catalog = Catalog()
        # Feedback since the models were trained, from every replica: what users rated is
        # kept out of their lists, and what they sent moves known users' lists.
        self.recent = RecentFeedback()
        # What users were shown and did not answer, from every replica: what rotation demotes.
        self.showings = RecentShowings()
        self.database_ok = False
        self.last_error: str | None = None
        # What the registry named as production at the last poll: differs from `version`
        # while a new model loads, or when its artifact was refused.
        self.registry_version: str | None = None
        self._refused: dict[tuple[str, str], float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one refresh at a time (poller and an explicit call)

    def refresh(self) -> None:
        """One poll: load new production and canary models if any; refresh the catalog, the
        keys and the feedback sent since."""
        with self._lock:
            try:
                production = registry.production(self.engine)
                canary = registry.canary(self.engine)
                self.key_hashes = keys.active_hashes(self.engine)
                self.catalog.refresh(self.engine)
                self.recent.refresh(self.engine)
                rotation = self.settings.rotation_policy
                if rotation is not None:
                    self.showings.refresh(self.engine, rotation)
                self.database_ok = True
                self.registry_version = production["version"] if production else None
            except SQLAlchemyError as exc:
                self.database_ok = False
                self.last_error = f"database unavailable: {type(exc).__name__}"
                return
            if production is not None:
                self.current = self._with_catalog(self._swap(self.current, production))
            # A canary ended (promoted, rejected or retired) stops at once.
            self.canary = (
                self._with_catalog(self._swap(self.canary, canary)) if canary is not None else None
            )
            if self.current is not None:
                self.metrics.set_model(self.current.version, self.canary_version)

    def _swap(self, loaded: LoadedModel | None, row: RowMapping) -> LoadedModel | None:
        """The model `row` names: `loaded` if it is that one already, else loaded now; on a
        refused artifact, `loaded` keeps serving."""
        key = (row["version"], row["checksum"])
        if loaded is not None and (loaded.version, loaded.checksum) == key:
            return loaded
        refused_at = self._refused.get(key)
        if refused_at is not None and time.monotonic() - refused_at < _RETRY_REFUSED_S:
            return loaded
        return self._load(row["version"], row["checksum"], Path(row["artifact_path"])) or loaded

    def _load(self, version: str, checksum: str, path: Path) -> LoadedModel | None:
        try:
            rec = artifact.load(path, checksum)
            similar = SimilarItems(rec, exact_limit=self.settings.exact_search_limit)
            similar.index()  # built now, not by the first request
        except (ArtifactError, OSError) as exc:
            self._refused[(version, checksum)] = time.monotonic()
            self.last_error = f"refused model {version}: {exc}"
            self.metrics.model_reloads.labels("refused").inc()
            log.error("%s; still serving %s", self.last_error, self.version or "nothing")
            return None
        self.last_error = None
        self.metrics.model_reloads.labels("loaded").inc()
        log.info("loaded model %s", version)
        lists = Ranker(rec, cache_users=self.settings.recommend_cache_users)
        return LoadedModel(rec, lists, similar, version, checksum, time.time())

    def _with_catalog(self, loaded: LoadedModel | None) -> LoadedModel | None:
        """`loaded` with the catalog's items that its model never learned added from their
        genres; itself when those are as they were."""
        state = self.catalog.state
        if loaded is None or loaded.catalog_state == state:
            return loaded
        trained = loaded.trained or loaded.recommender
        entries = self.catalog.entries
        added = addable(trained, {item: genres for item, (_, genres) in list(entries.items())})
        if added == loaded.added:
            return dataclasses.replace(loaded, catalog_state=state)
        rec = with_new_items(trained, added)
        similar = SimilarItems(rec, exact_limit=self.settings.exact_search_limit)
        similar.index()
        lists = Ranker(rec, cache_users=self.settings.recommend_cache_users)
        log.info("model %s: %d items added from their genres", loaded.version, len(added))
        return dataclasses.replace(
            loaded,
            recommender=rec,
            lists=lists,
            similar=similar,
            trained=trained if added else None,
            added=added,
            catalog_state=state,
        )

    def for_user(self, user_id: str | None, production: LoadedModel) -> LoadedModel:
        """The canary for users in its share, else `production`."""
        canary = self.canary
        if canary is not None and in_canary(user_id, self.settings.canary_share):
            return canary
        return production

    @property
    def canary_version(self) -> str | None:
        return self.canary.version if self.canary else None

    @property
    def version(self) -> str | None:
        return self.current.version if self.current else None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, name="model-reload", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.settings.reload_interval_s):
            try:
                self.refresh()
            except Exception:  # the poller must outlive any one bad poll
                log.exception("model refresh failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
