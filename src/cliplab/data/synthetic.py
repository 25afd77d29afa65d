"""Synthetic scenes: seeded images of coloured shapes with full ground truth.

A scene is a background texture plus 1-4 objects, each a (shape, colour, size, position) on a
3x3 grid with jitter. Every image comes with captions (short, full, paraphrased), a semantic mask
and instance masks. Scene ``i`` of ``(seed, split)`` depends on nothing else, so a dataset can be
read in any order, by any number of workers, and always gives the same pixels.

The ``heldout`` split uses only (shape, colour) pairs that ``train`` and ``test`` never contain,
to measure compositional generalisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

import numpy as np
from PIL import Image, ImageDraw

from cliplab.data.languages import CODES as _OTHER_CODES
from cliplab.data.languages import Language
from cliplab.data.languages import language as _language
from cliplab.errors import InputError

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "diamond", "heart", "crescent")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 225),
    "yellow": (240, 220, 40),
    "purple": (145, 50, 195),
    "orange": (250, 140, 25),
    "pink": (250, 135, 205),
    "cyan": (40, 205, 220),
}
SIZES: dict[str, float] = {"small": 0.12, "medium": 0.17, "large": 0.23}  # radius / image side
POSITIONS: dict[str, tuple[int, int]] = {  # name -> (row, col) on the 3x3 grid
    "top left": (0, 0), "top": (0, 1), "top right": (0, 2),
    "left": (1, 0), "center": (1, 1), "right": (1, 2),
    "bottom left": (2, 0), "bottom": (2, 1), "bottom right": (2, 2),
}  # fmt: skip
BACKGROUNDS: tuple[str, ...] = ("plain", "striped", "checkered", "dotted", "noisy")
SPLITS: tuple[str, ...] = ("train", "test", "heldout")
# Caption languages: English, then the package-data ones (cliplab/data/lang/<code>.json, see cliplab.data.languages).
LANGUAGES: tuple[str, ...] = ("en", *_OTHER_CODES)

COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
# One (shape, colour) pair per shape and per colour, never seen in train/test: shape i with colour (3i+2) mod 8.
HELDOUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    (SHAPES[i], COLOR_NAMES[(3 * i + 2) % len(COLOR_NAMES)]) for i in range(len(SHAPES))
)
_SPLIT_CODE = {name: i for i, name in enumerate(SPLITS)}
_SUPERSAMPLE = 2


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    size: str
    position: str
    jitter: tuple[float, float] = (0.0, 0.0)  # offset of the centre, as a fraction of the image side


@dataclass(frozen=True)
class SceneSpec:
    """What to draw: everything needed to render a scene, nothing derived."""

    objects: tuple[SceneObject, ...]
    background: str
    bg_level: int  # grey level of the background, 0-255
    bg_variant: int  # texture parameter (stripe direction, checker size, ...)
    texture_seed: int


@dataclass
class SceneRecord:
    """A rendered scene and its ground truth."""

    image: Image.Image
    caption: str
    short_caption: str
    objects: list[dict[str, Any]]
    background: str
    semantic_mask: np.ndarray  # HxW int: 0 background, 1 + SHAPES.index(shape) on object pixels
    instance_masks: np.ndarray  # K x H x W bool, visible pixels of each object (occlusion applied)
    spec: SceneSpec = field(repr=False)


# --- sampling -----------------------------------------------------------------------------------
def _allowed_pairs(split: str) -> list[tuple[str, str]]:
    if split not in _SPLIT_CODE:
        raise InputError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    pairs = [(s, c) for s in SHAPES for c in COLOR_NAMES]
    if split == "heldout":
        return [p for p in pairs if p in HELDOUT_PAIRS]
    return [p for p in pairs if p not in HELDOUT_PAIRS]


def _centre(obj: SceneObject, side: float = 1.0) -> tuple[float, float]:
    """Object centre (x, y) in units of ``side``, clamped so the object stays inside the image."""
    row, col = POSITIONS[obj.position]
    r = SIZES[obj.size]
    x = (col + 0.5) / 3 + obj.jitter[0]
    y = (row + 0.5) / 3 + obj.jitter[1]
    lo, hi = r + 0.02, 1 - r - 0.02
    return min(max(x, lo), hi) * side, min(max(y, lo), hi) * side


def _fits(new: SceneObject, placed: list[SceneObject]) -> bool:
    """True when ``new`` overlaps no placed object by more than a sliver."""
    nx, ny = _centre(new)
    for obj in placed:
        x, y = _centre(obj)
        if math.hypot(nx - x, ny - y) < SIZES[new.size] + SIZES[obj.size] - 0.03:
            return False
    return True


def long_tail(tail_shapes: tuple[str, ...] | list[str], ratio: float) -> dict[str, float]:
    """Shape weights for a long-tailed pool: each of ``tail_shapes`` ``ratio`` times rarer than the others."""
    unknown = [s for s in tail_shapes if s not in SHAPES]
    if unknown or not tail_shapes:
        raise InputError(f"tail shapes {', '.join(unknown) or 'none given'}: use some of {', '.join(SHAPES)}")
    if ratio < 1:
        raise InputError(f"the tail ratio must be at least 1, got {ratio}")
    return {s: 1.0 / ratio if s in tail_shapes else 1.0 for s in SHAPES}


def sample_spec(rng: np.random.Generator, split: str = "train", max_objects: int = 2, min_objects: int = 1,
                shape_weights: dict[str, float] | None = None) -> SceneSpec:  # fmt: skip
    """Draw a random scene description for ``split``; ``shape_weights`` (shape -> relative frequency,
    e.g. from :func:`long_tail`) skews which shapes appear, uniform when None."""
    if not 1 <= min_objects <= max_objects <= 4:
        raise InputError(f"need 1 <= min_objects <= max_objects <= 4, got {min_objects}, {max_objects}")
    pairs = _allowed_pairs(split)
    p = None
    if shape_weights is not None:
        w = np.array([shape_weights.get(s, 0.0) for s, _ in pairs], float)
        p = w / w.sum()
    n = int(rng.integers(min_objects, max_objects + 1))
    placed: list[SceneObject] = []
    for _ in range(200):
        if len(placed) == n:
            break
        shape, color = pairs[rng.integers(len(pairs)) if p is None else rng.choice(len(pairs), p=p)]
        obj = SceneObject(
            shape=shape,
            color=color,
            size=list(SIZES)[rng.integers(len(SIZES))],
            position=list(POSITIONS)[rng.integers(len(POSITIONS))],
            jitter=tuple(float(v) for v in rng.uniform(-0.03, 0.03, size=2)),
        )
        if _fits(obj, placed):
            placed.append(obj)
    return SceneSpec(
        objects=tuple(placed),
        background=BACKGROUNDS[rng.integers(len(BACKGROUNDS))],
        bg_level=int(rng.integers(70, 150)),
        bg_variant=int(rng.integers(0, 4)),
        texture_seed=int(rng.integers(2**31)),
    )


def perturb_spec(spec: SceneSpec, rng: np.random.Generator, split: str = "train", attribute: str | None = None) -> SceneSpec:
    """A twin of ``spec`` that differs in one attribute of one object (a hard negative).

    ``attribute`` is one of shape, color, size, position (random when None). The twin keeps the
    background and every other object, so only that one attribute tells the two captions apart.
    """
    attrs = ["shape", "color", "size", "position"]
    pairs = set(_allowed_pairs(split))
    for _ in range(50):
        attr = attribute or attrs[rng.integers(len(attrs))]
        k = int(rng.integers(len(spec.objects)))
        obj = spec.objects[k]
        choices = {
            "shape": [s for s in SHAPES if (s, obj.color) in pairs],
            "color": [c for c in COLOR_NAMES if (obj.shape, c) in pairs],
            "size": list(SIZES),
            "position": list(POSITIONS),
        }[attr]
        choices = [v for v in choices if v != getattr(obj, attr)]
        if not choices:
            continue
        new = replace(obj, **{attr: choices[rng.integers(len(choices))]})
        others = [o for i, o in enumerate(spec.objects) if i != k]
        if _fits(new, others):
            return replace(spec, objects=tuple(others[:k]) + (new,) + tuple(others[k:]))
    return spec


def swap_colours(spec: SceneSpec, split: str | None = None) -> SceneSpec | None:
    """The scene with its first two objects' colours exchanged ("a red star and a blue square" ->
    "a blue star and a red square"); None when they share a colour, when there is one object, or
    when ``split`` is given and an exchanged shape-colour pair is not one of its pairs."""
    if len(spec.objects) < 2 or spec.objects[0].color == spec.objects[1].color:
        return None
    a, b = spec.objects[:2]
    swapped = (replace(a, color=b.color), replace(b, color=a.color))
    if split is not None and not {(o.shape, o.color) for o in swapped} <= set(_allowed_pairs(split)):
        return None
    return replace(spec, objects=swapped + spec.objects[2:])


# --- rendering ----------------------------------------------------------------------------------
def _background(spec: SceneSpec, size: int) -> np.ndarray:
    rng = np.random.default_rng(spec.texture_seed)
    level, v = float(spec.bg_level), spec.bg_variant
    yy, xx = np.mgrid[0:size, 0:size]
    if spec.background == "plain":
        grey = np.full((size, size), level)
    elif spec.background == "striped":
        period = max(4, size // (8 + 2 * v))
        coord = [yy, xx, xx + yy, xx - yy][v]
        grey = level + 22 * np.where((coord // (period // 2)) % 2 == 0, 1.0, -1.0)
    elif spec.background == "checkered":
        cell = max(3, size // (6 + 2 * v))
        grey = level + 22 * np.where(((yy // cell) + (xx // cell)) % 2 == 0, 1.0, -1.0)
    elif spec.background == "dotted":
        step = max(4, size // (6 + v))
        dots = ((yy % step) - step / 2) ** 2 + ((xx % step) - step / 2) ** 2 < (step / 4) ** 2
        grey = level + np.where(dots, 35.0, 0.0)
    else:  # noisy
        grey = level + rng.normal(0, 18, size=(size, size))
    tint = rng.uniform(-8, 8, size=3)  # slight warm/cool cast so the background is not pure grey
    rgb = grey[:, :, None] + tint[None, None, :]
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    def ring(n: int, radii: list[float], start: float = -90.0) -> list[tuple[float, float]]:
        pts = []
        for i in range(n * len(radii)):
            a = math.radians(start + 360.0 * i / (n * len(radii)))
            rr = radii[i % len(radii)] * r
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts

    if shape == "square":
        h = 0.82 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return [(x, y + 0.15 * r) for x, y in ring(3, [1.05])]
    if shape == "star":
        return ring(5, [1.05, 0.42])
    if shape == "diamond":
        return [(cx, cy - r), (cx + 0.62 * r, cy), (cx, cy + r), (cx - 0.62 * r, cy)]
    if shape == "cross":
        a, w = 0.95 * r, 0.32 * r
        return [(cx - w, cy - a), (cx + w, cy - a), (cx + w, cy - w), (cx + a, cy - w), (cx + a, cy + w),
                (cx + w, cy + w), (cx + w, cy + a), (cx - w, cy + a), (cx - w, cy + w), (cx - a, cy + w),
                (cx - a, cy - w), (cx - w, cy - w)]  # fmt: skip
    raise InputError(shape)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float) -> None:
    """Draw ``shape`` in white (255) on an 'L' mask; crescent cuts a disc out in black."""
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    elif shape == "heart":
        lobe = 0.52 * r
        for sx in (-1, 1):
            lx, ly = cx + sx * 0.47 * r, cy - 0.3 * r
            draw.ellipse([lx - lobe, ly - lobe, lx + lobe, ly + lobe], fill=255)
        draw.polygon([(cx - 0.97 * r, cy - 0.15 * r), (cx + 0.97 * r, cy - 0.15 * r), (cx, cy + r)], fill=255)
    elif shape == "crescent":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        ox, oy, rr = cx + 0.5 * r, cy - 0.2 * r, 0.85 * r
        draw.ellipse([ox - rr, oy - rr, ox + rr, oy + rr], fill=0)
    else:
        draw.polygon(_polygon(shape, cx, cy, r), fill=255)


def _object_mask(obj: SceneObject, size: int) -> np.ndarray:
    """Soft coverage (0-1 float) of one object, anti-aliased by supersampling."""
    big = size * _SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    cx, cy = _centre(obj, big)
    _draw_shape(ImageDraw.Draw(mask), obj.shape, cx, cy, SIZES[obj.size] * big)
    return np.asarray(mask.resize((size, size), Image.Resampling.BOX), dtype=np.float32) / 255.0


def render(spec: SceneSpec, image_size: int = 64) -> SceneRecord:
    """Draw ``spec`` and compute its captions and masks."""
    rgb = _background(spec, image_size).astype(np.float32)
    semantic = np.zeros((image_size, image_size), np.int64)
    instances = np.zeros((len(spec.objects), image_size, image_size), bool)
    rng = np.random.default_rng(spec.texture_seed + 1)
    for k, obj in enumerate(spec.objects):
        alpha = _object_mask(obj, image_size)
        colour = np.clip(np.array(COLORS[obj.color], np.float32) + rng.uniform(-12, 12, 3), 0, 255)
        rgb = rgb * (1 - alpha[:, :, None]) + colour[None, None, :] * alpha[:, :, None]
        solid = alpha >= 0.5
        instances[:k, solid] = False  # later objects occlude earlier ones
        instances[k] = solid
        semantic[solid] = 1 + SHAPES.index(obj.shape)
    objects = []
    for k, obj in enumerate(spec.objects):
        ys, xs = np.nonzero(instances[k])
        bbox = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] if len(xs) else [0, 0, 0, 0]
        objects.append({"shape": obj.shape, "color": obj.color, "size": obj.size, "position": obj.position, "bbox": bbox})
    return SceneRecord(
        image=Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8)),
        caption=full_caption(spec),
        short_caption=short_caption(spec),
        objects=objects,
        background=spec.background,
        semantic_mask=semantic,
        instance_masks=instances,
        spec=spec,
    )


# --- captions -----------------------------------------------------------------------------------
_POSITION_PHRASE = {
    "top left": "at the top left", "top": "at the top", "top right": "at the top right",
    "left": "on the left", "center": "in the center", "right": "on the right",
    "bottom left": "at the bottom left", "bottom": "at the bottom", "bottom right": "at the bottom right",
}  # fmt: skip
_POSITION_SYNONYMS = {
    "top left": ["at the top left", "in the upper left", "in the top-left corner"],
    "top": ["at the top", "at the top middle", "near the top"],
    "top right": ["at the top right", "in the upper right", "in the top-right corner"],
    "left": ["on the left", "at the left", "on the left side"],
    "center": ["in the center", "in the middle", "in the centre"],
    "right": ["on the right", "at the right", "on the right side"],
    "bottom left": ["at the bottom left", "in the lower left", "in the bottom-left corner"],
    "bottom": ["at the bottom", "at the bottom middle", "near the bottom"],
    "bottom right": ["at the bottom right", "in the lower right", "in the bottom-right corner"],
}
_SIZE_SYNONYMS = {"small": ["small", "little", "tiny"], "medium": ["medium", "medium-sized", "mid-sized"], "large": ["large", "big"]}
_SCENE_TEMPLATES = [
    "{objects} on a {background} background",
    "a picture of {objects}",
    "{objects}, {background} background",
    "there is {objects}",
    "an image of {objects} over a {background} background",
    "{objects}",
    "a photo of {objects}",
]


def position_phrase(position: str) -> str:
    """'top left' -> 'at the top left', as the full captions say it."""
    return _POSITION_PHRASE[position]


def with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _other(language: str) -> Language | None:
    """None for English, else the language's lexicon and grammar (an unknown code raises InputError)."""
    return None if language == "en" else _language(language)


