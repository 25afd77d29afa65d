"""The CLIP-DINOiser-style refinement head: it learns the teacher's correlations, pools features, round-trips."""

import torch

from cliplab.dense.refine import CorrelationRefiner, correlations, train_refiner


def test_training_lowers_the_correlation_error_and_refine_pools(tiny_model, resnet_model, tmp_path):
    short = train_refiner(tiny_model, resnet_model, n_scenes=32, steps=1, batch_size=16, image_size=32, teacher_layer=1)
    longer = train_refiner(tiny_model, resnet_model, n_scenes=32, steps=60, batch_size=16, image_size=32, teacher_layer=1)
    assert longer.final_loss_ < short.final_loss_

    pixels = torch.randn(2, 3, 32, 32)
    feats = torch.nn.functional.normalize(torch.randn(2, 32, 4, 4), dim=1)
    refined = longer.refine(tiny_model, pixels, feats)
    assert refined.shape == feats.shape
    torch.testing.assert_close(refined.norm(dim=1), torch.ones(2, 4, 4))

    path = longer.save(tmp_path / "head.safetensors")
    again = CorrelationRefiner.load(path)
    torch.testing.assert_close(again.refine(tiny_model, pixels, feats), refined)


def test_pooling_with_only_self_correlation_is_the_identity(tiny_model):
    head = CorrelationRefiner(64, gamma=0.999)  # keeps only the diagonal: other cosines of random features are < 1
    with torch.no_grad():
        head.conv.weight.normal_()
    feats = torch.nn.functional.normalize(torch.randn(1, 32, 4, 4), dim=1)
    torch.testing.assert_close(head.refine(tiny_model, torch.randn(1, 3, 32, 32), feats), feats)


def test_correlations_are_cosines():
    f = torch.randn(1, 5, 2, 3)
    c = correlations(f)
    torch.testing.assert_close(torch.diagonal(c[0]), torch.ones(6))
    flat = f.flatten(2)[0]
    assert torch.isclose(c[0, 1, 4], torch.nn.functional.cosine_similarity(flat[:, 1], flat[:, 4], dim=0))
