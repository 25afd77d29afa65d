"""A training run's settings: one dataclass, read from YAML and/or flags, written beside the run."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from cliplab.errors import InputError, how_to_pass
from cliplab.files import atomic_write

RECORDED_FACTS = ("cliplab_version", "torch_version", "world_size")  # written beside a run's config, not settings
# Settings a resumed run may change: where it runs and how it shows progress, not what it computes.
RESUME_FREE = ("out", "device", "workers", "progress")
PROMPTERS = ("block", "masked-class")  # TrainConfig.prompter: what cloc's region loss reads a box with
EVALUATORS = ("scenes", "regions", "dense")  # TrainConfig.evaluate: a comma list of these, "auto" or "none" (cliplab.train.eval_hooks)


@dataclass
class TrainConfig:
    """Everything that decides a run. Defaults suit post-training a small model on one machine."""

    model: str = "cliplab:shapes-tiny"
    pretrained: str | None = None
    data: str = "synthetic:20000"
    objectives: str = "clip"
    steps: int = 300
    batch_size: int = 128  # global: over all processes and accumulation steps
    lr: float = 5e-4  # suits the small bundled models; post-training a large pretrained CLIP wants 1e-5 to 5e-5
    warmup: int | None = None  # steps; default a tenth of the run
    weight_decay: float = 0.1  # on weight matrices only
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip: float | None = 1.0  # max global gradient norm; None: no clipping
    accum: int = 1  # gradient accumulation steps per optimizer step (features cached, exact for contrastive losses)
    precision: str = "fp32"  # fp32 | bf16 | fp16 (CUDA, with loss scaling)
    device: str | None = None
    seed: int = 0
    out: str = "runs/train"
    ckpt_every: int = 100  # 0: only at the end
    keep_checkpoints: int = 1
    evaluate: str = "auto"  # auto (scenes for cliplab: models, none for others) | none | a comma list of scenes, regions, dense
    eval_every: int = 0  # 0: only before and after training
    eval_n: int = 500  # scenes per synthetic evaluation; 0 disables it
    log_every: int = 10
    workers: int = 1  # batch-building processes
    rewrites: bool = False  # add a rule-based caption rewrite to the choices of each step (LaCLIP)
    long_text: bool = False  # stretch the text positions to 4x-3*20 (Long-CLIP)
    text_tower: str | None = None  # a transformers text encoder folder/repo replacing the text tower
    freeze_text_tower: bool = False
    teacher: str | None = None  # model spec of the distillation teacher
    teacher_pretrained: str | None = None
    teacher_features: str | None = None  # a feature-store folder of teacher image embeddings (by item id)
    languages: str | None = None  # comma list of caption languages, one drawn per caption per step (RS-M-CLIP's translation augmentation)
    distill_loss: str = "cosine"  # textdistill's loss: cosine | mse | smoothl1
    lock_image: bool = False  # freeze the image tower (LiT; open_clip_train's --lock-image): the text tower learns to read fixed image features
    lock_text: bool = False  # freeze the text tower (open_clip_train's --lock-text): the image tower learns against fixed text features
    region_exclude: str | None = None  # comma list of words no training region's phrase may name (held-out concepts)
    prompter: str = "block"  # cloc's region prompter: block (CLOC's, learned) | masked-class (the tower's class token, cliplab.dense.masked_class)
    local_loss: bool = False
    gather_with_grad: bool = False
    tensorboard: bool = False
    progress: bool = True

    def resolved_warmup(self) -> int:
        return max(1, self.steps // 10) if self.warmup is None else self.warmup

    def check(self) -> TrainConfig:
        positive = {"steps": self.steps, "batch_size": self.batch_size, "accum": self.accum, "log_every": self.log_every}
        for name, value in positive.items():
            if value < 1:
                raise InputError(f"{name.replace('_', '-')} must be at least 1, got {value}")
        if self.lr <= 0:
            raise InputError(f"lr must be positive, got {self.lr}")
        if self.batch_size % self.accum:
            raise InputError(f"batch size {self.batch_size} is not a multiple of accum {self.accum}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise InputError(f"unknown precision {self.precision!r}; use fp32, bf16 or fp16")
        if self.languages is not None:
            self.language_list()
        if self.prompter not in PROMPTERS:
            raise InputError(f"unknown prompter {self.prompter!r}; use {' or '.join(PROMPTERS)}")
        from cliplab.train.objectives.text_distill import TEXT_DISTILL_LOSSES

        if self.distill_loss not in TEXT_DISTILL_LOSSES:
            raise InputError(f"unknown distill-loss {self.distill_loss!r}; use one of {', '.join(TEXT_DISTILL_LOSSES)}")
        evaluation_names(self.evaluate)
        return self

    def region_exclude_words(self) -> tuple[str, ...]:
        return tuple(w.strip() for w in str(self.region_exclude or "").split(",") if w.strip())

    def language_list(self) -> tuple[str, ...] | None:
        """``languages`` as codes (each checked against ``synthetic.LANGUAGES``), or None."""
        if self.languages is None:
            return None
        from cliplab.data.synthetic import LANGUAGES

        codes = tuple(dict.fromkeys(c.strip() for c in str(self.languages).split(",") if c.strip()))
        bad = [c for c in codes if c not in LANGUAGES]
        if not codes or bad:
            raise InputError(f"languages {self.languages!r}: {'unknown ' + ', '.join(bad) if bad else 'none given'}; use a comma list of {', '.join(LANGUAGES)}")
        return codes

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


def evaluation_names(spec: str) -> tuple[str, ...]:
    """``TrainConfig.evaluate`` as names: ("auto",), ("none",) or some of ``EVALUATORS`` in the order given."""
    names = tuple(dict.fromkeys(p.strip().lower() for p in str(spec).split(",") if p.strip()))
    bad = [n for n in names if n not in (*EVALUATORS, "auto", "none")]
    if bad or not names:
        raise InputError(f"unknown evaluate {(bad or [spec])[0]!r}; use auto, none or a comma list of {', '.join(EVALUATORS)}")
    if len(names) > 1 and {"auto", "none"} & set(names):
        raise InputError(f"evaluate {spec!r}: auto and none stand alone; name the evaluations instead, e.g. scenes,regions")
    return names


def field_names() -> list[str]:
    return [f.name for f in fields(TrainConfig)]


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The settings of a YAML mapping of field names (dashes or underscores), recorded facts left out."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read config {os.fspath(path)}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"config {os.fspath(path)} is not a mapping of settings")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    for fact in RECORDED_FACTS:
        data.pop(fact, None)
    unknown = sorted(set(data) - set(field_names()))
    if unknown:
        raise InputError(f"config {os.fspath(path)} has unknown settings: {', '.join(unknown)}")
    if "betas" in data:
        data["betas"] = tuple(data["betas"])
    return data


def from_yaml(path: str | os.PathLike, **overrides: Any) -> TrainConfig:
    """A config from a YAML mapping of field names (dashes or underscores), then ``overrides``."""
    return TrainConfig(**{**read_yaml(path), **overrides}).check()


def resumed(saved: str | os.PathLike, settings: dict[str, Any]) -> TrainConfig:
    """The run's ``saved`` config with ``settings`` applied; a setting that would change what the run
    computes (anything but ``RESUME_FREE``) and differs from the saved value is refused."""
    config = from_yaml(saved)
    for name, value in settings.items():
        was = getattr(config, name)
        if name not in RESUME_FREE and _comparable(value) != _comparable(was):
            raise InputError(f"{how_to_pass(name, str(value))} differs from the {name} {was} the run was started with "
                             f"({os.fspath(saved)}); leave it out to continue the run, or start a new run in another folder")  # fmt: skip
    return dataclasses.replace(config, **{k: v for k, v in settings.items() if k in RESUME_FREE})


def _comparable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def write_yaml(config: TrainConfig, path: str | os.PathLike, **extra: Any) -> None:
    """The exact config, with ``extra`` facts (versions, world size), as YAML."""
    import yaml

    atomic_write(path, yaml.safe_dump({**config.to_dict(), **extra}, sort_keys=False))


@dataclass
class UpcycleConfig:
    """Settings of :func:`cliplab.train.upcycle.upcycle` (the defaults: 349 s of CPU time on one thread for shapes-vit on 4,000 pairs, see the README)."""

    experts: int = 4
    top_k: int = 2
    # towers whose blocks become MoE (and whose FFNs train); the bundled ViT was trained against a locked
    # text tower, so by default the text tower stays as it is (and its features are computed once)
    towers: tuple[str, ...] = ("image",)
    # how many of each tower's last blocks become MoE (the official --moe-layers); 0: every block. Only those
    # blocks' FFNs train in the stages, the other blocks keep the base's
    moe_blocks: int = 0
    # per modality and stage (the official cluster.ipynb has 3 on millions of pairs); 5 (25 joint) on
    # cliplab's 4,000 scenes: within-cluster batches then agree more on colour and shape, so the stages
    # learn what else tells the pairs apart (size, position), as MCL intends (benchmarks/moe.py)
    clusters: int = 5
    stage_steps: int = 400  # per stage 1..E-1
    # "none": the official sampler's within-cluster batches, every cluster alike; "hard" (the default):
    # clusters drawn in proportion to how badly the previous stage's model separates their pairs
    # (cliplab.train.upcycle); with 400-step stages it gained more position than "none" (README)
    emphasis: str = "hard"
    batch_size: int = 64
    min_batch: int = 16  # a cluster smaller than this gives no batch (the official sampler skips small clusters)
    lr: float = 3e-4
    weight_decay: float = 0.2
    warmup: int = 20
    # the official 0.1 goes with its logit scale of 100; at the model's own scale (28.7 for shapes-vit)
    # 0.1 drags every negative towards the positive: ordinary-batch FFN tuning then lost 19 points of
    # position and 13 of size, 0 lost nothing, and in the stages 0.07 kept the position gain at about
    # half the shape and colour cost of 0.1 (issue #25, README)
    label_smoothing: float = 0.07
    router_steps: int = 100
    # the router trains on ordinary batches, where smoothing hurts (above): without it the routers of
    # training seeds 1 and 2 kept shape (+0.4 / +0.3 against -1.2 / -1.4 with 0.07) and gained position
    # (+3.4 / +2.7 against +3.0 / +2.0; issue #25, README). The baselines, on ordinary batches too, use it
    router_label_smoothing: float = 0.0
    # the official router lr (1e-6) is 10x below its stages' (1e-5); with smoothing 0.07 a router lr of 1e-3
    # moved most tokens off the base expert and cost shape, without smoothing it gained most (README)
    router_lr: float = 1e-3
    router_weight_decay: float = 0.01
    balance_weight: float = 0.01
    seed: int = 0

    def check(self) -> UpcycleConfig:
        if self.experts < 2:
            raise InputError(f"--experts must be at least 2 (the base and one stage), got {self.experts}")
        if not 1 <= self.top_k <= self.experts:
            raise InputError(f"--top-k must be between 1 and --experts ({self.experts}), got {self.top_k}")
        if not self.towers or set(self.towers) - {"image", "text"}:
            raise InputError(f"towers must be a non-empty subset of image, text; got {', '.join(self.towers) or 'none'}")
        if self.batch_size < 2 or self.min_batch < 2:
            raise InputError("batch sizes must be at least 2 (a contrastive batch needs negatives)")
        if self.emphasis not in ("none", "hard"):
            raise InputError(f"--emphasis must be none or hard, got {self.emphasis!r}")
        if self.moe_blocks < 0:
            raise InputError(f"--moe-blocks must be 0 (every block) or a positive count of last blocks, got {self.moe_blocks}")
        for flag, value in (("--label-smoothing", self.label_smoothing), ("--router-label-smoothing", self.router_label_smoothing)):
            if not 0 <= value < 1:
                raise InputError(f"{flag} must be in [0, 1), got {value}")
        if self.clusters < 2:
            raise InputError(f"--clusters must be at least 2 (one cluster leaves the batches as they are), got {self.clusters}")
        return self
