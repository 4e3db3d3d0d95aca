"""Configuration: `Settings` comes from the environment, `TrainConfig` holds hyper-parameters.

Two objects on purpose: deployment settings (where the database lives) change per machine and
are read from `RECSYS_*` variables; hyper-parameters change per experiment and travel inside
each artifact so a model always says how it was made.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from recsys.errors import ConfigError

if TYPE_CHECKING:
    from recsys.exploration import ExplorePolicy


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
        description="EASE, the reports' strong baseline, learns at most this many most-rated "
        "items (time cubic and memory quadratic in them; the rest ranked after them); 0: no "
        "EASE, which the report says. On MovieLens, EASE on its 4,000 most-rated items ranked "
        "as well as on all 8,700 (NDCG@10 0.2523 and 0.2370 against 0.2519 and 0.2354 on two "
        "random splits) in a ninth of the time (0.7 s against 6.5 s).",
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
        return self

    @property
    def explore_policy(self) -> ExplorePolicy:
        """The exploration lists are served with."""
        return self.explore_policy_at(self.explore_share)

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


class TrainConfig(BaseModel):
    """Hyper-parameters of DotProductBias training. The defaults are tuned on MovieLens.

    Regularisation is an L2 penalty on the embedding rows *used by each sample*, averaged per
    sample (the classic matrix-factorisation objective of Koren, Bell & Volinsky, 2009). Unlike
    weight decay applied to whole matrices once per step, its strength does not depend on the
    batch size, so large, fast batches keep the accuracy of small ones.
    """

    model_config = ConfigDict(extra="forbid")

    n_factors: int = Field(64, ge=1, le=1024, description="Length of user and item vectors.")
    # 4 epochs at a peak of 0.007 test as well as 6 at 0.005 (RMSE 0.8618 against 0.8599 on
    # three MovieLens splits) in two thirds of the time; 3 epochs lose (0.8645).
    epochs: int = Field(
        4, ge=1, le=1000, description="Length of the one-cycle schedule; early stopping may end it."
    )
    batch_size: int = Field(512, ge=1, le=1_000_000)
    lr: float = Field(
        0.007, gt=0, le=10, description="Peak learning rate of the one-cycle schedule."
    )
    warmup_fraction: float = Field(0.25, ge=0, lt=1, description="Share of steps spent warming up.")
    factor_l2: float = Field(0.1, ge=0, description="Per-sample L2 on user and item factors.")
    l2_count_exponent: float = Field(
        0.25,
        ge=0,
        le=1,
        description="The factor L2 of a rating is scaled by (the row's ratings / a row's mean "
        "ratings) ** -exponent: 0 is the classic per-sample L2, 1 a penalty per row whatever "
        "its ratings; in between, rows with few ratings are held closer to zero per rating.",
    )
    adam_beta2: float = Field(
        0.99,
        gt=0,
        lt=1,
        description="Adam's second-moment decay. A row that a batch rarely touches steps about "
        "(1 - beta1) / sqrt(1 - beta2) times the learning rate: 3.2x with the usual 0.999, "
        "1x with 0.99, which keeps rare users and items from overshooting.",
    )
    bias_l2: float = Field(0.0, ge=0, description="Per-sample L2 on user and item biases.")
    init_std: float = Field(0.01, gt=0, description="Standard deviation of initial factors.")
    val_fraction: float = Field(
        0.05, gt=0, lt=0.5, description="Share of training data for early stopping."
    )
    test_fraction: float = Field(0.1, ge=0, lt=0.5, description="Share held out for evaluation.")
    split: Literal["random", "time", "hash", "user_time"] = Field(
        "hash",
        description="Test holdout: 'hash' holds out the same (user, item) pairs in every "
        "snapshot, so successive models are compared on ratings none of them learned.",
    )
    serve_refit: bool = Field(
        True,
        description="After evaluation, train both heads again on every rating (the test "
        "holdout included) for the chosen epochs: that model serves, its evaluated twin's "
        "metrics stand for it.",
    )
    refit: bool = Field(
        True,
        description="After early stopping, train again on training plus validation data for "
        "the best number of epochs (about twice the time; the validation ratings are learned).",
    )
    patience: int = Field(
        2, ge=0, description="Epochs without validation improvement before stopping."
    )
    min_delta: float = Field(1e-4, ge=0, description="Smallest validation improvement that counts.")
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    top_k: int = Field(10, ge=1, le=1000, description="k of the ranking metrics.")
    liked_threshold: float = Field(
        4.0,
        allow_inf_nan=False,
        description="A rating at least this is 'liked' (within the scale).",
    )
    ease_max_items: int = Field(
        4_000, ge=0, description="EASE baseline on at most this many most-rated items."
    )
    min_ndcg_vs_popular: float = Field(
        1.0, ge=0, description="Gate: NDCG@k at least this x the most-popular list's."
    )
    min_ndcg_vs_ease: float = Field(
        0.9, ge=0, description="Gate: NDCG@k at least this x EASE's (the strong baseline)."
    )

    # The ranking head (recsys.training.choice): chosen on validation NDCG@10 of MovieLens
    # (benchmarks/ranking_movielens.py), never on the test split.
    ranking: bool = Field(True, description="Train the ranking head; off: lists by rating.")
    rank_factors: int = Field(64, ge=1, le=1024, description="Length of ranking vectors.")
    rank_members: int = Field(
        1,
        ge=1,
        le=16,
        description="Ranking heads trained from different seeds whose scores are averaged: "
        "2 ranked about 2 % better on MovieLens and varied less from seed to seed, at twice "
        "the head's training time (benchmarks/README.md).",
    )
    rank_epochs: int = Field(40, ge=1, le=1000, description="Most epochs of the ranking head.")
    rank_patience: int = Field(
        6,
        ge=0,
        description="Epochs without validation NDCG improvement before the ranking head stops "
        "(NDCG of a small validation split is noisy, so longer than the rating head's).",
    )
    rank_stop_window: int = Field(
        5,
        ge=1,
        le=20,
        description="Early stopping judges an epoch by the mean validation NDCG of this many "
        "epochs up to it (1: the epoch alone). A small split's NDCG wanders from epoch to "
        "epoch around a curve that rises slowly to epoch ~30; judged alone, one lucky early "
        "epoch ended training and the kept head ranked below EASE (benchmarks/README.md).",
    )
    rank_lr: float = Field(
        0.015, gt=0, le=10, description="Adam learning rate of the ranking head."
    )
    rank_batch_users: int = Field(
        64,
        ge=1,
        le=100_000,
        description="Users per ranking batch; left at its default, it grows with the users "
        "so that an epoch takes at most RANK_STEPS_PER_EPOCH steps (`sized_for`).",
    )
    rank_negatives: int = Field(
        4096,
        ge=0,
        le=1_000_000,
        description="Items drawn per batch (by popularity, with the log-Q correction) to "
        "estimate the softmax's normaliser on a catalog of more than 4x this many items, so "
        "an epoch costs ratings x factors + users x negatives x factors instead of users x "
        "items x factors. Smaller catalogs, or 0: the exact softmax over every item, which "
        "ranked better on MovieLens (validation NDCG@10 in benchmarks/README.md).",
    )
    rank_l2: float = Field(0.1, ge=0, description="L2 on ranking item embeddings.")
    rank_user_l2: float = Field(0.1, ge=0, description="L2 on ranking user offsets.")
    rank_disliked_weight: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Target weight of an item rated below the liked threshold (a liked one: 1): "
        "the user chose it, yet a list should lead to what they will like.",
    )
    rank_disliked_input: float = Field(
        1.0,
        ge=-1,
        le=1,
        description="Weight of an item rated below the liked threshold in the user's vector "
        "(a liked one: 1); below 0 a low rating pushes away from the item's neighbours.",
    )
    rank_history_exponent: float = Field(
        0.5,
        ge=0,
        le=1,
        description="A user's ranking vector sums their items' input embeddings times "
        "|N(u)| ** -exponent: 0.5 as in SVD++; 1 averages, so a visitor known by three "
        "ratings is placed as firmly as a user with a hundred.",
    )
    rank_input_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Share of a user's history left out of their vector in each training step "
        "(the rest scaled up to match), while every item stays a target: the head learns to "
        "find items from the others, not each from itself (a denoising autoencoder's input "
        "dropout; EASE's zero diagonal forbids the same shortcut). 0.75 raised validation "
        "NDCG@10 by 4 % but not test NDCG on random splits, and trained longer "
        "(benchmarks/README.md), so it is off by default.",
    )
    rank_genres: bool = Field(
        True,
        description="Items that share a genre share part of their ranking output vectors, "
        "where the catalog has genres (side information, as in LightFM).",
    )
    rank_average: float = Field(
        0.6,
        ge=0,
        lt=1,
        description="The ranking head kept and served is an exponential moving average of "
        "the trained weights, decaying by this factor per epoch (spread over its steps; "
        "0: the last step's weights). Validation NDCG@10 on MovieLens 0.1989 against "
        "0.1922 without (benchmarks/README.md).",
    )
    rank_blend: float | None = Field(
        None,
        ge=0,
        description="Lists rank by choice score + blend x rating logit; None: chosen on "
        "validation NDCG among RANK_BLENDS.",
    )

    def sized_for(self, n_ratings: int, n_users: int) -> TrainConfig:
        """This config with the batch sizes left at their defaults grown to the data, so that
        an epoch of the rating head takes at most RATING_STEPS_PER_EPOCH steps and one of the
        ranking head at most RANK_STEPS_PER_EPOCH, and the ranking head's most epochs cut to
        about RANK_MAX_STEPS steps (never below RANK_MIN_EPOCHS). Below those sizes
        (MovieLens) nothing changes; a value set explicitly is kept.

        Why steps and not samples: every step of Adam updates every row of the tables (dense
        gradients), so at 25M ratings the default batch of 512 meant 44,000 steps of 14M
        parameters an epoch. With the same steps an epoch, each user's and item's row takes
        a step about as often as on MovieLens, so the learning rates carry over."""
        update: dict[str, int] = {}
        chosen = self.model_fields_set
        if "batch_size" not in chosen:
            update["batch_size"] = max(self.batch_size, -(-n_ratings // RATING_STEPS_PER_EPOCH))
        batch_users = self.rank_batch_users
        if "rank_batch_users" not in chosen:
            batch_users = update["rank_batch_users"] = max(
                batch_users, -(-n_users // RANK_STEPS_PER_EPOCH)
            )
        if "rank_epochs" not in chosen:
            # The ranking head's item tables learn by steps: where an epoch has more steps,
            # fewer epochs take it as far (MovieLens: 11 steps an epoch, 40 epochs).
            steps = max(1, -(-n_users // batch_users))
            update["rank_epochs"] = max(
                RANK_MIN_EPOCHS, min(self.rank_epochs, -(-RANK_MAX_STEPS // steps))
            )
        return self.model_copy(update=update) if update else self


RATING_STEPS_PER_EPOCH = 256
"""Most steps in an epoch of the rating head with the default batch size (`sized_for`):
MovieLens's training part takes ~150 steps of 512."""
RANK_STEPS_PER_EPOCH = 64
"""Most steps in an epoch of the ranking head with the default batch of users."""
RANK_MAX_STEPS = 512
"""Steps of the ranking head's default schedule: its epochs are cut to about this many steps
(MovieLens takes 40 epochs of 11 steps; 25M ratings 8 epochs of 64)."""
RANK_MIN_EPOCHS = 8
"""Fewest epochs of the ranking head's default schedule: each user's own offset takes one step
an epoch."""

RANK_BLENDS = (0.0, 0.25, 0.5, 1.0)


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