def full_caption(spec: SceneSpec, language: str = "en") -> str:
    """'a small red star at the top left and a large blue square at the bottom on a striped background',
    or the same in ``language`` (one of ``LANGUAGES``)."""
    lang = _other(language)
    if lang is not None:
        parts = [lang.object_phrase(o.shape, o.color, o.size, o.position) for o in spec.objects]
        return lang.scene(lang.join(parts), spec.background)
    parts = [with_article(f"{o.size} {o.color} {o.shape} {_POSITION_PHRASE[o.position]}") for o in spec.objects]
    return f"{_join(parts)} on a {spec.background} background"


def short_caption(spec: SceneSpec, language: str = "en") -> str:
    """'a red star and a blue square', or the same in ``language``."""
    lang = _other(language)
    if lang is not None:
        return lang.join([lang.object_phrase(o.shape, o.color) for o in spec.objects])
    return _join([with_article(f"{o.color} {o.shape}") for o in spec.objects])


def caption(spec: SceneSpec, kind: str, language: str = "en", rng: np.random.Generator | None = None) -> str:
    """The ``kind`` caption (full, short or paraphrase; a paraphrase draws from ``rng``) in ``language``."""
    if kind == "full":
        return full_caption(spec, language)
    if kind == "short":
        return short_caption(spec, language)
    if kind == "paraphrase":
        if rng is None:
            raise InputError("a paraphrase needs a random generator (rng)")
        return paraphrase(spec, rng, language)
    raise InputError(f"unknown caption kind {kind!r}; use full, short or paraphrase")


