"""Trident: splicing crop features, the whole-image affinities, segment averaging, the foreground
split, and the segmenter end to end."""

import numpy as np
import pytest
import torch
from PIL import Image

from cliplab.dense import Segmenter, segment
from cliplab.dense.features import dense_features, last_block_input
from cliplab.dense.trident import (
    aggregate,
    average_in_segments,
    global_affinity,
    masks_to_segments,
    splice_features,
    split_foreground,
    superpixels,
)
from cliplab.errors import InputError
from cliplab.models.vision_parts import vision_parts


def test_splicing_one_covering_crop_equals_a_single_pass(tiny_model):
    pixels = torch.randn(3, 32, 48)

    def features(crops):
        return dense_features(tiny_model, crops, "naclip")

    single = features(pixels[None])[0]
    torch.testing.assert_close(splice_features(features, pixels, 8, window=48, stride=8), single)
    torch.testing.assert_close(splice_features(features, pixels, 8, window=64, stride=32), single)


def test_overlapping_crop_tokens_are_averaged_on_the_global_grid():
    """A position-encoding feature function: each crop reports its own token coordinates, so the
    spliced map is exact only if every crop lands where it belongs; overlaps average equal values."""
    pixels = torch.arange(40 * 56, dtype=torch.float32).view(1, 40, 56).expand(3, 40, 56)

    def features(crops):  # the top-left pixel of each 8x8 patch
        return crops[:, :1, ::8, ::8]

    out = splice_features(features, pixels, 8, window=16, stride=8)
    torch.testing.assert_close(out, pixels[:1, ::8, ::8])
    with pytest.raises(InputError, match="multiples of the patch size"):
        splice_features(features, pixels, 8, window=12, stride=8)


@torch.no_grad()
def test_affinities_are_row_stochastic_and_follow_the_formula(tiny_model):
    parts = vision_parts(tiny_model)
    last = last_block_input(parts, torch.randn(1, 3, 32, 32))
    weights, grid = global_affinity(parts, last)
    assert grid == (4, 4) and weights.shape == (16, 16) and (weights >= 0).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(16))
    # direct computation for head-wise A, C, θ
    q, k, v = (t[:, :, 1:] for t in parts.qkv(parts.ln_1(last[0])))
    heads = []
    for h in range(q.shape[1]):
        a = torch.softmax(q[0, h] @ k[0, h].T / q.shape[-1] ** 0.5, dim=-1)
        vn = v[0, h] / v[0, h].norm(dim=-1, keepdim=True)
        c = vn @ vn.T
        heads.append(a * (c > min(0.9, 1.2 * float(c.mean()))))
    expected = torch.stack(heads).mean(0)
    torch.testing.assert_close(weights, expected / expected.sum(1, keepdim=True))


def test_aggregate_with_identity_is_a_normalised_resize():
    feats = torch.randn(6, 4, 4)
    out = aggregate(feats, torch.eye(16), (4, 4))
    torch.testing.assert_close(out, feats / feats.norm(dim=0, keepdim=True))


def test_average_in_segments_and_masks_to_segments():
    logits = torch.arange(2 * 2 * 3, dtype=torch.float32).view(2, 2, 3)
    segments = np.array([[0, 0, -1], [1, 1, 1]])
    out = average_in_segments(logits, segments)
    torch.testing.assert_close(out[:, 0, :2], logits[:, 0, :2].mean(1, keepdim=True).expand(2, 2))
    torch.testing.assert_close(out[:, 0, 2], logits[:, 0, 2])
    torch.testing.assert_close(out[:, 1], logits[:, 1].mean(1, keepdim=True).expand(2, 3))
    masks = np.zeros((2, 2, 3), dtype=bool)
    masks[0, 0, :2] = masks[1, 0, 1:] = True
    np.testing.assert_array_equal(masks_to_segments(masks), [[0, 0, 1], [-1, -1, -1]])


def test_superpixels_cover_the_image_and_split_a_two_colour_image():
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[:, 16:] = 255
    segments = superpixels(image, cell=16)
    assert segments.shape == (32, 32) and segments.min() == 0
    assert not set(np.unique(segments[:, :16])) & set(np.unique(segments[:, 16:]))


def test_split_foreground_keeps_background_and_splits_the_rest():
    local = torch.log(torch.tensor([0.2, 0.3, 0.5]).view(3, 1, 1))  # one word, two classes
    overall = torch.log(torch.tensor([0.9, 0.1, 0.9]).view(3, 1, 1))  # classes 0.1 : 0.9
    p = split_foreground(local, overall, 1).exp().flatten()
    torch.testing.assert_close(p, torch.tensor([0.2, 0.8 * 0.1, 0.8 * 0.9]))


def test_trident_segmenter_end_to_end(tiny_model, resnet_model):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    seg = segment(tiny_model, image, ["a", "b"], trident=True, size=64, window=32, stride=16)
    assert seg.labels.shape == (64, 96) and seg.probs.shape == (3, 64, 96)
    np.testing.assert_allclose(seg.probs.sum(0), 1.0, atol=1e-5)
    masks = np.zeros((1, 64, 96), dtype=bool)
    masks[0, 10:40, 20:60] = True
    seg = segment(tiny_model, image, ["a", "b"], trident=True, size=64, window=32, proposals=lambda im: masks)
    inside = seg.probs[:, 10:40, 20:60].reshape(3, -1)
    np.testing.assert_allclose(inside, inside[:, :1].repeat(inside.shape[1], 1), atol=1e-5)  # one mask, one answer
    with pytest.raises(InputError, match="ViT"):
        Segmenter(resnet_model, ["a"], trident=True)
