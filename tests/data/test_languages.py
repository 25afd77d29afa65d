"""The synthetic scenes' captions and prompts in every language (cliplab.data.languages)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cliplab.data import synthetic
from cliplab.data.languages import language
from cliplab.errors import InputError

OTHERS = [c for c in synthetic.LANGUAGES if c != "en"]
# Every English word a caption or prompt can hold: the vocabulary and the template words.
ENGLISH = {w for v in (*synthetic.SHAPES, *synthetic.COLOR_NAMES, *synthetic.SIZES, *synthetic.POSITIONS, *synthetic.BACKGROUNDS) for w in v.split()}
ENGLISH |= {"a", "an", "on", "at", "the", "in", "of", "and", "photo", "picture", "image", "shape", "background", "there", "is", "center"}


def _specs(n: int = 300, seed: int = 5) -> list[synthetic.SceneSpec]:
    rng = np.random.default_rng(seed)
    return [synthetic.sample_spec(rng, "train", max_objects=2) for _ in range(n)]


def _every_value_specs() -> list[synthetic.SceneSpec]:
    """Single-object scenes that together use every shape, colour, size, position and background."""
    out = []
    for i in range(max(len(synthetic.SHAPES), len(synthetic.COLOR_NAMES), len(synthetic.SIZES), len(synthetic.POSITIONS), len(synthetic.BACKGROUNDS))):
        obj = synthetic.SceneObject(synthetic.SHAPES[i % 8], synthetic.COLOR_NAMES[i % 8], list(synthetic.SIZES)[i % 3], list(synthetic.POSITIONS)[i % 9])
        out.append(synthetic.SceneSpec((obj,), synthetic.BACKGROUNDS[i % 5], 100, 0, 0))
    return out


def test_languages_listed():
    assert synthetic.LANGUAGES[0] == "en" and len(synthetic.LANGUAGES) >= 6
    assert {"de", "fr", "es", "zh", "ja", "ar"} <= set(synthetic.LANGUAGES)
    assert {language(c).script for c in OTHERS} >= {"Latin", "Han", "Japanese", "Arabic"}


def test_english_unchanged():
    spec = synthetic.scene(3, max_objects=2).spec
    assert synthetic.full_caption(spec, "en") == synthetic.full_caption(spec) == synthetic.scene(3, max_objects=2).caption
    assert synthetic.short_caption(spec, language="en") == synthetic.short_caption(spec)
    assert synthetic.attribute_prompts("shape", "en") == synthetic.attribute_prompts("shape")


@pytest.mark.parametrize("code", OTHERS)
def test_lexicon_covers_the_vocabulary(code):
    data = language(code).data
    for key, values in (("shape", synthetic.SHAPES), ("color", synthetic.COLOR_NAMES), ("size", synthetic.SIZES),
                        ("position", synthetic.POSITIONS), ("background", synthetic.BACKGROUNDS)):  # fmt: skip
        assert set(data[key]) == set(values), f"{code}: {key}"


@pytest.mark.parametrize("code", OTHERS)
def test_no_english_word_left(code):
    """An English vocabulary word may appear only where the language itself uses it (French "orange")."""
    own = language(code).words()
    texts = []
    for spec in _every_value_specs() + _specs(100):
        rng = np.random.default_rng(0)
        texts += [synthetic.full_caption(spec, code), synthetic.short_caption(spec, code), synthetic.paraphrase(spec, rng, code)]
    texts += [p for a in synthetic.ATTRIBUTES for ps in synthetic.attribute_prompts(a, code).values() for p in ps]
    for text in texts:
        words = set(re.findall(r"[A-Za-z]+", text.lower()))
        leftover = {w for w in words & ENGLISH if w not in {x.lower() for x in own}}
        assert not leftover, f"{code}: English {leftover} in {text!r}"


@pytest.mark.parametrize("code", OTHERS)
def test_every_value_is_said(code):
    """Each value of each attribute has its own word(s): the caption of a one-object scene changes with each."""
    base = _every_value_specs()[0]
    obj = base.objects[0]
    for attr, values in (("shape", synthetic.SHAPES), ("color", synthetic.COLOR_NAMES), ("size", synthetic.SIZES), ("position", synthetic.POSITIONS)):
        captions = {synthetic.full_caption(synthetic.SceneSpec((synthetic.SceneObject(**{**obj.__dict__, attr: v}),), base.background, 100, 0, 0), code) for v in values}
        assert len(captions) == len(values), f"{code}: {attr}"
    captions = {synthetic.full_caption(synthetic.SceneSpec(base.objects, bg, 100, 0, 0), code) for bg in synthetic.BACKGROUNDS}
    assert len(captions) == len(synthetic.BACKGROUNDS)


@pytest.mark.parametrize("code", synthetic.LANGUAGES)
def test_captions_tell_scenes_apart(code):
    """Different scenes get different full captions (the grammar loses nothing), as in English."""
    specs = _specs()
    key = lambda s: (tuple((o.shape, o.color, o.size, o.position) for o in s.objects), s.background)  # noqa: E731
    by_caption: dict[str, set] = {}
    for s in specs:
        by_caption.setdefault(synthetic.full_caption(s, code), set()).add(key(s))
    assert all(len(v) == 1 for v in by_caption.values())
    assert len(by_caption) == len({key(s) for s in specs})


@pytest.mark.parametrize("code", ["zh", "ja"])
def test_no_spaces_in_chinese_and_japanese(code):
    for spec in _specs(50):
        assert " " not in synthetic.full_caption(spec, code) and " " not in synthetic.short_caption(spec, code)


def test_word_order_and_agreement():
    star = synthetic.SceneObject("star", "red", "small", "top left")
    square = synthetic.SceneObject("square", "blue", "large", "bottom")
    spec = synthetic.SceneSpec((star, square), "striped", 100, 0, 0)
    assert synthetic.full_caption(spec, "de") == "ein kleiner roter Stern oben links und ein großes blaues Quadrat unten auf einem gestreiften Hintergrund"
    assert synthetic.full_caption(spec, "fr") == "une petite étoile rouge en haut à gauche et un grand carré bleu en bas sur un fond rayé"
    assert synthetic.full_caption(spec, "es") == "una estrella roja pequeña arriba a la izquierda y un cuadrado azul grande abajo sobre un fondo rayado"
    assert synthetic.full_caption(spec, "zh") == "条纹背景上有左上角的一个小红色星形和底部的一个大蓝色正方形"
    assert synthetic.full_caption(spec, "ja") == "縞模様の背景に左上の小さな赤い星と下の大きな青い正方形"
    assert synthetic.full_caption(spec, "ar") == "نجمة حمراء صغيرة في أعلى اليسار ومربع أزرق كبير في الأسفل على خلفية مخططة"


@pytest.mark.parametrize("code", synthetic.LANGUAGES)
def test_prompts_per_class(code):
    for attribute in synthetic.ATTRIBUTES:
        prompts = synthetic.attribute_prompts(attribute, code)
        assert list(prompts) == synthetic.attribute_values(attribute)
        assert len({p[0] for p in prompts.values()}) == len(prompts)


def test_parallel_paraphrases_say_the_same():
    spec = synthetic.SceneSpec((synthetic.SceneObject("heart", "pink", "medium", "center"),), "dotted", 100, 0, 0)
    for seed in range(20):
        texts = synthetic.parallel_paraphrases(spec, np.random.default_rng(seed))
        assert set(texts) == set(synthetic.LANGUAGES)
        if "heart" in texts["en"]:
            assert "Herz" in texts["de"] and "心形" in texts["zh"]
        if "pink" in texts["en"]:
            assert "rosa" in texts["es"] and "粉色" in texts["zh"]
    one = synthetic.paraphrase(spec, np.random.default_rng(3), "fr")
    assert one == synthetic.parallel_paraphrases(spec, np.random.default_rng(3))["fr"]


def test_unknown_language():
    spec = synthetic.scene(0).spec
    with pytest.raises(InputError, match="unknown language 'xx'.*en, de"):
        synthetic.full_caption(spec, "xx")
    with pytest.raises(InputError, match="unknown language"):
        synthetic.attribute_prompts("shape", language="klingon")
