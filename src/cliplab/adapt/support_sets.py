"""Support sets built without labels (SuS-X) or from captions (CapS-Adapter), for ``SupportSetAdapter``.

A support set is a labelled cache of image features (and, for CapS, the text features of a caption
per item) made from class prompts only. Sources (reference e, wave3 section 9):

* :class:`RetrievalSource`: the top-k images of an unlabelled pool per class text (SuS-LC, which
  queries LAION with one text per class); the pool is a search index, ``Features``, an array or
  anything ``cliplab.embed`` reads.
* :class:`GenerationSource`: images a generator draws for each class prompt (SuS-SD). A generator is
  any object with ``generate(prompt, n) -> list of PIL images``: :class:`SceneGenerator` renders
  synthetic scenes from the attributes a prompt names, :class:`DiffusersGenerator` wraps a diffusers
  text-to-image pipeline the user has on disk.
* :class:`CaptionSource`: captions of a few labelled images (given, or from any captioner), kept as
  caption features; with a generator, the images are redrawn from "{class prompt}. {caption}"
  (CapS-Adapter's ``generate_caps.py``).

    support = build_support_set(model, prompts, [GenerationSource(SceneGenerator(), n_per_class=16)])
    head = support.fit_adapter(text_weights)        # a fitted SupportSetAdapter
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

from cliplab.adapt.support import SupportSetAdapter
from cliplab.errors import InputError
from cliplab.validation import check_embeddings

ClassPrompts = Mapping[str, Sequence[str]]


@runtime_checkable
class ImageGenerator(Protocol):
    """What a generation source needs: ``generate(prompt, n)`` returns ``n`` PIL images of ``prompt``."""

    def generate(self, prompt: str, n: int) -> list[Image.Image]: ...


@dataclass
class SupportSet:
    """A labelled support set: image features ``X`` (M, D), one label per row, where each row came
    from (``sources``: "retrieval", "generation", "captions"), the pool ids of retrieved rows, and for
    caption-derived rows the caption text and its features (``caption_features``, (M, D) or None;
    rows without a caption carry their class prompt's features, so the caption affinity stays defined)."""

    X: np.ndarray
    labels: np.ndarray
    sources: list[str]
    ids: list[str | None]
    captions: list[str | None]
    caption_features: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.X)

    def counts(self) -> dict[str, int]:
        """Rows per class."""
        classes, n = np.unique(self.labels, return_counts=True)
        return {str(c): int(k) for c, k in zip(classes, n)}

    def fit_adapter(self, text_weights: Any, logit_scale: float | None = None, **params: Any) -> SupportSetAdapter:
        """A ``SupportSetAdapter`` fitted on this support set (``params``: its constructor arguments).

        ``text_weights``: (C, D) zero-shot weights whose rows follow the sorted class names, or a
        fitted ``ZeroShotClassifier``.

        No labelled image is used: without fixed alpha/beta/gamma the search runs on a stratified
        share of the support rows themselves (``val_fraction``), whose labels are the prompts that made them.
        """
        head = SupportSetAdapter(text_weights=text_weights, logit_scale=logit_scale, **params)
        return head.fit(self.X, self.labels, captions=self.caption_features)


def class_prompts(classes: Sequence[str] | ClassPrompts) -> dict[str, list[str]]:
    """class -> its prompts; a plain list of class names uses each name as its one prompt."""
    if isinstance(classes, Mapping):
        prompts = {str(c): [str(p) for p in ([v] if isinstance(v, str) else v)] for c, v in classes.items()}
    else:
        prompts = {str(c): [str(c)] for c in classes}
    if len(prompts) < 2:
        raise InputError(f"a support set needs at least two classes, got {sorted(prompts)}; pass class -> prompts")
    empty = [c for c, p in prompts.items() if not p]
    if empty:
        raise InputError(f"class {empty[0]!r} has no prompt; give every class at least one")
    return prompts


def prompt_weights(model: Any, prompts: ClassPrompts) -> np.ndarray:
    """(C, D) L2-normalised mean of each class's normalised prompt embeddings, rows in ``prompts`` order."""
    from cliplab.zeroshot.templates import ensemble_text_weights

    return ensemble_text_weights(model, list(prompts), {c: list(p) for c, p in prompts.items()})


