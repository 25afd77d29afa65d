"""Each last-block variant equals its formula, computed here independently head by head from the raw weights."""

import pytest
import torch
import torch.nn.functional as F

from cliplab.dense.attention import METHODS, gaussian_neighbourhood
from cliplab.dense.features import dense_features
from cliplab.models.vision_parts import vision_parts


def _softmax_rows(a, b):
    return torch.softmax(a @ b.T / a.shape[-1] ** 0.5, dim=-1)


def reference_tokens(model, pixels, method, std=5.0):
    """The method's patch embeddings from the open_clip modules' weights, one head at a time."""
    visual = model.torch_module.visual
    x = visual.conv1(pixels).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.expand(x.shape[0], 1, -1), x], 1) + visual.positional_embedding
    x = visual.ln_pre(x)
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    last = visual.transformer.resblocks[-1]
    heads = last.attn.num_heads
    w_q, w_k, w_v = last.attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = last.attn.in_proj_bias.chunk(3)
    grid = int((x.shape[1] - 1) ** 0.5)
    outs = []
    for sample in last.ln_1(x):
        q, k, v = sample @ w_q.T + b_q, sample @ w_k.T + b_k, sample @ w_v.T + b_v
        per_head = []
        for h in range(heads):
            sl = slice(h * q.shape[1] // heads, (h + 1) * q.shape[1] // heads)
            qh, kh, vh = q[:, sl], k[:, sl], v[:, sl]
            if method == "vanilla":
                attn = _softmax_rows(qh, kh)
            elif method == "maskclip":
                attn = torch.eye(len(qh))
            elif method == "sclip":
                attn = _softmax_rows(qh, qh) + _softmax_rows(kh, kh)
            elif method == "clearclip":
                attn = _softmax_rows(qh, qh)
            else:  # naclip: Gaussian prior exp(-d^2 / 2 std^2) between patch positions
                ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
                p = torch.stack([ys.flatten(), xs.flatten()], 1).float()
                prior = torch.zeros(len(qh), len(qh))
                prior[1:, 1:] = torch.exp(-((p[:, None] - p[None]) ** 2).sum(-1) / (2 * std**2))
                attn = torch.softmax(kh @ kh.T / kh.shape[1] ** 0.5 + prior, dim=-1)
            per_head.append(attn @ vh)
        outs.append(last.attn.out_proj(torch.cat(per_head, dim=1)))
    out = torch.stack(outs)
    if method in ("vanilla", "maskclip", "sclip"):
        out = x + out
        out = out + last.mlp(last.ln_2(out))
    tokens = visual.ln_post(out)[:, 1:] @ visual.proj
    return F.normalize(tokens, dim=-1)


@pytest.mark.parametrize("method", list(METHODS))
@torch.no_grad()
def test_each_variant_equals_its_formula(tiny_model, method):
    pixels = torch.randn(2, 3, 32, 32)
    got = dense_features(tiny_model, pixels, method, naclip_std=1.5)
    want = reference_tokens(tiny_model, pixels, method, std=1.5)
    assert got.shape == (2, 32, 4, 4)
    torch.testing.assert_close(got.flatten(2).transpose(1, 2), want, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_vanilla_class_token_path_is_the_unmodified_model(tiny_model):
    """Sanity check of the reference itself: with vanilla attention it reproduces the library's block."""
    parts = vision_parts(tiny_model)
    x, _ = parts.embed(torch.randn(1, 3, 32, 32))
    x = parts.run_blocks(x)
    torch.testing.assert_close(parts.last_block(x), tiny_model.torch_module.visual.transformer.resblocks[-1](x))


@torch.no_grad()
def test_resnet_maskclip_is_value_and_output_projections_as_1x1_convolutions(resnet_model):
    visual = resnet_model.torch_module.visual
    pool = visual.attnpool
    pixels = torch.randn(1, 3, 128, 128)
    fmap = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(pixels)))))
    v = F.conv2d(fmap, pool.v_proj.weight[:, :, None, None], pool.v_proj.bias)  # MaskCLIP adds no positional embedding
    want = F.normalize(F.conv2d(v, pool.c_proj.weight[:, :, None, None], pool.c_proj.bias), dim=1)
    torch.testing.assert_close(dense_features(resnet_model, pixels, "maskclip"), want, atol=1e-5, rtol=1e-4)


def test_gaussian_prior_is_one_on_the_diagonal_and_symmetric():
    g = gaussian_neighbourhood((3, 4), std=2.0)
    assert g.shape == (12, 12)
    torch.testing.assert_close(torch.diagonal(g), torch.ones(12))
    torch.testing.assert_close(g, g.T)
    assert g[0, 1] == pytest.approx(torch.exp(torch.tensor(-1 / 8)).item())


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_runs_on_a_transformers_vit_and_a_resnet(hf_clip, resnet_model, method):
    for model, size, grid in ((hf_clip, (40, 24), (5, 3)), (resnet_model, (64, 96), (2, 3))):
        feats = dense_features(model, torch.randn(1, 3, *size), method)
        assert feats.shape == (1, 16, *grid)
        torch.testing.assert_close(feats.norm(dim=1), torch.ones(1, *grid))
