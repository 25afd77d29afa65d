"""Region data: synthetic boxes and phrases, a manifest's regions column, boxes through resize and
crop, bad regions skipped and counted, held-out words, and Model.encode_regions."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from cliplab.data import synthetic
from cliplab.data.regions import boxes_to_input, mask_box, parse_regions, scene_regions, without_words
from cliplab.errors import InputError
from cliplab.train.batches import BatchPlan, RegionInput, StepBatches, caption_id
from cliplab.train.pairs import SyntheticPairs, open_pairs

from .conftest import MICRO_VIT_CFG, micro_model


def test_a_scene_gives_each_visible_object_its_mask_box_and_phrase():
    record = synthetic.scene(3, seed=1, split="train", max_objects=2, min_objects=2)
    regions = scene_regions(record)
    assert len(regions) == 2
    for region, obj, mask in zip(regions, record.spec.objects, record.instance_masks):
        ys, xs = np.nonzero(mask)
        assert region.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert region.phrase == f"{'an' if obj.size[0] in 'aeiou' else 'a'} {obj.size} {obj.color} {obj.shape} {synthetic.position_phrase(obj.position)}"
    assert mask_box(np.zeros((4, 4), bool)) is None


@pytest.mark.parametrize("mode", ["shortest", "longest", "squash"])
def test_boxes_follow_the_resize_and_crop_of_the_model_input(mode):
    """Draw a box on a wide image, preprocess it as open_clip does, find the box again in the pixels."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    image = Image.new("RGB", (120, 60), "black")
    box = (70, 10, 100, 40)
    ImageDraw.Draw(image).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill="white")
    pre = image_transform_v2(PreprocessCfg(size=32, resize_mode=mode, interpolation="bilinear"), is_train=False)
    pixels = pre(image)[0]
    ys, xs = np.nonzero(pixels.numpy() > 0.5 * float(pixels.max()))
    found = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    moved, kept = boxes_to_input(np.array([box]), 120, 60, 32, mode)
    assert kept.all() and np.abs(moved[0] - found).max() <= 1.0, (moved, found)


def test_a_box_the_crop_cuts_away_is_dropped():
    moved, kept = boxes_to_input(np.array([[0, 0, 10, 10], [50, 20, 70, 40]]), 120, 60, 60)  # the crop keeps x in [30, 90)
    assert kept.tolist() == [False, True] and moved[1].tolist() == [20, 20, 40, 40]


def test_bad_regions_are_skipped_counted_and_named_in_one_warning():
    value = json.dumps([{"box": [1, 2, 10, 12], "phrase": "a red star"}, {"box": [5, 5, 5, 9], "phrase": "empty"},
                        {"box": [0, 0, 200, 10], "phrase": "outside"}, {"box": [1, 1, 4, 4]}, {"box": [3, 3, 1, 4], "phrase": "x"}])  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        regions = parse_regions(value, "photos/7.png", 100, 50)
    assert [r.phrase for r in regions] == ["a red star"] and regions[0].box == (1, 2, 10, 12)
    assert len(caught) == 1 and "photos/7.png" in str(caught[0].message) and "skipped 4 of 5" in str(caught[0].message)
    assert parse_regions(None, "r", 10, 10) == [] and parse_regions([{"box": [0, 0, 5, 5], "phrase": " a dog "}], "r", 10, 10)[0].phrase == "a dog"
    several = parse_regions([{"box": [0, 0, 5, 5], "phrase": ["a small brown dog", " a dog "]}, {"box": [0, 0, 5, 5], "phrase": ["a", ""]},
                             {"box": [0, 0, 5, 5], "phrase": []}], "r", 10, 10)  # fmt: skip
    assert [(r.phrase, r.variants) for r in several] == [("a small brown dog", ("a dog",))]  # a list: the fullest first; any bad one, skipped


