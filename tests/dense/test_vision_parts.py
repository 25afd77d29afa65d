"""The vision-side pieces reassemble into the library's own forward pass."""

import torch

from cliplab.models.vision_parts import resize_grid_embedding, vision_parts


@torch.no_grad()
def test_openclip_vit_pieces_give_the_image_embedding(tiny_model):
    parts = vision_parts(tiny_model)
    pixels = torch.randn(2, 3, 32, 32)
    x, grid = parts.embed(pixels)
    assert grid == (4, 4) and x.shape == (2, 17, 64)
    pooled = parts.head(parts.last_block(parts.run_blocks(x)))[:, 0]
    torch.testing.assert_close(pooled, tiny_model.torch_module.encode_image(pixels), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_hf_vit_pieces_give_the_image_embedding(hf_clip):
    parts = vision_parts(hf_clip)
    pixels = torch.randn(2, 3, 32, 32)
    x, _ = parts.embed(pixels)
    pooled = parts.head(parts.last_block(parts.run_blocks(x)))[:, 0]
    expected = hf_clip.torch_module.get_image_features(pixel_values=pixels)
    expected = getattr(expected, "pooler_output", expected)
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_block_qkv_gives_each_blocks_attention_weights(tiny_model, hf_clip):
    """Softmax(q kᵀ/√d) from ``block_qkv`` equals the attention weights the libraries report."""
    parts = vision_parts(tiny_model)
    x, _ = parts.embed(torch.randn(2, 3, 32, 32))
    for index, block in enumerate(tiny_model.torch_module.visual.transformer.resblocks):
        q, k, _ = parts.block_qkv(index, x)
        ours = torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, dim=-1).mean(1)
        normed = block.ln_1(x)
        _, theirs = block.attn(normed, normed, normed, need_weights=True, average_attn_weights=True)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
        x = parts.blocks[index](x)

    parts = vision_parts(hf_clip)
    pixels = torch.randn(1, 3, 32, 32)
    x, _ = parts.embed(pixels)
    out = hf_clip.torch_module.vision_model(pixel_values=pixels, output_attentions=True)
    for index, expected in enumerate(out.attentions):
        q, k, _ = parts.block_qkv(index, x)
        ours = torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5, dim=-1)
        torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
        x = parts.blocks[index](x)


def test_positional_embedding_resize_keeps_a_matching_grid_and_the_class_token():
    pos = torch.randn(1 + 16, 8)
    assert resize_grid_embedding(pos, (4, 4)) is pos
    bigger = resize_grid_embedding(pos, (6, 3))
    assert bigger.shape == (1 + 18, 8)
    torch.testing.assert_close(bigger[0], pos[0])
    # a constant embedding stays constant under bicubic resizing
    flat = torch.cat([pos[:1], torch.ones(16, 8)])
    torch.testing.assert_close(resize_grid_embedding(flat, (8, 8))[1:], torch.ones(64, 8))