# English wordings of the other languages' paraphrase templates, in their order (see ``parallel_paraphrases``)
_PARALLEL_TEMPLATES = ["{objects}", "a picture of {objects}", "{objects}, {background} background", "there is {objects}"]


def _paraphrase_content(spec: SceneSpec, rng: np.random.Generator) -> tuple[list[tuple[str | None, ...]], int]:
    """What a paraphrase in another language says: per object (shape, colour, size, position), each
    possibly None (random order; shape or colour only; optional size and position), and a template index."""
    objects = []
    for obj in rng.permutation(len(spec.objects)):
        o = spec.objects[obj]
        shape, color = o.shape, o.color
        u = rng.random()
        if u < 0.1:
            shape = None  # the generic noun: "eine rote Form"
        elif u < 0.3:
            color = None
        size = o.size if rng.random() < 0.6 else None
        position = o.position if rng.random() < 0.6 else None
        objects.append((shape, color, size, position))
    return objects, int(rng.integers(len(_PARALLEL_TEMPLATES)))


def _render_paraphrase(spec: SceneSpec, content: tuple[list[tuple[str | None, ...]], int], language: str) -> str:
    objects, template = content
    lang = _other(language)
    if lang is None:
        parts = []
        for shape, color, size, position in objects:
            phrase = with_article(" ".join(w for w in (size, color, shape or "shape") if w))
            parts.append(phrase + (" " + _POSITION_PHRASE[position] if position else ""))
        return _PARALLEL_TEMPLATES[template].format(objects=_join(parts), background=spec.background)
    parts = [lang.object_phrase(shape, color, size, position) for shape, color, size, position in objects]
    return lang.scene(lang.join(parts), spec.background, lang.data["paraphrase"][template])