# --- retrieval ------------------------------------------------------------------------------------
class RetrievalSource:
    """The ``k`` pool images nearest to each class's prompt-ensemble text embedding (SuS-LC).

    ``pool``: a ``SearchIndex`` or the folder ``cliplab index build`` wrote (the hits' vectors are read
    back, so the index type must keep them), a ``Features``, an (N, D) array of L2-normalised image
    embeddings, a list of PIL images, or a source ``cliplab.embed`` reads (a folder, manifest,
    "synthetic:<n>", image paths; ``embed_options`` go to it). ``exclusive``: an image
    goes only to the class whose text it is nearest to (it is never in two classes' lists); the
    reference lets the per-class queries overlap (``exclusive=False``).
    """

    name = "retrieval"

    def __init__(self, pool: Any, k: int = 16, exclusive: bool = False, embed_options: Mapping[str, Any] | None = None):
        if int(k) < 1:
            raise InputError(f"k={k}; retrieve at least one image per class")
        self.pool = pool
        self.k = int(k)
        self.exclusive = exclusive
        self.embed_options = dict(embed_options or {})

    def _vectors(self, model: Any) -> tuple[np.ndarray, list[str]]:
        """The pool's embeddings and ids (a search index is handled by ``_from_index``)."""
        from cliplab.features import Features

        pool = self.pool
        if isinstance(pool, Sequence) and not isinstance(pool, (str, np.ndarray)) and pool and isinstance(pool[0], Image.Image):
            return model.encode_images(list(pool)), [str(i) for i in range(len(pool))]
        if isinstance(pool, (str, os.PathLike)) or (isinstance(pool, Sequence) and not isinstance(pool, np.ndarray)):
            from cliplab.features import embed

            pool = embed(model, pool, **{"progress": False, **self.embed_options})
        if isinstance(pool, Features):
            _same_model(model, pool.identity, f"the pool features ({pool.model})")
            return check_embeddings(pool.X, name="pool features"), [str(i) for i in pool.ids]
        X = check_embeddings(pool, name="pool")
        return X, [str(i) for i in range(len(X))]

    def _from_index(self, index: Any, model: Any, W: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """The candidate rows of a search index: the top k per class (top k x C with ``exclusive``, of
        which ``retrieve`` keeps the rows nearest to their class), read back without loading the rest."""
        _same_model(model, index.info.get("identity") or "", f"the index ({index.model_name})")
        if W.shape[1] != index.dim:
            raise InputError(f"the index holds {index.dim}-dim vectors but the model's are {W.shape[1]}-dim; use the model it was built with")
        hits = index.search(W, k=self.k * (len(W) if self.exclusive else 1))
        ids = list(dict.fromkeys(h["id"] for per_class in hits for h in per_class))
        rows = index.metadata.rows_for_ids(ids)
        try:
            X = index.index.reconstruct_batch(np.array([rows[i] for i in ids], dtype=np.int64))
        except RuntimeError as exc:
            raise InputError("this search index keeps no vectors to read back; pass the features folder it was built from as the pool") from exc
        return check_embeddings(X, name="index vectors"), [str(i) for i in ids]

    def collect(self, model: Any, prompts: ClassPrompts) -> SupportSet:
        from cliplab.search import SearchIndex

        W = prompt_weights(model, prompts)
        pool = self.pool
        if isinstance(pool, (str, os.PathLike)) and os.path.isfile(os.path.join(pool, "index.json")):
            pool = SearchIndex.load(pool)  # a folder written by cliplab index build
        X, ids = self._from_index(pool, model, W) if isinstance(pool, SearchIndex) else self._vectors(model)
        if X.shape[1] != W.shape[1]:
            raise InputError(f"the pool has {X.shape[1]}-dim vectors but the model's are {W.shape[1]}-dim; embed the pool with the same model")
        rows, labels = retrieve(X, W, self.k, self.exclusive)
        names = np.array(list(prompts))
        return SupportSet(X[rows], names[labels], [self.name] * len(rows), [ids[r] for r in rows], [None] * len(rows))


def _same_model(model: Any, identity: str, what: str) -> None:
    """One InputError when ``identity`` names another model than ``model`` (unknown identities pass)."""
    from cliplab.search.index import model_difference

    differs = model_difference(getattr(model, "identity", "") or "", identity)
    if differs:
        raise InputError(f"{what} was embedded by another model than {getattr(model, 'name', 'this one')} ({differs} differ); "
                         "retrieve from features of the same model")  # fmt: skip


def _index_ids(index: Any, rows: np.ndarray) -> list[str]:
    records = index.metadata.records([int(r) for r in rows])
    return [str(records[int(r)]["id"]) for r in rows]


def retrieve(X: np.ndarray, W: np.ndarray, k: int, exclusive: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(rows, class index per row): the ``k`` rows of ``X`` with the highest cosine to each row of ``W``,
    best first per class. ``exclusive``: a row only counts for the class it is most similar to."""
    S = X @ W.T  # (N, C) cosines
    rows, labels = [], []
    for c in range(W.shape[0]):
        candidates = np.flatnonzero(S.argmax(axis=1) == c) if exclusive else np.arange(len(X))
        top = candidates[np.argsort(-S[candidates, c], kind="stable")[:k]]
        rows.append(top)
        labels.append(np.full(len(top), c))
    empty = [c for c, r in enumerate(rows) if not len(r)]
    if len(empty) == W.shape[0]:
        raise InputError("the pool is empty; give it images to retrieve from")
    return np.concatenate(rows).astype(np.int64), np.concatenate(labels).astype(np.int64)


# --- generation -----------------------------------------------------------------------------------
class GenerationSource:
    """``n_per_class`` generated images per class, shared out over its prompts (SuS-SD)."""

    name = "generation"

    def __init__(self, generator: ImageGenerator, n_per_class: int = 16):
        if not callable(getattr(generator, "generate", None)):
            raise InputError(f"{type(generator).__name__} has no generate(prompt, n) method; wrap your generator in one")
        if int(n_per_class) < 1:
            raise InputError(f"n_per_class={n_per_class}; generate at least one image per class")
        self.generator = generator
        self.n_per_class = int(n_per_class)

    def collect(self, model: Any, prompts: ClassPrompts) -> SupportSet:
        images, labels = [], []
        for label, texts in prompts.items():
            for j, prompt in enumerate(texts):
                n = self.n_per_class // len(texts) + (j < self.n_per_class % len(texts))
                if n:
                    images += _checked_images(self.generator.generate(prompt, n), n, prompt)
                    labels += [label] * n
        X = model.encode_images(images)
        return SupportSet(X, np.array(labels), [self.name] * len(X), [None] * len(X), [None] * len(X))


def _checked_images(images: Any, n: int, prompt: str) -> list[Image.Image]:
    images = list(images)
    if len(images) != n or not all(isinstance(im, Image.Image) for im in images):
        raise InputError(f"the generator returned {len(images)} items for {n} images of {prompt!r}; it must return n PIL images")
    return images


# the words of scene prompts, longest phrase first so "top left" wins over "top" and "left"
def _scene_vocabulary() -> dict[str, list[tuple[str, str]]]:
    from cliplab.data import synthetic

    position = [(p, k) for k, phrases in synthetic._POSITION_SYNONYMS.items() for p in phrases]
    position += [(k, k) for k in synthetic.POSITIONS]
    size = [(w, k) for k, words in synthetic._SIZE_SYNONYMS.items() for w in words]
    vocab = {
        "position": position,
        "size": size,
        "color": [(c, c) for c in synthetic.COLOR_NAMES],
        "shape": [(s, s) for s in synthetic.SHAPES],
        "background": [(f"{b} background", b) for b in synthetic.BACKGROUNDS],
    }
    return {a: sorted(v, key=lambda pair: -len(pair[0])) for a, v in vocab.items()}


def parse_scene_prompt(prompt: str) -> dict[str, str]:
    """The scene attributes a prompt names: {"size": "small", "position": "top left", ...}.

    Only the first object a prompt describes is read (synthetic single-object scenes); words are matched
    whole, and each attribute takes its longest phrase found ("in the top-left corner" -> top left).
    """
    text = " " + re.sub(r"[^a-z\- ]+", " ", prompt.lower()) + " "
    found: dict[str, str] = {}
    for attribute, phrases in _scene_vocabulary().items():
        for phrase, value in phrases:
            at = text.find(f" {phrase} ")
            if at >= 0:
                found[attribute] = value
                text = text[:at] + " " + "_" * len(phrase) + " " + text[at + len(phrase) + 2 :]
                break
    return found


class SceneGenerator:
    """The synthetic renderer as a text-to-image generator: ``generate(prompt, n)`` draws ``n``
    single-object scenes with every attribute the prompt names fixed and the others resampled
    (the SD stand-in of the wave-3 notes). Scenes are seeded by (seed, prompt, i)."""

    def __init__(self, seed: int = 0, image_size: int = 64, split: str = "train"):
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.split = split

    def specs(self, prompt: str, n: int) -> list[Any]:
        """The ``n`` scene specs ``generate`` renders for ``prompt`` (``cliplab.data.synthetic.SceneSpec``)."""
        from dataclasses import replace

        from cliplab.data import synthetic

        named = parse_scene_prompt(prompt)
        if not named:
            raise InputError(f"the prompt {prompt!r} names no scene attribute (shape, colour, size, position or "
                             "background); the scene generator renders only what a prompt names")  # fmt: skip
        pairs = set(synthetic._allowed_pairs(self.split))
        shape, color = named.get("shape"), named.get("color")
        if shape and color and (shape, color) not in pairs:
            raise InputError(f"a {color} {shape} is not drawn in the {self.split!r} split; name another pair or split")
        rng = np.random.default_rng([self.seed, zlib.crc32(prompt.encode())])
        specs = []
        for _ in range(n):
            spec = synthetic.sample_spec(rng, self.split, max_objects=1)
            obj = spec.objects[0]
            # a named colour or shape draws its partner from the pairs the split allows
            if shape and not color:
                obj = replace(obj, color=_partner(rng, [c for s, c in pairs if s == shape]))
            if color and not shape:
                obj = replace(obj, shape=_partner(rng, [s for s, c in pairs if c == color]))
            obj = replace(obj, **{a: v for a, v in named.items() if a != "background"})
            specs.append(replace(spec, objects=(obj,), background=named.get("background", spec.background)))
        return specs

    def generate(self, prompt: str, n: int) -> list[Image.Image]:
        from cliplab.data import synthetic

        return [synthetic.render(spec, self.image_size).image for spec in self.specs(prompt, n)]


def _partner(rng: np.random.Generator, options: list[str]) -> str:
    options = sorted(options)
    return options[int(rng.integers(len(options)))]


class DiffusersGenerator:
    """A diffusers text-to-image pipeline behind ``generate(prompt, n)``; diffusers is not a cliplab
    dependency: pass a pipeline you built, or ``from_pretrained`` a folder of weights on disk.

    Defaults are SuS-X's and CapS-Adapter's Stable Diffusion settings (guidance 9.5, 85 steps).
    Each call seeds a ``torch.Generator`` from (seed, prompt), so the same prompt gives the same images.
    """

    def __init__(self, pipeline: Any, guidance_scale: float = 9.5, num_inference_steps: int = 85,
                 batch_size: int = 5, seed: int = 0, **call_options: Any):  # fmt: skip
        if not callable(pipeline):
            raise InputError(f"{type(pipeline).__name__} is not callable; pass a diffusers pipeline (pipe(prompt=...).images)")
        self.pipeline = pipeline
        self.guidance_scale = guidance_scale
        self.num_inference_steps = num_inference_steps
        self.batch_size = max(1, int(batch_size))
        self.seed = int(seed)
        self.call_options = call_options

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | None = None, **options: Any) -> DiffusersGenerator:
        """Load ``diffusers.AutoPipelineForText2Image`` from a local folder (never the network)."""
        try:
            import diffusers
        except ImportError as exc:
            raise InputError("generating support images with a diffusion model needs diffusers: pip install diffusers") from exc
        if not os.path.isdir(path):
            raise InputError(f"{path} is not a folder; pass the local folder of a diffusers text-to-image pipeline")
        pipeline = diffusers.AutoPipelineForText2Image.from_pretrained(str(path), local_files_only=True)
        if device:
            pipeline = pipeline.to(device)
        return cls(pipeline, **options)

    def generate(self, prompt: str, n: int) -> list[Image.Image]:
        import torch

        device = getattr(self.pipeline, "device", "cpu")
        generator = torch.Generator(device=str(device)).manual_seed(self.seed * 1_000_003 + zlib.crc32(prompt.encode()))
        images: list[Image.Image] = []
        while len(images) < n:
            batch = min(self.batch_size, n - len(images))
            out = self.pipeline(prompt=prompt, num_images_per_prompt=batch, guidance_scale=self.guidance_scale,
                                num_inference_steps=self.num_inference_steps, generator=generator, **self.call_options)  # fmt: skip
            images += _checked_images(out.images, batch, prompt)
        return images


def open_generator(spec: str, seed: int = 0, device: str | None = None) -> ImageGenerator:
    """A generator from its command-line name: "scene" (the synthetic renderer) or the local folder of
    a diffusers text-to-image pipeline."""
    if spec == "scene":
        return SceneGenerator(seed=seed)
    if os.path.isdir(spec):
        return DiffusersGenerator.from_pretrained(spec, device=device, seed=seed)
    raise InputError(f"generator {spec!r} is neither 'scene' nor a folder; pass scene or the local folder of a diffusers pipeline")


# --- captions (CapS-Adapter) ----------------------------------------------------------------------
class CaptionSource:
    """Support items from a few labelled images and their captions (CapS-Adapter).

    ``captions``: one per image, or None to ask ``captioner(image) -> str``. Each item keeps the text
    feature of its caption. Without a generator the item's image is the labelled image itself; with
    one, ``n_per_caption`` images are drawn from "{first class prompt}. {caption}" (``generate_caps.py``
    prompts "A photo of {class}. {caption}") and each carries the caption.
    """

    name = "captions"

    def __init__(self, images: Sequence[Image.Image], labels: Sequence[str], captions: Sequence[str] | None = None,
                 captioner: Callable[[Image.Image], str] | None = None, generator: ImageGenerator | None = None,
                 n_per_caption: int = 1):  # fmt: skip
        if len(images) != len(labels):
            raise InputError(f"{len(images)} images but {len(labels)} labels; pass one label per image")
        if captions is None and captioner is None:
            raise InputError("the caption source needs captions (one per image) or a captioner(image) -> str")
        if captions is not None and len(captions) != len(images):
            raise InputError(f"{len(captions)} captions for {len(images)} images; pass one caption per image")
        if int(n_per_caption) < 1:
            raise InputError(f"n_per_caption={n_per_caption}; draw at least one image per caption")
        self.images = list(images)
        self.labels = [str(lab) for lab in labels]
        self.captions = None if captions is None else [str(c) for c in captions]
        self.captioner = captioner
        self.generator = generator
        self.n_per_caption = int(n_per_caption)

    def collect(self, model: Any, prompts: ClassPrompts) -> SupportSet:
        unknown = sorted(set(self.labels) - set(prompts))
        if unknown:
            raise InputError(f"labelled images of class {unknown[0]!r}, which is not among the classes {sorted(prompts)}")
        captions = self.captions if self.captions is not None else [str(self.captioner(im)) for im in self.images]  # type: ignore[misc]
        images, labels, texts = [], [], []
        for image, label, caption in zip(self.images, self.labels, captions):
            if self.generator is None:
                images.append(image)
                labels.append(label)
                texts.append(caption)
                continue
            prompt = f"{prompts[label][0]}. {caption}"
            images += _checked_images(self.generator.generate(prompt, self.n_per_caption), self.n_per_caption, prompt)
            labels += [label] * self.n_per_caption
            texts += [caption] * self.n_per_caption
        X = model.encode_images(images)
        C = model.encode_texts(texts)
        return SupportSet(X, np.array(labels), [self.name] * len(X), [None] * len(X), texts, C)


# --- the builder ----------------------------------------------------------------------------------
def build_support_set(model: Any, classes: Sequence[str] | ClassPrompts, sources: Sequence[Any]) -> SupportSet:
    """One support set from every source's items (each source: ``collect(model, prompts) -> SupportSet``).

    ``classes``: class -> prompts (or class names, each its own prompt). When any source gives caption
    features, rows without a caption take their class's prompt-ensemble text feature, so
    ``SupportSetAdapter``'s caption affinity is defined for every row.
    """
    prompts = class_prompts(classes)
    if not sources:
        raise InputError("no support source given; pass retrieval, generation or captions")
    parts = [source.collect(model, prompts) for source in sources]
    parts = [p for p in parts if len(p)]
    if not parts:
        raise InputError("the sources gave no support items; check the pool, the generator or the captions")
    X = np.concatenate([p.X for p in parts]).astype(np.float32)
    labels = np.concatenate([p.labels for p in parts])
    missing = sorted(set(prompts) - set(labels.tolist()))
    if missing:
        raise InputError(f"the support set has no item of class {missing[0]!r}; give the pool more images or use generation")
    caps = None
    if any(p.caption_features is not None for p in parts):
        W = dict(zip(prompts, prompt_weights(model, prompts)))
        caps = np.concatenate([p.caption_features if p.caption_features is not None else np.stack([W[lab] for lab in p.labels])
                               for p in parts]).astype(np.float32)  # fmt: skip
    return SupportSet(X, labels, [s for p in parts for s in p.sources], [i for p in parts for i in p.ids],
                      [c for p in parts for c in p.captions], caps)  # fmt: skip


def support_set_adapter(model: Any, classes: Sequence[str] | ClassPrompts, sources: Sequence[Any],
                        **params: Any) -> tuple[SupportSetAdapter, SupportSet]:  # fmt: skip
    """Build a support set from ``sources`` and fit a ``SupportSetAdapter`` on it, with zero-shot weights
    from the same class prompts (so zero-shot and the adapter read the same texts); no labelled image
    is needed. ``params``: ``SupportSetAdapter`` arguments. Returns (fitted head, support set)."""
    prompts = class_prompts(classes)
    support = build_support_set(model, prompts, sources)
    ordered = {c: prompts[c] for c in sorted(prompts)}
    params.setdefault("logit_scale", float(model.logit_scale))
    return support.fit_adapter(prompt_weights(model, ordered), **params), support
