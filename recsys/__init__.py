"""recsys: a collaborative-filtering recommender (DotProductBias in PyTorch).

Library use, no database needed::

    from recsys import Interactions, ListRequest, Ranker, TrainConfig, fit, samples
    data = Interactions.from_frame(samples.movielens().ratings)
    fitted = fit(data, TrainConfig())
    Ranker(fitted.deployed).recommend("1", ListRequest(k=10))
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recsys.config import RatingScale, Settings
    from recsys.data import samples
    from recsys.data.interactions import Interactions
    from recsys.data.vocab import Vocabulary
    from recsys.evaluation.report import evaluate, format_report
    from recsys.lists.ranker import Ranker
    from recsys.lists.scored import ListRequest
    from recsys.model.artifact import load as load_model
    from recsys.model.artifact import save as save_model
    from recsys.model.network import DotProductBias
    from recsys.model.recommender import Recommender
    from recsys.model.scored import Scored
    from recsys.train_config import TrainConfig
    from recsys.training.assess import Fitted
    from recsys.training.pipeline import fit
    from recsys.training.trainer import Trainer

# Imported on first use (PEP 562): torch and pandas take ~2 s to import, and the command line,
# which imports this package first, should not pay that for `recsys --help`.
_LAZY = {
    "RatingScale": ("recsys.config", "RatingScale"),
    "Settings": ("recsys.config", "Settings"),
    "TrainConfig": ("recsys.config", "TrainConfig"),
    "samples": ("recsys.data.samples", None),
    "Interactions": ("recsys.data.interactions", "Interactions"),
    "Vocabulary": ("recsys.data.vocab", "Vocabulary"),
    "evaluate": ("recsys.evaluation.report", "evaluate"),
    "format_report": ("recsys.evaluation.report", "format_report"),
    "load_model": ("recsys.model.artifact", "load"),
    "save_model": ("recsys.model.artifact", "save"),
    "DotProductBias": ("recsys.model.network", "DotProductBias"),
    "Recommender": ("recsys.model.recommender", "Recommender"),
    "ListRequest": ("recsys.lists.scored", "ListRequest"),
    "Ranker": ("recsys.lists.ranker", "Ranker"),
    "Scored": ("recsys.model.scored", "Scored"),
    "Fitted": ("recsys.training.assess", "Fitted"),
    "fit": ("recsys.training.pipeline", "fit"),
    "Trainer": ("recsys.training.trainer", "Trainer"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'recsys' has no attribute {name!r}")
    module, attribute = _LAZY[name]
    value = import_module(module)
    return value if attribute is None else getattr(value, attribute)


__all__ = [
    "DotProductBias",
    "Fitted",
    "Interactions",
    "ListRequest",
    "Ranker",
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
