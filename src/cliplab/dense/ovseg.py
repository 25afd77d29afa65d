"""A trained open-vocabulary segmenter: class-agnostic mask proposals, then mask classification by a
fine-tuned CLIP image tower against any class names.

    seg = OVSegmenter(model).fit("synthetic:2000", classes=["circle", "square", ...])
    seg.save("shapes-ovseg"); seg = OVSegmenter.load("shapes-ovseg")
    seg.segment(image, ["heart", "star"])   # a Segmentation, as cliplab.segment returns

Training (one loop, every loss on the same batch of scenes):

- the proposer (:class:`~cliplab.dense.proposer.MaskProposer`) learns class-agnostic instance masks
  from the frozen tower's tokens;
- MAFT+ (Jiao et al. 2024): a copy of the image tower is fine-tuned to classify mask-pooled dense
  features of the ground-truth instances against the text embeddings after Content-Dependent
  Transfer, with the mask-aware loss over the proposer's (detached) masks and Representation
  Compensation toward the frozen tower;
- OVSeg (Liang et al. 2023): the same tower also classifies masked crops of each object against the
  noun mined from the scene's caption (region-noun pairs: the caption's shape nouns, in order, paired
  with the objects; an object whose noun is outside the training classes gives no pair).

Objects of classes outside ``classes`` are ignored in every loss: their pixels are neither an
object nor background for the proposer, and they give no classification target. At inference a
proposal's class probabilities ensemble three classifiers geometrically: the two fine-tuned ones
(in-vocabulary, OVSeg's p_in = p_pool^(1-λ) · p_crop^λ, λ = ``crop_weight``) and the frozen model's
classification of a context crop around the mask (out-of-vocabulary, p_out; the training-free
region relabelling's classifier), with a separate weight for the training classes and the others
as in ODISE (Xu et al. 2023) and FC-CLIP (Yu et al. 2023, α/β): p ∝ p_in^(1-w_c) · p_out^(w_c),
w_c = ``frozen_weights[0]`` for a training class, ``frozen_weights[1]`` otherwise. (MAFT+ switches
this ensemble off; here the fine-tuned classifiers name unseen shapes badly on their own.)
"""

from __future__ import annotations

import copy
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cliplab.adapt.training import frozen
from cliplab.data import synthetic
from cliplab.dense.attention import last_block
from cliplab.dense.datasets import synthetic_spec
from cliplab.dense.features import last_block_input, vit_tokens
from cliplab.dense.maft import (
    ContentDependentTransfer,
    mask_aware_loss,
    mask_pool,
    representation_compensation,
)
from cliplab.dense.proposer import MaskProposer, proposer_loss, select_masks
from cliplab.dense.regions import MaskPrompt, foreground_regions, masked_crops, region_probabilities, tune_mask_prompt
from cliplab.dense.segment import BACKGROUND, Segmentation
from cliplab.errors import InputError
from cliplab.files import atomic_target, write_json
from cliplab.models.base import ImageInput, to_pil
from cliplab.models.vision_parts import (
    ViTParts,
    input_size,
    pixel_normalisation,
    vision_parts,
)
from cliplab.validation import check_classnames
from cliplab.zeroshot.templates import ensemble_text_weights

Tensor = torch.Tensor
SEEN_SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")  # the training vocabulary
CHECKPOINT = "checkpoint.pt"
CONFIG = "ovsegmenter.json"
MASK_PROMPT = "mask_prompt.safetensors"
FROZEN_WEIGHTS = (0.2, 0.4)  # the frozen classifier's ensemble weight: training classes, other classes (OVSegmenter)


def image_tower(module: torch.nn.Module) -> torch.nn.Module:
    """The image tower of an open_clip CLIP (``visual``) or a transformers CLIPModel (``vision_model``)."""
    return module.visual if hasattr(module, "visual") else module.vision_model


def region_nouns(caption: str, nouns: Sequence[str]) -> list[str]:
    """The words of ``caption`` that are among ``nouns``, in order: one per object phrase."""
    wanted = set(nouns)
    return [w for w in re.findall(r"[a-z]+", caption.lower()) if w in wanted]


