"""`TrainConfig`: the hyper-parameters of both heads, tuned on MovieLens, and how their
defaults grow with the data (`TrainConfig.sized_for`). A config travels inside each artifact
(`recsys.model.card`), so a model always says how it was made; `recsys.config.train_config`
makes one from deployment settings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
        4_000,
        ge=0,
        description="EASE baseline within this many squared floats (Settings.ease_max_items).",
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
    rank_refit_epochs: int = Field(
        4,
        ge=0,
        le=1000,
        description="Epochs of each refit of the ranking head (the evaluated twin's on training "
        "+ validation, the served model's on every rating), each fine-tuning the head chosen "
        "on validation at `rank_refit_lr_share` of its learning rate where the head was kept "
        "at 2.5x as many epochs or more (`FINE_TUNE_MAX_SHARE`); else, or with 0, each refit "
        "trains a fresh head for the chosen head's epochs. On MovieLens (kept epoch 11-40) 4 "
        "ranked as well as a fresh head or better, at a ninth of its epochs; at 25M ratings "
        "(kept epoch 7) fine-tuning ranked worse than a fresh refit (benchmarks/README.md).",
    )
    rank_refit_lr_share: float = Field(
        1 / 3,
        gt=0,
        le=1,
        description="A fine-tuning refit's learning rate as a share of `rank_lr`: Adam's first "
        "steps move every weight by about the learning rate whatever its gradient, and a "
        "trained head needs a gentler start than a fresh one (benchmarks/README.md).",
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
    rank_init: Literal["random", "spectral"] = Field(
        "random",
        description="How the ranking head's item embeddings start: small random numbers, or "
        "`spectral`, at the leading singular directions of the users' histories (PureSVD's "
        "ranking before the first step). On MovieLens spectral keeps epoch 6-10 instead of "
        "19-40 (`recsys train` 9.7 s against 10.4 s over five splits), with test NDCG@10 "
        "0.2516 against 0.2459 on random splits but 0.1195 against 0.1228 on the temporal "
        "one, and lists a person reads less of the visitor's genre (a Pixar fan's top 10: 6 "
        "animated films against 9, with The Sixth Sense; a horror fan's: 6 horror against "
        "8). At 25M ratings, with the sampled normaliser, it diverged (benchmarks/README.md). "
        "So random is the default.",
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
