"""open_clip backend: checkpoint formats, tags, QuickGELU, error lines, inputs, truncation, identity."""

from __future__ import annotations

import warnings

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from cliplab.models import Model, ModelLoadError, load_model
from cliplab.models.openclip_backend import OpenClipModel, needs_quick_gelu


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg and msg
    return msg


@pytest.fixture(scope="module")
def reference(vitb32, pil_images, texts):
    """Embeddings from open_clip itself: the in-memory module that was saved, its own preprocess and tokenizer."""
    model, preprocess = vitb32["model"], vitb32["preprocess"]
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(im) for im in pil_images]), normalize=True)
        txt = model.encode_text(tokenizer(texts), normalize=True)
    return img.numpy(), txt.numpy()


@pytest.fixture(scope="module")
def loaded(vitb32):
    return load_model("openclip:ViT-B-32", pretrained=vitb32["safetensors"], device="cpu")


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_checkpoint_matches_open_clip(vitb32, pil_images, texts, fmt, loaded, reference):
    model = loaded if fmt == "safetensors" else load_model("openclip:ViT-B-32", pretrained=str(vitb32[fmt]), device="cpu")
    assert isinstance(model, Model) and isinstance(model, OpenClipModel)
    assert not model.torch_module.training
    assert model.embed_dim == 512 and model.context_length == 77
    assert model.logit_scale == pytest.approx(vitb32["model"].logit_scale.exp().item())
    ref_img, ref_txt = reference
    img, txt = model.encode_images(pil_images), model.encode_texts(texts)
    assert img.dtype == np.float32 and txt.dtype == np.float32
    np.testing.assert_allclose(img, ref_img, atol=1e-5)
    np.testing.assert_allclose(txt, ref_txt, atol=1e-5)


def test_image_inputs_array_path_pil_agree(tiny_model, images, pil_images, tmp_path):
    loaded = tiny_model
    paths = []
    for i, arr in enumerate(images):
        paths.append(tmp_path / f"im{i}.png")
        Image.fromarray(arr).save(paths[-1])
    from_arrays = loaded.encode_images(images)
    np.testing.assert_array_equal(from_arrays, loaded.encode_images(paths))
    np.testing.assert_array_equal(from_arrays, loaded.encode_images([str(p) for p in paths]))
    np.testing.assert_array_equal(from_arrays, loaded.encode_images(pil_images))


