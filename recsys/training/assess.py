"""The evaluated twin: the trained networks as a `Recommender` with its card, evaluated
against the baselines on the test holdout, and what a training run returns (`Fitted`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from recsys.config import RatingScale
from recsys.data.interactions import Interactions
from recsys.data.snapshot import fingerprint
from recsys.evaluation.baselines import Scorer
from recsys.evaluation.gates import GateCheck, baseline_checks, beats_baselines
from recsys.evaluation.report import BaselineCache, Report, evaluate
from recsys.model.card import DataCounts, ModelCard, RankingRecord
from recsys.model.ranking import RankingHead
from recsys.model.recommender import Recommender
from recsys.train_config import TrainConfig
from recsys.training.splits import Splits
from recsys.training.trainer import TrainResult


@dataclass
class Fitted:
    recommender: Recommender
    result: TrainResult
    report: Report | None
    data: Interactions
    test_mask: np.ndarray
    """The test holdout among `data`."""
    test: Interactions
    timings: dict[str, float]
    config: TrainConfig
    """What it was trained and is judged with (the gates' k and ratios)."""
    served: Recommender | None = None
    """The model that serves, refit on every rating (`TrainConfig.serve_refit`); None: the
    evaluated `recommender` serves itself."""

    @property
    def train(self) -> Interactions:
        """Everything but the test holdout, made when asked: a copy of most of the ratings
        is not kept through the serving refit, where it set the peak memory at 25M ratings."""
        return self.data.subset(~self.test_mask)

    @property
    def report_json(self) -> dict[str, Any] | None:
        """The evaluation report as the registry and the card keep it."""
        return self.report.to_json() if self.report else None

    @property
    def deployed(self) -> Recommender:
        return self.served or self.recommender

    @property
    def gate(self) -> dict[str, Any]:
        if self.report is None:
            return {"passed": True, "reasons": ["no test split: nothing to compare"]}
        c = self.config
        return beats_baselines(self.report, c.top_k, c.min_ndcg_vs_popular, c.min_ndcg_vs_ease)

    @property
    def checks(self) -> list[GateCheck]:
        """The baselines' gates (`baseline_checks`); none without a test split."""
        if self.report is None:
            return []
        c = self.config
        return baseline_checks(self.report, c.top_k, c.min_ndcg_vs_popular, c.min_ndcg_vs_ease)


def assess(
    data: Interactions,
    parts: Splits,
    result: TrainResult,
    config: TrainConfig,
    scale: RatingScale,
    *,
    extra: Sequence[Scorer] = (),
    train_s: float,
    ranking: tuple[RankingHead, RankingRecord] | None = None,
    baselines: Report | None = None,
    baseline_cache: BaselineCache | None = None,
) -> Fitted:
    """The trained network as a `Recommender` with its record, evaluated on the test split."""
    t1 = time.perf_counter()
    card = ModelCard(
        config=config,
        rating_scale=scale,
        best_epoch=result.best_epoch,
        history=result.history_dicts(),
        refit=asdict(result.refit) if result.refit else None,
        data=DataCounts(
            ratings=len(data),
            users=data.n_users,
            items=data.n_items,
            train=len(parts.inner),
            valid=len(parts.valid),
            test=len(parts.test),
            fingerprint=fingerprint(data),
            max_timestamp=data.max_timestamp,
        ),
        device=result.device,
        samples_per_second=result.samples_per_second,
        ranking=ranking[1] if ranking else None,
    )
    rec = Recommender.from_network(
        result.network, parts.inner, card, seen=data, ranking=ranking[0] if ranking else None
    )
    report = None
    if len(parts.test):
        report = evaluate(
            rec,
            parts.train,
            parts.test,
            threshold=config.liked_threshold,
            k=config.top_k,
            seed=config.seed,
            extra=extra,
            ease_max_items=config.ease_max_items,
            cache=baseline_cache,
            baselines=baselines,
        )
    rec.card.metrics = report.to_json() if report else None
    timings = {"train_s": train_s, "evaluate_s": time.perf_counter() - t1}
    return Fitted(rec, result, report, data, parts.test_mask, parts.test, timings, config)
