"""transformers backend: local folders, the HF cache offline, SigLIP padding, error lines."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from cliplab.models import Model, ModelLoadError, load_model
from cliplab.models.hf_backend import HFModel, as_features


def normalise(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x.float(), dim=-1).numpy()


def reference(folder, pil_images, texts, padding=True, max_length=None):
    """Embeddings straight from transformers: AutoModel + AutoProcessor-style inputs."""
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(folder, dtype=torch.float32).eval()
    pixels = AutoImageProcessor.from_pretrained(folder)(images=pil_images, return_tensors="pt")["pixel_values"]
    tokens = AutoTokenizer.from_pretrained(folder)(
        texts, padding=padding, truncation=True, max_length=max_length, return_tensors="pt"
    )
    with torch.no_grad():
        img = as_features(model.get_image_features(pixel_values=pixels))
        txt = as_features(model.get_text_features(**tokens))
    return normalise(img), normalise(txt)


@pytest.fixture(scope="module")
def hf_loaded(hf_clip_dir):
    return load_model(f"hf:{hf_clip_dir}", device="cpu")


def test_local_folder_matches_transformers(hf_loaded, hf_clip_dir, pil_images, texts):
    model = hf_loaded
    assert isinstance(model, Model) and isinstance(model, HFModel)
    assert not model.torch_module.training
    assert model.embed_dim == 48 and model.context_length == 77 and model.padding == "longest"
    assert model.logit_scale == pytest.approx(np.exp(2.6592), rel=1e-4)
    assert model.preprocess(pil_images[0]).shape == (3, 32, 32)
    ref_img, ref_txt = reference(hf_clip_dir, pil_images, texts)
    img, txt = model.encode_images(pil_images), model.encode_texts(texts)
    assert img.dtype == txt.dtype == np.float32
    np.testing.assert_allclose(img, ref_img, atol=1e-5)
    np.testing.assert_allclose(txt, ref_txt, atol=1e-5)


def test_inputs_and_truncation(hf_loaded, images, pil_images, tmp_path):
    from PIL import Image

    paths = []
    for i, arr in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(arr).save(paths[-1])
    a = hf_loaded.encode_images(images)
    np.testing.assert_array_equal(a, hf_loaded.encode_images(paths))
    np.testing.assert_array_equal(a, hf_loaded.encode_images(pil_images))

    long_text = " ".join(["square"] * 90)
    assert hf_loaded.token_counts(["a red circle", long_text]) == [5, 92]
    with pytest.warns(UserWarning) as record:
        out = hf_loaded.encode_texts([long_text, "a red circle"])
    messages = [str(w.message) for w in record if "truncated" in str(w.message)]
    assert len(messages) == 1 and "1 of 2 texts" in messages[0] and "77 tokens" in messages[0]
    assert out.shape == (2, 48)


def test_repo_id_from_offline_cache(hf_clip_dir, hf_cache, hf_loaded, texts):
    hf_cache("someorg/tiny-clip", {p.name: p for p in hf_clip_dir.iterdir()})
    model = load_model("hf:someorg/tiny-clip", device="cpu")
    assert model.name == "hf:someorg/tiny-clip"
    np.testing.assert_allclose(model.encode_texts(texts), hf_loaded.encode_texts(texts), atol=1e-6)
    # same files, same weights hash and preprocessing
    assert model.identity.split("|", 1)[1] == hf_loaded.identity.split("|", 1)[1]


def test_missing_repo_offline_is_one_line():
    with pytest.raises(ModelLoadError) as err:
        load_model("hf:someorg/not-cached", device="cpu")
    msg = str(err.value)
    assert "\n" not in msg
    assert "someorg/not-cached" in msg and "HF_HUB_OFFLINE" in msg and "hf:/path/to/folder" in msg
    assert type(err.value.__cause__).__name__ == "LocalEntryNotFoundError"  # the cause is kept


def test_bad_local_folder_and_pretrained(tmp_path):
    with pytest.raises(ModelLoadError, match="no such folder"):
        load_model(f"hf:{tmp_path / 'nowhere'}", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError) as err:
        load_model(f"hf:{tmp_path / 'empty'}", device="cpu")
    assert "\n" not in str(err.value) and "empty" in str(err.value)
    with pytest.raises(ModelLoadError, match="pretrained"):
        load_model("hf:someorg/x", pretrained="y", device="cpu")


def test_siglip_pads_to_max_length(tmp_path, pil_images, texts, clip_tokenizer_dir):
    from transformers import CLIPImageProcessor, SiglipConfig, SiglipModel

    torch.manual_seed(3)
    config = SiglipConfig(
        text_config=dict(vocab_size=49408, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
    )
    SiglipModel(config).eval().save_pretrained(tmp_path)
    for f in clip_tokenizer_dir.iterdir():  # a CLIP BPE tokenizer stands in for SigLIP's sentencepiece
        shutil.copy(f, tmp_path / f.name)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path)

    model = load_model(f"hf:{tmp_path}", device="cpu")
    assert model.padding == "max_length" and model.context_length == 16 and model.embed_dim == 64
    assert model.tokenize(["a red circle"])["input_ids"].shape == (1, 16)
    ref_img, ref_txt = reference(tmp_path, pil_images, texts, padding="max_length", max_length=16)
    np.testing.assert_allclose(model.encode_images(pil_images), ref_img, atol=1e-5)
    np.testing.assert_allclose(model.encode_texts(texts), ref_txt, atol=1e-5)
