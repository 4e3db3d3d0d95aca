"""The database schema: one MetaData, with a naming convention so Alembic's migrations name
constraints the same way on SQLite and PostgreSQL.

Timestamps of ratings and events are Unix seconds (BIGINT): they are read back by the million
into numpy arrays for training, and integers cost nothing to convert.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# One rule for ids wherever they enter (CSV, API): no '/'. Ids are URL path segments
# (/v1/items/{id}), and a path cannot carry '/' in a segment: an item created with one could
# never be read or updated.
ID_SLASH = "contains '/', which ids cannot (they are URL path segments)"
EXTERNAL_ID_LENGTH = 255

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("external_id", String(EXTERNAL_ID_LENGTH), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("external_id", String(EXTERNAL_ID_LENGTH), nullable=False, unique=True),
    Column("title", Text, nullable=True),
    Column("genres", Text, nullable=True, comment="Pipe-separated, as MovieLens writes them."),
    Column("metadata", JSON, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column(
        "updated_at",
        DateTime(timezone=True),
        nullable=False,
        server_default=func.now(),
        onupdate=func.now(),
    ),
)

# One row per (user, item): a newer rating replaces an older one (see store.queries).
ratings = Table(
    "ratings",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("item_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("value", Float, nullable=False),
    Column("rated_at", BigInteger, nullable=False, comment="Unix seconds."),
    Index("ix_ratings_item_id", "item_id"),
    Index("ix_ratings_rated_at", "rated_at"),
)

training_runs = Table(
    "training_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("status", String(32), nullable=False),
    Column("config", JSON, nullable=False),
    Column("history", JSON, nullable=False, comment="Per-epoch train and validation loss."),
    Column("best_epoch", Integer, nullable=True),
    Column("metrics", JSON, nullable=True, comment="Evaluation report: model and baselines."),
    Column("data_counts", JSON, nullable=True),
    Column("timings", JSON, nullable=True),
    Column("error", Text, nullable=True),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", String(64), nullable=False, unique=True),
    Column("training_run_id", Integer, ForeignKey("training_runs.id"), nullable=True),
    Column("artifact_path", Text, nullable=False),
    Column("checksum", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("metrics", JSON, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("promoted_at", DateTime(timezone=True), nullable=True),
    Index("ix_model_versions_status", "status"),
    # At most one production and one canary version, whatever races the code loses.
    *(
        Index(
            f"uq_model_versions_one_{status}",
            "status",
            unique=True,
            sqlite_where=text(f"status = '{status}'"),
            postgresql_where=text(f"status = '{status}'"),
        )
        for status in ("production", "canary")
    ),
)

# Served lists, one row per list: what was shown, to whom, by which model version and strategy.
# The items and their scores are JSON lists (position = list index): a list is written once and
# read whole by the monitoring maths, never queried item by item.
impressions = Table(
    "impressions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("recommendation_id", String(64), nullable=False, unique=True),
    Column("user_external_id", String(EXTERNAL_ID_LENGTH), nullable=True),
    Column("model_version", String(64), nullable=True),
    Column("strategy", String(32), nullable=False),
    Column("items", JSON, nullable=False),
    Column("scores", JSON, nullable=False),
    Column("served_at", DateTime(timezone=True), nullable=False),
    Column(
        "predicted",
        JSON,
        nullable=True,
        comment="predicted rating of each item, in list order (scores are ranking scores)",
    ),
    Column("explored", JSON, nullable=True, comment="per slot: drawn by the exploration policy"),
    Column(
        "propensities",
        JSON,
        nullable=True,
        comment="per slot: probability that the serving policy shows that item there",
    ),
    Column("policy", JSON, nullable=True, comment="what drew the list (recsys.exploration)"),
    Index("ix_impressions_served_at", "served_at"),
    Index("ix_impressions_user_external_id", "user_external_id"),
)

# Every piece of feedback as it arrived. Ratings are also upserted into `ratings` (they feed
# the next training); clicks, views and skips live only here, for monitoring.
feedback = Table(
    "feedback",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column(
        "event_id",
        String(EXTERNAL_ID_LENGTH),
        nullable=True,
        unique=True,
        comment="Client-chosen idempotency key: a retried event is stored once.",
    ),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("item_id", Integer, ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("value", Float, nullable=True),
    Column("recommendation_id", String(64), nullable=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Index("ix_feedback_recommendation_id", "recommendation_id"),
    Index("ix_feedback_received_at", "received_at"),
    Index("ix_feedback_user_id", "user_id"),
)

# Runs of the nightly job (and anything else scheduled): what it decided and why.
jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("status", String(32), nullable=False, comment="running, succeeded, failed, skipped"),
    Column(
        "decision",
        String(32),
        nullable=True,
        comment="promoted, canary, awaiting_approval, rejected",
    ),
    Column("reasons", JSON, nullable=True),
    Column("candidate_version", String(64), nullable=True),
    Column("production_version", String(64), nullable=True),
    Column("comparison", JSON, nullable=True, comment="Candidate and production on one holdout."),
    Column("data_counts", JSON, nullable=True),
    Column("timings", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("pid", Integer, nullable=True),
    Index("ix_jobs_started_at", "started_at"),
)

# API keys created with `recsys keys create`: only a SHA-256 of each key is stored.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False, comment="client or operator"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

# Dashboard sign-ins (recsys.sessions): the SHA-256 of the cookie's random id, and what the
# operator signed in with, so that sign-out, a new operator token or a revoked key end them.
operator_sessions = Table(
    "operator_sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_hash", String(64), nullable=False, unique=True),
    Column("credential", String(16), nullable=False, comment="token or key"),
    Column("reference", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
)

model_actions = Table(
    "model_actions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column(
        "actor",
        String(200),
        nullable=False,
        comment='"operator token", "key NAME", or the command or job that acted',
    ),
    Column("action", String(16), nullable=False),
    Column("from_version", String(64), nullable=True, comment="production before the action"),
    Column("to_version", String(64), nullable=True, comment="the version acted on"),
    Column("reason", Text, nullable=True),
    Index("ix_model_actions_at", "at"),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column(
        "name", String(100), primary_key=True, comment="what the body holds, and for which settings"
    ),
    Column("saved_at", DateTime(timezone=True), nullable=False),
    Column("body", LargeBinary, nullable=False),
    comment="state a process saves so that the next one does not rebuild it from every row",
)