def parallel_paraphrases(spec: SceneSpec, rng: np.random.Generator, languages: tuple[str, ...] | list[str] = LANGUAGES) -> dict[str, str]:
    """One random rewording of the scene said in each of ``languages`` (English included): parallel
    sentences, e.g. a caption and the English one a multilingual student is distilled towards."""
    content = _paraphrase_content(spec, rng)
    return {lang: _render_paraphrase(spec, content, lang) for lang in languages}


def paraphrase(spec: SceneSpec, rng: np.random.Generator, language: str = "en") -> str:
    """A random rewording of the scene: other templates, synonyms, order, optional size/position."""
    if _other(language) is not None:  # another language: the words of ``parallel_paraphrases``
        return _render_paraphrase(spec, _paraphrase_content(spec, rng), language)
    parts = []
    for obj in rng.permutation(len(spec.objects)):
        o = spec.objects[obj]
        words = [o.color, o.shape]
        u = rng.random()
        if u < 0.1:
            words = [o.color, ("shape", "object")[rng.integers(2)]]  # colour only, as in "a red shape"
        elif u < 0.3:
            words = [o.shape]  # shape only, as in "a star"
        if rng.random() < 0.6:
            words.insert(0, _SIZE_SYNONYMS[o.size][rng.integers(len(_SIZE_SYNONYMS[o.size]))])
        phrase = with_article(" ".join(words))
        if rng.random() < 0.6:
            options = _POSITION_SYNONYMS[o.position]
            phrase += " " + options[rng.integers(len(options))]
        parts.append(phrase)
    template = _SCENE_TEMPLATES[rng.integers(len(_SCENE_TEMPLATES))]
    return template.format(objects=_join(parts), background=spec.background)


