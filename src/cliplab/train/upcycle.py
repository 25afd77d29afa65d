"""CLIP-MoE diversified multiplet upcycling (Zhang et al., EMNLP 2025, arXiv 2409.19291).

:func:`upcycle` turns a dense open_clip model into a mixture of experts, as the official
``train_mcl.py``/``initMoE_MCL``/``train_moe.py`` do, at cliplab's scale:

1. stage 0: image and text features of every training pair from the base model; MiniBatchKMeans
   with k clusters per modality (the official notebook: 3; cliplab's default 5), joint label ``k * text + image``;
2. stages 1..E-1: the *base* model (never the previous stage's) fine-tuned with only the feed-forward
   layers (``mlp``) trainable, every batch drawn from one accumulated pseudo-label cluster (so what
   already separates the clusters cannot separate a batch), InfoNCE with label smoothing (the official
   0.1 at a fixed logit scale of 100; cliplab keeps the model's scale and smooths by 0.07); the
   stage's features are clustered again and the labels chain: ``label = label * k**2 + joint`` (the official: 9).
   With ``emphasis="hard"`` (the default; cliplab's addition, not in the official sampler, which cycles through the
   clusters evenly) each batch's cluster is drawn in proportion to the previous model's InfoNCE among
   that cluster's own pairs, so a stage dwells on the clusters the previous stage could not separate;
3. the MoE: non-FFN weights from the base, expert i of each block = stage i's FFN (expert 0 the
   base's), a router per block on ``ln_2(x)``, top-k of E;
4. router-only training on ordinary batches: InfoNCE + 0.01 * the load-balancing loss (the official smooths it
   by 0.1 too; on ordinary batches cliplab does not smooth by default, ``router_label_smoothing``).

Two baselines the reference names share the machinery: :func:`dense_baseline` (the base trained the
same extra steps, FFNs only, on ordinary batches) and :func:`sparse_upcycling_baseline` (E identical
FFN copies and a router, experts and router trained the same extra steps; Komatsuzaki et al. 2023).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cliplab.errors import InputError
from cliplab.models.base import Model
from cliplab.models.moe import (
    balance_loss,
    copies,
    manifest_fields,
    moe_layers,
    parameter_counts,
    sparsify,
    tower_blocks,
)
from cliplab.train.config import UpcycleConfig

Progress = Callable[[str, int, int, float], None]  # (phase, step done, steps in the phase, loss)


@dataclass
class PairData:
    """Training pairs held in memory: preprocessed images, every caption tokenised, caption ids."""

    pixels: torch.Tensor  # (N, 3, H, W)
    tokens: torch.Tensor  # (M, L): all captions
    caption_ids: torch.Tensor  # (M,): equal texts, equal ids
    captions_of: list[list[int]]  # pair -> its rows in tokens (the caption first, then rewrites)

    def __len__(self) -> int:
        return len(self.pixels)

    def batch(self, rows: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Images of ``rows`` and the caption row of each, one of its captions drawn from ``rng``."""
        picks = torch.tensor([self.captions_of[i][rng.integers(len(self.captions_of[i]))] for i in rows])
        return self.pixels[torch.as_tensor(rows)], picks


def load_pairs(model: Model, data: str, progress: Progress | None = None) -> PairData:
    """Every pair of ``data`` (any captioned source or ``synthetic:<n>``) preprocessed for ``model``."""
    from cliplab.train.pairs import open_pairs

    pairs = open_pairs(data)
    pixels, texts, captions_of = [], [], []
    for i in range(len(pairs)):
        pair = pairs[i]
        pixels.append(model.preprocess(pair.image))
        captions_of.append(list(range(len(texts), len(texts) + len(pair.captions))))
        texts.extend(pair.captions)
        if progress is not None and (i + 1) % 500 == 0:
            progress("reading pairs", i + 1, len(pairs), float("nan"))
    unique = {t: k for k, t in enumerate(dict.fromkeys(texts))}
    ids = torch.tensor([unique[t] for t in texts])
    return PairData(torch.stack(pixels), model.tokenize(texts), ids, captions_of)


