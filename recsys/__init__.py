"""recsys: a collaborative-filtering recommender (DotProductBias in PyTorch).

Library use, no database needed::

    from recsys import Interactions, TrainConfig, fit, samples
    data = Interactions.from_frame(samples.movielens().ratings)
    fitted = fit(data, TrainConfig())
    fitted.recommender.recommend("1", k=10)
"""

from recsys.config import RatingScale, Settings, TrainConfig
from recsys.data import samples
from recsys.data.interactions import Interactions
from recsys.data.vocab import Vocabulary
from recsys.evaluation.report import evaluate, format_report
from recsys.model.artifact import load as load_model
from recsys.model.artifact import save as save_model
from recsys.model.network import DotProductBias
from recsys.model.recommender import Recommender, Scored
from recsys.training.pipeline import Fitted, fit
from recsys.training.trainer import Trainer

__all__ = [
    "DotProductBias",
    "Fitted",
    "Interactions",
    "RatingScale",
    "Recommender",
    "Scored",
    "Settings",
    "TrainConfig",
    "Trainer",
    "Vocabulary",
    "evaluate",
    "fit",
    "format_report",
    "load_model",
    "samples",
    "save_model",
]
