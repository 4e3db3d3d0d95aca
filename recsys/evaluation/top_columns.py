"""Each row's k largest entries of a score matrix, for evaluation's ranked lists.

`torch.topk` over whole rows costs about a nanosecond an entry on one core: on MovieLens
(9,000 items, k 10) a fifth of the ranking head's judge every epoch. The rows' maxima over
blocks of BLOCK columns are a pass of their own, and the k blocks with the largest maxima
hold every one of the k largest entries (an entry outside them has k block maxima at least
as large, so k entries at least as large), so the top k are found among k x BLOCK
candidates. On one core: 1.5 ms against 3.0 ms for 240 users x 9,000 items, 0.4 ms against
2.4 ms for 35 users x 59,000 items (the judge's batches at 25M ratings); on two cores
`torch.topk`, row-parallel, is quicker on the first (1.4 ms against 1.8) and still 4x slower
on the second.
"""

from __future__ import annotations

import torch

BLOCK = 64


def top_columns(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The columns of each row's `k` largest entries, largest first (rows x k; k at most the
    columns): what `torch.topk(scores, k, dim=1).indices` gives, ties possibly in another
    order."""
    n_rows, n = scores.shape
    n_blocks = n // BLOCK
    if n_blocks <= 4 * k:  # few blocks to skip: whole rows are as quick
        return torch.topk(scores, k, dim=1).indices
    full = n_blocks * BLOCK
    maxima = scores[:, :full].view(n_rows, n_blocks, BLOCK).amax(dim=2)
    blocks = torch.topk(maxima, k, dim=1).indices
    offsets = torch.arange(BLOCK, device=scores.device)
    columns = (blocks.unsqueeze(2) * BLOCK + offsets).reshape(n_rows, -1)
    if full < n:  # the last, partial block: always a candidate
        tail = torch.arange(full, n, device=scores.device).expand(n_rows, -1)
        columns = torch.cat([columns, tail], dim=1)
    best = torch.topk(scores.gather(1, columns), k, dim=1).indices
    return columns.gather(1, best)
