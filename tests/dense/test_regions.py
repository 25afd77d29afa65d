"""Mask classification: masked crops, boxes, probabilities, and mask prompt tuning."""

import numpy as np
import pytest
import torch

from cliplab.dense.regions import (
    MaskPrompt,
    as_masks,
    classify_regions,
    context_box,
    foreground_regions,
    masked_crops,
    region_probabilities,
    train_mask_prompt,
)
from cliplab.errors import InputError
from cliplab.models.vision_parts import pixel_normalisation


def test_boxes_become_masks_and_bad_shapes_fail():
    masks = as_masks([[1, 2, 4, 3]], 5, 6)
    assert masks.shape == (1, 5, 6) and masks.sum() == 3 and masks[0, 2, 1:4].all()
    with pytest.raises(InputError):
        as_masks(np.zeros((2, 3, 3), bool), 5, 6)


def test_crop_keeps_the_region_and_blanks_the_rest(tiny_model):
    from PIL import Image

    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[5:10, 20:25] = 255
    mask = np.zeros((20, 30), bool)
    mask[5:10, 20:25] = True
    crops, crop_masks = masked_crops(tiny_model, Image.fromarray(rgb), mask[None], expand=0.0)
    assert crops.shape == (1, 3, 32, 32) and crop_masks.all()  # the box is exactly the mask: white everywhere
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in pixel_normalisation(tiny_model))
    torch.testing.assert_close(crops[0], ((1 - mean) / std).expand(3, 32, 32))
    # a mask that is half the box: the blank half is the mean colour, i.e. zero after normalisation
    half = mask.copy()
    half[5:10, 23:25] = False
    crops, crop_masks = masked_crops(tiny_model, Image.fromarray(rgb), half[None], expand=0.0)
    assert crop_masks.float().mean() == pytest.approx(0.6, abs=0.1)
    assert not crop_masks[0, :, 0].any() and not crop_masks[0, :, -1].any()  # the box is wider than the mask
    torch.testing.assert_close(crops[0][:, :, [0, -1]], torch.zeros(3, 32, 2), atol=1e-6, rtol=0)
    assert crops[0][:, crop_masks[0]].median() > 1.5  # white where the mask is (edges blend bilinearly)


def test_probabilities_and_prompt_tuning(tiny_model, tmp_path):
    from cliplab.data import synthetic

    record = synthetic.scene(0, seed=1, image_size=32, split="test", max_objects=2)
    probs = classify_regions(tiny_model, record.image, record.instance_masks, ["circle", "star"])
    assert probs.shape == (len(record.instance_masks), 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)

    before = [p.detach().clone() for p in tiny_model.torch_module.parameters()]
    prompt = train_mask_prompt(tiny_model, depth=2, n_scenes=8, steps=3, batch_size=4)
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_model.torch_module.parameters()))  # model frozen
    assert prompt.embedding.shape == (2, 16, 64)
    tuned = classify_regions(tiny_model, record.image, record.instance_masks, ["circle", "star"], prompt=prompt)
    np.testing.assert_allclose(tuned.sum(1), 1.0, atol=1e-5)
    again = MaskPrompt.load(prompt.save(tmp_path / "prompt.safetensors"))
    torch.testing.assert_close(again.embedding, prompt.embedding)


def test_foreground_regions_are_8_connected_and_large_enough():
    labels = np.zeros((6, 8), np.int64)
    labels[0, 0] = labels[1, 1] = 2  # diagonal neighbours: one region of 2 pixels
    labels[3:5, 4:7] = 1
    labels[4, 6] = 3  # another class, same region: 6 pixels
    labels[5, 0] = 1  # a lone pixel
    regions = foreground_regions(labels, min_pixels=2)
    assert sorted(r.sum() for r in regions) == [2, 6]
    assert len(foreground_regions(labels, min_pixels=1)) == 3 and foreground_regions(np.zeros((3, 3), int)) == []


def test_context_box_is_a_square_around_the_region():
    mask = np.zeros((20, 20), bool)
    mask[4:8, 6:14] = True  # 4 tall, 8 wide, centre (6, 10)
    np.testing.assert_allclose(context_box(mask, 1.0), [2, -2, 18, 14])
    np.testing.assert_allclose(context_box(mask, 0.0), [6, 2, 14, 10])


def test_segmenter_regions_take_their_crops_class(tiny_model):
    from PIL import Image

    from cliplab.dense import Segmenter
    from cliplab.zeroshot.templates import ensemble_text_weights

    image = Image.fromarray(np.random.default_rng(4).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    names = ["a", "b", "c"]
    plain = Segmenter(tiny_model, names, background=None, threshold=0.0)(image)  # every pixel is foreground
    seg = Segmenter(tiny_model, names, background=None, threshold=0.0, regions=True, region_min_pixels=1)(image)
    text = torch.from_numpy(ensemble_text_weights(tiny_model, names, "default"))
    expected = 1 + region_probabilities(tiny_model, image, [plain.labels > 0], text).argmax(1)[0]
    assert (seg.labels == expected).all()
    np.testing.assert_allclose(seg.probs.sum(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(seg.probs[0], plain.probs[0], atol=1e-6)
    with_background = Segmenter(tiny_model, names)(image), Segmenter(tiny_model, names, regions=True, region_min_pixels=1)(image)
    np.testing.assert_array_equal(with_background[0].labels == 0, with_background[1].labels == 0)
    with pytest.raises(InputError, match="background"):
        Segmenter(tiny_model, names, background=None, regions=True)
    with pytest.raises(InputError, match="region_weight"):
        Segmenter(tiny_model, names, regions=True, region_weight=1.5)


def test_region_weight_zero_keeps_the_dense_vote(tiny_model):
    """λ = 0 in OVSeg's ensemble p_crop^λ · p_dense^(1-λ): each region takes its mean dense class."""
    from PIL import Image

    from cliplab.dense import Segmenter

    image = Image.fromarray(np.random.default_rng(5).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    plain = Segmenter(tiny_model, ["a", "b", "c"], background=None, threshold=0.0)(image)
    seg = Segmenter(tiny_model, ["a", "b", "c"], background=None, threshold=0.0, regions=True, region_min_pixels=1, region_weight=0.0)(image)
    assert (seg.labels == 1 + plain.probs[1:].mean((1, 2)).argmax()).all()


def test_mask_prompt_tuning_leaves_the_model_and_the_global_rng_as_they_were(tiny_model):
    from cliplab.dense.regions import train_mask_prompt

    flags = [p.requires_grad for p in tiny_model.torch_module.parameters()]
    state = torch.random.get_rng_state()
    train_mask_prompt(tiny_model, depth=1, n_scenes=2, steps=1, batch_size=2)
    assert [p.requires_grad for p in tiny_model.torch_module.parameters()] == flags
    assert torch.equal(state, torch.random.get_rng_state())
