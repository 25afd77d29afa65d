import numpy as np
import pytest

from cliplab.data import synthetic as S


def test_vocabularies_are_large_enough():
    assert len(S.SHAPES) >= 8 and len(S.COLORS) >= 8 and len(S.SIZES) == 3
    assert len(S.POSITIONS) == 9 and len(S.BACKGROUNDS) >= 4


def test_same_seed_same_scenes_and_random_access():
    a = S.generate(6, seed=3, max_objects=3)
    b = S.generate(6, seed=3, max_objects=3)
    for ra, rb in zip(a, b):
        assert np.array_equal(np.asarray(ra.image), np.asarray(rb.image))
        assert ra.caption == rb.caption
    # scene i does not depend on the scenes before it
    assert np.array_equal(np.asarray(S.scene(4, seed=3, max_objects=3).image), np.asarray(a[4].image))
    c = S.generate(6, seed=4, max_objects=3)
    assert any(x.caption != y.caption for x, y in zip(a, c))


def test_record_fields_and_masks_agree():
    for rec in S.generate(30, seed=1, image_size=64, max_objects=4):
        assert rec.image.size == (64, 64) and rec.image.mode == "RGB"
        assert 1 <= len(rec.objects) <= 4
        assert rec.semantic_mask.shape == (64, 64)
        assert rec.instance_masks.shape == (len(rec.objects), 64, 64)
        # instance masks never overlap, and each one carries its object's shape label
        assert rec.instance_masks.sum(0).max() <= 1
        for obj, inst in zip(rec.objects, rec.instance_masks):
            assert set(obj) >= {"shape", "color", "size", "position", "bbox"}
            assert np.all(rec.semantic_mask[inst] == 1 + S.SHAPES.index(obj["shape"]))
            if inst.any():
                x0, y0, x1, y1 = obj["bbox"]
                ys, xs = np.nonzero(inst)
                assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
        assert np.all((rec.semantic_mask > 0) == rec.instance_masks.any(0))


def test_object_pixels_have_their_colour():
    rec = S.scene(0, seed=5, max_objects=1)
    obj, inst = rec.objects[0], rec.instance_masks[0]
    mean = np.asarray(rec.image)[inst].mean(0)
    assert np.abs(mean - np.array(S.COLORS[obj["color"]])).max() < 25


def test_captions_name_every_attribute():
    rec = S.scene(2, seed=0, max_objects=2)
    for obj in rec.objects:
        assert f"{obj['size']} {obj['color']} {obj['shape']} {S.position_phrase(obj['position'])}" in rec.caption
        assert f"{obj['color']} {obj['shape']}" in rec.short_caption
    assert rec.caption.endswith(f"on a {rec.background} background")


def test_caption_formats_by_hand():
    spec = S.SceneSpec(
        objects=(S.SceneObject("star", "red", "small", "top left"), S.SceneObject("square", "orange", "large", "bottom")),
        background="striped", bg_level=100, bg_variant=0, texture_seed=0,
    )
    assert S.full_caption(spec) == "a small red star at the top left and a large orange square at the bottom on a striped background"
    assert S.short_caption(spec) == "a red star and an orange square"
    phrasings = {S.paraphrase(spec, np.random.default_rng(i)) for i in range(40)}
    assert len(phrasings) > 10


def test_heldout_split_only_uses_heldout_pairs():
    pairs = lambda split: {(o["shape"], o["color"]) for r in S.generate(300, seed=0, split=split, max_objects=2) for o in r.objects}
    train, held = pairs("train"), pairs("heldout")
    assert held <= S.HELDOUT_PAIRS and train.isdisjoint(S.HELDOUT_PAIRS)
    assert len(held) == len(S.HELDOUT_PAIRS)
    assert {s for s, _ in S.HELDOUT_PAIRS} == set(S.SHAPES) and {c for _, c in S.HELDOUT_PAIRS} == set(S.COLORS)


def test_perturb_changes_exactly_one_attribute():
    rng = np.random.default_rng(0)
    for _ in range(50):
        spec = S.sample_spec(rng, "train", max_objects=2)
        attr = ["shape", "color", "size", "position"][rng.integers(4)]
        twin = S.perturb_spec(spec, rng, "train", attr)
        diffs = [(a, b) for a, b in zip(spec.objects, twin.objects) if a != b]
        assert len(diffs) <= 1
        for a, b in diffs:
            changed = [f for f in ("shape", "color", "size", "position") if getattr(a, f) != getattr(b, f)]
            assert changed == [attr]
            assert (b.shape, b.color) not in S.HELDOUT_PAIRS


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="unknown split"):
        S.generate(1, split="validation")
    with pytest.raises(ValueError, match="max_objects"):
        S.generate(1, max_objects=5)
