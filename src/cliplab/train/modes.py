"""Module modes during training: only the parts that learn run in train mode."""

from __future__ import annotations

import torch


def train_learning_parts(module: torch.nn.Module) -> torch.nn.Module:
    """``module.train()``, except that a submodule with parameters, none of them trainable, stays in eval
    mode: a frozen tower's batch-norm statistics and dropout stay as loaded (as open_clip's
    ``lock_image_tower(freeze_bn_stats=True)``). Returns ``module``."""
    module.train()
    for part in module.modules():
        params = list(part.parameters())
        if params and not any(p.requires_grad for p in params):
            part.eval()
    return module
