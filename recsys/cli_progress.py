"""What `recsys train` and `recsys retrain` show while they work: a bar with the elapsed
time, and a line for every stage and every epoch of either head, so that a run of minutes is
never silent and a user sees whether a head under- or over-fits as it trains; and what
`recsys train` says of the run it registered."""

from __future__ import annotations

import math
import resource
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from recsys.cli_console import err, out, tagged
from recsys.train_config import TrainConfig

if TYPE_CHECKING:
    from recsys.training.runs import Registered
    from recsys.training.trainer import EpochStats


@dataclass(frozen=True)
class TrainingProgress:
    on_stage: Callable[[str], None]
    on_step: Callable[[int, int], None]
    on_epoch: Callable[[EpochStats], None]
    on_rank_epoch: Callable[[EpochStats], None]


def _loss(value: float) -> str:
    # A refit has no validation data: its validation loss is NaN, shown as a dash.
    return "-" if math.isnan(value) else f"{value:.4f}"


@contextmanager
def training_progress(
    console: Console, config: TrainConfig, *, quiet: bool = False
) -> Iterator[TrainingProgress]:
    with Progress(
        TextColumn("[bold]training"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    ) as progress:
        task = progress.add_task("", total=None)

        def say(line: str) -> None:
            if not quiet:
                # Never wrapped: a log file (no terminal: 80 columns) keeps one line each.
                progress.console.print(line, soft_wrap=True)

        def on_stage(message: str) -> None:
            progress.update(task, description=message.split(":")[0], completed=0, total=None)
            # The peak so far says which stage a memory limit must allow for.
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
            say(f"{message}  [peak memory so far {peak:.2f} GB]")

        def on_step(done: int, total: int) -> None:
            if done % 20 == 0 or done == total:
                progress.update(task, completed=done, total=total)

        def on_epoch(e: EpochStats) -> None:
            progress.update(task, description=f"epoch {e.epoch}")
            say(
                f"epoch {e.epoch:>3}  train MSE {e.train_loss:.4f}  "
                f"valid MSE {_loss(e.val_loss)}  lr {e.lr:.2e}  {e.seconds:.2f}s"
            )

        def on_rank_epoch(e: EpochStats) -> None:
            head = f"ranking head {e.member + 1}" if config.rank_members > 1 else "ranking"
            progress.update(task, description=f"{head} epoch {e.epoch}")
            ndcg = "-" if e.val_ndcg is None else f"{e.val_ndcg:.4f}"
            say(
                f"{head} epoch {e.epoch:>3}  train NLL {e.train_loss:.4f}  "
                f"valid NLL {_loss(e.val_loss)}  valid NDCG@{config.top_k} {ndcg}  "
                f"{e.seconds:.2f}s"
            )

        yield TrainingProgress(on_stage, on_step, on_epoch, on_rank_epoch)


def print_training(reg: Registered, k: int) -> None:
    """What `recsys train` says of a registered run: both heads' epochs, the served refit,
    the report against the baselines, and the verdict."""
    from recsys.evaluation.report import format_report

    res = reg.fitted.result
    out.print(
        f"best epoch {res.best_epoch} of {len(res.history)}"
        f"{' (stopped early)' if res.stopped_early else ''}; {res.seconds:.2f}s, "
        f"{res.samples_per_second:,.0f} samples/s on {res.device}"
    )
    if res.refit is not None:
        out.print(
            f"refit on training + validation data ({res.refit.ratings:,} ratings) for "
            f"{res.refit.epochs} epochs: train MSE {res.refit.train_loss:.4f}"
        )
    ranking = reg.fitted.recommender.card.ranking
    if ranking:
        heads = ranking.kept_epochs
        kept = (
            f"epoch {heads[0]} of {len(ranking.history)} kept"
            if len(heads) == 1
            else f"{len(heads)} heads averaged, epochs {', '.join(map(str, heads))} kept"
        )
        out.print(
            f"ranking head: {kept}; lists rank by choice + {ranking.blend} x rating logit "
            f"(chosen on validation NDCG@{k})"
        )
        if ranking.refit_epochs:
            start = "from the kept head" if ranking.refit_warm else "from scratch"
            out.print(
                f"ranking head refit on training + validation data {start} for "
                f"{', '.join(map(str, ranking.refit_epochs))} epochs"
            )
    served = reg.fitted.deployed.card.served
    if served:
        out.print(
            f"served model: both heads trained again on all {served.ratings:,} ratings "
            f"({served.seconds:.1f}s); the figures below are its evaluated twin's"
        )
    if reg.fitted.report is not None:
        out.print(format_report(reg.fitted.report))
    for w in reg.fitted.gate.get("warnings", []):
        err.print(tagged("warning:", "yellow", str(w)))
    for check in reg.decision.checks:
        if check.passed is None:  # a gate that could not be applied, and why
            err.print(tagged("not applied:", "yellow", check.detail))
    if reg.promoted:
        verdict = "promoted to production"
    elif reg.decision.passed:
        verdict = "registered as candidate"
    else:  # the baselines' gates, and production's on the same holdout
        verdict = "rejected: " + "; ".join(reg.decision.reasons)
    out.print(f"model {reg.version} {verdict}")
