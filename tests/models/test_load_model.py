"""load_model: spec grammar, the bundled registry, from_config."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch

from cliplab.models import DEFAULT_MODEL, Model, ModelLoadError, bundled, load_model, parse_spec
from cliplab.models.openclip_backend import OpenClipModel


def test_spec_grammar():
    assert DEFAULT_MODEL == "cliplab:shapes-tiny"
    assert (parse_spec("openclip:ViT-B-32").kind, parse_spec("openclip:ViT-B-32").target) == ("openclip", "ViT-B-32")
    assert parse_spec("hf:org/name").target == "org/name"
    assert parse_spec("hf:/a/b:c").target == "/a/b:c"
    assert str(parse_spec("tiny")) == str(parse_spec("cliplab:tiny")) == "cliplab:shapes-tiny"
    assert str(parse_spec("shapes-tiny")) == "cliplab:shapes-tiny"
    for bad in ("timm:vit", "ViT-B-32", "", "openclip:"):
        with pytest.raises(ModelLoadError) as err:
            parse_spec(bad)
        msg = str(err.value)
        assert "\n" not in msg and "openclip:<arch>" in msg and "hf:" in msg and "cliplab:" in msg
    with pytest.raises(ModelLoadError, match="shapes-tiny"):
        parse_spec("cliplab:nope")


def test_registry_entry_shape():
    entry = bundled.BUNDLED["shapes-tiny"]
    assert entry.config.is_file() and entry.weights.name == "model.safetensors"
    assert bundled.ALIASES["tiny"] == "shapes-tiny" and "tiny" in bundled.names()


def test_missing_bundled_weights_say_how_to_rebuild(monkeypatch, tmp_path):
    entry = bundled.BUNDLED["shapes-tiny"]
    monkeypatch.setitem(bundled.BUNDLED, "shapes-tiny", bundled.BundledModel(
        config=entry.config, weights=tmp_path / "absent.safetensors", card=entry.card, rebuild=entry.rebuild))
    with pytest.raises(ModelLoadError) as err:
        load_model(device="cpu")
    msg = str(err.value)
    assert "\n" not in msg and "python scripts/train_tiny.py" in msg and "absent.safetensors" in msg


def test_bundled_loads_fp16_weights_as_fp32(monkeypatch, tiny_config, tiny_weights, pil_images, texts):
    entry = bundled.BUNDLED["shapes-tiny"]
    monkeypatch.setitem(bundled.BUNDLED, "shapes-tiny", bundled.BundledModel(
        config=entry.config, weights=tiny_weights, card=entry.card, rebuild=entry.rebuild))
    model = load_model("tiny", device="cpu")
    assert isinstance(model, Model) and model.name == "cliplab:shapes-tiny"
    cfg = tiny_config["model_cfg"]
    assert model.embed_dim == cfg["embed_dim"] and model.context_length == cfg["text_cfg"]["context_length"]
    assert all(p.dtype == torch.float32 for p in model.torch_module.parameters())
    assert not model.torch_module.training
    size = tiny_config["preprocess_cfg"]["size"]
    assert model.preprocess(pil_images[0]).shape == (3, size, size)
    assert model.preprocess_cfg["mean"] == tiny_config["preprocess_cfg"]["mean"]

    # the same embeddings as an open_clip CLIP holding the (fp16-rounded) weights
    from safetensors.torch import load_file

    ref = open_clip.CLIP(**tiny_config["model_cfg"]).eval()
    ref.load_state_dict({k: v.float() for k, v in load_file(str(tiny_weights)).items()})
    with torch.no_grad():
        tok = open_clip.SimpleTokenizer(context_length=cfg["text_cfg"]["context_length"])
        want = torch.nn.functional.normalize(ref.encode_text(tok(texts)), dim=-1).numpy()
        pix = torch.stack([model.preprocess(im) for im in pil_images])
        want_img = torch.nn.functional.normalize(ref.encode_image(pix), dim=-1).numpy()
    np.testing.assert_allclose(model.encode_texts(texts), want, atol=1e-5)
    np.testing.assert_allclose(model.encode_images(pil_images), want_img, atol=1e-5)

    # `pretrained` replaces the shipped weights file; identity follows the file
    again = load_model("cliplab:shapes-tiny", pretrained=tiny_weights, device="cpu")
    assert again.identity == model.identity and again.identity.startswith("cliplab:shapes-tiny|sha256=")


def test_from_config_without_weights_is_random_init(tiny_config):
    a = OpenClipModel.from_config("x", tiny_config["model_cfg"], tiny_config["preprocess_cfg"], None, "cpu")
    b = OpenClipModel.from_config("x", tiny_config["model_cfg"], tiny_config["preprocess_cfg"], None, "cpu")
    assert a.identity != b.identity  # identity hashes the (different) random weights
    c, d = (OpenClipModel.from_config("x", tiny_config["model_cfg"], tiny_config["preprocess_cfg"], None, "cpu", seed=3) for _ in range(2))
    assert c.identity == d.identity  # a seed fixes them


def test_bundled_random_init_keeps_the_architecture_and_draws_weights_from_the_seed(monkeypatch, tmp_path):
    entry = bundled.BUNDLED["shapes-tiny"]  # no weights file is read: an absent one does not matter
    monkeypatch.setitem(bundled.BUNDLED, "shapes-tiny", bundled.BundledModel(
        config=entry.config, weights=tmp_path / "absent.safetensors", card=entry.card, rebuild=entry.rebuild))
    a, b, c = (bundled.load_bundled("tiny", device="cpu", seed=s) for s in (3, 3, 4))
    assert a.name == "cliplab:shapes-tiny" and a.identity == b.identity != c.identity
    cfg = bundled.read_config("shapes-tiny")["model_cfg"]
    ref = open_clip.CLIP(**cfg).state_dict()
    state = a.torch_module.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in ref.items()}
    assert all(torch.equal(v, b.torch_module.state_dict()[k]) for k, v in state.items())
    assert a.context_length == cfg["text_cfg"]["context_length"]
    with pytest.raises(ModelLoadError, match="not both"):
        bundled.load_bundled("tiny", weights=tmp_path / "w.safetensors", device="cpu", seed=0)


def test_default_device_and_repr(tiny_model):
    assert tiny_model.device == torch.device("cpu")
    assert "shapes-tiny" in repr(tiny_model)
