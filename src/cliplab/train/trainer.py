"""The training loop: contrastive pre-training, post-training and fine-tuning of a ``cliplab.Model``.

One process or many (``torchrun``): AdamW with warm-up and cosine decay, gradient clipping,
gradient accumulation with cached features (exact for contrastive losses), the logit-scale
clamp, autocast mixed precision, checkpoints every N steps that resume bit for bit, a pluggable
evaluation, a JSONL metrics log (loss averaged over processes, data and step time apart, samples/s of
training alone) and a progress bar.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

from cliplab.dense.masked_class import MASKED_CLASS, MaskedClassPrompter
from cliplab.dense.prompter import save_prompter
from cliplab.errors import InputError
from cliplab.files import atomic_write, write_json
from cliplab.models.base import Model
from cliplab.models.folder import manifest_for, write_manifest
from cliplab.train import checkpoint, distributed, run_dir
from cliplab.train.batches import BatchPlan, RegionInput, StepBatches
from cliplab.train.config import TrainConfig, resumed, write_yaml
from cliplab.train.eval_hooks import evaluating, evaluator
from cliplab.train.modes import train_learning_parts
from cliplab.train.objectives import build_objectives
from cliplab.train.objectives.base import DistContext, StepFeatures
from cliplab.train.objectives.dino import multi_crop
from cliplab.train.region_features import FrozenPhrases, RegionTeacher, Regions, StudentDense, student_pass, vit_parts
from cliplab.train.schedule import cosine_with_warmup

MAX_LOGIT_SCALE = math.log(100)  # CLIP's clamp of the learned temperature (Radford et al. 2021, Sec. 2.5)


class Towers(torch.nn.Module):
    """The module DDP wraps: image and text features (all texts of a step in one pass) and the scales."""

    def __init__(self, clip: torch.nn.Module, parts=None) -> None:
        super().__init__()
        self.clip = clip
        self.parts = parts  # a ViT taken apart (cliplab.models.vision_parts), when region objectives read dense features

    def forward(self, pixels: torch.Tensor, tokens: torch.Tensor) -> tuple:
        """Image features (or, with region objectives, a :class:`StudentDense` pass), text features and the scales."""
        bias = getattr(self.clip, "logit_bias", None)
        image = self.clip.encode_image(pixels) if self.parts is None else student_pass(self.parts, pixels)
        return image, self.clip.encode_text(tokens), self.clip.logit_scale.exp(), bias


@dataclass
class TrainResult:
    out: Path
    steps: int  # the run's total
    steps_run: int  # by this call (a resumed run starts from its checkpoint)
    is_main: bool  # rank 0 (or a single process)
    wall_s: float
    samples_per_s: float  # of training alone (batches and steps; not evaluation or checkpoints)
    losses: list[float] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)


def image_parameters(model: Model) -> list[torch.nn.Parameter]:
    """The image tower's parameters and its projection (a top-level ``visual_projection`` in transformers' CLIP)."""
    tower = list(model.tower_modules()["image"].parameters())
    own = {id(p) for p in tower}
    return tower + [p for name, p in model.torch_module.named_parameters() if name.split(".")[0] == "visual_projection" and id(p) not in own]


def text_parameters(model: Model) -> list[torch.nn.Parameter]:
    """Every parameter outside the image tower but the logit scale and bias."""
    image = {id(p) for p in image_parameters(model)}
    return [p for name, p in model.torch_module.named_parameters() if id(p) not in image and name.split(".")[0] not in ("logit_scale", "logit_bias")]


def lock_tower(model: Model, tower: str) -> None:
    """Freeze the ``"image"`` tower (LiT, Zhai et al. 2022: open_clip_train's ``--lock-image``) or the ``"text"`` tower
    (``--lock-text``); a frozen tower's batch-norm statistics stay put too (:func:`train_learning_parts`)."""
    for p in image_parameters(model) if tower == "image" else text_parameters(model):
        p.requires_grad_(False)


def decay_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices only (not on gains, biases, embeddings or the logit scale)."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 and "embedding" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, rewritten atomically (small, and truncatable on resume)."""

    def __init__(self, path: Path, keep_until: int | None = None) -> None:
        self.path = path
        self.lines: list[dict] = []
        if keep_until is not None and path.is_file():
            self.lines = [r for r in map(json.loads, path.read_text().splitlines()) if r.get("step", 0) <= keep_until]

    def add(self, record: dict) -> None:
        self.lines.append(record)

    def flush(self) -> None:
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in self.lines))


