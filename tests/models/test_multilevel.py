"""Multi-level features (COMM): the rows are the chosen blocks' LayerNorm-ed tokens, checked against
open_clip's own forward read with hooks; layer and token choices, the cache key, refusals."""

from __future__ import annotations

import math
from io import BytesIO

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cliplab.data.sources import open_source
from cliplab.errors import InputError
from cliplab.models.multilevel import (
    MergedEncoders,
    MultiLevelModel,
    parse_layers,
    parse_tokens,
)

CFG = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 3, "head_width": 16},
       "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}  # fmt: skip


@pytest.fixture(scope="module")
def vit():
    """A random 3-block open_clip ViT (4 x 4 patch grid)."""
    from cliplab.models.openclip_backend import OpenClipModel

    return OpenClipModel.from_config("test-vit3", CFG, {"size": 32}, None, device="cpu", seed=3)


@pytest.fixture(scope="module")
def scenes():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)) for _ in range(5)]


def hooked_tokens(model, pixels: torch.Tensor) -> list[torch.Tensor]:
    """The tokens after every block, (B, L, D), taken by forward hooks while open_clip's encode_image runs."""
    visual = model.torch_module.visual
    seen: list[torch.Tensor] = []
    batch_first = getattr(visual.transformer, "batch_first", True)
    hooks = [block.register_forward_hook(lambda _m, _i, out: seen.append(out if batch_first else out.transpose(0, 1)))
             for block in visual.transformer.resblocks]  # fmt: skip
    try:
        with torch.no_grad():
            model.torch_module.encode_image(pixels)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def direct(tokens: list[torch.Tensor], layers: list[int], grid: int | None = None) -> np.ndarray:
    """COMM's per-layer LayerNorm of the class token (and a 2x2 pooled patch grid), computed by hand."""
    vectors = []
    for layer in layers:
        t = tokens[layer]
        ln = (t - t.mean(-1, keepdim=True)) / torch.sqrt(t.var(-1, unbiased=False, keepdim=True) + 1e-5)
        vectors.append(ln[:, 0])
        if grid:
            cells = ln[:, 1:].reshape(len(t), 4, 4, -1)
            for r in range(grid):
                for c in range(grid):
                    vectors.append(cells[:, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2].mean((1, 2)))
    rows = torch.cat([v / v.norm(dim=-1, keepdim=True) for v in vectors], dim=1) / math.sqrt(len(vectors))
    return rows.numpy()


def test_rows_are_the_chosen_layers_normalised_class_tokens(vit, scenes):
    tokens = hooked_tokens(vit, vit.preprocess_batch(scenes))
    got = vit.encode_images(scenes, layers=[-1, -2, -3])
    assert got.shape == (5, 3 * 32) and got.dtype == np.float32
    np.testing.assert_allclose(got, direct(tokens, [2, 1, 0]), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vit.encode_images(scenes, layers="0,-1", batch_size=2), direct(tokens, [0, 2]), atol=1e-5)
    assert not np.allclose(got, vit.encode_images(scenes, layers=[-3, -2, -1]))  # order is kept


def test_grid_tokens_are_the_layers_patch_tokens_pooled_per_cell(vit, scenes):
    tokens = hooked_tokens(vit, vit.preprocess_batch(scenes))
    got = vit.encode_images(scenes, layers=[-1, -2], tokens="cls+grid2")
    assert got.shape == (5, 2 * 5 * 32)
    np.testing.assert_allclose(got, direct(tokens, [2, 1], grid=2), atol=1e-5)


def test_mean_tokens_and_the_model_wrapper(vit, scenes):
    model = vit.multilevel([-1], tokens="mean")
    assert isinstance(model, MultiLevelModel) and model.embed_dim == 32
    tokens = hooked_tokens(vit, vit.preprocess_batch(scenes))
    want = F.normalize(F.layer_norm(tokens[2], (32,))[:, 1:].mean(1), dim=-1).numpy()
    np.testing.assert_allclose(model.encode_images(scenes), want, atol=1e-5)
    with pytest.raises(InputError, match="no text counterpart"):
        model.encode_texts(["a red star"])


def test_the_layer_set_and_tokens_are_part_of_the_identity(vit):
    identities = {vit.identity, vit.multilevel([-1, -2, -3]).identity, vit.multilevel([-1, -2]).identity,
                  vit.multilevel([-1, -2, -3], "cls+mean").identity}  # fmt: skip
    assert len(identities) == 4
    assert vit.multilevel([-1, -2, -3]).identity == vit.multilevel([2, 1, 0]).identity  # the same blocks
    assert vit.multilevel([-1, -2, -3]).identity.startswith(vit.identity)


