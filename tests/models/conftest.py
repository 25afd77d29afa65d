"""Fixtures for the model-loading tests: random-init checkpoints written in the real formats."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

TINY_JSON = Path(__file__).resolve().parents[2] / "src/cliplab/models/bundled/shapes-tiny/config.json"


@pytest.fixture(autouse=True)
def _offline_hf(monkeypatch, tmp_path):
    """No test may touch the network or the user's HF cache: an empty cache, downloads off."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(40 + 7 * i, 50 - 3 * i, 3), dtype=np.uint8) for i in range(3)]


@pytest.fixture(scope="session")
def texts() -> list[str]:
    return ["a photo of a red circle", "two blue squares", "a green triangle on a white background"]


@pytest.fixture(scope="session")
def vitb32(tmp_path_factory):
    """A random-init open_clip ViT-B-32 saved as .safetensors and as a wrapped .pt checkpoint."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32")
    model.eval()
    # random init leaves some tensors at zero / identical; perturb so any mix-up shows
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    folder = tmp_path_factory.mktemp("vitb32")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    st_path = folder / "vitb32.safetensors"
    save_file(state, str(st_path))
    pt_path = folder / "vitb32.pt"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, pt_path)
    return {"model": model, "preprocess": preprocess, "safetensors": st_path, "pt": pt_path}


@pytest.fixture(scope="session")
def tiny_config() -> dict:
    return json.loads(TINY_JSON.read_text())


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory, tiny_config):
    """A random-init shapes-tiny open_clip CLIP state dict stored in fp16 (as the bundled file may be)."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(1)
    module = open_clip.CLIP(**tiny_config["model_cfg"]).eval()
    path = tmp_path_factory.mktemp("tiny") / "shapes-tiny.safetensors"
    save_file({k: v.half().contiguous() for k, v in module.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_config, tiny_weights):
    from cliplab.models.openclip_backend import OpenClipModel

    cfg = tiny_config
    return OpenClipModel.from_config("cliplab:shapes-tiny", cfg["model_cfg"], cfg["preprocess_cfg"], tiny_weights, "cpu")


def clip_bpe_tokenizer():
    """A transformers CLIPTokenizer with CLIP's real vocabulary, built from open_clip's packaged BPE merges."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={v: i for i, v in enumerate(vocab)}, merges=merges)


@pytest.fixture(scope="session")
def clip_tokenizer_dir(tmp_path_factory) -> Path:
    """Saved tokenizer files (built once: building the BPE takes a few seconds)."""
    folder = tmp_path_factory.mktemp("clip-tokenizer")
    clip_bpe_tokenizer().save_pretrained(folder)
    return folder


def copy_files(src: Path, dst: Path) -> None:
    for f in src.iterdir():
        shutil.copy(f, dst / f.name)


@pytest.fixture(scope="session")
def hf_clip_dir(tmp_path_factory, clip_tokenizer_dir) -> Path:
    """A small random-init transformers CLIPModel + tokenizer + image processor saved with save_pretrained."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    folder = tmp_path_factory.mktemp("hf-clip")
    torch.manual_seed(2)
    config = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=48,
    )
    CLIPModel(config).eval().save_pretrained(folder)
    copy_files(clip_tokenizer_dir, folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def place_in_hf_cache(hf_home: Path, repo: str, files: dict) -> Path:
    """Files laid out the way huggingface_hub caches a repo: snapshots/<commit>/... and refs/main."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = Path(hf_home) / "hub" / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    for name, src in files.items():
        (snap / name).symlink_to(Path(src).resolve())
    return snap


@pytest.fixture
def hf_cache(tmp_path):
    """``put(repo, {name: source file})`` places files in the (empty, offline) HF cache of this test."""
    return lambda repo, files: place_in_hf_cache(tmp_path / "hf-home", repo, files)


@pytest.fixture(scope="session")
def pil_images(images):
    return [Image.fromarray(a) for a in images]
