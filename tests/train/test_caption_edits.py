"""Hard-negative caption edits and rule-based rewrites."""

import numpy as np

from cliplab.data import synthetic
from cliplab.train.hard_negatives import hard_negative, replace_word, swap_colors
from cliplab.train.rewrites import pick_caption, rule_rewrite


def test_colour_swap_exchanges_two_different_colours():
    rng = np.random.default_rng(0)
    assert swap_colors("a red star and a blue square", rng) == "a blue star and a red square"
    assert swap_colors("a small red star at the top left and a large blue square on a striped background", rng) == (
        "a small blue star at the top left and a large red square on a striped background"
    )
    assert swap_colors("a red star and a red square", rng) is None
    assert swap_colors("a star", rng) is None


def test_word_replacement_keeps_the_kind_and_changes_the_word():
    rng = np.random.default_rng(1)
    for _ in range(20):
        out = replace_word("a small red star", rng, "shape")
        assert out.startswith("a small red ") and out.split()[-1] in synthetic.SHAPES and out != "a small red star"
        size = replace_word("a little red star", rng, "size")
        assert size.split()[1] in ("medium", "large")
    assert replace_word("a red thing", rng, "shape") is None


def test_hard_negative_always_differs_and_is_none_without_attributes():
    rng = np.random.default_rng(2)
    for i in range(50):
        rec = synthetic.scene(i, seed=3)
        for caption in (rec.caption, rec.short_caption):
            neg = hard_negative(caption, rng)
            assert neg is not None and neg != caption
    assert hard_negative("a photo of something", rng) is None


def test_rule_rewrite_keeps_the_content_words():
    rng = np.random.default_rng(3)
    caption = "a small red star at the top left and a large blue square on the left on a striped background"
    seen = set()
    for _ in range(30):
        out = rule_rewrite(caption, rng)
        seen.add(out)
        for word in ("red", "star", "blue", "square", "striped"):
            assert word in out
    assert len(seen) > 5  # it varies


def test_pick_caption_draws_every_rewrite():
    rng = np.random.default_rng(4)
    picks = {pick_caption(["a", "b", "c"], rng, rule_rewrites=False) for _ in range(100)}
    assert picks == {"a", "b", "c"}


def test_scene_edits_change_one_thing_and_respect_the_split():
    from cliplab.train.hard_negatives import edited_scene

    rng = np.random.default_rng(5)
    allowed = {(s, c) for s in synthetic.SHAPES for c in synthetic.COLOR_NAMES} - set(synthetic.HELDOUT_PAIRS)
    for i in range(60):
        spec = synthetic.sample_spec(synthetic.scene_rng(0, "train", i), "train", 2)
        twin = edited_scene(spec, rng)
        assert twin != spec and twin.background == spec.background and len(twin.objects) == len(spec.objects)
        assert {(o.shape, o.color) for o in twin.objects} <= allowed
        changed = [(a, b) for a, b in zip(spec.objects, twin.objects) if a != b]
        swapped = len(changed) == 2 and [a.color for a, _ in changed] == [b.color for _, b in changed][::-1]
        assert len(changed) == 1 or swapped


def test_swap_colours_needs_two_colours_and_an_allowed_pair():
    spec = synthetic.sample_spec(synthetic.scene_rng(0, "train", 0), "train", 2, 2)
    a, b = spec.objects
    from dataclasses import replace

    same = replace(spec, objects=(replace(a, color="red"), replace(b, color="red")))
    assert synthetic.swap_colours(same) is None
    two = replace(spec, objects=(replace(a, shape="star", color="red"), replace(b, shape="circle", color="blue")))
    swapped = synthetic.swap_colours(two)
    assert [(o.shape, o.color) for o in swapped.objects] == [("star", "blue"), ("circle", "red")]
    held = next(iter(synthetic.HELDOUT_PAIRS))  # (shape, colour) never seen in train
    other = next(c for c in synthetic.COLOR_NAMES if c != held[1] and (held[0], c) not in synthetic.HELDOUT_PAIRS)
    into_heldout = replace(spec, objects=(replace(a, shape=held[0], color=other), replace(b, shape="circle", color=held[1])))
    assert synthetic.swap_colours(into_heldout) is not None and synthetic.swap_colours(into_heldout, "train") is None
