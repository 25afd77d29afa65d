"""Sliding-window inference: crop placement, overlap averaging, and equality with one pass."""

import torch
import torch.nn.functional as F

from cliplab.dense.window import sliding_logits, window_starts


def test_window_starts_cover_the_axis_and_end_flush():
    assert window_starts(448, 224, 112) == [0, 112, 224]
    assert window_starts(500, 224, 112) == [0, 112, 224, 276]
    assert window_starts(100, 224, 112) == [0]
    for length, crop, stride in [(37, 10, 7), (64, 16, 16), (65, 16, 5)]:
        starts = window_starts(length, crop, stride)
        covered = torch.zeros(length)
        for s in starts:
            covered[s : s + crop] = 1
        assert covered.all() and starts[-1] + crop == length


def test_overlapping_crops_are_averaged_exactly():
    """A pointwise logits function gives back the image itself whatever the crops."""
    pixels = torch.randn(3, 37, 29)
    out = sliding_logits(lambda crops: crops * 2, pixels, multiple=1, window=16, stride=5)
    torch.testing.assert_close(out, pixels * 2)


def test_a_window_covering_the_image_equals_a_single_pass(tiny_model):
    from cliplab.dense.features import dense_features

    text = F.normalize(torch.randn(5, 32), dim=-1)

    def logits_fn(crops):
        return torch.einsum("nehw,ce->nchw", dense_features(tiny_model, crops, "clearclip"), text)

    pixels = torch.randn(3, 40, 48)
    single = sliding_logits(logits_fn, pixels, multiple=8)
    assert single.shape == (5, 40, 48)
    torch.testing.assert_close(sliding_logits(logits_fn, pixels, multiple=8, window=48, stride=8), single)
    torch.testing.assert_close(sliding_logits(logits_fn, pixels, multiple=8, window=64), single)
