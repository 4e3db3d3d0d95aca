"""recsys.training.adam steps exactly as torch.optim.Adam(fused=True)."""

from __future__ import annotations

import torch

from recsys.training.adam import Adam


def test_adam_steps_as_torchs_fused_adam() -> None:
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(50, 4, generator=gen), torch.randn(7, generator=gen)]
    ours = [t.clone().requires_grad_() for t in start]
    theirs = [t.clone().requires_grad_() for t in start]
    opt = Adam([ours[:1], ours[1:]], lr=0.05, betas=(0.9, 0.99))
    ref = torch.optim.Adam(
        [{"params": theirs[:1]}, {"params": theirs[1:]}], lr=0.05, betas=(0.9, 0.99), fused=True
    )
    target = torch.randn(50, 4, generator=gen)
    for step in range(20):
        # A changing learning rate and a weight decay on the first group only, as the
        # trainers set them; the second group sits out every third step (no gradient).
        lr, decay = 0.05 * (1 - step / 20), 0.01 * (step % 2)
        opt.set_lr(lr)
        opt.param_groups[0].weight_decay = decay
        for group in ref.param_groups:
            group["lr"] = lr
        ref.param_groups[0]["weight_decay"] = decay
        for params, optimizer in ((ours, opt), (theirs, ref)):
            optimizer.zero_grad()
            loss = ((params[0] - target) ** 2).sum()
            if step % 3:
                loss = loss + params[1].pow(3).sum()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b)
    assert not torch.equal(ours[0], start[0])


def test_row_sparse_gradients_step_as_dense_ones() -> None:
    """An embedding looked up with sparse=True (rows repeated within a batch, some rows
    never looked up in a step) takes the steps of the same lookup with a dense gradient."""
    gen = torch.Generator().manual_seed(1)
    start = torch.randn(30, 3, generator=gen)
    sparse, dense = start.clone().requires_grad_(), start.clone().requires_grad_()
    opts = {t: Adam([[t]], lr=0.1) for t in (sparse, dense)}
    opts[sparse].param_groups[0].weight_decay = opts[dense].param_groups[0].weight_decay = 0.01
    for _ in range(6):
        rows = torch.randint(0, 10, (12,), generator=gen)  # rows 10-29 drift on momentum only
        target = torch.randn(12, 3, generator=gen)
        for table, is_sparse in ((sparse, True), (dense, False)):
            opts[table].zero_grad()
            looked_up = torch.nn.functional.embedding(rows, table, sparse=is_sparse)
            ((looked_up - target) ** 2).sum().backward()  # type: ignore[no-untyped-call]
            assert table.grad is not None and table.grad.is_sparse == is_sparse
            opts[table].step()
        torch.testing.assert_close(sparse, dense)
    assert not torch.equal(sparse[20], start[20])  # moved by weight decay and momentum
    # The buffer the sparse rows are added into is zero again after each step.
    assert not opts[sparse].param_groups[0].dense_grads[0].any()
