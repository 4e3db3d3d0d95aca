"""The hand-written training pieces against torch's own: the rating head's closed-form
gradients against autograd through its loss; the ranking head's blocked softmax NLL against
autograd through `logsumexp`, evaluation's block top-k against `torch.topk`, and `RowAdam`
against dense Adam on a table whose rows take turns."""

from __future__ import annotations

import pytest
import torch

from recsys.evaluation.top_columns import top_columns
from recsys.model.network import DotProductBias
from recsys.training import blocked_softmax
from recsys.training.blocked_softmax import Targets, weighted_softmax_nll
from recsys.training.rating_objective import Objective
from recsys.training.row_adam import RowAdam, WholeTableAdam


@pytest.mark.parametrize("row_weights", [False, True])
@pytest.mark.parametrize("bias_l2", [0.0, 0.3])
def test_the_rating_heads_closed_form_gradients_match_autograd(
    row_weights: bool, bias_l2: float
) -> None:
    gen = torch.Generator().manual_seed(0)
    net = DotProductBias(7, 11, 5, (0.5, 5.0), mean_rating=3.2, init_std=0.5, generator=gen)
    with torch.no_grad():
        net.user_bias.normal_(0, 0.3, generator=gen)
        net.item_bias.normal_(0, 0.3, generator=gen)
    weights = (torch.rand(7, generator=gen), torch.rand(11, generator=gen))
    objective = Objective(net, 0.05, bias_l2, weights if row_weights else None)
    # Repeated users and items within the batch: their rows' gradients add up.
    users = torch.tensor([0, 3, 3, 6, 1, 0], dtype=torch.int32)
    items = torch.tensor([2, 2, 10, 5, 2, 7], dtype=torch.int32)
    ratings = torch.tensor([4.0, 1.5, 5.0, 3.0, 0.5, 4.5])
    loss, mse = objective(users.long(), items.long(), ratings)
    loss.backward()
    expected = {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}
    net.zero_grad(set_to_none=True)
    closed_mse = objective.gradients(users, items, ratings)
    assert closed_mse.item() == pytest.approx(mse.item(), rel=1e-6)
    for name, p in net.named_parameters():
        assert p.grad is not None
        got = p.grad.to_dense() if p.grad.is_sparse else p.grad
        torch.testing.assert_close(got, expected[name], rtol=1e-5, atol=1e-7)
    assert expected["item_factors"][2].abs().sum() > 0  # a row three ratings used
    assert not expected["item_factors"][0].any()  # a row no rating used