# --- stage 0 and the clusters --------------------------------------------------------------------
@torch.no_grad()
def pair_features(module: torch.nn.Module, data: PairData, texts: torch.Tensor | None = None,
                  batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Normalised image features and features of each pair's first caption (taken from ``texts``, the
    features of every caption row, when given)."""
    was = module.training
    module.eval()
    firsts = torch.tensor([c[0] for c in data.captions_of])
    image, text = [], []
    for start in range(0, len(data), batch_size):
        image.append(module.encode_image(data.pixels[start : start + batch_size]).float())
        if texts is None:
            text.append(module.encode_text(data.tokens[firsts[start : start + batch_size]]).float())
    module.train(was)
    text_features = torch.cat(text) if texts is None else texts[firsts]
    return F.normalize(torch.cat(image), dim=-1).numpy(), F.normalize(text_features, dim=-1).numpy()


def joint_clusters(image: np.ndarray, text: np.ndarray, k: int, seed: int) -> np.ndarray:
    """MiniBatchKMeans with ``k`` clusters on each modality; joint label ``k * text + image``."""
    from sklearn.cluster import MiniBatchKMeans

    def labels(x: np.ndarray) -> np.ndarray:
        return MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=1024, max_iter=500).fit_predict(x)

    return k * labels(text) + labels(image)


def cluster_batches(labels: np.ndarray, batch_size: int, min_batch: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of within-cluster batches (the official ``MCL_batch_sampler``): each cluster's rows
    shuffled and cut into ``batch_size`` chunks, chunks under ``min_batch`` rows dropped, the chunks of
    all clusters shuffled together."""
    batches = []
    for c in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == c))
        batches += [chunk for chunk in np.array_split(rows, range(batch_size, len(rows), batch_size)) if len(chunk) >= min_batch]
    return [batches[i] for i in rng.permutation(len(batches))]


def hard_clusters(labels: np.ndarray, image: np.ndarray, text: np.ndarray, scale: float) -> dict[int, float]:
    """How badly the model whose normalised features are ``image``/``text`` tells each cluster's pairs
    apart: the mean image->text InfoNCE among the cluster's own pairs (clusters of one pair: none)."""
    out = {}
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if len(rows) > 1:
            logits = scale * torch.from_numpy(image[rows]) @ torch.from_numpy(text[rows]).T
            out[int(c)] = float(F.cross_entropy(logits, torch.arange(len(rows))))
    return out


def emphasised_batches(batches: list[np.ndarray], labels: np.ndarray, hardness: dict[int, float], rng: np.random.Generator) -> list[np.ndarray]:
    """As many batches as ``batches``, drawn with replacement, each with probability proportional to its
    cluster's ``hardness``: the stage spends its steps on the clusters the previous model separates worst."""
    if not batches:
        return batches
    weights = np.array([hardness.get(int(labels[b[0]]), 0.0) for b in batches])
    return [batches[i] for i in rng.choice(len(batches), size=len(batches), p=weights / weights.sum())]


def random_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of ordinary batches: a permutation of ``0..n-1`` cut into ``batch_size`` chunks (last dropped)."""
    order = rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def endless(make_epoch: Callable[[], list[np.ndarray]]) -> Iterator[np.ndarray]:
    while True:
        epoch = make_epoch()
        if not epoch:
            raise InputError("no training batch can be made: the data or its clusters are smaller than the minimum batch; use more pairs or fewer --clusters")
        yield from epoch


# --- training -----------------------------------------------------------------------------------
def smoothed_clip_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, ids: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Symmetric InfoNCE with label smoothing (CLIP-MoE trains with ``label_smoothing=0.1``); pairs with
    equal captions are positives of each other."""
    image, text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    logits = scale * image @ text.T
    same = (ids[:, None] == ids[None, :]).float()
    targets = (1 - smoothing) * same / same.sum(1, keepdim=True) + smoothing / len(ids)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def trainable_only(module: torch.nn.Module, predicate: Callable[[str], bool]) -> list[torch.nn.Parameter]:
    """Freeze every parameter whose name fails ``predicate``; the trainable ones."""
    params = []
    for name, p in module.named_parameters():
        p.requires_grad_(predicate(name))
        if p.requires_grad:
            params.append(p)
    return params


def moe_blocks(module: torch.nn.Module, config: UpcycleConfig) -> dict[str, list[int]]:
    """Per tower of ``config``, the indices of the blocks that become MoE: the last ``moe_blocks`` (0: all)."""
    out = {}
    for tower in config.towers:
        n = len(tower_blocks(module, tower))
        if config.moe_blocks > n:
            raise InputError(f"--moe-blocks {config.moe_blocks} is more than the {n} blocks of the {tower} tower; use at most {n} (0: all)")
        out[tower] = list(range(n - (config.moe_blocks or n), n))
    return out


