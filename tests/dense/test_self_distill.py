"""Region self-distillation: box means and crops against direct computations; training moves the patches only."""

import pytest
import torch
import torch.nn.functional as F

from cliplab.dense.self_distill import box_crops, box_means, distill_regions, random_boxes
from cliplab.errors import InputError


def test_random_boxes_stay_on_the_grid():
    boxes = random_boxes(4, 50, (8, 6), (2, 5), torch.Generator().manual_seed(0))
    assert boxes.shape == (200, 5)
    side = boxes[:, 3] - boxes[:, 1]
    torch.testing.assert_close(side, boxes[:, 4] - boxes[:, 2])
    assert side.min() >= 2 and side.max() <= 5
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= 6).all() and (boxes[:, 4] <= 8).all()
    assert set(boxes[:, 0].long().tolist()) == {0, 1, 2, 3}


def test_box_means_are_plain_means():
    feats = torch.randn(2, 3, 4, 5)
    boxes = torch.tensor([[0, 1, 0, 3, 2], [1, 0, 1, 5, 4], [1, 2, 2, 3, 3]], dtype=torch.float)
    expected = torch.stack([feats[0, :, 0:2, 1:3].mean((1, 2)), feats[1, :, 1:4, 0:5].mean((1, 2)), feats[1, :, 2, 2]])
    torch.testing.assert_close(box_means(feats, boxes), expected)


def test_box_crops_cut_and_resize_bilinearly():
    pixels = torch.randn(2, 3, 16, 16)
    whole = box_crops(pixels, torch.tensor([[1, 0, 0, 4, 4]], dtype=torch.float), patch=4, size=16)
    torch.testing.assert_close(whole[0], pixels[1])
    crop = box_crops(pixels, torch.tensor([[0, 1, 1, 3, 3]], dtype=torch.float), patch=4, size=32)
    direct = F.interpolate(pixels[:1, :, 4:12, 4:12], size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(crop[:, :, 2:-2, 2:-2], direct[:, :, 2:-2, 2:-2])  # the border samples outside the box


def test_distillation_lowers_the_region_loss_and_leaves_the_text_tower(tiny_model_files):
    from cliplab.models import load_model

    model = load_model(tiny_model_files["spec"], pretrained=tiny_model_files["weights"], device="cpu")
    text_before = {n: p.clone() for n, p in model.torch_module.named_parameters() if not n.startswith("visual.")}
    flags_before = [p.requires_grad for p in model.torch_module.parameters()]
    pixels = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    log = distill_regions(model, lambda step: pixels, steps=40, batch_size=8, boxes_per_image=4, sides=(1, 3), lr=1e-3)
    assert len(log.region) == 40 and sum(log.region[-5:]) < sum(log.region[:5])
    for name, p in model.torch_module.named_parameters():
        if name in text_before:
            torch.testing.assert_close(p, text_before[name])
    assert [p.requires_grad for p in model.torch_module.parameters()] == flags_before  # the caller's flags come back


def test_refuses_a_resnet(resnet_model):
    with pytest.raises(InputError, match="ViT"):
        distill_regions(resnet_model, lambda step: torch.zeros(1, 3, 64, 64), steps=1)
