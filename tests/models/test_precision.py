"""Precision: hardware detection, the ``auto`` choice, attention rebuilt with Linear projections,
and the fidelity of bf16 / int8 against fp32 (cosine and zero-shot agreement).

bf16 numerics do not depend on the instruction set (without avx512_bf16/amx_bf16 oneDNN emulates
the same rounding, only slower), so the bf16 checks run on any CPU; int8 needs a quantised-kernel
engine and an x86 CPU with AVX2 (fbgemm) or an ARM one (qnnpack), and is skipped without.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cliplab.errors import CliplabError
from cliplab.models import load_model
from cliplab.models import precision as P

INT8 = P.int8_supported()
needs_int8 = pytest.mark.skipif(not INT8, reason="no int8 kernels here (no fbgemm/x86/qnnpack engine, or an x86 CPU without AVX2)")

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Example
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16

processor\t: 1
model name\t: ignored
flags\t\t: fpu
"""


def test_parse_cpuinfo_reads_the_first_processor():
    model, flags = P.parse_cpuinfo(CPUINFO)
    assert model == "Intel(R) Xeon(R) Example"
    assert {"avx2", "avx512_bf16", "amx_bf16"} <= flags and "fpu" in flags


@pytest.mark.parametrize(
    "flags, expected",
    [({"avx2", "avx512_bf16"}, "bf16"), ({"avx2", "amx_bf16"}, "bf16"), ({"avx2", "avx512f"}, "fp32"), (set(), "fp32")],
)
def test_auto_picks_bf16_only_where_the_cpu_runs_it_natively(monkeypatch, flags, expected):
    monkeypatch.setattr(P, "cpu_info", lambda: P.CpuInfo("test cpu", 4, frozenset(flags)))
    chosen, why = P.resolve_precision("auto", torch.device("cpu"))
    assert chosen == expected
    assert ("avx512_bf16" in why or "amx_bf16" in why) and why


def test_auto_on_this_machine_follows_its_flags():
    chosen, _ = P.auto_precision(torch.device("cpu"))
    assert chosen == ("bf16" if P.cpu_info().has_any(P.BF16_FLAGS) else "fp32")


@pytest.mark.parametrize("precision, device", [("int4", "cpu"), ("fp16", "cpu"), ("int8", "cuda"), ("int8", "meta")])
def test_impossible_precisions_are_refused_with_a_reason(precision, device):
    with pytest.raises(CliplabError, match=precision):
        P.resolve_precision(precision, torch.device(device))


# --- ProjectedAttention is nn.MultiheadAttention --------------------------------------------------
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("mask", ["none", "causal-float", "causal-bool", "padding", "per-head"])
def test_projected_attention_matches_multihead_attention(batch_first, mask):
    torch.manual_seed(0)
    n, length, d, heads = 3, 7, 16, 4
    mha = nn.MultiheadAttention(d, heads, batch_first=batch_first).eval()
    with torch.no_grad():
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    ours = P.ProjectedAttention(mha).eval()
    x = torch.randn(n, length, d) if batch_first else torch.randn(length, n, d)
    kwargs = {}
    causal = torch.triu(torch.ones(length, length, dtype=torch.bool), 1)
    if mask == "causal-float":
        kwargs["attn_mask"] = torch.zeros(length, length).masked_fill(causal, float("-inf"))
    elif mask == "causal-bool":
        kwargs["attn_mask"] = causal
    elif mask == "padding":
        pad = torch.zeros(n, length, dtype=torch.bool)
        pad[0, -2:] = True
        kwargs["key_padding_mask"] = pad
    elif mask == "per-head":
        kwargs["attn_mask"] = torch.randn(n * heads, length, length)
    with torch.no_grad():
        expected, _ = mha(x, x, x, need_weights=False, **kwargs)
        got, weights = ours(x, x, x, need_weights=False, **kwargs)
    assert weights is None
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_projected_attention_cross_attention():
    torch.manual_seed(1)
    mha = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    ours = P.ProjectedAttention(mha)
    q, kv = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    with torch.no_grad():
        torch.testing.assert_close(ours(q, kv, kv)[0], mha(q, kv, kv, need_weights=False)[0], atol=1e-5, rtol=1e-5)


def test_int8_quantises_attention_projections_of_the_image_tower(tiny_model_files):
    if not INT8:
        pytest.skip("no int8 kernels here")
    model = load_model(tiny_model_files["spec"], pretrained=tiny_model_files["weights"], device="cpu", precision="int8")
    visual_kinds = {type(m).__name__ for m in model.torch_module.visual.modules()}
    assert "ProjectedAttention" in visual_kinds and "MultiheadAttention" not in visual_kinds
    assert not any(type(m) is nn.Linear for m in model.torch_module.modules())  # every Linear quantised


# --- fidelity -------------------------------------------------------------------------------------
def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


@pytest.fixture(scope="module")
def scenes():
    from cliplab.evaluate.scenes import single_object_scenes

    return single_object_scenes(200, seed=11)


@pytest.fixture(scope="module")
def bundled_fp32(scenes):
    model = load_model("tiny", device="cpu")
    return model, model.encode_images([r.image for r in scenes])


@pytest.mark.parametrize("precision", ["bf16", pytest.param("int8", marks=needs_int8)])
def test_bundled_model_keeps_its_embeddings_and_zero_shot_answers(precision, scenes, bundled_fp32):
    from cliplab.evaluate.scenes import zero_shot_attribute

    ref_model, ref = bundled_fp32
    model = load_model("tiny", device="cpu", precision=precision)
    assert model.precision == precision and model.identity != ref_model.identity
    X = model.encode_images([r.image for r in scenes])
    assert X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert cosines(X, ref).min() >= 0.999
    for attribute in ("shape", "color"):
        ours = zero_shot_attribute(model, X, scenes, attribute).y_pred
        theirs = zero_shot_attribute(ref_model, ref, scenes, attribute).y_pred
        assert np.mean(ours == theirs) >= 0.99, attribute


VIT_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 128, "layers": 4, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 4},
}
VIT_PRE = {"size": 64, "mean": [0.5] * 3, "std": [0.25] * 3}


def random_vit(precision: str):
    """A small random-weights open_clip ViT (4 layers, width 128); the same weights every call."""
    from cliplab.models.openclip_backend import OpenClipModel

    torch.manual_seed(0)
    return OpenClipModel.from_config("test:vit", VIT_CFG, VIT_PRE, None, device="cpu", precision=precision)


@pytest.fixture(scope="module")
def vit_fp32():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(32)]
    texts = [f"a photo of a {w} thing number {i}" for i, w in enumerate(["red", "round", "small", "tall"] * 4)]
    model = random_vit("fp32")
    return model, images, texts, model.encode_images(images), model.encode_texts(texts)


@pytest.mark.parametrize("precision", ["bf16", pytest.param("int8", marks=needs_int8)])
def test_random_vit_embeddings_stay_within_cosine_0999(precision, vit_fp32):
    ref_model, images, texts, ref_img, ref_txt = vit_fp32
    model = random_vit(precision)
    assert model.identity.split("|")[1] == ref_model.identity.split("|")[1]  # same weights
    assert model.identity != ref_model.identity  # another cache namespace
    img, txt = model.encode_images(images), model.encode_texts(texts)
    assert cosines(img, ref_img).min() >= 0.999
    assert cosines(txt, ref_txt).min() >= 0.999
    assert not np.array_equal(img, ref_img)  # the reduced precision really ran