class StepTimes:
    """Seconds spent waiting for batches and in optimizer steps, apart (open_clip_train's ``data_time``, and
    its ``batch_time`` less ``data_time``, in ``train_one_epoch``): evaluation, checkpoints and logging count
    in neither, so samples/s is the rate of training. A step's time includes its GPU work: it reads its loss."""

    def __init__(self, batch_size: int, world_size: int) -> None:
        self.batch_size, self.world_size = batch_size, world_size  # global batch: all processes together
        self.steps, self.data_s, self.step_s = 0, 0.0, 0.0  # in all
        self._logged = (0, 0.0, 0.0)  # the same at the last metrics line

    def add(self, data_s: float, step_s: float) -> None:
        self.steps += 1
        self.data_s += data_s
        self.step_s += step_s

    def samples_per_s(self) -> float:
        return self.batch_size * self.steps / max(self.data_s + self.step_s, 1e-9)

    def since_logged(self) -> dict[str, float]:
        """Mean seconds per step waiting for data and stepping, and samples/s (all processes, and per
        process), over the steps since the last call."""
        now = (self.steps, self.data_s, self.step_s)
        n, data_s, step_s = (a - b for a, b in zip(now, self._logged))
        self._logged = now
        rate = self.batch_size * n / max(data_s + step_s, 1e-9)
        return {"data_s": data_s / n, "step_s": step_s / n, "samples_per_s": rate, "samples_per_s_per_rank": rate / self.world_size}