def test_feature_store_keeps_layer_sets_apart(vit, tmp_path):
    from cliplab.features import embed

    plain = embed(vit, "synthetic:6", cache_dir=tmp_path, progress=False, num_workers=0)
    multi = embed(vit.multilevel([-1, -2]), "synthetic:6", cache_dir=tmp_path, progress=False, num_workers=0)
    again = embed(vit.multilevel([-1, -2]), "synthetic:6", cache_dir=tmp_path, progress=False, num_workers=0)
    assert plain.dim == 16 and multi.dim == 64
    assert multi.stats["cache_hits"] == 0 and again.stats["cache_hits"] == 6
    np.testing.assert_array_equal(multi.X, again.X)
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2
    assert "layers=-1,-2" in multi.model


def test_a_second_encoder_is_merged_beside(vit, tiny_model, scenes):
    merged = vit.multilevel([-1, -2], merge_with=tiny_model)
    assert isinstance(merged, MergedEncoders) and merged.embed_dim == 64 + tiny_model.embed_dim
    got = merged.encode_images(scenes)
    own = vit.encode_images(scenes, layers=[-1, -2])
    other = tiny_model.encode_images(scenes)  # a ResNet with its own preprocessing
    np.testing.assert_allclose(got, np.concatenate([own, other], axis=1) / math.sqrt(2), atol=1e-5)
    assert tiny_model.identity in merged.identity and vit.multilevel([-1, -2]).identity in merged.identity


def test_merged_encoders_go_through_the_feature_store(vit, tiny_model, tmp_path):
    from cliplab.features import embed

    merged = vit.multilevel([-1], merge_with=tiny_model)
    feats = embed(merged, "synthetic:4", cache_dir=tmp_path, progress=False, num_workers=0)
    images = [Image.open(BytesIO(item.read_bytes())) for item in open_source("synthetic:4").items]
    np.testing.assert_allclose(feats.X, merged.encode_images(images), atol=1e-5)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_cast_models_give_multi_level_rows_close_to_fp32(scenes, precision):
    from cliplab.models.openclip_backend import OpenClipModel

    cast = OpenClipModel.from_config("test-vit3", CFG, {"size": 32}, None, device="cpu", seed=3, precision=precision)
    fp32 = OpenClipModel.from_config("test-vit3", CFG, {"size": 32}, None, device="cpu", seed=3)
    a, b = cast.encode_images(scenes, layers=[-1, -2]), fp32.encode_images(scenes, layers=[-1, -2])
    assert a.dtype == np.float32 and (a * b).sum(1).min() > 0.98


@pytest.mark.parametrize(
    ("layers", "match"),
    [([3], "not a block"), ([-4], "not a block"), ([], "names no block"), ([-1, 2], "twice"), ("x,y", "block indices"), ([1.0], "not a block")],
)
def test_bad_layers_are_one_clear_line(layers, match):
    with pytest.raises(InputError, match=match):
        parse_layers(layers, 3)


def test_tokens_spelling():
    assert parse_tokens("cls+grid") == (("cls", 0), ("grid", 2))
    assert parse_layers(np.array([-1, 0]), 3) == (2, 0)
    assert parse_tokens("mean+grid3") == (("mean", 0), ("grid", 3))
    for bad in ("patch", "cls+cls", "grid0", ""):
        with pytest.raises(InputError, match="tokens"):
            parse_tokens(bad)


def test_a_resnet_refuses_layers():
    from cliplab.models.openclip_backend import OpenClipModel

    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}  # fmt: skip
    resnet = OpenClipModel.from_config("test-resnet", cfg, {"size": 64}, None, device="cpu", seed=0)
    with pytest.raises(InputError, match="need a ViT image tower"):
        resnet.encode_images([Image.new("RGB", (64, 64))], layers=[-1])


def test_multilevel_of_multilevel_is_refused(vit):
    with pytest.raises(InputError, match="already gives multi-level"):
        vit.multilevel([-1]).multilevel([-2])
    with pytest.raises(InputError, match="already gives multi-level"):
        vit.multilevel([-1]).encode_images([Image.new("RGB", (32, 32))], layers=[-2])


def test_a_transformers_vit_gives_its_hidden_states(hf_clip_dir, scenes):
    from cliplab.models import load_model

    model = load_model(f"hf:{hf_clip_dir}", device="cpu")
    pixels = model.preprocess_batch(scenes)
    with torch.no_grad():
        hidden = model.torch_module.vision_model(pixel_values=pixels, output_hidden_states=True).hidden_states
    want = direct([h for h in hidden[1:]], [1, 0])  # hidden_states[0] is the embedding, [i + 1] after layer i
    np.testing.assert_allclose(model.encode_images(scenes, layers=[-1, -2]), want, atol=1e-5)


def test_an_index_names_the_layer_set_as_what_differs(vit):
    from cliplab.search.index import model_difference

    assert model_difference(vit.identity, vit.multilevel([-1, -2]).identity) == "multi-level layers, multi-level tokens"
    assert model_difference(vit.multilevel([-1]).identity, vit.multilevel([-1, -2]).identity) == "multi-level layers"
