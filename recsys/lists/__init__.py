"""Lists: what a trained model (`recsys.model.recommender.Recommender`) is asked for, made by
the `Ranker` (`ranker.py`), which owns the caches and the batching and applies exploration as
the last step of a list (`explore.py`)."""