def _cat(parts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _split(batch: dict, n: int) -> list[dict]:
    if n == 1:
        return [batch]
    size = len(batch["ids"]) // n
    return [{k: v[i * size : (i + 1) * size] for k, v in batch.items()} for i in range(n)]


class Trainer:
    """Builds everything a run needs from a :class:`TrainConfig` (or a ready ``Model``) and runs it."""

    def __init__(self, config: TrainConfig, model: Model | None = None, resume: bool = False,
                 on_log: Callable[[dict], None] | None = None,
                 batches: Callable[[int], torch.utils.data.IterableDataset] | None = None,
                 evaluate: Callable[[Model], dict] | None = None) -> None:  # fmt: skip
        """``batches(start_step)``, when given, replaces the batches built from ``config.data``: an
        iterable of dicts with ``ids``, ``pixels``, ``tokens`` and ``caption_ids`` (one per step).
        ``evaluate(model)``, when given, replaces the evaluation ``config.evaluate`` names: its dict of
        figures is logged before training, every ``config.eval_every`` steps and at the end (rank 0)."""
        self.out = Path(config.out)
        saved = self.out / "config.yaml"
        self.resumed_config = resume and saved.is_file()
        self.config = config = resumed(saved, config.to_dict()) if self.resumed_config else config.check()
        if not resume and checkpoint.latest(self.out) is not None:
            raise InputError(f"{self.out} already holds checkpoints; pass --resume to continue it or choose a new --out")
        self.runtime = distributed.start(config.device)
        self.lock = run_dir.lock(self.out) if self.runtime.is_main else None  # held until close()
        try:
            if self.lock is not None:
                run_dir.remove_leftovers(self.out)
            self._build(model, resume, on_log, batches)
            c = self.config
            self.evaluate = evaluate if evaluate is not None else evaluator(c.evaluate, c.model, c.eval_n)
        except BaseException:
            self._release()
            raise

    def _build(self, model: Model | None, resume: bool, on_log: Callable[[dict], None] | None,
               batches: Callable[[int], torch.utils.data.IterableDataset] | None) -> None:  # fmt: skip
        from cliplab.models import load_model
        from cliplab.train.pairs import SyntheticPairs, open_pairs

        config = self.config
        self.on_log = on_log
        torch.manual_seed(config.seed)
        if model is None:
            model = load_model(config.model, pretrained=config.pretrained, device=self.runtime.device)
        else:
            model.torch_module.to(self.runtime.device)
            model.device = self.runtime.device
        if config.text_tower:
            from cliplab.train.text_tower import swap_text_tower

            model = swap_text_tower(model, config.text_tower, freeze=config.freeze_text_tower)
        if config.long_text:
            from cliplab.train.long_text import stretch_model

            stretch_model(model)
        self.model = model
        for tower in ("image", "text"):
            if getattr(config, f"lock_{tower}"):
                lock_tower(model, tower)
        self.module = train_learning_parts(model.torch_module)
        self.objectives = build_objectives(config.objectives, student_dim=model.embed_dim, teacher_dim=self._teacher_dim(),
                                           distill_loss=config.distill_loss, prompter=config.prompter)  # fmt: skip
        self.views = next((o for _, o in self.objectives.values() if "views" in o.needs), None)  # dino's crops and teacher
        if self.views is not None:
            if self.runtime.world_size > 1 or config.accum > 1:
                raise InputError("the dino objective runs in one process without --accum; drop --accum or use one device")
            self.views.attach(self.module, model.embed_dim)
        self.objective_modules = torch.nn.ModuleDict({k: o for k, (_, o) in self.objectives.items()}).to(self.runtime.device)
        self.needs = set().union(*(o.needs for _, o in self.objectives.values()))
        self.frozen = self._frozen_copy() if "frozen" in self.needs else None
        self.teacher, self.teacher_images = self._teacher() if self.needs & {"teacher", "teacher_text"} else (None, None)
        self.ctx = DistContext(self.runtime.rank, self.runtime.world_size, config.local_loss, config.gather_with_grad)
        self.region_parts = self.region_teacher = self.phrases = None
        if "regions" in self.needs:
            self._set_up_regions()
        self.towers: torch.nn.Module = Towers(self.module, self.region_parts)
        if self.runtime.world_size > 1:
            ids = [self.runtime.device.index] if self.runtime.device.type == "cuda" else None
            self.towers = torch.nn.parallel.DistributedDataParallel(self.towers, device_ids=ids)
        params = decay_groups(self.module, config.weight_decay)
        for _, objective in self.objectives.values():  # an objective's own modules: no decay, their own learning rate
            own = [p for p in objective.parameters() if p.requires_grad]
            if objective.lr_scale == 1.0:
                params[1]["params"] += own
            elif own:
                params.append({"params": own, "weight_decay": 0.0, "lr": config.lr * objective.lr_scale})
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, betas=tuple(config.betas), eps=config.eps)
        warm = config.resolved_warmup()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: cosine_with_warmup(s, config.steps, warm))
        self.scaler = torch.amp.GradScaler(self.runtime.device.type, enabled=config.precision == "fp16")
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
        if config.precision == "fp16" and self.runtime.device.type != "cuda":
            raise InputError("precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        self.start_step = self._restore()
        self.custom_batches = batches
        self.pairs = open_pairs(config.data) if batches is None else None
        if config.languages and self.pairs is not None and not isinstance(self.pairs, SyntheticPairs):
            raise InputError(f"--languages applies to synthetic scenes, not to {config.data}; a manifest's captions in several "
                             "languages (rows per language, --lang-col) are already drawn from, one per image per step")  # fmt: skip
        self.log = MetricsLog(self.out / "metrics.jsonl", keep_until=self.start_step if resume else None)

    # --- set-up -------------------------------------------------------------------------------
    def _teacher_dim(self) -> int | None:
        if self.config.teacher_features:
            from cliplab.features import Features

            return int(Features.load(self.config.teacher_features).X.shape[1])
        return None

    def _teacher(self) -> tuple[Model | None, dict[str, torch.Tensor] | None]:
        from cliplab.models import load_model

        c = self.config
        if "maps" in self.needs and (c.teacher_features or not c.teacher):
            raise InputError("the fmdistill objective reads the teacher's feature maps during training: pass --teacher SPEC and no --teacher-features")
        if not c.teacher and ("teacher_text" in self.needs or not c.teacher_features):
            what = "textdistill" if "teacher_text" in self.needs else "distill"
            raise InputError(f"the {what} objective needs --teacher SPEC" + (" (and/or --teacher-features DIR)" if what == "distill" else ""))
        images = None
        if c.teacher_features:
            from cliplab.features import Features

            feats = Features.load(c.teacher_features)
            images = {i: torch.from_numpy(x) for i, x in zip(feats.ids, feats.X)}
        teacher = load_model(c.teacher, pretrained=c.teacher_pretrained, device=self.runtime.device) if c.teacher else None
        for name in ("distill", "fmdistill", "textdistill"):  # a projection to the teacher's width
            if name in self.objectives and teacher is not None and (name != "distill" or not c.teacher_features):
                weight, old = self.objectives[name]
                new = type(old)(self.model.embed_dim, teacher.embed_dim, **({"loss": old.loss, "beta": old.beta} if name == "textdistill" else {}))
                if name == "fmdistill":
                    self._attach_maps(new, teacher)
                self.objectives[name] = (weight, new)
                self.objective_modules[name] = new.to(self.runtime.device)
        return teacher, images

    def _attach_maps(self, objective, teacher: Model) -> None:
        """Hooks catching both towers' last feature maps, and ``objective``'s adapter sized by a dry run."""
        from cliplab.models.vision_parts import FeatureMaps

        if teacher is None:
            raise InputError("the fmdistill objective needs --teacher SPEC (a model: its feature maps are read during training)")
        self.student_maps, self.teacher_maps = FeatureMaps(self.module.visual), FeatureMaps(teacher.torch_module.visual)
        with torch.no_grad():
            channels = []
            for model, maps in ((self.model, self.student_maps), (teacher, self.teacher_maps)):
                size = model.preprocess_cfg["size"]
                side = size if isinstance(size, int) else size[0]
                was = model.torch_module.training
                model.torch_module.eval()  # no batch-norm statistics move
                model.torch_module.encode_image(torch.zeros(1, 3, side, side, device=self.runtime.device, dtype=model.input_dtype))
                if was:
                    train_learning_parts(model.torch_module)
                channels.append(int(maps.take().shape[1]))
        objective.attach_maps(*channels)

    def _set_up_regions(self) -> None:
        """The student's ViT parts (dense features each step) and, for distilling objectives, the region teacher."""
        from cliplab.models import load_model
        from cliplab.models.vision_parts import pixel_normalisation

        if self.config.accum > 1:
            raise InputError("region objectives (" + ", ".join(k for k, (_, o) in self.objectives.items() if "regions" in o.needs) +
                             ") run without --accum: a step's regions differ in number per image; drop --accum")  # fmt: skip
        self.region_parts = vit_parts(self.model)
        if not any(p.requires_grad for p in text_parameters(self.model)):
            self.phrases = FrozenPhrases(self.module.encode_text)
        for _, objective in self.objectives.values():
            objective.attach_regions(self.model, self.region_parts)
        self.objective_modules.to(self.runtime.device)
        if "region_teacher" in self.needs:
            c = self.config
            if c.teacher:
                teacher = load_model(c.teacher, pretrained=c.teacher_pretrained, device=self.runtime.device)
            else:  # the starting model, frozen
                teacher = copy.copy(self.model)
                teacher.torch_module = self._frozen_copy()
            teacher.torch_module.eval().requires_grad_(False)
            self.region_teacher = RegionTeacher(teacher, pixel_normalisation(self.model))
            for _, objective in self.objectives.values():  # a projection to the teacher's width (farslip, declip, dclip)
                if hasattr(objective, "match_teacher"):
                    objective.match_teacher(self.model.embed_dim, teacher.embed_dim)
                    objective.to(self.runtime.device)

    def _frozen_copy(self) -> torch.nn.Module:
        frozen = copy.deepcopy(self.module).eval()
        for p in frozen.parameters():
            p.requires_grad_(False)
        return frozen

    def _restore(self) -> int:
        """Write the run's config (a resumed run keeps its own) and load the last checkpoint; the step to start at."""
        if self.runtime.is_main and not self.resumed_config:
            import cliplab

            write_yaml(self.config, self.out / "config.yaml", cliplab_version=cliplab.__version__,
                       torch_version=str(torch.__version__), world_size=self.runtime.world_size)  # fmt: skip
        last = checkpoint.latest(self.out)
        if last is None:
            return 0
        state = checkpoint.load(last, self.module, self.objective_modules)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        return int(state["step"])

    def _region_input(self) -> RegionInput | None:
        if self.region_parts is None:
            return None
        from cliplab.models.vision_parts import input_size

        mode = (getattr(self.model, "preprocess_cfg", None) or {}).get("resize_mode", "shortest")
        return RegionInput(input_size(self.model), mode, self.config.region_exclude_words(), negatives="region_negatives" in self.needs,
                           caption_swaps="caption_swaps" in self.needs)  # fmt: skip

    def _loader(self) -> torch.utils.data.DataLoader:
        c, rt = self.config, self.runtime
        if self.custom_batches is not None:
            batches = self.custom_batches(self.start_step)
        else:
            plan = BatchPlan(c.batch_size, c.seed, rt.rank, rt.world_size, hard_negatives="negatives" in self.needs,
                             short_captions="short" in self.needs, rule_rewrites=c.rewrites,
                             keep_images="teacher" in self.needs and self.teacher is not None and self.teacher_images is None,
                             languages=c.language_list(), regions=self._region_input())  # fmt: skip
            batches = StepBatches(self.pairs, self.model.preprocess, self.model.tokenize, plan, self.start_step, c.steps)
        kw = {"num_workers": c.workers, "batch_size": None}
        if c.workers > 0:
            kw.update(prefetch_factor=4, persistent_workers=False)
        return torch.utils.data.DataLoader(batches, **kw)

    # --- one step -----------------------------------------------------------------------------
    def _autocast(self):
        dtype = self.autocast_dtype
        return torch.autocast(self.runtime.device.type, dtype=dtype, enabled=dtype is not None)

    def _features(self, batch: dict) -> dict[str, torch.Tensor]:
        """Features of a (micro-)batch: image, text and every extra text the objectives need."""
        dev = self.runtime.device
        extra = ("negatives", "short_tokens", "caption_swap_tokens") + (() if self.phrases is not None else ("region_tokens", "region_negative_tokens"))
        texts = [batch["tokens"]] + [batch[k] for k in extra if batch.get(k) is not None]
        tokens = torch.cat([t.to(dev) for t in texts])
        maps = getattr(self, "student_maps", None)
        if maps is not None:
            maps.clear()
        with self._autocast():
            image, text, scale, bias = self.towers(batch["pixels"].to(dev), tokens)
        b = len(batch["ids"])
        dense = None
        if isinstance(image, StudentDense):
            dense, image = image, image.image
        # The scales are spread over the rows so micro-batches concatenate; the loss reads row 0, so
        # with accumulation their gradient is counted once (in micro-batch 0's pass), not per pass.
        out = {"image": image, "text": text[:b], "scale": scale.reshape(1).expand(b)}
        offset = b
        if "negatives" in batch:
            n = len(batch["negatives"])
            out["negatives"] = text[offset : offset + n]
            offset += n
        if "short_tokens" in batch:
            out["short_text"] = text[offset : offset + b]
            offset += b
        if batch.get("caption_swap_tokens") is not None:
            k = batch["caption_swaps_valid"].shape[1]
            out["caption_swaps"] = text[offset : offset + b * k].reshape(b, k, -1)
            offset += b * k
        if dense is not None:
            out["student_dense"] = dense
            r = len(batch["region_boxes"])
            phrases = text[offset:]
            if self.phrases is not None:  # a frozen text tower: each phrase encoded once in the run
                with self._autocast():
                    texts = [batch[k] for k in ("region_tokens", "region_negative_tokens") if batch.get(k) is not None]
                    phrases = self.phrases(torch.cat(texts).to(dev)) if texts else text.new_zeros(0, text.shape[1])
            out["region_text"] = phrases[:r] if r else text.new_zeros(0, text.shape[1])
            if "region_negatives_valid" in batch:
                out["region_negatives"] = phrases[r:].reshape(r, batch["region_negatives_valid"].shape[1], -1)
        if bias is not None:
            out["bias"] = bias.reshape(1).expand(b)
        if maps is not None:
            out["student_map"] = maps.take()
        if self.views is not None:
            gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + int(self.scheduler.last_epoch))
            crops = multi_crop(batch["pixels"], gen, n_local=self.views.n_local, global_scale=self.views.global_scale, local_scale=self.views.local_scale)
            crops = [c.to(dev) for c in crops]
            with self._autocast():
                out["student_views"] = [self.module.encode_image(c) for c in crops]
                out["teacher_views"] = self.views.teacher_features(crops[:2])
        return out

    @torch.no_grad()
    def _fixed_features(self, batch: dict) -> dict[str, torch.Tensor]:
        """Features that carry no gradient: the frozen starting model's and the teacher's."""
        dev, out = self.runtime.device, {}
        if self.frozen is not None:
            with self._autocast():
                out["frozen_image"] = self.frozen.encode_image(batch["pixels"].to(dev)).float()
                out["frozen_text"] = self.frozen.encode_text(batch["tokens"].to(dev)).float()
        if "teacher" in self.needs or "teacher_text" in self.needs:
            if "teacher" not in self.needs:  # text only (textdistill)
                pass
            elif self.teacher_images is not None:
                missing = [i for i in batch["ids"] if i not in self.teacher_images]
                if missing:
                    raise InputError(f"teacher features have no embedding for {missing[0]!r}; embed the training data with the teacher")
                out["teacher_image"] = torch.stack([self.teacher_images[i] for i in batch["ids"]]).to(dev)
            elif self.teacher is not None:
                if getattr(self, "teacher_maps", None) is not None:
                    self.teacher_maps.clear()
                out["teacher_image"] = torch.from_numpy(self.teacher.encode_images(batch["images"])).to(dev)
                if getattr(self, "teacher_maps", None) is not None:
                    out["teacher_map"] = self.teacher_maps.take().float().clone()
            if self.teacher is not None:  # the English parallels of the captions when the batch has them (textdistill)
                texts = batch.get("teacher_captions", batch["captions"])
                out["teacher_text"] = torch.from_numpy(self.teacher.encode_texts(texts)).to(dev)
        return out

    def _loss(self, feats: dict[str, torch.Tensor], batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        step_feats = StepFeatures(
            image=feats["image"], text=feats["text"], logit_scale=feats["scale"][0], caption_ids=batch["caption_ids"].to(self.runtime.device),
            logit_bias=feats["bias"][0] if "bias" in feats else None, negatives=feats.get("negatives"),
            negatives_valid=batch["negatives_valid"].to(self.runtime.device) if "negatives_valid" in batch else None,
            short_text=feats.get("short_text"), teacher_image=feats.get("teacher_image"), teacher_text=feats.get("teacher_text"),
            frozen_image=feats.get("frozen_image"), frozen_text=feats.get("frozen_text"),
            extras={k: feats[k] for k in ("student_views", "teacher_views", "student_map", "teacher_map") if k in feats},
            regions=self._regions(feats, batch) if "student_dense" in feats else None,
        )  # fmt: skip
        total, parts = 0.0, {}
        with self._autocast():
            for name, (weight, objective) in self.objectives.items():
                value = objective(step_feats, self.ctx).float()
                parts[name] = float(value.detach())
                total = total + weight * value
        return total, parts

    def _regions(self, feats: dict, batch: dict) -> Regions:
        dev = self.runtime.device
        return Regions(pixels=batch["pixels"].to(dev), boxes=batch["region_boxes"].to(dev), text=feats["region_text"],
                       phrase_ids=batch["region_phrase_ids"].to(dev), true_ids=batch["region_true_ids"].to(dev), student=feats["student_dense"], parts=self.region_parts,
                       negatives=feats.get("region_negatives"), negatives_valid=batch["region_negatives_valid"].to(dev)
                       if "region_negatives_valid" in batch else None, caption_swaps=feats.get("caption_swaps"),
                       caption_swaps_valid=batch["caption_swaps_valid"].to(dev) if "caption_swaps" in feats else None,
                       unnamed_boxes=batch["region_unnamed_boxes"].to(dev) if "region_unnamed_boxes" in batch else None,
                       encode_image=self.module.encode_image, teacher=self.region_teacher)  # fmt: skip

    def _backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def step(self, batch: dict) -> tuple[float, dict[str, float]]:
        """One optimizer step on a global batch (this rank's rows); returns the loss and its parts,
        averaged over processes (with local loss, each holds its share)."""
        c = self.config
        self.optimizer.zero_grad(set_to_none=True)
        fixed = self._fixed_features(batch)
        if c.accum == 1:
            loss, parts = self._loss({**self._features(batch), **fixed}, batch)
            self._backward(loss)
        else:
            # Gradient accumulation with cached features (open_clip's accum_freq): a no-grad pass over
            # every micro-batch, then each micro-batch again with grad against the others' cached
            # features, so the summed gradient is the full-batch one for contrastive losses.
            micro = _split(batch, c.accum)
            with torch.no_grad():
                cached = [self._features(m) for m in micro]
            for j, m in enumerate(micro):
                sync = contextlib.nullcontext() if j == c.accum - 1 or not hasattr(self.towers, "no_sync") else self.towers.no_sync()
                with sync:
                    fresh = self._features(m)
                    feats = _cat([fresh if i == j else {k: v.detach() for k, v in cached[i].items()} for i in range(c.accum)])
                    loss, parts = self._loss({**feats, **fixed}, batch)
                    self._backward(loss)
        distributed.average_gradients(list(self.objective_modules.parameters()), self.runtime)
        self.scaler.unscale_(self.optimizer)
        if c.grad_clip:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, c.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.views is not None:
            self.views.update_teacher(self.module, self.scheduler.last_epoch / max(1, c.steps))
        with torch.no_grad():
            self.module.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        total, *values = distributed.mean_over_ranks([float(loss.detach()), *parts.values()], self.runtime)
        return total, dict(zip(parts, values))

    # --- the run ------------------------------------------------------------------------------
    def _evaluate(self, step: int) -> dict | None:
        if self.evaluate is None or not self.runtime.is_main:
            return None
        with evaluating(self.model), self._with_prompter():
            record = {"step": step, "eval": self.evaluate(self.model)}
        self.log.add(record)
        self.log.flush()
        self._emit(record)
        return record

    def _emit(self, record: dict) -> None:
        if self.on_log is not None:
            self.on_log(record)
        if self.tensorboard is not None:
            for key, value in _flatten(record).items():
                if key != "step":
                    self.tensorboard.add_scalar(key, value, record["step"])

    def _save_checkpoint(self, step: int) -> None:
        if self.runtime.is_main:
            state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()}
            checkpoint.save(self.out, step, self.module, self.objective_modules, state, self.config.keep_checkpoints)
            self.log.flush()

    def save_model(self) -> Path:
        """``out/model.safetensors`` (the trained weights) and ``out/cliplab_model.json``: ``load_model(out)`` loads them."""
        path = self.out / "model.safetensors"
        meta = {"format": "pt", "model": self.config.model, "steps": str(self.config.steps), "context_length": str(self.model.context_length)}
        atomic_write(path, safetensors_bytes(checkpoint.state_tensors(self.module), metadata=meta))  # a full disk is an OSError
        # a base's learned prompter fits its own tower only; the masked class token has nothing to fit
        fields = {k: v for k, v in manifest_for(self.config.model).items() if k != "prompter" or v == MASKED_CLASS}
        prompter = self._prompter()
        if isinstance(prompter, MaskedClassPrompter):
            fields["prompter"] = MASKED_CLASS
        elif prompter is not None:  # CLOC's prompter, for Model.encode_regions
            fields["prompter"] = save_prompter(prompter, self.out / "prompter.safetensors").name
        write_manifest(self.out, weights=path.name, **fields)
        return path

    def _prompter(self) -> torch.nn.Module | None:
        """CLOC's region prompter, when an objective trains one."""
        return next((o.region_prompter for _, o in self.objectives.values() if getattr(o, "region_prompter", None) is not None), None)

    @contextlib.contextmanager
    def _with_prompter(self):
        """The model embeds regions with the prompter being trained (in eval mode) while it is evaluated, as
        the saved model will: ``--eval regions`` measures what ``Model.encode_regions`` gives."""
        prompter = self._prompter()
        if prompter is None:
            yield
            return
        before, was = getattr(self.model, "region_prompter", None), prompter.training
        self.model.region_prompter = prompter.eval()
        try:
            yield
        finally:
            self.model.region_prompter = before
            prompter.train(was)

    def run(self, stop_after: int | None = None) -> TrainResult:
        """Train to ``config.steps``; or, with ``stop_after``, only up to that step of the run: a checkpoint
        is written there and ``resume`` continues it bit for bit (no final evaluation, weights or summary)."""
        c, rt = self.config, self.runtime
        if stop_after is not None and stop_after < 1:
            raise InputError(f"stop_after must be at least 1, got {stop_after}")
        end = c.steps if stop_after is None else min(stop_after, c.steps)
        self.tensorboard = self._open_tensorboard()
        evals, losses, times = [], [], StepTimes(c.batch_size, rt.world_size)
        if self.start_step == 0:
            evals.append(self._evaluate(0))
        bar = _progress(c.steps, self.start_step, c.progress and rt.is_main)
        t0 = waited = time.perf_counter()
        try:
            for step, batch in enumerate(self._loader(), start=self.start_step):
                if step >= end:
                    break
                fetched = time.perf_counter()
                loss, parts = self.step(batch)
                times.add(fetched - waited, time.perf_counter() - fetched)
                losses.append(loss)
                bar.update(1, loss, times.samples_per_s())
                number = step + 1
                if number % c.log_every == 0 or number == c.steps:
                    self._log_step(number, loss, parts, times.since_logged())
                if c.eval_every and number % c.eval_every == 0 and number != c.steps:
                    evals.append(self._evaluate(number))
                if (c.ckpt_every and number % c.ckpt_every == 0) or number == end:
                    self._save_checkpoint(number)
                waited = time.perf_counter()  # evaluation and checkpoints are not waiting for data
        finally:
            bar.close()
        wall = time.perf_counter() - t0
        finished = end == c.steps
        if finished and self.start_step < c.steps:
            evals.append(self._evaluate(c.steps))
        evals = [e for e in evals if e]
        if rt.is_main and finished:
            self.save_model()
            self.log.flush()
            summary = {"steps": c.steps, "resumed_from": self.start_step, "wall_s": wall, "data_s": times.data_s, "step_s": times.step_s,
                       "samples_per_s": times.samples_per_s(), "evals": evals, "world_size": rt.world_size}  # fmt: skip
            write_json(summary, self.out / "summary.json")
        if self.tensorboard is not None:
            self.tensorboard.close()
        return TrainResult(self.out, c.steps, times.steps, rt.is_main, wall, times.samples_per_s(), losses, evals)

    def _log_step(self, step: int, loss: float, parts: dict[str, float], times: dict[str, float]) -> None:
        if self.runtime.is_main:
            record = {"step": step, "loss": loss, **{f"loss/{k}": v for k, v in parts.items()}, "lr": self.scheduler.get_last_lr()[0],
                      "logit_scale": float(self.module.logit_scale.detach().exp()), **times}  # fmt: skip
            self.log.add(record)
            self.log.flush()
            self._emit(record)

    def _open_tensorboard(self):
        if not self.config.tensorboard or not self.runtime.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise InputError("--tensorboard needs the tensorboard package: pip install tensorboard") from exc
        return SummaryWriter(str(self.out / "tensorboard"))

    def close(self) -> None:
        distributed.stop(self.runtime)
        self._release()

    def _release(self) -> None:
        if self.lock is not None:
            self.lock.close()
            self.lock = None


def _flatten(record: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "/"))
        elif isinstance(value, (int, float)):
            out[name] = float(value)
    return out


class _Progress:
    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="training", unit="step", dynamic_ncols=True)

    def update(self, n: int, loss: float, rate: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.3f}", samples_per_s=f"{rate:.0f}", refresh=False)
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _progress(total: int, initial: int, enabled: bool) -> _Progress:
    return _Progress(total, initial, enabled)


def train(config: TrainConfig, model: Model | None = None, resume: bool = False, on_log: Callable[[dict], Any] | None = None,
          batches: Callable[[int], torch.utils.data.IterableDataset] | None = None, evaluate: Callable[[Model], dict] | None = None,
          stop_after: int | None = None) -> TrainResult:  # fmt: skip
    """Run ``config`` (optionally on a ready ``model``, on custom ``batches``, with a custom ``evaluate``;
    see :class:`Trainer`), or its steps up to ``stop_after`` (see :meth:`Trainer.run`); what it measured."""
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=cuda):  # the run seeds torch from config.seed; the caller's RNG state comes back
        trainer = Trainer(config, model=model, resume=resume, on_log=on_log, batches=batches, evaluate=evaluate)
        try:
            return trainer.run(stop_after)
        finally:
            trainer.close()
