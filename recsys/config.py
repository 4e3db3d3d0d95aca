"""Configuration: `Settings` comes from the environment; `TrainConfig`
(`recsys.train_config`) holds hyper-parameters.

Two objects on purpose: deployment settings (where the database lives) change per machine and
are read from `RECSYS_*` variables; hyper-parameters change per experiment and travel inside
each artifact so a model always says how it was made. `train_config` is where the one meets
the other.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from recsys.errors import ConfigError
from recsys.train_config import TrainConfig

if TYPE_CHECKING:
    from recsys.exploration import ExplorePolicy
    from recsys.lists.rotation import Rotation


MAX_SUPPORT = 1_000_000_000
"""The largest "least training ratings of an item" accepted anywhere: more than any item has,
and small enough to be stored and logged as the 64-bit integer it becomes (a larger one
overflowed the impression row's JSON)."""


class RatingScale(BaseModel):
    """The range users rate on. MovieLens uses 0.5 to 5 stars in steps of 0.5."""

    model_config = ConfigDict(frozen=True)

    min: float = 0.5
    max: float = 5.0

    @model_validator(mode="after")
    def _ordered(self) -> RatingScale:
        if not self.min < self.max:
            raise ValueError(f"rating scale min ({self.min}) must be below max ({self.max})")
        return self

    def check_liked(self, threshold: float) -> None:
        """Raise ConfigError unless a "liked" threshold lies inside the scale: outside it,
        every rating or none would count as liked, and ranking would learn nothing."""
        if not self.min <= threshold <= self.max:
            raise ConfigError(
                f"liked_threshold {threshold} lies outside the rating scale {self.min}..{self.max}"
            )

    def output_range(self) -> tuple[float, float]:
        """The sigmoid's range: the scale widened by a tenth of its span on each side.

        A sigmoid only approaches its bounds, so a model squashed into exactly 0.5..5 could
        never predict 5 stars; fast.ai widens 1..5 to (0, 5.5) for the same reason.
        """
        margin = 0.1 * (self.max - self.min)
        return (self.min - margin, self.max + margin)


class Settings(BaseSettings):
    """Deployment settings, read from `RECSYS_*` environment variables (and `.env`)."""

    model_config = SettingsConfigDict(env_prefix="RECSYS_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./var/recsys.db"
    artifact_dir: Path = Path("./var/artifacts")
    rating_min: float = 0.5
    rating_max: float = 5.0
    liked_threshold: float = 4.0
    ingest_chunk_rows: int = Field(200_000, ge=1, le=5_000_000)
    max_errors_shown: int = Field(20, ge=1, le=1000)

    # The service's connection pool per process. A request that finds every connection busy
    # for db_pool_timeout_s is answered 503 with Retry-After (overloaded), not 500.
    db_pool_size: int = Field(5, ge=1, le=1000, description="Connections kept open.")
    db_max_overflow: int = Field(10, ge=0, le=1000, description="Extra connections under load.")
    db_pool_timeout_s: float = Field(
        10.0, gt=0, le=600, description="Longest wait for a free connection."
    )

    # Serving. Limits bound the work one request can ask for.
    max_k: int = Field(1000, ge=1, le=100_000, description="Largest k a request may ask for.")
    max_batch: int = Field(1000, ge=1, le=100_000, description="Most entries in a batch body.")
    reload_interval_s: float = Field(
        5.0, gt=0, le=3600, description="How often the service checks for a new production model."
    )
    recommend_min_support: int = Field(
        10,
        ge=1,
        le=MAX_SUPPORT,
        description="Default least training ratings of a recommended item.",
    )
    live_feedback: dict[str, float] = Field(
        {"like": 5.0, "purchase": 5.0, "click": 4.0, "dislike": 1.0},
        description="The rating each kind of feedback counts as when a known user's list "
        "folds in what they sent since the model was trained (a rating counts as itself; "
        "kinds not named, such as views and skips, are left out). JSON, e.g. "
        'RECSYS_LIVE_FEEDBACK=\'{"like": 5, "click": 4}\'.',
    )
    live_users: bool = Field(
        True, description="Known users' lists fold in their feedback since training."
    )
    rotation: bool = Field(
        False,
        description="Demote what a user was shown on RECSYS_ROTATION_AFTER days without "
        "answering (recsys.lists.rotation). Off by default: on the simulator it cost "
        "positive answers (benchmarks/README.md).",
    )
    rotation_after: int = Field(
        3, ge=1, le=100, description="Unanswered days from which rotation demotes an item."
    )
    rotation_half_life_days: float = Field(
        7.0, gt=0, le=365, description="Days over which an unanswered showing's demotion halves."
    )
    recommend_cache_users: int = Field(
        10_000,
        ge=0,
        description="Users whose ranked candidates the service keeps (about 1.3 KB each; 0: off).",
    )
    cold_start_min_support: int = Field(20, ge=1, le=MAX_SUPPORT)
    similar_min_support: int = Field(
        20,
        ge=1,
        le=MAX_SUPPORT,
        description="Default least training ratings of a similar item (API and CLI).",
    )
    fold_in_min_support: int = Field(10, ge=1, le=MAX_SUPPORT)
    exact_search_limit: int = Field(
        100_000, ge=0, description="Catalog size up to which nearest items use exact search."
    )
    explore_share: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of each list's slots drawn at random from lower-ranked items "
        "(recsys.exploration), logged with their propensities for off-policy evaluation.",
    )
    explore_temperature: float = Field(
        1.0,
        gt=0,
        description="Softmax temperature of exploration draws, in ranking-score units: higher "
        "explores deeper into the catalog.",
    )
    metrics_refresh_s: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="Least seconds between the monitoring recomputations that /metrics starts: "
        "its alert gauges are at most this old (plus one computation), however often it is "
        "scraped.",
    )
    off_policy_wait_s: float = Field(
        3.0,
        ge=0,
        le=600,
        description="How long GET /v1/monitoring/off-policy waits for the first report of a "
        "version and window before answering 202 (computing; ask again): reports are "
        "computed in the background and answered from there afterwards.",
    )
    metrics_scrapes_per_s: float = Field(
        10.0,
        gt=0,
        le=10_000,
        description="/metrics answers at most this many scrapes a second per worker; more "
        "wait their turn asleep, and one that would wait over `metrics_scrape_wait_s` gets "
        "503 after that long, so that clients scraping in a loop cannot fill the worker "
        "(service.scrape_gate).",
    )
    metrics_scrape_wait_s: float = Field(10.0, gt=0, le=300)
    impression_queue_size: int = Field(10_000, ge=1)
    impression_queue_mb: float = Field(
        32.0,
        gt=0,
        le=4096,
        description="Most memory of logged lists waiting to be written (MB); beyond it, or "
        "beyond impression_queue_size lists, lists are dropped and counted.",
    )
    impression_batch_size: int = Field(500, ge=1)
    impression_flush_s: float = Field(0.5, gt=0)

    # Retraining: how a candidate may replace production (see recsys.jobs).
    require_approval: bool = Field(
        False, description="A candidate that passes the gates waits for an operator."
    )
    canary_share: float = Field(
        0.0, ge=0, lt=1, description="Share of users served by a passing candidate first."
    )
    gate_rmse_tolerance: float = Field(
        0.005, ge=0, description="How much worse than production a candidate's RMSE may be."
    )
    gate_ndcg_tolerance: float = Field(
        0.01, ge=0, description="How much lower than production a candidate's NDCG@k may be."
    )
    gate_min_ndcg_vs_popular: float = Field(
        1.0, ge=0, description="A candidate's NDCG@k at least this x most-popular's."
    )
    gate_min_ndcg_vs_ease: float = Field(
        0.9,
        ge=0,
        description="A candidate's NDCG@k at least this x EASE's, the strong baseline "
        "(RECSYS_EASE_MAX_ITEMS says on how many items EASE learns).",
    )
    ease_max_items: int = Field(
        4_000,
        ge=0,
        description="EASE, the reports' strong baseline, holds at most this many squared "
        "floats (4,000: 64 MB): it learns every item where that fits (by users, where they "
        "are fewer than the items: MovieLens's 671 users and 8,700 items), else this many "
        "most-rated items, the rest ranked after them; 0: no EASE, which the report says.",
    )
    # The gate asks for evidence that the candidate is not worse (its lower bound), so it is
    # only fair once the interval is narrower than the tolerance: on the demo's traffic DR's
    # 95 % half-width was 0.031 at an effective sample of 197 lists, about 0.014 at 1,000.
    gate_ope_min_ess: float = Field(
        1000.0,
        ge=1,
        description="The off-policy gate applies once the candidate's estimate rests on at "
        "least this effective sample size of logged lists.",
    )
    gate_ope_tolerance: float = Field(
        0.02,
        ge=0,
        description="How far the candidate's off-policy lower bound (positive feedback per "
        "slot) may fall below production's observed rate.",
    )
    gate_min_coverage_ratio: float = Field(
        0.5, ge=0, le=1, description="Candidate catalog coverage at least this x production's."
    )
    gate_max_gini_increase: float = Field(
        0.05, ge=0, le=1, description="How much more concentrated exposure may become."
    )
    operator_token: SecretStr | None = Field(
        None, description="Bearer token for operator actions (required unless dev_mode)."
    )
    client_api_keys: SecretStr | None = Field(
        None, description="Comma-separated client keys (X-API-Key) for writes."
    )
    reads_require_key: bool = Field(False, description="Reads need a client key too.")
    cli_actor: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[\w .@-]+$",
        description="Who the audit trail names for registry actions taken with the command "
        "line ('cli (NAME)'); unset: the account running it, from the system's user "
        "database (not from LOGNAME or USER, which anyone can set).",
    )
    dev_mode: bool = Field(
        False,
        description="Development: the service starts without an operator token and takes "
        "writes without a client key. Never in production.",
    )
    max_body_bytes: int = Field(1_000_000, ge=1_000, description="Largest request body.")
    body_read_timeout_s: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Longest wait for the next part of a request body (408 after): a client "
        "trickling a body byte by byte holds a connection and a buffer meanwhile.",
    )
    max_upload_bytes: int = Field(
        50_000_000, ge=1_000, description="Largest CSV uploaded to /v1/ingest/ratings."
    )
    max_upload_rows: int = Field(2_000_000, ge=1, description="Most rows in one CSV upload.")
    # The health checks of the feedback loop (recsys.health: dashboard and Prometheus
    # `recsys_alert`). Exposure is judged against the production model's offline figures.
    alert_min_sample: int = Field(
        30, ge=1, description="Least events behind a figure before it is judged (else grey)."
    )
    alert_min_coverage_ratio: float = Field(
        0.5, ge=0, description="Red when coverage falls below this x the offline coverage."
    )
    alert_max_gini_increase: float = Field(
        0.03, ge=0, description="Red when Gini of exposure exceeds the offline Gini by this."
    )
    alert_max_popularity_share: float = Field(
        0.5,
        ge=0,
        description="Red when shown popularity is this far from the model's offline lists "
        "towards a most-popular chart (0-1).",
    )
    alert_max_abs_prediction_bias: float = Field(0.5, ge=0, description="In stars.")
    alert_max_psi: float = Field(0.25, ge=0, description="Drift (population stability index).")
    alert_max_attribution_share: float = Field(
        0.8, ge=0, le=1, description="Red when more of the new ratings answer our lists."
    )
    alert_max_model_age_days: float = Field(7.0, gt=0)
    alert_max_data_age_hours: float = Field(24.0, gt=0)
    # Off by default: on MovieLens it converges in fewer epochs but did not test better (see
    # benchmarks/README.md), and it carries the previous model's biases into the next one.
    warm_start: bool = Field(False, description="Start from production's factors for known ids.")
    retrain_cron: str = Field("0 3 * * *", description="When `recsys schedule` retrains.")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        RatingScale(min=self.rating_min, max=self.rating_max)
        if not self.rating_min <= self.liked_threshold <= self.rating_max:
            raise ValueError("RECSYS_LIKED_THRESHOLD must lie inside the rating scale")
        outside = {
            k: v
            for k, v in self.live_feedback.items()
            if not self.rating_min <= v <= self.rating_max
        }
        if outside:
            raise ValueError(
                f"RECSYS_LIVE_FEEDBACK's ratings must lie inside the rating scale "
                f"({self.rating_min}-{self.rating_max}): {outside}"
            )
        return self

    @property
    def explore_policy(self) -> ExplorePolicy:
        """The exploration lists are served with."""
        return self.explore_policy_at(self.explore_share)

    @property
    def rotation_policy(self) -> Rotation | None:
        """The rotation lists are served with; None when off."""
        from recsys.lists.rotation import Rotation

        if not self.rotation:
            return None
        return Rotation(self.rotation_after, self.rotation_half_life_days)

    def explore_policy_at(self, share: float) -> ExplorePolicy:
        """The served policy's temperature with another share (what-if evaluations)."""
        # numpy, which the policy needs, is no import of `recsys --help`.
        from recsys.exploration import ExplorePolicy

        return ExplorePolicy(share, self.explore_temperature)

    def client_keys(self) -> list[str]:
        raw = self.client_api_keys.get_secret_value() if self.client_api_keys else ""
        return [k.strip() for k in raw.split(",") if k.strip()]

    def serving_problems(self) -> list[str]:
        """Why the service must not start with these settings (empty in dev mode)."""
        if self.dev_mode:
            return []
        token = self.operator_token.get_secret_value() if self.operator_token else ""
        if not token:
            return ["RECSYS_OPERATOR_TOKEN is not set (or set RECSYS_DEV_MODE=true on a laptop)"]
        if len(token) < 16 or token in WEAK_TOKENS:
            return ["RECSYS_OPERATOR_TOKEN is a default or shorter than 16 characters"]
        return []

    @property
    def rating_scale(self) -> RatingScale:
        return RatingScale(min=self.rating_min, max=self.rating_max)


WEAK_TOKENS = frozenset({"change-me", "changeme", "demo-operator-token", "password", "secret"})


@lru_cache
def get_settings() -> Settings:
    return Settings()


def train_config(settings: Settings, **overrides: object) -> TrainConfig:
    """The one place a TrainConfig is made from Settings: what deployment settings decide
    about training (the liked threshold, the EASE limit, the NDCG gate), then `overrides`
    (None values ignored, so CLI options left out keep the defaults)."""
    values: dict[str, object] = {
        "liked_threshold": settings.liked_threshold,
        "ease_max_items": settings.ease_max_items,
        "min_ndcg_vs_popular": settings.gate_min_ndcg_vs_popular,
        "min_ndcg_vs_ease": settings.gate_min_ndcg_vs_ease,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.model_validate(values)
