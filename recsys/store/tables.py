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
    MetaData,
    String,
    Table,
    Text,
    func,
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
)
