"""The CLIP-DINOiser-style refinement heads: they learn the teacher's correlations and foreground,
pool features, gate the background, round-trip."""

import numpy as np
import pytest
import torch
from PIL import Image

from cliplab.dense import Segmenter
from cliplab.dense.refine import CorrelationRefiner, correlations, normalised, teacher_foreground, train_refiner
from cliplab.errors import InputError


def test_training_lowers_the_correlation_error_and_refine_pools(tiny_model, resnet_model, tmp_path):
    short = train_refiner(tiny_model, resnet_model, n_scenes=32, steps=1, batch_size=16, image_size=32, teacher_layer=1)
    longer = train_refiner(tiny_model, resnet_model, n_scenes=32, steps=60, batch_size=16, image_size=32, teacher_layer=1)
    assert longer.final_loss_ < short.final_loss_

    pixels = torch.randn(2, 3, 32, 32)
    feats = torch.nn.functional.normalize(torch.randn(2, 32, 4, 4), dim=1)
    refined, foreground = longer.refine(tiny_model, pixels, feats)
    assert refined.shape == feats.shape and foreground.shape == (2, 4, 4)
    torch.testing.assert_close(refined.norm(dim=1), torch.ones(2, 4, 4))
    assert ((foreground > 0) & (foreground < 1)).all()

    from cliplab.dense.features import last_block_input
    from cliplab.models.vision_parts import vision_parts

    reused = longer.refine(tiny_model, pixels, feats, last_block_input(vision_parts(tiny_model), pixels))
    for ours, theirs in zip(reused, (refined, foreground)):
        torch.testing.assert_close(ours, theirs)

    path = longer.save(tmp_path / "head.safetensors")
    again = CorrelationRefiner.load(path)
    for ours, theirs in zip(again.refine(tiny_model, pixels, feats), (refined, foreground)):
        torch.testing.assert_close(ours, theirs)


@torch.no_grad()
def test_teacher_foreground_is_the_class_attention_above_its_mean(tiny_model, resnet_model):
    """Against the library's own attention weights of block 1, pooled from the 4x4 grid to 2x2."""
    pixels01 = torch.rand(3, 3, 32, 32)
    got = teacher_foreground(tiny_model, pixels01, 1, (2, 2))
    visual = tiny_model.torch_module.visual
    x = visual.conv1(normalised(tiny_model, pixels01)).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.view(1, 1, -1).expand(3, 1, -1), x], dim=1) + visual.positional_embedding
    x = visual.transformer.resblocks[0](visual.ln_pre(x))
    normed = visual.transformer.resblocks[1].ln_1(x)
    _, weights = visual.transformer.resblocks[1].attn(normed, normed, normed, need_weights=True, average_attn_weights=True)
    cls = torch.nn.functional.avg_pool2d(weights[:, 0, 1:].reshape(3, 1, 4, 4), 2)[:, 0]
    torch.testing.assert_close(got, (cls > cls.mean(dim=(1, 2), keepdim=True)).float())
    assert set(got.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(InputError, match="ViT"):
        teacher_foreground(resnet_model, pixels01, 1, (2, 2))


class FixedForeground(torch.nn.Module):
    """A refiner that leaves the features alone and says the foreground is ``value`` everywhere."""

    def __init__(self, value: float, delta: float) -> None:
        super().__init__()
        self.value, self.delta = value, delta

    def refine(self, model, pixels, feats, last_input=None):
        return feats, torch.full((feats.shape[0], *feats.shape[2:]), self.value)


@pytest.mark.parametrize("window", [None, 16])
def test_background_gate_follows_the_foreground_and_delta(tiny_model, window):
    image = Image.fromarray(np.random.default_rng(3).integers(0, 255, (32, 40, 3), dtype=np.uint8))
    plain = Segmenter(tiny_model, ["a", "b", "c"], window=window)(image)
    salient = Segmenter(tiny_model, ["a", "b", "c"], window=window, refiner=FixedForeground(1.0, 0.99))(image)
    np.testing.assert_array_equal(salient.labels, plain.labels)
    np.testing.assert_allclose(salient.probs, plain.probs, atol=1e-6)
    gated = Segmenter(tiny_model, ["a", "b", "c"], window=window, refiner=FixedForeground(0.0, 0.99))(image)
    confident = plain.probs[1:].max(0) >= 0.99
    np.testing.assert_array_equal(gated.labels, np.where(confident, plain.labels, 0))
    assert (gated.labels == 0).mean() > (plain.labels == 0).mean()
    ungated = Segmenter(tiny_model, ["a", "b"], background=None, refiner=FixedForeground(0.0, 0.99))(image)
    np.testing.assert_array_equal(ungated.labels, Segmenter(tiny_model, ["a", "b"], background=None)(image).labels)


def test_pooling_with_only_self_correlation_is_the_identity(tiny_model):
    head = CorrelationRefiner(64, gamma=0.999)  # keeps only the diagonal: other cosines of random features are < 1
    with torch.no_grad():
        head.conv.weight.normal_()
    feats = torch.nn.functional.normalize(torch.randn(1, 32, 4, 4), dim=1)
    torch.testing.assert_close(head.refine(tiny_model, torch.randn(1, 3, 32, 32), feats)[0], feats)


def test_correlations_are_cosines():
    f = torch.randn(1, 5, 2, 3)
    c = correlations(f)
    torch.testing.assert_close(torch.diagonal(c[0]), torch.ones(6))
    flat = f.flatten(2)[0]
    assert torch.isclose(c[0, 1, 4], torch.nn.functional.cosine_similarity(flat[:, 1], flat[:, 4], dim=0))


def test_training_leaves_the_global_rng_alone_and_repeats_with_the_seed(tiny_model, resnet_model):
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    first = train_refiner(tiny_model, resnet_model, n_scenes=8, steps=1, batch_size=4, image_size=32, teacher_layer=1, seed=5)
    assert torch.equal(torch.rand(3), expected)
    again = train_refiner(tiny_model, resnet_model, n_scenes=8, steps=1, batch_size=4, image_size=32, teacher_layer=1, seed=5)
    for name, value in first.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], value)