def test_held_out_words_drop_a_region_when_any_of_its_phrases_names_them():
    regions = parse_regions([{"box": [0, 0, 5, 5], "phrase": ["a red shape", "a heart"]}, {"box": [0, 0, 5, 5], "phrase": "a dog"}], "r", 10, 10)
    assert [r.phrase for r in without_words(regions, ("heart",))] == ["a dog"]


def test_held_out_words_drop_whole_regions_only_on_whole_words():
    regions = parse_regions([{"box": [0, 0, 5, 5], "phrase": "a red Heart"}, {"box": [0, 0, 5, 5], "phrase": "a hearth"}], "r", 10, 10)
    assert [r.phrase for r in without_words(regions, ("heart", "crescent"))] == ["a hearth"]


def _batches(pairs, model, plan_kw=None, steps=1):
    plan = BatchPlan(4, seed=0, regions=RegionInput(32, "shortest", **(plan_kw or {})))
    return next(iter(StepBatches(pairs, model.preprocess, model.tokenize, plan, 0, steps)))


def test_a_synthetic_batch_carries_its_regions_in_input_pixels():
    model = micro_model(MICRO_VIT_CFG)
    pairs = SyntheticPairs(8, seed=4)
    batch = _batches(pairs, model)
    rows = batch["region_boxes"][:, 0].long().tolist()
    want = []
    for row, pair_id in enumerate(batch["ids"]):
        pair = pairs[int(pair_id.rsplit("-", 1)[1])]
        want += [(row, [v * 32 / 64 for v in r.box], r.phrases) for r in pair.regions]
    assert rows == [w[0] for w in want]
    assert torch.allclose(batch["region_boxes"][:, 1:], torch.tensor([w[1] for w in want]))
    assert batch["region_phrase_ids"].tolist() == [caption_id(w[2][0]) for w in want]  # a scene's object: one phrase
    assert batch["region_true_ids"].tolist() == [[caption_id(w[2][0])] for w in want]
    assert torch.equal(batch["region_tokens"], model.tokenize([w[2][0] for w in want]))
    assert batch["region_unnamed_boxes"].shape == (0, 5)  # no held-out word: every box has its phrase
    held = _batches(pairs, model, {"exclude_words": tuple(synthetic.SHAPES)})
    assert held["region_boxes"].shape == (0, 5) and held["region_tokens"] is None
    assert torch.equal(held["region_unnamed_boxes"], batch["region_boxes"])  # every box kept, without its phrase


def test_a_held_out_regions_box_stays_without_its_phrase():
    model = micro_model(MICRO_VIT_CFG)
    pairs = SyntheticPairs(16, seed=4)
    every = _batches(pairs, model, steps=1)
    held = _batches(pairs, model, {"exclude_words": ("star", "circle")})
    named = [not any(w in p for w in ("star", "circle")) for p in _phrases(pairs, every)]
    assert torch.equal(held["region_boxes"], every["region_boxes"][torch.tensor(named)])
    assert torch.equal(held["region_unnamed_boxes"], every["region_boxes"][~torch.tensor(named)])


def _phrases(pairs, batch):
    """The phrases of ``batch``'s regions in its order (each synthetic object has one)."""
    return [r.phrases[0] for pair_id in batch["ids"] for r in pairs[int(pair_id.rsplit("-", 1)[1])].regions]


