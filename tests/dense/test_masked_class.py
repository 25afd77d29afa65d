"""Box class tokens (cliplab.dense.masked_class): the same numbers as extra tokens in the library's own
blocks under an attention mask, a whole-image box is the image embedding, encode_regions reads them."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cliplab.dense.box_pool import box_cell_cover
from cliplab.dense.masked_class import MaskedClassPrompter, box_class_tokens
from cliplab.models.vision_parts import vision_parts


@torch.no_grad()
def test_equal_to_extra_class_tokens_under_an_attention_mask_in_the_library_blocks(tiny_model):
    """One image of a 4x4 grid (8-px cells), two boxes: the sequence [cls ; patches ; two class-token copies]
    through open_clip's own resblocks, the image rows blind to the copies, each copy seeing itself and its box's
    cells (logit + log covered share), then the final norm and projection."""
    visual = tiny_model.torch_module.visual
    parts = vision_parts(tiny_model)
    pixels = torch.randn(1, 3, 32, 32)
    boxes = torch.tensor([[0, 0.0, 0.0, 16.0, 12.0], [0, 10.0, 4.0, 31.0, 30.0]])
    x, _ = parts.embed(pixels)
    seq = torch.cat([x, x[:, :1].expand(1, 2, -1)], dim=1)  # (1, 17 + 2, W)
    length = seq.shape[1]
    mask = torch.zeros(length, length)
    mask[:17, 17:] = float("-inf")  # the image's tokens never read the copies
    cover = box_cell_cover(boxes[:, 1:], (4, 4), 8)
    for j in range(2):
        row = torch.full((length,), float("-inf"))
        row[1:17] = cover[j].log()
        row[17 + j] = 0.0
        mask[17 + j] = row
    for block in visual.transformer.resblocks:
        seq = block(seq, attn_mask=mask)
    expected = (visual.ln_post(seq[0, 17:]) @ visual.proj)
    torch.testing.assert_close(box_class_tokens(parts, pixels, boxes), expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fixture", ["tiny_model", "hf_clip"])
@torch.no_grad()
def test_a_box_over_the_whole_image_reads_what_the_class_token_reads(fixture, request):
    model = request.getfixturevalue(fixture)
    parts = vision_parts(model)
    pixels = torch.randn(2, 3, 32, 32)
    x, _ = parts.embed(pixels)
    image = parts.head(parts.last_block(parts.run_blocks(x)))[:, 0]
    whole = torch.tensor([[1, 0.0, 0.0, 32.0, 32.0], [0, 0.0, 0.0, 32.0, 32.0]])
    torch.testing.assert_close(box_class_tokens(parts, pixels, whole), image[[1, 0]], atol=1e-5, rtol=1e-4)
    half = box_class_tokens(parts, pixels, torch.tensor([[0, 0.0, 0.0, 16.0, 32.0]]))
    assert float(F.cosine_similarity(half, image[:1])) < 0.999  # a part of the image is another region


def test_encode_regions_reads_boxes_with_the_prompter_and_gradients_reach_the_tower(tiny_model):
    from PIL import Image

    images = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8)) for i in range(2)]
    boxes = [[[0, 0, 16, 16], [4, 4, 30, 20]], [[8, 8, 24, 24]]]
    pooled = tiny_model.encode_regions(images, boxes)
    tiny_model.region_prompter = MaskedClassPrompter()
    try:
        got = tiny_model.encode_regions(images, boxes)
    finally:
        tiny_model.region_prompter = None
    pixels = tiny_model.preprocess_batch(images)
    rows = torch.tensor([[0, 0, 0, 16, 16], [0, 4, 4, 30, 20], [1, 8, 8, 24, 24]], dtype=torch.float32)  # 32-px images: input pixels
    with torch.no_grad():
        want = F.normalize(box_class_tokens(vision_parts(tiny_model), pixels, rows), dim=-1).numpy()
    assert got.shape == (3, tiny_model.embed_dim) and np.allclose(got, want, atol=1e-5)
    assert not np.allclose(got, pooled, atol=1e-2)
    box_class_tokens(vision_parts(tiny_model), pixels, rows).sum().backward()
    visual = tiny_model.torch_module.visual
    try:
        for param in (visual.conv1.weight, visual.transformer.resblocks[0].attn.in_proj_weight, visual.transformer.resblocks[-1].mlp.c_fc.weight):
            assert param.grad is not None and float(param.grad.abs().sum()) > 0
    finally:
        tiny_model.torch_module.zero_grad(set_to_none=True)
