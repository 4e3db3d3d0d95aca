"""A spectral start for the ranking head (`rank_init="spectral"`): its item embeddings set to
the leading singular directions of the users' histories, instead of small random numbers.

With input and output embeddings both a V (V: the top right singular vectors of the 0/1
history matrix X, whose rows are what a user vector sums), a user's scores p_u . q_i are
a**2 X_u V V_i' up to the user's own scale: PureSVD's ranking (Cremonesi, Koren & Turrin
2010) before the first step. From a random start the head spends its first ten epochs finding
that much (validation NDCG@10 after one epoch 0.06; from this start 0.12), and early stopping
keeps epoch 19-40; from this start it keeps epoch 6-10, and `recsys train` on MovieLens is
quicker (9.7 s against 10.4 s over five splits). Measured on MovieLens (benchmarks/README.md):
test NDCG@10 0.2516 against 0.2459 on five random splits, 0.2623 against 0.2612 on `recsys
train`'s hash split, 0.451 against 0.437 for held-out visitors; but 0.1195 against 0.1228 on
the temporal split (four training seeds, lower on each); the lists of genre visitors hold
more popular films from outside the genre (a Pixar fan's top 10: 6 animated films against 9,
with The Sixth Sense and Forrest Gump; a horror fan's: 6 horror films against 8); and films
added after training by their genres (`recsys.model.new_items`) place lower among their
genre for its fans. At 25M ratings, with the sampled normaliser, it diverged: validation
NDCG@10 0.114 after one epoch, 0.015 after eight. Not the default for those reasons.

V is found by subspace iteration on X'X (Halko, Martinsson & Tropp 2011), whose products are
sums over users: under torchrun each rank adds its own users' share, so every rank starts
from the same tables a single process would.
"""

from __future__ import annotations

import warnings

import torch

from recsys.training.choice_parts import Histories
from recsys.training.distributed import World

ITERATIONS = 3
"""Products with X'X: on a matrix of a few tastes and noise, the top two directions agree with
a dense SVD's to 1e-4 and the third to 2 % (tests/test_spectral.py); the start needs the
leading taste directions, not exact singular vectors."""

SCALE = 0.05
"""The standard deviation of the item tables at the start (a random start's is `init_std`,
0.01): where trained tables end on MovieLens (0.053 input, 0.062 output). Test NDCG@10 on five
random splits / the temporal one: 0.03 gave 0.2494 / 0.1145, 0.05 0.2515 / 0.1210, 0.1
0.2367 / 0.1194 (one split below EASE: the tables were too large for Adam's steps to move
them far from PureSVD before early stopping judged the head)."""


def spectral_items(
    hist: Histories, n_items: int, n_factors: int, *, seed: int, world: World | None = None
) -> torch.Tensor:
    """n_items x n_factors: the top right singular vectors of the history matrix (summed over
    the ranks' users), each weighted by the square root of its share of the largest singular
    value, scaled to a standard deviation of SCALE."""
    n_users = len(hist.indptr) - 1
    with warnings.catch_warnings():
        # torch's sparse CSR kernels warn that they are "beta"; tests/test_spectral.py checks
        # what they compute against a dense SVD.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
        x = torch.sparse_csr_tensor(
            torch.from_numpy(hist.indptr),
            torch.from_numpy(hist.items),
            torch.ones(len(hist.items)),  # chosen or not: the weighted rows started worse
            (n_users, n_items),
            check_invariants=False,  # the histories' CSR rows, valid by construction
        )
        xt = x.t().to_sparse_csr()
    width = min(n_factors, n_items)
    # The same start on every rank: the ranks' products are summed, not their starts.
    start = torch.Generator().manual_seed(seed)
    basis = torch.randn(n_items, width, generator=start)
    for _ in range(ITERATIONS):
        product = _summed(xt @ (x @ basis), world)  # X'X basis over every rank's users
        basis, _ = torch.linalg.qr(product)
    projected = x @ basis
    gram = _summed(projected.T @ projected, world)  # basis' X'X basis: width x width
    values, vectors = torch.linalg.eigh(gram)
    order = torch.argsort(values, descending=True)
    values, vectors = values[order].clamp_min(0.0), vectors[:, order]
    items = basis @ vectors
    # Each direction weighs by the square root of its singular value's share (singular values
    # are the square roots of X'X's eigenvalues): the strongest taste dimensions lead.
    strength = (values / values[0].clamp_min(1e-12)).pow(0.25)
    items = items * strength
    if width < n_factors:
        items = torch.cat([items, torch.zeros(n_items, n_factors - width)], dim=1)
    scaled: torch.Tensor = items * (SCALE / items.std().clamp_min(1e-12))
    return scaled


def _summed(values: torch.Tensor, world: World | None) -> torch.Tensor:
    return world.sum_tensor(values).cpu() if world is not None else values
