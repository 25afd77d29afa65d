import numpy as np
import pytest

from cliplab.data import scene_text as T
from cliplab.data import synthetic as S
from cliplab.errors import InputError
from cliplab.train.batches import short_caption as first_sentence


def _specs(n, seed=0, **kw):
    return [S.sample_spec(np.random.default_rng([seed, i]), "train", **kw) for i in range(n)]


def test_alt_text_noise_rates_match_the_parameters():
    rates = T.AltTextRates(missing=0.3, wrong_colour=0.2, generic=0.25)
    specs = _specs(4000, max_objects=1)
    texts = [T.alt_text(s, np.random.default_rng([7, i]), rates) for i, s in enumerate(specs)]
    generic = np.array([t in T.GENERIC_PHRASES for t in texts])
    said, wrong, sized, placed = [], [], [], []
    for spec, text, g in zip(specs, texts, generic):
        if g:
            continue
        obj = spec.objects[0]
        assert obj.shape in text  # the shape is always said
        colours = [c for c in S.COLOR_NAMES if f" {c} " in f" {text} "]
        assert len(colours) <= 1
        said.append(bool(colours))
        if colours:
            wrong.append(colours[0] != obj.color)
        sized.append(f" {obj.size} " in f" {text} ")
        placed.append(S.position_phrase(obj.position) in text)
    # binomial 4-sigma bands around the set rates (n about 3,000 and 2,100)
    assert abs(generic.mean() - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 4000)
    for kept in (said, sized, placed):
        assert abs(np.mean(kept) - 0.7) < 4 * np.sqrt(0.21 / len(kept))
    assert abs(np.mean(wrong) - 0.2) < 4 * np.sqrt(0.16 / len(wrong))


def test_alt_text_zero_rates_say_everything_and_bad_rates_are_refused():
    spec = S.SceneSpec((S.SceneObject("star", "red", "small", "top left"), S.SceneObject("heart", "blue", "large", "center")), "plain", 100, 0, 0)
    clean = T.alt_text(spec, np.random.default_rng(0), T.AltTextRates(0, 0, 0))
    assert clean == "a small red star at the top left and a large blue heart in the center"
    assert T.alt_text(spec, np.random.default_rng(0), T.AltTextRates(0, 0, 1)) in T.GENERIC_PHRASES
    with pytest.raises(InputError, match="wrong-colour"):
        T.AltTextRates(wrong_colour=1.5)


def test_long_caption_by_hand_and_first_sentence_is_the_short_caption():
    spec = S.SceneSpec((S.SceneObject("star", "red", "small", "top left"), S.SceneObject("heart", "blue", "large", "bottom")), "striped", 100, 0, 0)
    assert T.long_caption(spec) == (
        "a red star and a blue heart. the red star is small, at the top left. "
        "the blue heart is large, at the bottom. the red star is above and to the left of the blue heart. "
        "the background is striped."
    )
    for spec in _specs(300, max_objects=4):
        text = T.long_caption(spec)
        assert first_sentence(text) == S.short_caption(spec)  # what Long-CLIP's short branch reads
        assert text.count(". ") == 2 * len(spec.objects)  # short, k objects, k-1 neighbours, background


def test_long_captions_of_four_objects_run_past_the_context_up_to_about_150_tokens(tiny_model):
    specs = [s for s in _specs(200, max_objects=4, min_objects=4) if len(s.objects) == 4][:50]
    counts = tiny_model.token_counts([T.long_caption(s) for s in specs])
    assert min(counts) > tiny_model.context_length and max(counts) <= 150


def test_long_tail_makes_tail_shapes_about_ratio_times_rarer():
    weights = S.long_tail(["star", "heart"], 50)
    specs = _specs(30000, seed=1, max_objects=1, shape_weights=weights)
    counts = {s: sum(sp.objects[0].shape == s for sp in specs) for s in S.SHAPES}
    head = np.mean([counts[s] for s in S.SHAPES if s not in ("star", "heart")])
    tail = counts["star"] + counts["heart"]
    assert 0 < tail and 35 < 2 * head / tail < 70  # expected 50; about 120 tail scenes
    with pytest.raises(InputError, match="tail shapes"):
        S.long_tail(["hexagon"], 50)
    assert _specs(20) == _specs(20, shape_weights=None)
