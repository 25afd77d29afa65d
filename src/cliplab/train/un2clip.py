"""un²CLIP: fine-tune CLIP's image tower through a frozen decoder of its own embeddings.

Li et al., "un²CLIP: Improving CLIP's Visual Detail Capturing Ability via Inverting unCLIP" (arXiv
2505.24517). unCLIP generates images from CLIP image embeddings, so it inverts the image encoder;
un²CLIP inverts unCLIP: with the generator frozen, the image encoder is tuned so that its embedding lets
the generator reconstruct the image better, which makes the embedding keep visual detail. The text tower
is not touched, and the generator's conditioning space is the original image-text space, so the tuned
embeddings stay where the texts expect them.

Here (offline, CPU, 64-px scenes), the generator ``D`` is one of two decoders (``config.decoder``):

- ``"regression"`` (the default): a deterministic decoder (``cliplab.train.decoder``),
  ``L_D(c, x) = ||D(c) - x||^2`` on area-averaged images (a Gaussian likelihood; one forward pass). It
  must draw the whole image from the embedding, so which object has which colour counts fully in its loss;
- ``"diffusion"``: a small conditional DDPM (``cliplab.train.diffusion``) at ``decoder_size`` px, its loss
  ``L_D(c, x) = E_{t,eps} ||eps - eps_D(x_t, t, c)||^2`` (un²CLIP's own objective, reference wave3 §14 (2)).
  At this scale it reads the colours from the noisy image itself and barely from the embedding
  (``benchmarks/un2clip_binding.py``), so tuning through it teaches the tower little (README, un²CLIP).

1. **Decoder**: trained on the frozen model's embeddings ``f_0(x)`` of the training images, with
   unCLIP-style noise augmentation of the condition: ``min_D E L_D(aug(f_0(x)), x)``.
2. **Fine-tune** the image tower ``f_phi`` (initialised from ``f_0``) with ``D`` frozen; the gradient
   reaches the encoder through the conditioning only (paper Sec. 3 as described in cliplab's reference,
   which could not be checked against the code):
   ``min_phi E L_D(aug'(f_phi(x)), x) + anchor * ||f_phi(x) - f_0(x)||^2`` (``aug'``: ``finetune_noise``,
   none by default). The second term is an L2 anchor of each normalised embedding to the frozen model's (the
   reference's "distill-style anchor", an ablation there, not part of the method; ``anchor=0`` drops it). For the
   diffusion decoder the fine-tune may draw ``t`` from a part of the schedule only (``t_min``, ``t_max``).
3. **Merge** the tuned tower with the starting one in weight space, ``phi_0 + merge * (phi - phi_0)``
   (WiSE-FT, Wortsman et al., CVPR 2022; cliplab's addition, not un²CLIP's): on the 4-block bundled ViT the
   tuned tower trades zero-shot shape for detail and the merge keeps most of the detail for less of the loss
   (README, un²CLIP).

Only images are used; the text tower and the logit scale stay bit for bit as they were.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cliplab.errors import InputError
from cliplab.models.base import ImageInput, Model, to_pil
from cliplab.train.decoder import (
    EmbeddingDecoder,
    augment,
    decoder_target,
    new_decoder,
    reconstruction_loss,
)
from cliplab.train.diffusion import DiffusionDecoder

DECODERS = ("diffusion", "regression")

DECODER_FILE = "decoder.safetensors"
SUMMARY_FILE = "un2clip.json"


@dataclass
class Un2ClipConfig:
    """Settings of both stages (README, un²CLIP: how they were chosen and what they take)."""

    decoder: str = "regression"  # "regression" (embedding -> image by MSE) or "diffusion" (a conditional DDPM); see the module's docstring
    decoder_size: int = 16  # pixels per side the diffusion decoder draws (the regression decoder draws 64)
    decoder_steps: int = 1500  # stage 1: decoder steps on frozen embeddings
    decoder_lr: float = 2e-3
    decoder_width: int = 16  # channels of the decoder's finest block
    decoder_batch_size: int = 64
    steps: int = 300  # stage 2: image-tower steps through the frozen decoder
    lr: float = 1e-3  # AdamW on the image tower (warm-up a tenth of the steps, then cosine decay)
    batch_size: int = 32  # stage 2
    anchor: float = 0.1  # weight of ||f_phi(x) - f_0(x)||^2 (the text-alignment regulariser; 0.03: no gain confirmed, more drift)
    noise: float = 0.1  # stage 1: unCLIP noise augmentation of the decoder's condition (norm of the added noise)
    finetune_noise: float = 0.0  # stage 2: the same augmentation while the tower tunes (0: the decoder reads the embedding as it is)
    loss_size: int = 16  # regression: the loss compares images area-averaged to this many pixels a side
    t_min: float = 0.0  # diffusion, stage 2: t drawn uniformly from [t_min, t_max) x T (stage 1 uses all of [0, T))
    t_max: float = 0.3  # low-noise steps (validation: +1.3 points against +0.3 for [0, 1))
    draws: int = 4  # diffusion, stage 2: (t, eps) draws per image and step (the tower runs once)
    # the tuned tower's share at the end: weights = start + merge * (tuned - start), the weight-space ensemble of
    # WiSE-FT (Wortsman et al., CVPR 2022, eq. 1); 1 keeps the tuned tower as it is
    merge: float = 0.55
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0

    def check(self) -> Un2ClipConfig:
        if self.decoder not in DECODERS:
            raise InputError(f"un2clip: decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        if self.decoder_size < 4 or self.decoder_size % 4:
            raise InputError(f"un2clip: decoder_size must be a positive multiple of 4, got {self.decoder_size}")
        if not 0 <= self.t_min < self.t_max <= 1:
            raise InputError(f"un2clip: need 0 <= t_min < t_max <= 1, got t_min {self.t_min} and t_max {self.t_max}")
        if not 1 <= self.loss_size <= 64 or 64 % self.loss_size:
            raise InputError(f"un2clip: loss_size must divide 64 (64, 32, 16, 8 ...), got {self.loss_size}")
        for name in ("decoder_steps", "steps", "batch_size", "decoder_batch_size", "decoder_width", "draws"):
            if getattr(self, name) < (0 if name.endswith("steps") else 1):
                raise InputError(f"un2clip: {name} must be {'>= 0' if name.endswith('steps') else '>= 1'}, got {getattr(self, name)}")
        for name in ("decoder_lr", "lr"):
            if not getattr(self, name) > 0:
                raise InputError(f"un2clip: {name} must be positive, got {getattr(self, name)}")
        if not 0 < self.merge <= 1:
            raise InputError(f"un2clip: merge must be in (0, 1] (the tuned tower's share), got {self.merge}")
        for name in ("anchor", "noise", "finetune_noise", "weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise InputError(f"un2clip: {name} must be >= 0, got {getattr(self, name)}")
        return self


@dataclass
class Un2ClipResult:
    """What :func:`run_un2clip` made and measured: the tuned ``model`` (the one given, changed in place), the
    frozen ``decoder``, each stage's loss per step and its wall and CPU seconds."""

    model: Model
    decoder: EmbeddingDecoder | DiffusionDecoder
    config: Un2ClipConfig
    n_images: int
    decoder_losses: list[float] = field(default_factory=list)
    losses: list[dict[str, float]] = field(default_factory=list)  # per step: total, reconstruction, anchor
    times: dict[str, dict[str, float]] = field(default_factory=dict)  # stage -> {wall_s, cpu_s}

    def summary(self) -> dict[str, Any]:
        """JSON-ready: settings, loss at the start and end of each stage, and times."""

        def ends(xs: list[float]) -> dict[str, float]:
            k = max(1, min(20, len(xs) // 10))  # means over the first and last tenth (up to 20 steps)
            return {"first": float(np.mean(xs[:k])), "last": float(np.mean(xs[-k:]))} if xs else {}

        return {
            "method": "un2clip",
            "config": asdict(self.config),
            "n_images": self.n_images,
            "decoder": {"kind": self.config.decoder, **self.decoder.config(), "loss": ends(self.decoder_losses)},
            "finetune": {key: ends([r[key] for r in self.losses]) for key in ("total", "reconstruction", "anchor")} if self.losses else {},
            "times": self.times,
        }


# --- data ---------------------------------------------------------------------------------------
def training_images(spec: str) -> list:
    """The images of ``--data``: ``synthetic:<n>[:seed]`` is scenes 0..n-1 of the *train* split (1-2
    objects; the test split stays for evaluation); anything else is opened as an image source."""
    from cliplab.data.sources import open_source
    from cliplab.data.sources.dispatch import _parse_synthetic

    head, _, rest = spec.partition(":")
    if head in ("synthetic", "synth") and rest:
        from cliplab.train.pairs import SyntheticPairs

        n, seed = _parse_synthetic(spec, rest)
        pairs = SyntheticPairs(n, seed)
        return [pairs[i].image for i in range(n)]
    from cliplab.data.images import decode_image

    items = open_source(spec).items
    return [decode_image(item.read_bytes(), item.id) for item in items]


def preprocess_all(model: Model, images: Sequence[ImageInput]) -> torch.Tensor:
    """The model's input pixels for every image, on the CPU."""
    return torch.stack([model.preprocess(to_pil(im)) for im in images]).float()


def _batches(n: int, batch_size: int, steps: int, generator: torch.Generator):
    """Index batches for ``steps`` steps: epochs of a seeded permutation, a batch never spanning two."""
    b = min(batch_size, n)
    order, at = torch.randperm(n, generator=generator), 0
    for _ in range(steps):
        if at + b > n:
            order, at = torch.randperm(n, generator=generator), 0
        yield order[at : at + b]
        at += b


@torch.no_grad()
def embed_pixels(model: Model, pixels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised image embeddings of preprocessed pixels (CPU tensor), no gradient."""
    module = model.torch_module
    was = module.training
    module.eval()
    try:
        out = [F.normalize(model.image_features(pixels[i : i + batch_size].to(model.device)).float(), dim=-1).cpu()
               for i in range(0, len(pixels), batch_size)]  # fmt: skip
    finally:
        module.train(was)
    return torch.cat(out) if out else torch.zeros(0, model.embed_dim)


class _Clock:
    """Wall and CPU (process) seconds of a stage."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> dict[str, float]:
        return {"wall_s": round(time.perf_counter() - self.wall, 2), "cpu_s": round(time.process_time() - self.cpu, 2)}


def _schedule(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    from cliplab.train.schedule import cosine_with_warmup

    warm = max(1, steps // 10)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_with_warmup(s, steps, warm))


def _bar(total: int, desc: str, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)


# --- the decoder's loss -------------------------------------------------------------------------
def decoder_targets(pixels: torch.Tensor, config: Un2ClipConfig) -> torch.Tensor:
    """What ``config``'s decoder draws for preprocessed ``pixels``: area-resized to its size."""
    return decoder_target(pixels, config.decoder_size if config.decoder == "diffusion" else 64)


def decoder_loss(decoder: EmbeddingDecoder | DiffusionDecoder, cond: torch.Tensor, targets: torch.Tensor, config: Un2ClipConfig,
                 generator: torch.Generator, finetune: bool) -> torch.Tensor:  # fmt: skip
    """``L_D(cond, targets)``: the denoising loss (all of the schedule in stage 1, ``[t_min, t_max)`` with
    ``draws`` per image in stage 2) or the regression decoder's reconstruction loss."""
    if isinstance(decoder, DiffusionDecoder):
        t_range, draws = ((config.t_min, config.t_max), config.draws) if finetune else ((0.0, 1.0), 1)
        return decoder.loss(cond, targets, generator, t_range, draws)
    return reconstruction_loss(decoder, cond, targets, config.loss_size)


# --- stage 1: the decoder ------------------------------------------------------------------------
def train_decoder(embeddings: torch.Tensor, targets: torch.Tensor, config: Un2ClipConfig, progress: bool = False,
                  on_log: Callable[[dict], Any] | None = None) -> tuple[EmbeddingDecoder | DiffusionDecoder, list[float]]:  # fmt: skip
    """Fit ``config``'s decoder from frozen embeddings (N, D) to target images (``decoder_targets``); (decoder, loss per step)."""
    config.check()
    if len(embeddings) != len(targets) or len(embeddings) == 0:
        raise InputError(f"un2clip: need as many target images as embeddings (at least one), got {len(targets)} and {len(embeddings)}")
    decoder = new_decoder(embeddings.shape[1], config.decoder_width, config.seed, config.decoder, config.decoder_size).train()
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=config.decoder_lr, weight_decay=0.0)
    scheduler = _schedule(optimizer, config.decoder_steps)
    gen = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    bar = _bar(config.decoder_steps, "un2clip decoder", progress)
    for step, idx in enumerate(_batches(len(embeddings), config.decoder_batch_size, config.decoder_steps, gen), start=1):
        loss = decoder_loss(decoder, augment(embeddings[idx], config.noise, gen), targets[idx], config, gen, finetune=False)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if on_log is not None and (step % 50 == 0 or step == config.decoder_steps):
            on_log({"stage": "decoder", "step": step, "loss": float(np.mean(losses[-50:]))})
    if bar is not None:
        bar.close()
    return decoder.eval().requires_grad_(False), losses


# --- stage 2: the image tower through the frozen decoder ----------------------------------------------
def image_tower(model: Model) -> torch.nn.Module:
    """The module holding the image tower's weights (what stage 2 trains)."""
    try:
        return model.tower_modules()["image"]
    except NotImplementedError as exc:
        raise InputError(f"un2clip needs a model whose image tower it can reach; {model.name} does not expose it") from exc


def finetune_image_tower(model: Model, decoder: EmbeddingDecoder | DiffusionDecoder, pixels: torch.Tensor, targets: torch.Tensor, anchors: torch.Tensor,
                         config: Un2ClipConfig, progress: bool = False,
                         on_log: Callable[[dict], Any] | None = None) -> list[dict[str, float]]:  # fmt: skip
    """Tune ``model``'s image tower in place: reconstruction through the frozen ``decoder`` plus
    ``anchor`` times the squared distance to ``anchors`` (the frozen model's normalised embeddings,
    row-aligned with ``pixels``), then the tower's weights merged with its starting ones (``merge``). Every
    other parameter is left untouched. Loss terms per step."""
    config.check()
    tower = image_tower(model)
    module = model.torch_module
    decoder = decoder.to(model.device).eval().requires_grad_(False)
    trainable = [p for p in tower.parameters()]
    before = {id(p): p.requires_grad for p in module.parameters()}
    for p in module.parameters():
        p.requires_grad_(False)
    for p in trainable:
        p.requires_grad_(True)
    start = [p.detach().clone() for p in trainable]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = _schedule(optimizer, config.steps)
    gen = torch.Generator().manual_seed(config.seed + 1)
    records: list[dict[str, float]] = []
    bar = _bar(config.steps, "un2clip image tower", progress)
    module.eval()  # batch-norm statistics (a ResNet tower) stay the starting model's, as when the anchors were computed
    try:
        for step, idx in enumerate(_batches(len(pixels), config.batch_size, config.steps, gen), start=1):
            dev = model.device
            emb = F.normalize(model.image_features(pixels[idx].to(dev)).float(), dim=-1)
            recon = decoder_loss(decoder, augment(emb, config.finetune_noise, gen), targets[idx].to(dev), config, gen, finetune=True)
            anchor = (emb - anchors[idx].to(dev)).pow(2).sum(-1).mean()
            loss = recon + config.anchor * anchor
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
            optimizer.step()
            scheduler.step()
            records.append({"total": loss.item(), "reconstruction": recon.item(), "anchor": anchor.item()})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(recon=f"{records[-1]['reconstruction']:.4f}", anchor=f"{records[-1]['anchor']:.4f}")
            if on_log is not None and (step % 25 == 0 or step == config.steps):
                last = records[-25:]
                on_log({"stage": "finetune", "step": step, **{k: float(np.mean([r[k] for r in last])) for k in last[0]}})
    finally:
        module.eval()
        for p in module.parameters():
            p.requires_grad_(before[id(p)])
        if bar is not None:
            bar.close()
    with torch.no_grad():  # WiSE-FT's weight-space ensemble of the start and the tuned tower
        for p, p0 in zip(trainable, start):
            p.copy_(torch.lerp(p0, p, config.merge))
    _weights_changed(model)
    return records


def _weights_changed(model: Model) -> None:
    """Make ``model``'s identity (its cache key) follow its new weights rather than the file it was loaded from."""
    for name in ("weights_file", "_weights_digest", "_identity"):
        if hasattr(model, name):
            setattr(model, name, None)


def run_un2clip(model: Model, images: Sequence[ImageInput] | torch.Tensor, config: Un2ClipConfig | None = None, *,
            progress: bool = False, on_log: Callable[[dict], Any] | None = None) -> Un2ClipResult:  # fmt: skip
    """Run both stages on ``images`` (PIL images, paths, arrays, or an already preprocessed NCHW tensor):
    train the decoder on the frozen model's embeddings, then tune ``model``'s image tower (in place)
    through it. ``on_log(record)`` receives a loss record every few steps of each stage."""
    config = (config or Un2ClipConfig()).check()
    if getattr(model, "precision", "fp32") != "fp32":
        raise InputError(f"un2clip trains in fp32; load {model.name} with precision fp32 (it has {model.precision})")
    pixels = images if isinstance(images, torch.Tensor) else preprocess_all(model, images)
    if len(pixels) < 2:
        raise InputError(f"un2clip needs at least 2 training images, got {len(pixels)}")
    times: dict[str, dict[str, float]] = {}
    clock = _Clock()
    anchors = embed_pixels(model, pixels)
    targets = decoder_targets(pixels, config)
    times["embed"] = clock.read()
    clock = _Clock()
    decoder, decoder_losses = train_decoder(anchors, targets, config, progress, on_log)
    times["decoder"] = clock.read()
    clock = _Clock()
    losses = finetune_image_tower(model, decoder, pixels, targets, anchors, config, progress, on_log)
    times["finetune"] = clock.read()
    return Un2ClipResult(model, decoder, config, len(pixels), decoder_losses, losses, times)


def save_un2clip(result: Un2ClipResult, out: str | os.PathLike, base: str) -> Path:
    """Write ``out`` as a model folder (``model.safetensors`` + ``cliplab_model.json``: ``load_model(out)``
    loads it) with the frozen decoder (``decoder.safetensors``) and ``un2clip.json`` (settings, losses,
    times). Atomic: a failure leaves no folder. ``base``: the spec the model was loaded from."""
    from safetensors.torch import save as safetensors_bytes

    from cliplab.files import atomic_folder, atomic_write, write_json
    from cliplab.models.folder import manifest_for, write_manifest
    from cliplab.train.checkpoint import state_tensors

    model = result.model
    meta = {"format": "pt", "model": base, "method": "un2clip", "context_length": str(model.context_length)}
    with atomic_folder(out) as tmp:
        atomic_write(tmp / "model.safetensors", safetensors_bytes(state_tensors(model.torch_module), metadata=meta))
        decoder_meta = {"format": "pt", "kind": result.config.decoder, "config": json.dumps(result.decoder.config())}
        atomic_write(tmp / DECODER_FILE, safetensors_bytes(state_tensors(result.decoder), metadata=decoder_meta))
        write_json({**result.summary(), "base": base}, tmp / SUMMARY_FILE)
        write_manifest(tmp, weights="model.safetensors", **manifest_for(base))
    return Path(out)


def load_decoder(path: str | os.PathLike) -> EmbeddingDecoder | DiffusionDecoder:
    """The frozen decoder an un2clip folder holds (``DIR/decoder.safetensors``, or the file itself)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / DECODER_FILE
    if not path.is_file():
        raise InputError(f"no un2clip decoder at {path}; pass a folder that cliplab un2clip wrote")
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    cfg = json.loads(meta.get("config", "{}"))
    decoder = DiffusionDecoder(**cfg) if meta.get("kind") == "diffusion" else EmbeddingDecoder(**cfg)
    decoder.load_state_dict(load_file(str(path)))
    return decoder.eval().requires_grad_(False)

