"""One-line, fixable errors from the model layer; reproducible random models; warnings at the caller."""

from __future__ import annotations

import shutil
import socket
import time
import warnings

import numpy as np
import pytest
import torch

from cliplab.errors import CliplabError, InputError, ModelLoadError, command_line_spelling
from cliplab.models import hub, load_model
from cliplab.models.openclip_backend import closest_names


def test_errors_share_one_base():
    from cliplab.errors import BadImage, FeaturesFileError, NothingEmbeddedError, SourceError

    for cls in (ModelLoadError, SourceError, FeaturesFileError, BadImage, InputError, NothingEmbeddedError):
        assert issubclass(cls, CliplabError)
    assert issubclass(InputError, ValueError) and issubclass(ModelLoadError, RuntimeError)  # old excepts still work


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line():
    with pytest.raises(ModelLoadError, match=r"device 'cuda' needs a CUDA GPU and torch sees none.*device='cpu'") as err:
        load_model("tiny", device="cuda")
    assert "\n" not in str(err.value)
    with command_line_spelling(), pytest.raises(ModelLoadError, match="use --device cpu"):
        load_model("tiny", device="cuda")


def test_texts_must_be_strings(tiny_model):
    with pytest.raises(InputError, match="texts must be strings; item 1 is NoneType None"):
        tiny_model.encode_texts(["a red circle", None])


def test_hf_folder_without_processor_says_so(hf_clip_dir, tmp_path):
    folder = tmp_path / "no-processor"
    shutil.copytree(hf_clip_dir, folder)
    (folder / "preprocessor_config.json").unlink()
    with pytest.raises(ModelLoadError) as err:
        load_model(f"hf:{folder}")
    assert str(err.value) == (
        f"hf:{folder}: no image processor saved in {folder}; save one there with processor.save_pretrained(folder)"
    )


def test_hf_folder_with_only_pickled_weights_is_refused(hf_clip_dir, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(hf_clip_dir, folder)
    (folder / "model.safetensors").unlink()
    torch.save({"weight": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError) as err:
        load_model(f"hf:{folder}")
    assert str(err.value).startswith(f"hf:{folder}: {folder} holds only pickled weights (pytorch_model.bin), which cliplab never loads; "
                                     "convert them to safetensors")  # fmt: skip


def test_unreachable_hub_fails_fast_in_one_line(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    calls = []

    def no_network(address, timeout=None):
        calls.append(address)
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    hub.reachable.cache_clear()
    try:
        start = time.perf_counter()
        with pytest.raises(ModelLoadError) as err:
            load_model("openclip:RN50", pretrained="openai")
        elapsed = time.perf_counter() - start
    finally:
        hub.reachable.cache_clear()
    message = str(err.value)
    assert "\n" not in message and "huggingface.co cannot be reached" in message and "pretrained='/path/to/file.safetensors'" in message
    assert elapsed < 10 and len(calls) == 1  # checked once, not retried per file


def test_offline_setting_skips_the_probe(monkeypatch):
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("probed the network"))
    hub.reachable.cache_clear()
    with pytest.raises(ModelLoadError, match="downloads are off \\(HF_HUB_OFFLINE is set\\)"):
        load_model("openclip:RN50", pretrained="openai")


def test_random_models_are_reproducible(tiny_model_files):
    spec = tiny_model_files["spec"]  # an open_clip architecture without weights, as openclip:RN50 would be
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = load_model(spec), load_model(spec)
        c = load_model(spec, seed=1)
    assert a.identity == b.identity != c.identity
    x = torch.zeros(1, 3, 32, 32)
    np.testing.assert_array_equal(a.encode_pixels(x), b.encode_pixels(x))
    assert not np.array_equal(a.encode_pixels(x), c.encode_pixels(x))
    before = torch.random.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_model(spec)
    assert torch.equal(before, torch.random.get_rng_state())  # the caller's random state is untouched


def test_warnings_point_at_the_callers_line():
    with pytest.warns(UserWarning, match="randomly initialised") as caught:
        load_model("openclip:RN50")
    assert caught[0].filename == __file__


def test_suggestions_rank_by_closeness():
    import open_clip

    assert closest_names("ViT-Nope", open_clip.list_models())[0] == "ViT-B-32"
    with pytest.raises(ModelLoadError, match="did you mean ViT-B-32"):
        load_model("openclip:ViT-Nope")