# --- public entry points ------------------------------------------------------------------------
def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator for scene ``index`` of ``(seed, split)``: independent of every other scene."""
    return np.random.default_rng([seed, _SPLIT_CODE[split], index])


def scene(index: int, seed: int = 0, image_size: int = 64, split: str = "train", max_objects: int = 2, min_objects: int = 1,
          shape_weights: dict[str, float] | None = None) -> SceneRecord:  # fmt: skip
    """Scene number ``index`` of the seeded sequence ``(seed, split)`` (``shape_weights``: see :func:`sample_spec`)."""
    _allowed_pairs(split)
    return render(sample_spec(scene_rng(seed, split, index), split, max_objects, min_objects, shape_weights), image_size)


def iter_scenes(n: int, seed: int = 0, image_size: int = 64, split: str = "train", max_objects: int = 2, min_objects: int = 1,
                shape_weights: dict[str, float] | None = None) -> Iterator[SceneRecord]:  # fmt: skip
    for i in range(n):
        yield scene(i, seed, image_size, split, max_objects, min_objects, shape_weights)


def generate(n: int, seed: int = 0, image_size: int = 64, split: str = "train", max_objects: int = 2, min_objects: int = 1,
             shape_weights: dict[str, float] | None = None) -> list[SceneRecord]:  # fmt: skip
    """``n`` scenes of ``split``; the same arguments always give the same scenes."""
    return list(iter_scenes(n, seed, image_size, split, max_objects, min_objects, shape_weights))


# --- attributes: the labels a scene can be classified by ------------------------------------------
ATTRIBUTES: tuple[str, ...] = ("shape", "color", "size", "position", "background")
# One prompt per attribute; each names only that attribute, so the score isolates it.
ATTRIBUTE_PROMPTS: dict[str, str] = {
    "shape": "a photo of a {c}",
    "color": "a {c} shape",
    "size": "a photo of a {c} shape",
    "position": "a shape {c}",
    "background": "a shape on a {c} background",
}


def attribute_values(attribute: str) -> list[str]:
    """Every value of a scene attribute, in a fixed order (the class list of a classification task)."""
    values = {"shape": SHAPES, "color": COLOR_NAMES, "size": tuple(SIZES), "position": tuple(POSITIONS), "background": BACKGROUNDS}
    if attribute not in values:
        raise InputError(f"attribute {attribute!r} is not a scene attribute; use one of {', '.join(ATTRIBUTES)}")
    return list(values[attribute])


def attribute_prompts(attribute: str, language: str = "en") -> dict[str, list[str]]:
    """Class -> its prompt for ``attribute`` (positions phrased as in captions): zero-shot templates,
    in ``language`` (the same prompt shapes: "ein Foto: ein Stern", "eine rote Form", ...)."""
    values = attribute_values(attribute)
    lang = _other(language)
    if lang is not None:
        if attribute == "shape":
            return {v: [lang.photo(lang.object_phrase(shape=v))] for v in values}
        if attribute == "size":
            return {v: [lang.photo(lang.object_phrase(size=v))] for v in values}
        if attribute == "background":
            return {v: [lang.scene(lang.object_phrase(), v)] for v in values}
        return {v: [lang.object_phrase(**{attribute: v})] for v in values}
    prompt = ATTRIBUTE_PROMPTS[attribute]
    phrase = position_phrase if attribute == "position" else (lambda v: v)
    return {v: [prompt.format(c=phrase(v))] for v in values}


def attribute_label(objects: list[dict[str, Any]], background: str, attribute: str) -> str:
    """The label of a scene for ``attribute``: that attribute of its first object, or its background."""
    return background if attribute == "background" else str(objects[0][attribute])