@pytest.mark.parametrize("with_targets", [False, True])
@pytest.mark.parametrize("block_floats", [7, 40, 1 << 19])  # a row a block, uneven, one block
def test_the_blocked_softmax_nll_and_its_gradients_match_autograd(
    block_floats: int, with_targets: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blocked_softmax, "BLOCK_FLOATS", block_floats)
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(*shape, generator=gen) for shape in ((13, 4), (9, 4), (9,))]
    weights = torch.rand(13, generator=gen)
    # Targets sorted by row, some rows with none, one row with several.
    rows = torch.tensor([0, 0, 2, 5, 5, 5, 11, 12])
    items = torch.tensor([1, 8, 0, 2, 3, 7, 4, 8])
    t_weights = torch.rand(8, generator=gen)
    targets = Targets(rows, items, t_weights) if with_targets else None
    ours = [t.clone().requires_grad_() for t in start]
    theirs = [t.clone().requires_grad_() for t in start]
    value = weighted_softmax_nll(ours[0], ours[1], ours[2], weights, targets) * 3.0
    vectors, outputs, bias = theirs
    logits = vectors @ outputs.T + bias
    reference = (weights * torch.logsumexp(logits, dim=1)).sum()
    if with_targets:
        reference = reference - (t_weights * logits[rows, items]).sum()
    reference = reference * 3.0
    value.backward()  # type: ignore[no-untyped-call]
    reference.backward()  # type: ignore[no-untyped-call]
    assert value.item() == pytest.approx(reference.item(), rel=1e-5)
    for mine, torchs in zip(ours, theirs, strict=True):
        assert mine.grad is not None and torchs.grad is not None
        torch.testing.assert_close(mine.grad, torchs.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("requires_grad", [False, True])
def test_the_blocked_softmax_nll_without_gradients_gives_the_value(requires_grad: bool) -> None:
    """Under torch.no_grad (validation), also of parameters that require a gradient."""
    tensors = [torch.randn(5, 3), torch.randn(8, 3), torch.randn(8)]
    vectors, outputs, bias = [t.requires_grad_(requires_grad) for t in tensors]
    with torch.no_grad():
        value = weighted_softmax_nll(vectors, outputs, bias, torch.ones(5))
    assert value.grad_fn is None
    expected = torch.logsumexp(vectors @ outputs.T + bias, dim=1).sum()
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("columns", [50, 64 * 45, 64 * 45 + 17, 9_000])
def test_top_columns_are_torch_topk(columns: int) -> None:
    """Whole rows (few blocks) and blocks (with a partial last one), masked entries and a
    row whose best entries sit in one block."""
    gen = torch.Generator().manual_seed(columns)
    scores = torch.randn(7, columns, generator=gen)
    scores[torch.rand(7, columns, generator=gen) < 0.3] = -torch.inf
    scores[0, 40:50] = 100.0 + torch.arange(10.0)
    scores[1, -1] = 50.0  # the last column, in the partial block where there is one
    expected = torch.topk(scores, 10, dim=1).indices
    torch.testing.assert_close(top_columns(scores, 10), expected)


def test_row_adam_takes_dense_adams_steps_on_rows_that_take_turns() -> None:
    """Rows take turns, one gradient per row every 8 steps, as users do in an epoch's
    batches; brought up to date, the table is dense Adam's at every step."""
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(16, 3, generator=gen)
    # Gradients of 1e-6 or less, where eps (1e-8) weighs on Adam's steps, as it does on the
    # head's user offsets (a mean over a batch's target weight).
    grads = torch.randn(40, 16, 3, generator=gen) * 1e-6
    lazy = start.clone()
    dense = start.clone().requires_grad_()
    rows_opt = RowAdam(lazy, lr=0.01)
    adam = torch.optim.Adam([dense], lr=0.01)
    for step in range(40 * 8):
        turn = torch.arange(2 * (step % 8), 2 * (step % 8) + 2)  # 2 of the 16 rows a step
        rows = rows_opt.rows(turn)
        # The rows a batch reads are dense Adam's rows as they stand.
        torch.testing.assert_close(rows.detach(), dense.detach()[turn], rtol=1e-4, atol=1e-5)
        (rows * grads[step // 8, turn]).sum().backward()  # type: ignore[no-untyped-call]
        rows_opt.step(turn, rows)
        grad = torch.zeros_like(dense)
        grad[turn] = grads[step // 8, turn]
        dense.grad = grad
        adam.step()
        if step % 5 == 0:  # the weight average and validation read the whole table
            rows_opt.flush()
            torch.testing.assert_close(lazy, dense.detach(), rtol=1e-4, atol=1e-5)
    rows_opt.flush()
    torch.testing.assert_close(lazy, dense.detach(), rtol=1e-4, atol=1e-5)
    assert (lazy - start).norm() > 0.5  # they moved: 40 gradients of ~lr each per entry


def test_whole_table_adam_takes_the_steps_of_row_adam_read_every_step() -> None:
    """Where the weight average reads the table after every step, dense Adam replaces
    RowAdam: the same rows a batch reads, the same table after every step (a rank without
    users steps too, on a zero gradient)."""
    gen = torch.Generator().manual_seed(1)
    start = torch.randn(12, 4, generator=gen)
    grads = torch.randn(30, 12, 4, generator=gen) * 1e-3
    lazy, whole = start.clone(), start.clone()
    rows_opt, whole_opt = RowAdam(lazy, lr=0.01), WholeTableAdam(whole, lr=0.01)
    for step in range(30):
        turn = torch.arange(3 * (step % 4), 3 * (step % 4) + 3)
        lazy_rows, whole_rows = rows_opt.rows(turn), whole_opt.rows(turn)
        torch.testing.assert_close(whole_rows.detach(), lazy_rows.detach(), rtol=1e-5, atol=1e-6)
        if step % 7 == 6:  # no users on this rank this step
            rows_opt.step(turn, None)
            whole_opt.step(turn, None)
        else:
            for rows in (lazy_rows, whole_rows):
                (rows * grads[step, turn]).sum().backward()  # type: ignore[no-untyped-call]
            rows_opt.step(turn, lazy_rows)
            whole_opt.step(turn, whole_rows)
        rows_opt.flush()
        whole_opt.flush()
        torch.testing.assert_close(whole, lazy, rtol=1e-5, atol=1e-6)
    assert (whole - start).norm() > 0.1  # they moved