@dataclass
class Scenes:
    """Training scenes at the model's input size: normalised pixels, per scene the kept instances'
    masks and class indices and the ignored pixels; masked crops of the objects with a mined noun."""

    pixels: Tensor  # (N, 3, S, S)
    instances: list[Tensor]  # per scene (K, S, S) float
    labels: list[Tensor]  # per scene (K,) indices into the classes
    ignore: Tensor  # (N, S, S) bool
    crops: Tensor  # (M, 3, S, S)
    crop_masks: Tensor  # (M, S, S)
    crop_labels: Tensor  # (M,) indices of the mined nouns
    crop_scene: Tensor  # (M,) the scene each crop comes from


def training_scenes(model, source: str, classes: Sequence[str]) -> Scenes:
    """Render ``synthetic:N[:seed]`` train-split scenes (1-2 objects) at the model's input size."""
    if not str(source).startswith("synthetic:"):
        raise InputError(f"segmenter training reads synthetic:N[:seed] scenes (instance masks and captions), got {source!r}")
    n, seed = synthetic_spec(str(source))
    side = input_size(model)
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in pixel_normalisation(model))
    index = {c: i for i, c in enumerate(classes)}
    pixels, instances, labels, ignore = [], [], [], []
    crops, crop_masks, crop_labels, crop_scene = [], [], [], []
    for i in range(n):
        record = synthetic.scene(i, seed=seed, image_size=side, split="train", max_objects=2)
        rgb = torch.from_numpy(np.asarray(record.image, dtype=np.float32) / 255).permute(2, 0, 1)
        pixels.append((rgb - mean) / std)
        visible = [k for k, m in enumerate(record.instance_masks) if m.any()]
        kept = [k for k in visible if record.objects[k]["shape"] in index]
        skipped = [k for k in visible if k not in kept]
        instances.append(torch.from_numpy(record.instance_masks[kept]).float())
        labels.append(torch.tensor([index[record.objects[k]["shape"]] for k in kept], dtype=torch.long))
        ignore.append(torch.from_numpy(record.instance_masks[skipped].any(0) if skipped else np.zeros((side, side), bool)))
        nouns = region_nouns(record.caption, synthetic.SHAPES)
        if len(nouns) != len(record.objects):
            continue  # the caption does not name each object once: no pairs from this scene
        paired = [k for k in visible if nouns[k] in index]
        if paired:
            c, m = masked_crops(model, record.image, record.instance_masks[paired])
            crops.append(c)
            crop_masks.append(m)
            crop_labels += [index[nouns[k]] for k in paired]
            crop_scene += [i] * len(paired)
    if not crops:
        raise InputError(f"no object of {', '.join(classes)} in the {n} scenes of {source}; pass more scenes or other classes")
    return Scenes(torch.stack(pixels), instances, labels, torch.stack(ignore), torch.cat(crops), torch.cat(crop_masks),
                  torch.tensor(crop_labels), torch.tensor(crop_scene))  # fmt: skip


