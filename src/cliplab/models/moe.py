"""Mixture-of-experts feed-forward layers for open_clip towers (CLIP-MoE, Zhang et al., EMNLP 2025).

Each chosen transformer block keeps its attention; its ``mlp`` becomes a :class:`MoEMLP`: a router
``Linear(d, E, bias=False)`` reads the block's ``ln_2(x)`` (the input the dense ``mlp`` had), the
softmax over the E experts is cut to its top k, renormalised, and the top experts' outputs are summed
with those weights (the official ``MoEResidualAttentionBlock``, itself Mixtral's sparse block). The
router's Switch-style load-balancing loss (Fedus et al. 2022, eqs. 4-6) is :func:`load_balancing_loss`.

A model folder of kind ``"moe"`` (``cliplab moe upcycle``) holds the base spec, the blocks made sparse,
the number of experts and k; :func:`load_moe_folder` rebuilds it so ``load_model(DIR)`` works.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from cliplab.errors import InputError, ModelLoadError

if TYPE_CHECKING:
    from cliplab.models.base import Model

TOWERS = ("image", "text")


def route(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over experts, keep the top ``k``, renormalise: (weights, expert indices), each (T, k)."""
    probs = F.softmax(logits, dim=-1, dtype=torch.float32)
    weights, experts = probs.topk(top_k, dim=-1)
    return weights / weights.sum(-1, keepdim=True), experts


