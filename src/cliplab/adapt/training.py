"""The training loop the trained heads share: shuffled mini-batches, a schedule, early stopping on
validation accuracy (never on test data), the best epoch's parameters kept."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch


@dataclass
class TrainResult:
    best_state: list[torch.Tensor]  # copies of the parameters at the best epoch
    best_epoch: int  # 0 = the initial parameters
    epochs_run: int
    best_val_accuracy: float | None  # None without validation rows


@contextmanager
def frozen(module: torch.nn.Module) -> Iterator[None]:
    """Switch off gradients of every parameter of ``module`` inside (restored afterwards)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0, warmup_lr: float = 1e-5):
    """CoOp's schedule: ``warmup_steps`` at the constant ``warmup_lr``, then cosine from the base lr to 0."""
    base = [g["lr"] for g in optimizer.param_groups]

    def factor(step: int, group: int) -> float:
        if step < warmup_steps:
            return warmup_lr / base[group]
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + torch.cos(torch.tensor(min(t, 1.0) * torch.pi)).item())

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [lambda s, g=g: factor(s, g) for g in range(len(base))])


def train_early_stopping(
    params: Sequence[torch.Tensor],
    loss_on: Callable[[torch.Tensor], torch.Tensor],
    val_accuracy: Callable[[], float] | None,
    n_train: int,
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    epochs: int,
    batch_size: int,
    patience: int,
    seed: int,
) -> TrainResult:
    """Train ``params`` for up to ``epochs``: ``loss_on(batch_rows)`` per mini-batch, then
    ``val_accuracy()`` after each epoch; stop after ``patience`` epochs without a better one and
    return the best epoch's parameters. Without validation, the last epoch's are kept."""
    gen = torch.Generator().manual_seed(int(seed))
    snapshot = lambda: [p.detach().clone() for p in params]  # noqa: E731
    best_acc = val_accuracy() if val_accuracy else None
    best_state, best_epoch, waited, epoch = snapshot(), 0, 0, 0
    for epoch in range(1, epochs + 1):
        for rows in torch.randperm(n_train, generator=gen).split(batch_size):
            loss = loss_on(rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        if val_accuracy is None:
            best_state, best_epoch = snapshot(), epoch
            continue
        acc = val_accuracy()
        if acc > best_acc:
            best_acc, best_state, best_epoch, waited = acc, snapshot(), epoch, 0
        else:
            waited += 1
            if waited >= patience:
                break
    return TrainResult(best_state, best_epoch, epoch, best_acc)