def test_truncation_warning_counts_tokens_before_truncation(loaded):
    long_text = " ".join(["circle"] * 100)
    assert loaded.token_counts(["a red circle", long_text]) == [5, 102]
    with pytest.warns(UserWarning) as record:
        loaded.encode_texts(["a red circle", long_text, long_text + " square"])
    messages = [str(w.message) for w in record if "truncated" in str(w.message)]
    assert len(messages) == 1
    assert "2 of 3 texts" in messages[0] and "77 tokens" in messages[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded.encode_texts(["a red circle"])


def test_identity_hashes_file_once_and_tracks_weights(loaded, vitb32, tmp_path, monkeypatch):
    import hashlib

    from cliplab.models import weights

    ident = loaded.identity
    assert ident.startswith("openclip:ViT-B-32|sha256=")
    assert hashlib.sha256(vitb32["safetensors"].read_bytes()).hexdigest() in ident
    assert "224" in ident and "bicubic" in ident and "0.481455" in ident  # preprocessing is part of it
    calls = []
    monkeypatch.setattr(weights, "file_sha256", lambda *a: calls.append(a) or "x")
    assert loaded.identity == ident and not calls  # cached on the model


def test_random_init_warns_and_identity_from_state_dict():
    with pytest.warns(UserWarning, match="randomly initialised"):
        model = load_model("openclip:ViT-S-32", device="cpu")
    assert "|sha256=" in model.identity and len(model.identity.split("sha256=")[1].split("|")[0]) == 64


# --- QuickGELU and tags --------------------------------------------------------------------------
def test_quick_gelu_decision_from_pretrained_cfg():
    assert needs_quick_gelu("ViT-B-32", "openai") is True
    assert needs_quick_gelu("RN50", "openai") is True
    assert needs_quick_gelu("ViT-B-32", "laion2b_s34b_b79k") is False
    assert needs_quick_gelu("ViT-B-16-SigLIP", "webli") is False
    assert needs_quick_gelu("ViT-B-32", None) is False
    assert needs_quick_gelu("ViT-B-32", "/some/file.pt") is False


def test_openai_tag_from_offline_cache_uses_quick_gelu_and_tag_preprocess(vitb32, hf_cache, texts, loaded):
    repo = open_clip.get_pretrained_cfg("ViT-B-32", "openai")["hf_hub"].rstrip("/")
    hf_cache(repo, {"open_clip_model.safetensors": vitb32["safetensors"]})
    model = load_model("openclip:ViT-B-32", pretrained="openai", device="cpu")
    acts = {type(m).__name__ for m in model.torch_module.modules()}
    assert "QuickGELU" in acts and "GELU" not in acts
    assert model.preprocess_cfg["mean"] == open_clip.get_pretrained_cfg("ViT-B-32", "openai")["mean"]
    # QuickGELU changes the outputs: same weights built with nn.GELU differ
    plain = loaded  # the same file by path: nn.GELU
    assert not np.allclose(model.encode_texts(texts), plain.encode_texts(texts), atol=1e-4)
    assert model.identity != plain.identity


def test_siglip_tag_uses_tag_preprocessing_not_defaults():
    from cliplab.models.openclip_backend import preprocess_config

    tag = open_clip.get_pretrained_cfg("ViT-B-16-SigLIP", "webli")
    cfg = preprocess_config(224, tag)
    assert cfg["resize_mode"] == "squash" and tuple(cfg["mean"]) == (0.5, 0.5, 0.5)
    assert preprocess_config(224, {})["resize_mode"] == "shortest"


# --- error lines ---------------------------------------------------------------------------------
def test_unknown_arch_suggests_closest():
    with pytest.raises(ModelLoadError) as err:
        load_model("openclip:ViT-B-23", device="cpu")
    msg = one_line(err)
    assert "ViT-B-23" in msg and "ViT-B-32" in msg
    with pytest.raises(ModelLoadError) as err:
        load_model("openclip:vit-b-16-siglip", device="cpu")
    assert "ViT-B-16-SigLIP" in one_line(err)


def test_missing_tag_weights_offline_is_one_line():
    with pytest.raises(ModelLoadError) as err:
        load_model("openclip:ViT-B-32", pretrained="laion2b_s34b_b79k", device="cpu")
    msg = one_line(err)
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in msg
    assert "open_clip_model.safetensors" in msg and "open_clip_pytorch_model.bin" in msg
    assert "pretrained='/path/to/file.safetensors'" in msg and "HF_HUB_OFFLINE" in msg
    assert err.value.__cause__ is None  # no chain of network tracebacks
    assert err.value.__context__ is None or err.value.__suppress_context__


def test_missing_openai_weights_point_to_the_quickgelu_arch():
    with pytest.raises(ModelLoadError) as err:
        load_model("openclip:ViT-B-32", pretrained="openai", device="cpu")
    msg = one_line(err)
    assert "timm/vit_base_patch32_clip_224.openai" in msg and "openclip:ViT-B-32-quickgelu" in msg


def test_torchscript_archive_is_refused(tmp_path):
    path = tmp_path / "jit.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    with pytest.raises(ModelLoadError) as err:
        load_model("openclip:ViT-B-32", pretrained=path, device="cpu")
    assert "TorchScript" in one_line(err) and str(path) in str(err.value)


def test_missing_hf_hub_repo_offline_is_one_line():
    with pytest.raises(ModelLoadError) as err:
        load_model("openclip:ViT-B-32", pretrained="hf-hub:someone/some-clip", device="cpu")
    msg = one_line(err)
    assert "someone/some-clip" in msg and "open_clip_config.json" in msg and "pretrained='/path/to" in msg


def test_hf_hub_repo_from_offline_cache(hf_cache, tmp_path, tiny_config, tiny_weights):
    import json

    cfg = tmp_path / "open_clip_config.json"
    cfg.write_text(json.dumps(tiny_config))
    hf_cache("someone/tiny-clip", {"open_clip_config.json": cfg, "open_clip_model.safetensors": tiny_weights})
    model = load_model("openclip:hf-hub:someone/tiny-clip", device="cpu")
    assert model.embed_dim == tiny_config["model_cfg"]["embed_dim"]
    assert model.preprocess_cfg["std"] == tiny_config["preprocess_cfg"]["std"]
    same = load_model("openclip:ViT-B-32", pretrained="hf-hub:someone/tiny-clip", device="cpu")
    assert same.identity.split("|", 1)[1] == model.identity.split("|", 1)[1]


def test_unknown_tag_or_missing_file():
    with pytest.raises(ModelLoadError) as err:
        load_model("openclip:ViT-B-32", pretrained="no_such_tag", device="cpu")
    msg = one_line(err)
    assert "no_such_tag" in msg and "laion2b_s34b_b79k" in msg
    with pytest.raises(ModelLoadError) as err:
        load_model("openclip:ViT-B-32", pretrained="/nowhere/weights.safetensors", device="cpu")
    assert "/nowhere/weights.safetensors" in one_line(err)


def test_misshaped_checkpoint_names_file_and_key(vitb32):
    with pytest.raises(ModelLoadError) as err:
        load_model("openclip:ViT-B-32-256", pretrained=vitb32["safetensors"], device="cpu")
    msg = one_line(err)
    assert str(vitb32["safetensors"]) in msg and "'visual.positional_embedding'" in msg and "mis-shaped" in msg


def test_missing_and_unexpected_keys_name_file_and_key(tiny_config, tiny_weights, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(str(tiny_weights))
    del state["text_projection"]
    state["extra.weight"] = torch.zeros(2)
    bad = tmp_path / "bad.safetensors"
    save_file(state, str(bad))
    with pytest.raises(ModelLoadError) as err:
        OpenClipModel.from_config("cliplab:test", tiny_config["model_cfg"], tiny_config["preprocess_cfg"], bad, "cpu")
    msg = one_line(err)
    assert str(bad) in msg and "'text_projection'" in msg and "'extra.weight'" in msg


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".bin"])
def test_corrupt_file_is_one_line(tmp_path, suffix):
    bad = tmp_path / f"corrupt{suffix}"
    bad.write_bytes(b"\x00\x01not a checkpoint" * 10)
    with pytest.raises(ModelLoadError) as err:
        load_model("openclip:ViT-B-32", pretrained=bad, device="cpu")
    assert str(bad) in one_line(err)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": Image.new("RGB", (2, 2))}, path)
    with pytest.raises(ModelLoadError) as err:
        load_model("openclip:ViT-B-32", pretrained=path, device="cpu")
    assert str(path) in one_line(err) and "pickled" in str(err.value)