def load_balancing_loss(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Switch load balance over all tokens of ``logits`` (..., E): E * sum_e f_e * P_e.

    f_e: share of tokens whose top-k holds expert e (counted per top-k slot, as Mixtral and CLIP-MoE
    do, so a perfectly balanced router scores k); P_e: mean router probability of e (Fedus et al. 2022,
    eq. 4; CLIP-MoE ``load_balancing_loss_func``).
    """
    n_experts = logits.shape[-1]
    probs = F.softmax(logits.reshape(-1, n_experts).float(), dim=-1)
    chosen = probs.topk(top_k, dim=-1).indices
    f = F.one_hot(chosen, n_experts).float().mean(0)  # (k, E): share of tokens in each slot per expert
    return n_experts * (f * probs.mean(0)).sum()


class MoEMLP(nn.Module):
    """E feed-forward experts behind a top-k router; a drop-in replacement of a block's ``mlp``.

    The router logits of the last call are kept in ``last_logits`` (for the load-balancing loss).
    """

    def __init__(self, experts: list[nn.Module], top_k: int, router: nn.Linear | None = None) -> None:
        super().__init__()
        if not 1 <= top_k <= len(experts):
            raise InputError(f"top-k must be between 1 and the number of experts ({len(experts)}), got {top_k}")
        width = _width(experts[0])
        self.experts = nn.ModuleList(experts)
        self.top_k = top_k
        self.router = router if router is not None else nn.Linear(width, len(experts), bias=False)
        self.last_logits: torch.Tensor | None = None

    @property
    def c_fc(self) -> nn.Module:
        """The first expert's input layer: open_clip reads a tower's weight dtype from ``mlp.c_fc``."""
        return self.experts[0].c_fc

    @property
    def n_experts(self) -> int:
        return len(self.experts)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        flat = h.reshape(-1, h.shape[-1])
        logits = self.router(flat)
        self.last_logits = logits
        weights, chosen = route(logits, self.top_k)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows, slot = torch.where(chosen == e)
            if rows.numel():
                out.index_add_(0, rows, (expert(flat[rows]) * weights[rows, slot, None]).to(out.dtype))
        return out.reshape(h.shape)


def _width(mlp: nn.Module) -> int:
    c_fc = getattr(mlp, "c_fc", None)
    if c_fc is None or not hasattr(c_fc, "in_features"):
        raise InputError("only open_clip feed-forward blocks (mlp.c_fc, mlp.c_proj) can be made experts")
    return int(c_fc.in_features)


def tower_blocks(module: nn.Module, tower: str) -> nn.ModuleList:
    """The transformer blocks of an open_clip CLIP's ``image`` or ``text`` tower."""
    parent = getattr(module, "visual", None) if tower == "image" else module
    blocks = getattr(getattr(parent, "transformer", None), "resblocks", None)
    if blocks is None or not all(hasattr(b, "mlp") and hasattr(b, "ln_2") for b in blocks):
        raise InputError(f"the {tower} tower is not an open_clip transformer; CLIP-MoE needs ViT/transformer blocks with ln_2 and mlp")
    return blocks


def sparsify(module: nn.Module, experts: dict[str, dict[int, list[nn.Module]]], top_k: int,
             generator: torch.Generator | None = None) -> list[MoEMLP]:  # fmt: skip
    """Replace ``block.mlp`` of each ``experts[tower][block]`` by a :class:`MoEMLP` of those experts, in place.

    Routers start from N(0, 0.02) drawn from ``generator`` (or zero without one). Returns the new layers.
    """
    layers = []
    for tower, blocks in experts.items():
        resblocks = tower_blocks(module, tower)
        for index, mlps in blocks.items():
            block = resblocks[index]
            ref = mlps[0].c_fc.weight
            router = nn.Linear(_width(mlps[0]), len(mlps), bias=False).to(device=ref.device, dtype=ref.dtype)
            with torch.no_grad():
                if generator is None:
                    router.weight.zero_()
                else:
                    router.weight.copy_(torch.randn(router.weight.shape, generator=generator) * 0.02)
            block.mlp = MoEMLP(list(mlps), top_k, router)
            layers.append(block.mlp)
    return layers


def copies(module: nn.Module, towers: dict[str, list[int]], n_experts: int) -> dict[str, dict[int, list[nn.Module]]]:
    """``n_experts`` deep copies of each chosen block's dense ``mlp`` (identical experts: sparse upcycling)."""
    out: dict[str, dict[int, list[nn.Module]]] = {}
    for tower, indices in towers.items():
        blocks = tower_blocks(module, tower)
        out[tower] = {i: [copy.deepcopy(blocks[i].mlp) for _ in range(n_experts)] for i in indices}
    return out


def moe_layers(module: nn.Module) -> dict[str, list[MoEMLP]]:
    """The MoE layers of each tower, in block order."""
    out = {}
    for tower in TOWERS:
        try:
            blocks = tower_blocks(module, tower)
        except InputError:
            continue
        out[tower] = [b.mlp for b in blocks if isinstance(b.mlp, MoEMLP)]
    return out


def balance_loss(module: nn.Module, weights: dict[str, float] | None = None) -> torch.Tensor:
    """Load-balancing loss of the last forward pass: per tower, over the router logits of all its layers
    together (as CLIP-MoE stacks them), weighted per tower (default 1 each)."""
    total = torch.zeros(())
    for tower, layers in moe_layers(module).items():
        logits = [m.last_logits for m in layers if m.last_logits is not None]
        if logits:
            total = total + (weights or {}).get(tower, 1.0) * load_balancing_loss(torch.cat(logits), layers[0].top_k)
    return total


def parameter_counts(module: nn.Module, tower: str | None = None) -> dict[str, int]:
    """Parameters of ``module`` (or of one tower) and the parameters one token uses: a MoE layer counts
    its router and k of its E experts."""
    if tower == "image":
        module = module.visual
    total = sum(p.numel() for p in module.parameters())
    idle = 0
    for m in module.modules():
        if isinstance(m, MoEMLP):
            per_expert = sum(p.numel() for p in m.experts[0].parameters())
            idle += per_expert * (m.n_experts - m.top_k)
    return {"parameters": total, "active_parameters": total - idle}


# --- model folders of kind "moe" --------------------------------------------------------------------
def manifest_fields(towers: dict[str, list[int]], n_experts: int, top_k: int) -> dict[str, Any]:
    """What :func:`load_moe_folder` needs besides the base spec."""
    return {"moe": {"experts": n_experts, "top_k": top_k, "blocks": {t: list(map(int, b)) for t, b in towers.items()}}}


def load_moe_folder(folder: Path, manifest: dict[str, Any], device, precision: str) -> Model:
    """The ``"moe"`` kind: the base model with the listed blocks made sparse, then the folder's weights."""
    from cliplab.models import load_model
    from cliplab.models.options import check_precision, resolve_device
    from cliplab.models.precision import prepare_module
    from cliplab.models.weights import read_state_dict

    spec = manifest.get("moe")
    if not isinstance(spec, dict) or not {"experts", "top_k", "blocks"} <= spec.keys():
        raise ModelLoadError(f"{folder}: a moe model manifest needs moe.experts, moe.top_k and moe.blocks")
    model = load_model(manifest["base"], device="cpu", precision="fp32")
    module = model.torch_module
    try:
        sparsify(module, copies(module, spec["blocks"], int(spec["experts"])), int(spec["top_k"]))
    except (InputError, IndexError) as exc:
        raise ModelLoadError(f"{folder}: its MoE layout does not fit {manifest['base']}: {exc}") from exc
    path = folder / manifest["weights"]
    state = {k: v.float() if v.is_floating_point() else v for k, v in read_state_dict(path).items()}
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelLoadError(f"{path} does not fit its MoE model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    device = resolve_device(device)
    precision = check_precision(precision, device)
    module = prepare_module(module.to(device).eval(), precision, device)
    model.torch_module, model.precision, model.device = module, precision, device
    model.weights_file, model._identity = str(path), None
    return model