def ffn_names(blocks: dict[str, list[int]]) -> Callable[[str], bool]:
    """True for parameters of the feed-forward layers (experts included) of ``blocks`` (tower -> block indices)."""
    prefixes = tuple(f"{'visual.' if t == 'image' else ''}transformer.resblocks.{i}.mlp." for t, idx in blocks.items() for i in idx)

    return lambda name: name.startswith(prefixes) and ".router." not in name


@torch.no_grad()
def caption_features(module: torch.nn.Module, data: PairData, batch_size: int = 512) -> torch.Tensor:
    """Text features of every caption row of ``data`` (for a text tower that does not train)."""
    was = module.training
    module.eval()
    out = torch.cat([module.encode_text(data.tokens[i : i + batch_size]).float() for i in range(0, len(data.tokens), batch_size)])
    module.train(was)
    return out


def fit(module: torch.nn.Module, data: PairData, batches: Iterator[np.ndarray], params: list[torch.nn.Parameter], steps: int,
        lr: float, weight_decay: float, warmup: int, smoothing: float, seed: int, balance: float = 0.0,
        phase: str = "training", progress: Progress | None = None, texts: torch.Tensor | None = None) -> list[float]:  # fmt: skip
    """AdamW on ``params`` for ``steps`` (linear warm-up, cosine decay) with the smoothed CLIP loss, plus
    ``balance`` times the MoE load-balancing loss; the per-step losses. ``texts``: fixed features of every
    caption row (a frozen text tower), else the text tower runs each step."""
    from cliplab.train.schedule import cosine_with_warmup

    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_with_warmup(s, steps, min(warmup, steps // 2)))
    scale = module.logit_scale.detach().exp()  # fixed, as the official stages leave it
    module.train()
    losses = []
    for step in range(steps):
        rows = next(batches)
        pixels, picks = data.batch(rows, np.random.default_rng([seed, step, 7]))
        text = texts[picks] if texts is not None else module.encode_text(data.tokens[picks])
        loss = smoothed_clip_loss(module.encode_image(pixels), text, scale, data.caption_ids[picks], smoothing)
        if balance:
            loss = loss + balance * balance_loss(module)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(phase, step + 1, steps, losses[-1])
    module.eval()
    return losses


def _loss_summary(losses: list[float]) -> dict[str, float]:
    k = max(1, len(losses) // 10)
    return {"first": round(float(np.mean(losses[:k])), 4), "last": round(float(np.mean(losses[-k:])), 4)} if losses else {}


@dataclass
class UpcycleResult:
    module: torch.nn.Module  # the MoE CLIP (eval mode)
    summary: dict[str, Any] = field(repr=False)


def upcycle(model: Model, data: PairData, config: UpcycleConfig, progress: Progress | None = None) -> UpcycleResult:
    """The MoE of ``model`` (left unchanged) by diversified multiplet upcycling on ``data``."""
    config.check()
    t0, c0 = time.perf_counter(), time.process_time()
    base = copy.deepcopy(model.torch_module).float().cpu().eval()
    towers = moe_blocks(base, config)
    texts = None if "text" in config.towers else caption_features(base, data)  # a text tower that stays as it is
    image, text = pair_features(base, data, texts)
    scale = float(base.logit_scale.detach().exp())
    labels = joint_clusters(image, text, config.clusters, config.seed)
    stages: list[dict[str, Any]] = [{"stage": 0, "clusters": len(np.unique(labels)), "wall_s": round(time.perf_counter() - t0, 1)}]
    experts = {t: {i: [copy.deepcopy(tower_blocks(base, t)[i].mlp)] for i in idx} for t, idx in towers.items()}
    for stage in range(1, config.experts):
        ts = time.perf_counter()
        student = copy.deepcopy(base)
        params = trainable_only(student, ffn_names(towers))
        rng = np.random.default_rng([config.seed, stage])
        smallest = min(config.min_batch, config.batch_size)
        hardness = hard_clusters(labels, image, text, scale) if config.emphasis == "hard" else None

        def epoch(labels=labels, rng=rng, smallest=smallest, hardness=hardness) -> list[np.ndarray]:
            batches = cluster_batches(labels, config.batch_size, smallest, rng)
            return batches if hardness is None else emphasised_batches(batches, labels, hardness, rng)

        batches = endless(epoch)
        sizes = np.bincount(np.unique(labels, return_inverse=True)[1])
        losses = fit(student, data, batches, params, config.stage_steps, config.lr, config.weight_decay, config.warmup,
                     config.label_smoothing, config.seed + stage, phase=f"stage {stage}/{config.experts - 1}", progress=progress,
                     texts=texts)  # fmt: skip
        for t, idx in towers.items():
            for i in idx:
                experts[t][i].append(copy.deepcopy(tower_blocks(student, t)[i].mlp))
        used = int(sum(n // config.batch_size * config.batch_size + (n % config.batch_size if n % config.batch_size >= smallest else 0)
                       for n in sizes))  # pairs that the within-cluster batches reach
        if stage < config.experts - 1:
            image, text = pair_features(student, data, texts)
            labels = labels * config.clusters**2 + joint_clusters(image, text, config.clusters, config.seed + stage)
        stages.append({"stage": stage, "clusters": len(sizes), "pairs_in_batches": used, "loss": _loss_summary(losses),
                       "wall_s": round(time.perf_counter() - ts, 1)})  # fmt: skip
    moe = copy.deepcopy(base)
    for t, idx in towers.items():  # each block's experts live in the MoE only; the dense mlps are replaced
        for i in idx:
            tower_blocks(moe, t)[i].mlp = torch.nn.Identity()
    sparsify(moe, experts, config.top_k, torch.Generator().manual_seed(config.seed))
    router_losses = train_router(moe, data, config, progress, texts)
    summary = {
        "method": "CLIP-MoE diversified multiplet upcycling (Zhang et al., EMNLP 2025)",
        "settings": {**asdict(config), "towers": list(config.towers)},
        "pairs": len(data),
        "stages": stages,
        "router": {"steps": config.router_steps, "loss": _loss_summary(router_losses), "usage": expert_usage(moe, data)},
        **parameter_counts(moe),
        "image_tower": parameter_counts(moe, "image"),
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(time.process_time() - c0, 1),
        "threads": torch.get_num_threads(),
    }
    return UpcycleResult(moe.eval(), summary)


def train_router(moe: torch.nn.Module, data: PairData, config: UpcycleConfig, progress: Progress | None = None,
                 texts: torch.Tensor | None = None) -> list[float]:  # fmt: skip
    """Router-only training (``--lock-except-gate``): InfoNCE (smoothed by ``router_label_smoothing``) + ``balance_weight`` * load balance.
    ``texts``: the caption features when the text tower has no MoE layers (it does not change)."""
    params = trainable_only(moe, lambda name: ".mlp.router." in name)
    rng = np.random.default_rng([config.seed, 99])
    batches = endless(lambda: random_batches(len(data), config.batch_size, rng))
    losses = fit(moe, data, batches, params, config.router_steps, config.router_lr, config.router_weight_decay, config.warmup,
                 config.router_label_smoothing, config.seed + 99, balance=config.balance_weight, phase="router", progress=progress,
                 texts=texts)  # fmt: skip
    for p in moe.parameters():
        p.requires_grad_(True)
    return losses


@torch.no_grad()
def expert_usage(moe: torch.nn.Module, data: PairData, n: int = 256) -> dict[str, list[list[float]]]:
    """Share of tokens routed to each expert (any top-k slot), per tower and block, on the first ``n`` pairs."""
    rows = np.arange(min(n, len(data)))
    pixels, picks = data.batch(rows, np.random.default_rng(0))
    moe.encode_image(pixels)
    moe.encode_text(data.tokens[picks])
    out = {}
    for tower, layers in moe_layers(moe).items():
        shares = []
        for m in layers:
            chosen = m.last_logits.topk(m.top_k, dim=-1).indices
            shares.append([round(float((chosen == e).any(-1).float().mean()), 3) for e in range(m.n_experts)])
        out[tower] = shares
    return out


# --- baselines (benchmarks/moe.py) ---------------------------------------------------------------------
def extra_steps(config: UpcycleConfig) -> int:
    """Training steps the upcycling spends beyond the base: every stage and the router."""
    return config.stage_steps * (config.experts - 1) + config.router_steps


def dense_baseline(model: Model, data: PairData, config: UpcycleConfig, progress: Progress | None = None) -> torch.nn.Module:
    """The dense base trained :func:`extra_steps` more steps, FFNs only, ordinary batches (smoothed as the router's)."""
    dense = copy.deepcopy(model.torch_module).float().cpu()
    params = trainable_only(dense, ffn_names(moe_blocks(dense, config)))
    rng = np.random.default_rng([config.seed, 51])
    texts = None if "text" in config.towers else caption_features(dense, data)
    fit(dense, data, endless(lambda: random_batches(len(data), config.batch_size, rng)), params, extra_steps(config), config.lr,
        config.weight_decay, config.warmup, config.router_label_smoothing, config.seed + 51, phase="dense baseline", progress=progress,
        texts=texts)  # fmt: skip
    return dense.eval()


def sparse_upcycling_baseline(model: Model, data: PairData, config: UpcycleConfig, progress: Progress | None = None) -> torch.nn.Module:
    """E identical copies of each FFN plus a router, experts and router trained :func:`extra_steps` steps
    (ordinary batches smoothed as the router's, InfoNCE + load balance): sparse upcycling at the same top-k compute."""
    moe = copy.deepcopy(model.torch_module).float().cpu()
    texts = None if "text" in config.towers else caption_features(moe, data)
    towers = moe_blocks(moe, config)
    sparsify(moe, copies(moe, towers, config.experts), config.top_k, torch.Generator().manual_seed(config.seed))
    params = trainable_only(moe, lambda name: ffn_names(towers)(name) or ".mlp.router." in name)
    rng = np.random.default_rng([config.seed, 52])
    fit(moe, data, endless(lambda: random_batches(len(data), config.batch_size, rng)), params, extra_steps(config), config.lr,
        config.weight_decay, config.warmup, config.router_label_smoothing, config.seed + 52, balance=config.balance_weight,
        phase="sparse upcycling baseline", progress=progress, texts=texts)  # fmt: skip
    for p in moe.parameters():
        p.requires_grad_(True)
    return moe.eval()


# --- the model folder -------------------------------------------------------------------------
def write_moe_folder(out: str | Path, base_spec: str, result: UpcycleResult, config: UpcycleConfig) -> Path:
    """``out/model.safetensors``, ``out/cliplab_model.json`` (kind ``moe``) and ``out/summary.json``,
    written into a temporary folder renamed to ``out`` at the end (no partial folder on failure)."""
    from safetensors.torch import save as safetensors_bytes

    from cliplab.files import atomic_folder, atomic_write, write_json
    from cliplab.models.folder import write_manifest

    towers = {t: [i for i, b in enumerate(tower_blocks(result.module, t)) if hasattr(b.mlp, "router")] for t in config.towers}
    state = {k: v.detach().contiguous() for k, v in result.module.state_dict().items()}
    with atomic_folder(out) as tmp:
        atomic_write(tmp / "model.safetensors", safetensors_bytes(state, metadata={"format": "pt", "model": base_spec, "kind": "moe"}))
        write_manifest(tmp, kind="moe", base=base_spec, weights="model.safetensors", **manifest_fields(towers, config.experts, config.top_k))
        write_json(result.summary, tmp / "summary.json")
    return Path(out)


def upcycle_model(model: str, data: str, out: str | Path, config: UpcycleConfig | None = None, progress: Progress | None = None) -> Path:
    """Upcycle the model ``model`` (a spec) on the pairs of ``data`` and write the MoE folder ``out``
    (``load_model(out)`` loads it). Runs on the CPU in the caller's thread settings."""
    from cliplab.models import load_model
    from cliplab.models.spec import parse_spec

    config = (config or UpcycleConfig()).check()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} already exists and is not empty; choose a new output folder")
    spec = str(parse_spec(model))
    base = load_model(spec, device="cpu", precision="fp32")
    if any(moe_layers(base.torch_module).values()):
        raise InputError(f"{model} is already a mixture of experts; upcycle its dense base ({base_of(spec)}) instead")
    moe_blocks(base.torch_module, config)  # a bad --moe-blocks fails before the pairs are read
    pairs = load_pairs(base, data, progress)
    result = upcycle(base, pairs, config, progress)
    result.summary = {"model": spec, "data": str(data), **result.summary}
    return write_moe_folder(out, spec, result, config)


def base_of(spec: str) -> str:
    from cliplab.models.folder import base_spec
    from cliplab.models.spec import parse_spec

    parsed = parse_spec(spec)
    return base_spec(parsed.target) if parsed.kind == "folder" else spec