def test_precision_rules(tiny_config, tiny_weights, images, texts):
    with pytest.raises(ModelLoadError) as err:
        OpenClipModel.from_config("t", tiny_config["model_cfg"], tiny_config["preprocess_cfg"], tiny_weights, "cpu", "fp16")
    assert "cuda" in one_line(err).lower()
    with pytest.raises(ModelLoadError):
        OpenClipModel.from_config("t", tiny_config["model_cfg"], tiny_config["preprocess_cfg"], tiny_weights, "cpu", "int4")
    fp32 = OpenClipModel.from_config("t", tiny_config["model_cfg"], tiny_config["preprocess_cfg"], tiny_weights, "cpu")
    bf16 = OpenClipModel.from_config("t", tiny_config["model_cfg"], tiny_config["preprocess_cfg"], tiny_weights, "cpu", "bf16")
    assert all(p.dtype == torch.bfloat16 for p in bf16.torch_module.parameters())  # cast, not autocast
    assert bf16.identity != fp32.identity
    a, b = fp32.encode_texts(texts), bf16.encode_texts(texts)
    assert a.dtype == b.dtype == np.float32
    assert np.abs(a - b).max() < 0.05


def test_models_share_the_bpe_but_not_its_context_length(tiny_model_files):
    """The CLIP BPE is read once per process; stretching one model's text length leaves another's alone."""
    import torch

    from cliplab.models import load_model

    a = load_model(tiny_model_files["spec"], pretrained=tiny_model_files["weights"], device="cpu")
    b = load_model(tiny_model_files["spec"], pretrained=tiny_model_files["weights"], device="cpu")
    assert a.tokenizer is not b.tokenizer and a.tokenizer.encoder is b.tokenizer.encoder
    a.set_text_positional_embedding(torch.zeros(40, a.text_positional_embedding().shape[1]))
    assert a.tokenizer.context_length == 40 and b.tokenizer.context_length == b.context_length == 32
    assert b.tokenize(["a red star"]).shape[-1] == 32


def test_loading_weights_skips_the_random_init_and_leaves_the_rng_alone(tiny_model_files):
    """With a checkpoint, the build draws nothing (every weight is read; the causal mask is still built)."""
    from cliplab.models.openclip_backend import SkipRandomInit

    before = torch.random.get_rng_state()
    model = load_model(tiny_model_files["spec"], pretrained=tiny_model_files["weights"], device="cpu")
    assert torch.equal(torch.random.get_rng_state(), before)
    mask = model.torch_module.attn_mask
    assert torch.equal(mask, torch.full_like(mask, float("-inf")).triu_(1))
    layer = torch.nn.Linear(3, 2)
    weight = layer.weight.detach().clone()
    with SkipRandomInit():
        layer.reset_parameters()
        torch.nn.init.zeros_(layer.bias)
    assert torch.equal(layer.weight, weight) and not layer.bias.any()