class OVSegmenter:
    """A trainable open-vocabulary segmenter over a cliplab ViT (see the module docstring).

    method: the last-block method of the fine-tuned tower's dense features (:mod:`cliplab.dense.attention`).
    queries / dim: the proposer's query count and width. crop_weight: λ of the fine-tuned classifiers' ensemble.
    frozen_weights: the frozen classifier's weight for training classes and for the others (0.2 and
        0.4: mIoU 0.666 / unseen 0.514 against 0.637 / 0.438 without it on validation scenes, seed 7,
        after the default training; chosen on a 0.2 grid).
    templates: prompt templates for the class names. min_score: objectness a proposal needs (0.3:
        mIoU 0.637 against 0.607 at 0.5 on validation scenes, seed 7, after the default training).
    """

    def __init__(self, model, method: str = "naclip", queries: int = 8, dim: int = 32, crop_weight: float = 0.3,
                 templates="default", min_score: float = 0.3, pretrained: str | None = None,
                 frozen_weights: tuple[float, float] = FROZEN_WEIGHTS) -> None:  # fmt: skip
        parts = vision_parts(model)
        if not isinstance(parts, ViTParts):
            raise InputError(f"{model.name}: the trained segmenter needs a ViT image tower")
        if not all(0 <= w <= 1 for w in (crop_weight, *frozen_weights)) or len(frozen_weights) != 2:
            raise InputError(f"crop_weight and the two frozen_weights are in [0, 1], got {crop_weight} and {frozen_weights}")
        last_block(method)
        self.model, self.parts, self.pretrained = model, parts, pretrained
        self.method, self.crop_weight, self.templates, self.min_score = method, crop_weight, templates, min_score
        self.frozen_weights = tuple(float(w) for w in frozen_weights)
        self.side = input_size(model)
        width = parts.embed(torch.zeros(1, 3, self.side, self.side, device=model.device, dtype=model.input_dtype))[0].shape[-1]
        self.proposer = MaskProposer(width, dim, queries).to(model.device)
        self.cdt = ContentDependentTransfer(model.embed_dim).to(model.device)
        self._copy_tower()
        self.mask_prompt: MaskPrompt | None = None  # OVSeg's mask prompt over the fine-tuned tower (fit's mask_prompt_steps)
        self.classes_: list[str] = []
        self.steps_done_ = 0

    def _copy_tower(self) -> None:
        """A fresh copy of the base model to fine-tune (same wrapper, its own module)."""
        self.tuned = copy.copy(self.model)
        self.tuned.torch_module = copy.deepcopy(self.model.torch_module)
        self.tuned_parts = vision_parts(self.tuned)

    # --- features -------------------------------------------------------------------------------
    def frozen_tokens(self, pixels: Tensor) -> Tensor:
        """Patch tokens (B, D, h, w) entering the frozen tower's last block (the proposer's input)."""
        x, grid = last_block_input(self.parts, pixels.to(self.model.device, self.model.input_dtype))
        return x[:, 1:].transpose(1, 2).reshape(len(x), x.shape[-1], *grid).float()

    def tuned_features(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """The fine-tuned tower's tokens entering its last block (B, D, h, w) and its L2-normalised dense
        features (B, E, h, w)."""
        x, grid = last_block_input(self.tuned_parts, pixels.to(self.model.device, self.model.input_dtype))
        tokens, _ = vit_tokens(self.tuned_parts, pixels, last_block(self.method), (x, grid))
        dense = F.normalize(tokens.float(), dim=-1).transpose(1, 2).reshape(len(x), -1, *grid)
        return x[:, 1:].transpose(1, 2).reshape(len(x), x.shape[-1], *grid).float(), dense

    def text(self, classes: Sequence[str]) -> Tensor:
        return torch.from_numpy(ensemble_text_weights(self.model, list(classes), self.templates)).to(self.model.device)

    def crop_logits(self, crops: Tensor, masks: Tensor, text: Tensor) -> Tensor:
        """Scaled cosine logits of masked crops (K, 3, S, S) by the fine-tuned tower; with a mask
        prompt, the patches their masks (K, S, S) leave blank carry its tokens."""
        crops = crops.to(self.model.device, self.model.input_dtype)
        if self.mask_prompt is None:
            feats = self.tuned.image_features(crops)
        else:
            feats = self.mask_prompt.encode(self.tuned, self.tuned_parts, crops, masks)
        return self.model.logit_scale * F.normalize(feats.float(), dim=-1) @ text.T

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"proposer": self.proposer, "cdt": self.cdt, "visual": image_tower(self.tuned.torch_module)}

    # --- training -------------------------------------------------------------------------------
    def fit(self, source: str, classes: Sequence[str] = SEEN_SHAPES, steps: int = 600, batch_size: int = 16, lr: float = 1e-3,
            tower_lr: float = 2e-5, rc_weight: float = 0.1, seed: int = 0, out: str | os.PathLike | None = None,
            checkpoint_every: int = 50, on_step: Callable[[int, int, float], None] | None = None,
            max_seconds: float | None = None, mask_prompt_steps: int = 0) -> OVSegmenter:  # fmt: skip
        """Train on ``source`` scenes (``synthetic:N[:seed]``) labelled with ``classes`` only.

        With ``mask_prompt_steps``, the training ends with OVSeg's mask prompt tuning: the fine-tuned
        tower frozen, a prompt of depth 3 learns on the region-noun crops; the crop classifier then uses it.

        With ``out``, a checkpoint is written there every ``checkpoint_every`` steps and a run that
        finds one resumes from it (same data and seed: the same result as an uninterrupted run); at
        the end the segmenter is saved there. ``on_step(step, steps, loss)`` reports progress;
        ``max_seconds`` stops early (the checkpoint then holds the progress).
        """
        classes = check_classnames(list(classes))
        self.classes_ = classes
        data = training_scenes(self.model, source, classes)
        text = self.text(classes)
        self._copy_tower()  # every fit starts from the base model
        self.mask_prompt = None
        with torch.random.fork_rng(devices=[]):  # seeded initialisation; the caller's RNG is untouched
            torch.manual_seed(seed)
            self.proposer = MaskProposer(**self.proposer.config).to(self.model.device)
            self.cdt = ContentDependentTransfer(**self.cdt.config).to(self.model.device)
        heads = [*self.proposer.parameters(), *self.cdt.parameters()]
        tower = image_tower(self.tuned.torch_module).requires_grad_(True)  # the copy's own flags: the caller's model is untouched
        opt = torch.optim.AdamW([{"params": heads, "lr": lr}, {"params": tower.parameters(), "lr": tower_lr}],
                                weight_decay=1e-4)  # fmt: skip
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            frozen_tokens = torch.cat([self.frozen_tokens(data.pixels[i : i + 256]) for i in range(0, len(data.pixels), 256)])
        start = self._resume(out, opt, gen) if out is not None else 0
        t0 = time.perf_counter()
        with frozen(self.model.torch_module):
            for step in range(start, steps):
                idx = torch.randint(0, len(data.pixels), (batch_size,), generator=gen)
                crop_idx = torch.randint(0, len(data.crop_labels), (batch_size,), generator=gen)
                loss = self._loss(data, idx, crop_idx, frozen_tokens, text, rc_weight)
                opt.zero_grad()
                loss.backward()
                opt.step()
                self.steps_done_ = step + 1
                if out is not None and (self.steps_done_ % checkpoint_every == 0 or self.steps_done_ == steps):
                    self._checkpoint(out, opt, gen)
                if on_step is not None:
                    on_step(step + 1, steps, loss.item())
                if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
                    break
        if self.steps_done_ == steps and mask_prompt_steps > 0:
            self.mask_prompt = tune_mask_prompt(self.tuned, data.crops, data.crop_masks, data.crop_labels, text,
                                                steps=mask_prompt_steps, seed=seed)  # fmt: skip
        if out is not None and self.steps_done_ == steps:
            self.save(out)
        return self

    def _loss(self, data: Scenes, idx: Tensor, crop_idx: Tensor, frozen_tokens: Tensor, text: Tensor, rc_weight: float) -> Tensor:
        device = self.model.device
        pixels = data.pixels[idx].to(device)
        instances = [data.instances[i].to(device) for i in idx]
        labels = [data.labels[i].to(device) for i in idx]
        mask_logits, objectness = self.proposer(frozen_tokens[idx], pixels)
        loss = proposer_loss(mask_logits, objectness, instances, data.ignore[idx].to(device))
        tokens, dense = self.tuned_features(pixels)
        loss = loss + representation_compensation(tokens, frozen_tokens[idx], rc_weight)
        classifier = self.cdt(text.expand(len(idx), -1, -1), dense)  # (B, C, E)
        proposals = mask_logits.detach().sigmoid()
        scale = self.model.logit_scale
        cls_loss = ma_loss = dense.new_zeros(())
        for b in range(len(idx)):
            if not len(labels[b]):
                continue
            gt = mask_pool(dense[b : b + 1], instances[b][None])[0]
            cls_loss = cls_loss + F.cross_entropy(scale * gt @ classifier[b].T, labels[b])
            pooled = mask_pool(dense[b : b + 1], proposals[b : b + 1])[0]
            ma_loss = ma_loss + mask_aware_loss(scale * pooled @ classifier[b].T, mask_logits[b].detach().flatten(1),
                                                instances[b].flatten(1), labels[b])  # fmt: skip
        crop_logits = self.crop_logits(data.crops[crop_idx], data.crop_masks[crop_idx], text)
        crop_loss = F.cross_entropy(crop_logits, data.crop_labels[crop_idx].to(device))
        return loss + (cls_loss + ma_loss) / len(idx) + crop_loss

    def _state(self) -> dict[str, dict[str, Tensor]]:
        return {name: {k: v.detach().cpu() for k, v in m.state_dict().items()} for name, m in self.modules().items()}

    def _load_state(self, state: dict[str, dict[str, Tensor]]) -> None:
        for name, module in self.modules().items():
            module.load_state_dict(state[name])

    def _checkpoint(self, out: str | os.PathLike, opt: torch.optim.Optimizer, gen: torch.Generator) -> None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_target(folder / CHECKPOINT) as tmp:
            torch.save({"step": self.steps_done_, "modules": self._state(), "optimizer": opt.state_dict(),
                        "generator": gen.get_state(), "classes": self.classes_}, tmp)  # fmt: skip

    def _resume(self, out: str | os.PathLike, opt: torch.optim.Optimizer, gen: torch.Generator) -> int:
        path = Path(out) / CHECKPOINT
        if not path.exists():
            return 0
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["classes"] != self.classes_:
            raise InputError(f"{path} was trained on classes {state['classes']}, not {self.classes_}; use another --out")
        self._load_state(state["modules"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        self.steps_done_ = int(state["step"])
        return self.steps_done_

    # --- saving ---------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write the config and the trained weights (safetensors) to ``folder``; its checkpoint is dropped."""
        from safetensors.torch import save_file

        config = {"model": self.model.name, "pretrained": self.pretrained, "method": self.method, "queries": self.proposer.config["queries"],
                  "dim": self.proposer.config["dim"], "crop_weight": self.crop_weight, "templates": self.templates,
                  "min_score": self.min_score, "frozen_weights": list(self.frozen_weights), "classes": self.classes_, "steps": self.steps_done_,
                  "mask_prompt": self.mask_prompt is not None}  # fmt: skip
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for name, state in self._state().items():  # each file atomic; the config last, so a folder with one is complete
            with atomic_target(folder / f"{name}.safetensors") as tmp:
                save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
        (folder / MASK_PROMPT).unlink(missing_ok=True)
        if self.mask_prompt is not None:
            self.mask_prompt.save(folder / MASK_PROMPT)
        write_json(config, folder / CONFIG)
        (folder / CHECKPOINT).unlink(missing_ok=True)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, model=None, device: str = "cpu") -> OVSegmenter:
        """A saved segmenter; ``model``: the loaded base model (default: load the one it names)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / CONFIG).is_file():
            raise InputError(f"{folder} is not a trained segmenter folder (no {CONFIG}); train one with cliplab segmenter train")
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
        if model is None:
            from cliplab.models import load_model

            model = load_model(config["model"], pretrained=config["pretrained"], device=device)
        seg = cls(model, config["method"], config["queries"], config["dim"], config["crop_weight"], config["templates"],
                  config["min_score"], config["pretrained"], config.get("frozen_weights", FROZEN_WEIGHTS))  # fmt: skip
        seg._load_state({name: load_file(str(folder / f"{name}.safetensors")) for name in seg.modules()})
        seg.classes_, seg.steps_done_ = config["classes"], config["steps"]
        if config.get("mask_prompt"):
            seg.mask_prompt = MaskPrompt.load(folder / MASK_PROMPT).to(seg.model.device)
        return seg

    # --- inference ------------------------------------------------------------------------------
    def input_pixels(self, image: Image.Image) -> Tensor:
        """(1, 3, S, S): the image resized to the model's input square, normalised."""
        mean, std = (torch.tensor(v).view(3, 1, 1) for v in pixel_normalisation(self.model))
        resized = image.convert("RGB").resize((self.side, self.side), Image.BICUBIC)
        return ((torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255).permute(2, 0, 1) - mean) / std)[None]

    @torch.inference_mode()
    def propose(self, image: ImageInput) -> tuple[np.ndarray, np.ndarray]:
        """The trained proposer's binary masks (K, H, W) at the image's size and their objectness scores."""
        image = to_pil(image)
        logits, objectness = self.proposer(self.frozen_tokens(self.input_pixels(image)), self.input_pixels(image).to(self.model.device))
        logits = F.interpolate(logits, size=(image.height, image.width), mode="bilinear", align_corners=False)
        return select_masks(logits[0], objectness[0], self.min_score)

    @torch.inference_mode()
    def classify(self, image: ImageInput, masks: np.ndarray, classes: Sequence[str]) -> np.ndarray:
        """(K, C) class probabilities of masks (K, H, W) of ``image``: MAFT+'s mask pooling with CDT,
        ensembled with OVSeg's masked-crop classification (λ = ``crop_weight``), then with the frozen
        model's context crops (``frozen_weights``; see the module docstring)."""
        image = to_pil(image)
        text = self.text(classes)
        _, dense = self.tuned_features(self.input_pixels(image))
        classifier = self.cdt(text[None], dense)[0]
        pooled = mask_pool(dense, torch.from_numpy(masks)[None].to(dense.device))[0]
        log_pool = torch.log_softmax(self.model.logit_scale * pooled @ classifier.T, -1)
        crops, crop_masks = masked_crops(self.tuned, image, masks)
        log_crop = torch.log_softmax(self.crop_logits(crops, crop_masks, text), -1)
        log_in = (1 - self.crop_weight) * log_pool + self.crop_weight * log_crop
        seen, unseen = self.frozen_weights
        weight = torch.tensor([seen if c in self.classes_ else unseen for c in classes], device=log_in.device)
        if not weight.any():
            return torch.softmax(log_in, -1).cpu().numpy()
        p_out = torch.from_numpy(region_probabilities(self.model, image, list(masks), text)).to(log_in.device)
        return torch.softmax((1 - weight) * log_in + weight * p_out.clamp_min(1e-12).log(), -1).cpu().numpy()

    def proposal_masks(self, image: Image.Image, classes: Sequence[str], proposals) -> tuple[np.ndarray, np.ndarray]:
        """Masks (K, H, W) bool and scores (K,) of ``proposals`` (see :meth:`segment`)."""
        if isinstance(proposals, str):
            if proposals == "learned":
                return self.propose(image)
            if proposals == "dense":
                from cliplab.dense.segment import segment

                masks = np.array(foreground_regions(segment(self.model, image, classes, method="naclip").labels))
                return masks, np.ones(len(masks))
            raise InputError(f"proposals is 'learned', 'dense', a proposer or an array of masks, got {proposals!r}")
        if hasattr(proposals, "propose"):
            masks, scores = proposals.propose(image)
        else:
            masks = np.asarray(proposals, dtype=bool)
            scores = np.ones(len(masks))
        if masks.ndim != 3 or masks.shape[1:] != (image.height, image.width):
            raise InputError(f"proposal masks must be (K, {image.height}, {image.width}), got shape {masks.shape}")
        return masks, scores

    def segment(self, image: ImageInput, classes: Sequence[str], proposals="learned") -> Segmentation:
        """Segment ``image`` into ``classes`` (any names) plus ``background`` first.

        proposals: ``"learned"`` (the trained proposer), ``"dense"`` (connected foreground regions of
        the training-free :func:`cliplab.segment`, naclip), a proposer with ``propose(image) -> (masks,
        scores)`` (e.g. :class:`~cliplab.dense.sam.SamProposer`) or user masks (K, H, W) bool.
        """
        image = to_pil(image)
        names = check_classnames(list(classes))
        if BACKGROUND in names:
            raise InputError(f"class {BACKGROUND!r} is added by the segmenter; drop it from the classes")
        masks, scores = self.proposal_masks(image, names, proposals)
        keep = masks.reshape(len(masks), -1).any(1) if len(masks) else np.zeros(0, bool)
        masks, scores = masks[keep], scores[keep]
        probs = np.zeros((1 + len(names), image.height, image.width), np.float32)
        probs[0] = 1.0
        if len(masks):
            p = self.classify(image, masks, names)
            order = np.argsort(scores)  # the most confident mask is painted last
            for k in order:
                probs[:, masks[k]] = 0.0
                probs[1:, masks[k]] = p[k][:, None]
        return Segmentation([BACKGROUND, *names], probs.argmax(0).astype(np.int64), probs)


class BoundSegmenter:
    """An :class:`OVSegmenter` bound to one class list, with :class:`~cliplab.dense.segment.Segmenter`'s
    call shape (what ``eval --task segmentation --segmenter`` runs)."""

    method = "trained"
    refine = None
    regions = False
    refiner = None

    def __init__(self, segmenter: OVSegmenter, classes: Sequence[str], proposals: str = "learned") -> None:
        self.segmenter, self.classes, self.proposals = segmenter, list(classes), proposals

    def __call__(self, image: ImageInput) -> Segmentation:
        return self.segmenter.segment(image, self.classes, self.proposals)

    def many(self, images: Sequence[ImageInput], batch_size: int = 32) -> list[Segmentation]:
        return [self(im) for im in images]