def test_a_manifest_regions_column_reaches_the_batch(tmp_path):
    for i in range(2):
        Image.new("RGB", (64, 32), "gray").save(tmp_path / f"{i}.png")
    rows = [{"image": f"{i}.png", "caption": f"picture {i}",
             "regions": json.dumps([{"box": [32, 0, 48, 16], "phrase": f"thing {i}"}, {"box": [0, 0, 99, 9], "phrase": "bad"}])}
            for i in range(2)]  # fmt: skip
    with open(tmp_path / "m.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    model = micro_model(MICRO_VIT_CFG)
    with pytest.warns(UserWarning, match="skipped 1 of 2"):
        batch = _batches(open_pairs(tmp_path / "m.jsonl"), model)
    assert batch["region_boxes"].shape == (4, 5)  # two rows of each pair of the manifest (4 rows, 2 images, 1 good region each)
    # 64x32 -> shortest side to 32 (scale 1), centre crop x 16..48: the box [32, 0, 48, 16] becomes [16, 0, 32, 16]
    assert batch["region_boxes"][0, 1:].tolist() == [16.0, 0.0, 32.0, 16.0]


def test_each_step_draws_one_of_a_regions_descriptions_and_knows_them_all(tmp_path):
    Image.new("RGB", (32, 32), "gray").save(tmp_path / "0.png")
    phrases = ["a small brown dog", "a brown dog", "a dog"]
    row = {"image": "0.png", "caption": "a dog", "regions": json.dumps([{"box": [0, 0, 16, 16], "phrase": phrases},
                                                                       {"box": [16, 16, 32, 32], "phrase": "a ball"}])}  # fmt: skip
    (tmp_path / "m.jsonl").write_text(json.dumps(row) + "\n")
    model = micro_model(MICRO_VIT_CFG)
    pairs = open_pairs(tmp_path / "m.jsonl")
    plan, drawn = BatchPlan(4, seed=0, regions=RegionInput(32)), set()
    for batch in StepBatches(pairs, model.preprocess, model.tokenize, plan, 0, 6):
        ids = batch["region_phrase_ids"].tolist()
        assert batch["region_true_ids"].tolist() == [[caption_id(p) for p in phrases], [caption_id("a ball")] * 3] * 4
        assert all(i in {caption_id(p) for p in phrases} for i in ids[0::2]) and ids[1::2] == [caption_id("a ball")] * 4
        drawn |= set(ids[0::2])
    assert len(drawn) == 3  # every description gets drawn over the steps


def test_encode_regions_pools_the_dense_features_over_each_box_in_order():
    import cliplab
    from cliplab.dense.features import dense_features

    model = cliplab.load_model("cliplab:shapes-vit")
    images = [synthetic.scene(i, seed=9, split="test").image for i in range(2)]
    boxes = [[[0, 0, 64, 64], [8, 16, 24, 32]], [[40, 40, 56, 64]]]
    rows = model.encode_regions(images, boxes)
    assert rows.shape == (3, model.embed_dim) and np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)
    with torch.no_grad():
        dense = dense_features(model, model.preprocess_batch(images), "naclip")
    want = [dense[0].mean((1, 2)), dense[0, :, 2:4, 1:3].mean((1, 2)), dense[1, :, 5:8, 5:7].mean((1, 2))]
    want = torch.nn.functional.normalize(torch.stack(want), dim=-1).numpy()
    assert np.allclose(rows, want, atol=1e-5)
    with pytest.raises(InputError, match="image 1: box"):
        model.encode_regions(images, [[[0, 0, 5, 5]], [[5, 5, 5, 9]]])
    with pytest.raises(InputError, match="2 images but 1 box lists"):
        model.encode_regions(images, [[[0, 0, 5, 5]]])


def test_region_negatives_swap_the_shape_word_never_into_a_held_out_one():
    from cliplab.train.hard_negatives import swapped_phrases

    swaps = swapped_phrases("a small red star at the top left", ("heart", "crescent"))
    assert swaps == [f"a small red {s} at the top left" for s in synthetic.SHAPES if s not in ("star", "heart", "crescent")]
    assert swapped_phrases("a red thing")[:2] == ["a green thing", "a blue thing"] and swapped_phrases("a dog") == []
    model = micro_model(MICRO_VIT_CFG)
    batch = _batches(SyntheticPairs(8, seed=4), model, {"negatives": True, "exclude_words": ("heart",)})
    r = len(batch["region_boxes"])
    assert batch["region_negatives_valid"].shape == (r, 6) and batch["region_negatives_valid"].all()
    assert batch["region_negative_tokens"].shape[0] == r * 6
