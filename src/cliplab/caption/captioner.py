"""``Captioner``: a LightCap-style captioner on a frozen CLIP model (concepts -> modulator -> small decoder).

    cap = Captioner("cliplab:shapes-tiny", steps=3000).fit("synthetic:20000")   # captions from the source
    cap.caption(["scene.png"])                                                   # ["a small red star at ..."]
    cap.save("my-captioner"); Captioner.load("my-captioner")
    small = Captioner(width=128, ensemble_heads=2).fit("synthetic:20000", teachers=[t1, t2])  # LightCap's ensemble distillation

The CLIP model stays frozen; its embedding and grid tokens (``CaptionFeatureModel``) go through the
feature store, so they are cached like any embedding. What is trained: the concept scorer (BCE against
the concepts the captions name), the modulator and the decoder (cross-entropy on the caption tokens;
with teachers, also their token distributions, ``cliplab.caption.distill``).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cliplab.caption.concepts import as_concepts, concept_labels
from cliplab.caption.decoding import beam_search, greedy
from cliplab.caption.features import CaptionFeatureModel, split_rows
from cliplab.caption.network import CaptionNet
from cliplab.caption.vocab import EOT, PAD, SOT, CaptionVocab
from cliplab.errors import InputError, ModelLoadError, warn

CONFIG, WEIGHTS = "captioner.json", "captioner.safetensors"
FORMAT = "cliplab-captioner/1"
BUNDLED = Path(__file__).resolve().parent / "bundled"
BUNDLED_FOR = {"cliplab:shapes-tiny": BUNDLED / "shapes-tiny"}  # model name -> its bundled captioner
DECODER_PRECISIONS = ("fp32", "bf16", "int8")


class Captioner:
    """A captioner for ``model`` (a spec or a loaded cliplab model; default the bundled shapes-tiny).

    concepts: the concept vocabulary (words, or word -> text to embed); default the synthetic scenes'
        33 attribute values. k: concepts kept per image. grid: grid tokens per side of the feature map.
    width, layers, heads: the decoder. max_length: the most tokens a caption has (end of text included).
    ensemble_heads: parallel output heads whose distributions are averaged (LightCap's ensemble heads).
    use_concepts, use_modulator: False drops the concept extractor (and with it the modulator, which reads
        its concepts) or only the modulator (LightCap's ablations).
    steps, batch_size, lr, concept_weight (of the concept BCE), seed: training.
    temperature, distill_weight: with teachers (``fit(..., teachers=)``), the softmax temperature T and the
        weight alpha of the distillation term, ``(1 - alpha) CE + alpha T^2 KL`` (``cliplab.caption.distill``).
    Fitted: ``vocab_``, ``net_``, ``history_`` (loss every 50 steps).
    """

    def __init__(self, model: Any = None, *, concepts: Sequence[str] | dict[str, str] | None = None, k: int = 8, grid: int = 2,
                 width: int = 256, layers: int = 2, heads: int = 4, max_length: int = 40, steps: int = 3000, batch_size: int = 64,
                 lr: float = 1e-3, concept_weight: float = 0.5, seed: int = 0, ensemble_heads: int = 1, use_concepts: bool = True,
                 use_modulator: bool = True, temperature: float = 2.0, distill_weight: float = 0.5) -> None:  # fmt: skip
        self.model, self.concepts, self.k, self.grid = model, concepts, k, grid
        self.width, self.layers, self.heads, self.max_length = width, layers, heads, max_length
        self.steps, self.batch_size, self.lr, self.concept_weight, self.seed = steps, batch_size, lr, concept_weight, seed
        self.ensemble_heads, self.use_concepts, self.use_modulator = ensemble_heads, use_concepts, use_modulator
        self.temperature, self.distill_weight = temperature, distill_weight
        self._features: CaptionFeatureModel | None = None
        self._prepared: dict[str, torch.nn.Module] = {}

    # --- the frozen model's features -------------------------------------------------------------
    def feature_model(self) -> CaptionFeatureModel:
        """The model whose image rows the captioner reads (``CaptionFeatureModel``), loaded once."""
        if self._features is None:
            from cliplab.models import DEFAULT_MODEL, load_model

            base = load_model(self.model or DEFAULT_MODEL) if self.model is None or isinstance(self.model, str) else self.model
            self._features = CaptionFeatureModel(base, self.grid)
        return self._features

    def features(self, images: Any, **embed_options: Any):
        """``cliplab.embed`` of ``images`` with :meth:`feature_model` (``embed_options``: cache_dir, batch_size, ...);
        a list of in-memory images (PIL images, uint8 arrays) is embedded directly, its ids ``"0"``, ``"1"``, ..."""
        from cliplab.features import Features, embed

        if isinstance(images, Features):
            return images
        if isinstance(images, (list, tuple)) and images and not isinstance(images[0], (str, os.PathLike)):
            X = self.feature_model().encode_images(images, batch_size=embed_options.get("batch_size") or 64)
            return Features(X, ids=[str(i) for i in range(len(X))])
        return embed(self.feature_model(), images, **embed_options)

    def split_features(self, X: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Caption-feature rows -> (unit image embeddings (N, E), unit grid tokens (N, n, C))."""
        fm = self.feature_model()
        return split_rows(X, fm.base.embed_dim, fm.width)

    # --- training --------------------------------------------------------------------------------
    def fit(self, images: Any, captions: Sequence[str] | Sequence[Sequence[str]] | None = None, *, teachers: Sequence[Captioner] | None = None,
            progress: bool = False, on_log: Callable[[dict], Any] | None = None, **embed_options: Any) -> Captioner:  # fmt: skip
        """Train on ``images`` (a source spec, an ``ImageSource``, paths, or ``Features`` of :meth:`feature_model`)
        and their ``captions`` (one or several per image; default the source's own captions); with ``teachers``
        (fitted captioners on the same model, trained on the same captions), distilled from them."""
        feats = self.features(images, **embed_options)
        if captions is None:
            captions = feats.captions
            if captions is None or not any(captions):
                raise InputError("the images have no captions; pass captions= or a source with captions (synthetic:<n>, a manifest with a caption column)")
        elif len(captions) != len(feats):
            raise InputError(f"{len(captions)} captions for {len(feats)} images; give one caption (or a list) per image")
        return self.fit_features(feats.X, captions, teachers=teachers, progress=progress, on_log=on_log)

    def fit_features(self, X: Any, captions: Sequence[str] | Sequence[Sequence[str]], *, teachers: Sequence[Captioner] | None = None,
                     progress: bool = False, on_log: Callable[[dict], Any] | None = None) -> Captioner:  # fmt: skip
        """Train on caption-feature rows ``X`` (of :meth:`feature_model`) and their captions (and ``teachers``, as :meth:`fit`)."""
        from cliplab.caption.distill import Teachers

        self._check()
        ensemble = Teachers(teachers, self.feature_model().name) if teachers else None
        if ensemble is None and self.ensemble_heads > 1:
            raise InputError(f"{self.ensemble_heads} ensemble heads need teachers to distil from (one per head); pass teachers= or use 1 head")
        if ensemble is not None and self.ensemble_heads not in (1, len(ensemble)):
            raise InputError(f"{self.ensemble_heads} ensemble heads for {len(ensemble)} teachers; use 1 head (the averaged teachers) or one head per teacher")
        image, grid = self.split_features(X)
        rows, texts = [], []
        for i, caps in enumerate(captions):
            for text in [caps] if isinstance(caps, str) else caps or []:  # an image without captions adds none
                if text and text.strip():
                    rows.append(i)
                    texts.append(text)
        if not texts:
            raise InputError("no image has a caption to train on")
        base = self.feature_model().base
        self.concepts_ = as_concepts(self.concepts)
        self.vocab_ = CaptionVocab.build(base, texts) if ensemble is None else ensemble.vocab  # a student writes its teachers' words
        tokens = self.vocab_.encode(base, texts, self.max_length)
        labels = torch.from_numpy(concept_labels(texts, list(self.concepts_)))
        concept_embeddings = torch.from_numpy(base.encode_texts(list(self.concepts_.values())))
        pair_rows = torch.tensor(rows)
        with torch.random.fork_rng(devices=[]):  # initialisation and dropout from the seed; the caller's RNG untouched
            torch.manual_seed(self.seed)
            self.net_ = self._new_net(concept_embeddings, grid.shape[1], grid.shape[2])
            self.history_ = self._train(image, grid, pair_rows, tokens, labels, ensemble, progress, on_log)
        self.net_.eval()
        self._prepared = {}
        return self

    def _check(self) -> None:
        for name in ("k", "grid", "width", "layers", "heads", "max_length", "steps", "batch_size", "ensemble_heads"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.width % self.heads:
            raise InputError(f"width ({self.width}) must be a multiple of heads ({self.heads})")
        if self.temperature <= 0 or not 0 <= self.distill_weight <= 1:
            raise InputError(f"temperature must be positive and distill_weight in [0, 1], got {self.temperature} and {self.distill_weight}")

    def _new_net(self, concept_embeddings: torch.Tensor, grid_tokens: int, channels: int) -> CaptionNet:
        return CaptionNet(concept_embeddings, concept_embeddings.shape[1], channels, grid_tokens, len(self.vocab_), k=self.k,
                          width=self.width, layers=self.layers, heads=self.heads, max_length=self.max_length, ensemble_heads=self.ensemble_heads,
                          use_concepts=self.use_concepts, use_modulator=self.use_modulator)  # fmt: skip

    def _train(self, image, grid, pair_rows, tokens, labels, teachers, progress, on_log) -> list[dict]:
        """AdamW, linear warm-up over the first tenth (at most 200 steps), cosine decay to 0; gradients clipped at 1.
        Loss: caption cross-entropy (of the heads' averaged distribution) + concept_weight x concept BCE; with
        ``teachers`` the cross-entropy becomes ``(1 - alpha) CE + alpha T^2 KL`` (``cliplab.caption.distill``)."""
        from cliplab.caption.distill import distillation_loss, ensemble_targets
        from cliplab.caption.network import combine_heads

        net = self.net_.train()
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=0.01)
        warmup = max(1, min(200, self.steps // 10))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / self.steps))))
        gen = torch.Generator().manual_seed(self.seed)
        bar = _bar(self.steps, progress)
        history, running = [], []
        for step in range(1, self.steps + 1):
            pick = torch.randint(len(pair_rows), (self.batch_size,), generator=gen)
            rows, seq = pair_rows[pick], tokens[pick]
            seq = seq[:, : int((seq != PAD).sum(1).max())]
            memory, concept_logits = net.memory(image[rows], grid[rows])
            head_logits = net.head_logits(memory, seq[:, :-1])
            ce = F.cross_entropy(combine_heads(head_logits).flatten(0, 1), seq[:, 1:].flatten(), ignore_index=PAD)
            bce = F.binary_cross_entropy_with_logits(concept_logits, labels[pick]) if concept_logits is not None else torch.zeros(())
            if teachers is None:
                loss, kd = ce + self.concept_weight * bce, None
            else:
                targets = ensemble_targets(teachers.logits(image[rows], grid[rows], seq[:, :-1]), self.ensemble_heads, self.temperature)
                kd = distillation_loss(head_logits, targets, seq[:, 1:] != PAD, self.temperature)
                loss = (1 - self.distill_weight) * ce + self.distill_weight * kd + self.concept_weight * bce
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            sched.step()
            running.append((float(ce.detach()), float(bce.detach())) + (() if kd is None else (float(kd.detach()),)))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            if step % 50 == 0 or step == self.steps:
                means = [round(float(np.mean(v)), 5) for v in zip(*running)]
                entry = {"step": step, **dict(zip(("caption_loss", "concept_loss", "distill_loss"), means))}
                history.append(entry)
                running = []
                if on_log is not None:
                    on_log(entry)
        if bar is not None:
            bar.close()
        return history

    # --- captioning ------------------------------------------------------------------------------
    def caption(self, images: Any, *, beam: int = 1, max_length: int | None = None, precision: str = "fp32", **embed_options: Any) -> list[str]:
        """One caption per image of ``images`` (as :meth:`fit` takes them; unreadable images left out)."""
        return self.caption_features(self.features(images, **embed_options).X, beam=beam, max_length=max_length, precision=precision)

    @torch.inference_mode()
    def caption_features(self, X: Any, *, beam: int = 1, max_length: int | None = None, precision: str = "fp32", batch_size: int = 256) -> list[str]:
        """Captions of caption-feature rows: greedy (``beam=1``) or beam search; at most ``max_length``
        tokens (default the trained one); the decoder runs at ``precision`` (fp32, bf16 or int8, CPU)."""
        net = self._net(precision)
        limit = self.max_length if max_length is None else int(max_length)
        if not 1 <= limit <= net.max_length:
            raise InputError(f"max_length must be 1..{net.max_length} (the longest caption this captioner was trained for), got {limit}")
        image, grid = self.split_features(X)
        dtype = next((p.dtype for p in net.parameters() if p.is_floating_point()), torch.float32)
        base = self.feature_model().base
        out: list[str] = []
        for start in range(0, len(image), batch_size):
            memory, _ = net.memory(image[start : start + batch_size].to(dtype), grid[start : start + batch_size].to(dtype))

            def step(prefix: torch.Tensor, rows: torch.Tensor, memory: torch.Tensor = memory) -> torch.Tensor:
                return torch.log_softmax(net(memory[rows], prefix)[:, -1].float(), dim=-1)

            if beam == 1:
                ids = greedy(step, len(memory), SOT, EOT, limit)
            else:
                ids = beam_search(step, len(memory), SOT, EOT, limit, beam=beam)
            out.extend(self.vocab_.decode(base, seq) for seq in ids)
        return out

    def _net(self, precision: str) -> torch.nn.Module:
        """The decoder at ``precision``: fp32 as trained; bf16 weights cast; int8 Linear layers quantised
        dynamically (``cliplab.models.precision``, attention rebuilt with Linear projections first)."""
        if not hasattr(self, "net_"):
            raise InputError("this Captioner is not fitted; call fit() or Captioner.load() first")
        if precision not in DECODER_PRECISIONS:
            raise InputError(f"decoder precision {precision!r} is not one of {', '.join(DECODER_PRECISIONS)}")
        if precision == "fp32":
            return self.net_
        if precision not in self._prepared:
            from cliplab.models.precision import prepare_module, replace_attention

            net = copy.deepcopy(self.net_)
            replace_attention(net)
            self._prepared[precision] = prepare_module(net, precision, torch.device("cpu")).eval()
        return self._prepared[precision]

    # --- files -------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        fm = self.feature_model()
        return {
            "format": FORMAT, "model": fm.base.name, "model_identity": fm.base.identity,
            "embed_dim": fm.base.embed_dim, "channels": fm.width, "grid_tokens": fm.tokens,
            "concepts": self.concepts_, "vocab": self.vocab_.model_ids,
            "params": {name: getattr(self, name) for name in ("k", "grid", "width", "layers", "heads", "max_length", "steps",
                                                             "batch_size", "lr", "concept_weight", "seed", "ensemble_heads", "use_concepts",
                                                             "use_modulator", "temperature", "distill_weight")},
            "history": self.history_,
        }  # fmt: skip

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``captioner.json`` and ``captioner.safetensors`` (weights stored as fp16) to the folder ``path`` (new or empty)."""
        from safetensors.torch import save as safetensors_bytes

        from cliplab.files import atomic_folder, atomic_write, write_json

        if not hasattr(self, "net_"):
            raise InputError("this Captioner is not fitted; nothing to save")
        state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in self.net_.state_dict().items()}
        with atomic_folder(path) as tmp:
            atomic_write(tmp / WEIGHTS, safetensors_bytes(state, metadata={"format": "pt"}))
            write_json(self.config(), tmp / CONFIG)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, model: Any = None) -> Captioner:
        """A saved captioner; ``path`` None: the bundled captioner of ``model`` (default the bundled model).
        ``model`` (a spec or a loaded model) defaults to the one the captioner was trained on."""
        from safetensors.torch import load_file

        folder = Path(path) if path is not None else bundled_captioner(model)
        try:
            config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
            state = load_file(os.fspath(folder / WEIGHTS))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read a captioner from {folder}: {exc}") from exc
        if config.get("format") != FORMAT:
            raise ModelLoadError(f"{folder / CONFIG} is not a cliplab captioner ({FORMAT})")
        cap = cls(model if model is not None else config["model"], concepts=config["concepts"], **config["params"])
        fm = cap.feature_model()
        if fm.base.name != config["model"]:
            warn(f"the captioner in {folder} was trained on {config['model']}'s features, not {fm.base.name}'s; its captions may be wrong")
        if (fm.base.embed_dim, fm.width, fm.tokens) != (config["embed_dim"], config["channels"], config["grid_tokens"]):
            raise ModelLoadError(f"the captioner in {folder} was trained on {config['model']} ({config['embed_dim']}-d embedding, "
                                 f"{config['grid_tokens']} x {config['channels']} grid); {fm.base.name} does not give those features")  # fmt: skip
        cap.concepts_, cap.vocab_, cap.history_ = config["concepts"], CaptionVocab(config["vocab"]), config["history"]
        cap.net_ = cap._new_net(torch.zeros(len(cap.concepts_), config["embed_dim"]), config["grid_tokens"], config["channels"])
        cap.net_.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        cap.net_.eval()
        return cap


def bundled_captioner(model: Any = None) -> Path:
    """The folder of the captioner shipped for ``model`` (a spec or a loaded model; default the bundled model)."""
    from cliplab.models import DEFAULT_MODEL

    name = getattr(model, "name", model) or DEFAULT_MODEL
    if name.startswith("cliplab:"):  # an alias ("cliplab:tiny") names its bundled model
        from cliplab.models.bundled import canonical_name

        name = "cliplab:" + canonical_name(name.removeprefix("cliplab:"))
    folder = BUNDLED_FOR.get(name)
    if folder is None:
        raise InputError(f"no captioner ships for {name}; train one with `cliplab caption train --model {name} --images SRC --out DIR` "
                         f"and pass it with --captioner DIR (bundled: {', '.join(BUNDLED_FOR)})")  # fmt: skip
    if not (folder / WEIGHTS).is_file():
        raise ModelLoadError(f"the bundled captioner of {name} is missing at {folder}; rebuild it with `python scripts/train_captioner.py --ship`")
    return folder


def _bar(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="captioner", unit="step", dynamic_ncols=True)
