"""Fixtures for the adaptation tests: small Gaussian class data and tiny models of both backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def unit_rows(a: np.ndarray) -> np.ndarray:
    return (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="session")
def toy():
    """10 classes x 16 training shots, 30 test rows per class, 32-d unit features, string labels,
    and noisy zero-shot weights (zero-shot is weak, the few shots help)."""
    rng = np.random.default_rng(0)
    n_classes, dim = 10, 32
    means = rng.normal(size=(n_classes, dim))
    names = np.array([f"class{i:02d}" for i in range(n_classes)])

    def draw(per_class):
        X = np.repeat(means, per_class, axis=0) + 1.5 * rng.normal(size=(n_classes * per_class, dim))
        return unit_rows(X), np.repeat(names, per_class)

    X, y = draw(16)
    X_val, y_val = draw(4)
    X_test, y_test = draw(30)
    text = unit_rows(means + 2.0 * rng.normal(size=means.shape))
    return dict(X=X, y=y, X_val=X_val, y_val=y_val, X_test=X_test, y_test=y_test, text=text, classes=names)


def tiny_hf_tokenizer():
    """A CLIPTokenizer over single characters (no merges): quick to build, real CLIP special tokens."""
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPTokenizer

    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    import json
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    (folder / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


@pytest.fixture(scope="session")
def hf_model(tmp_path_factory):
    """A tiny random transformers CLIPModel saved with save_pretrained and loaded through load_model."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from cliplab.models import load_model

    folder = tmp_path_factory.mktemp("hf-clip")
    torch.manual_seed(3)
    config = CLIPConfig(
        text_config=dict(vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=40, eos_token_id=513, bos_token_id=512, pad_token_id=513),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=24,
    )  # fmt: skip
    CLIPModel(config).eval().save_pretrained(folder)
    tiny_hf_tokenizer().save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return load_model(f"hf:{folder}", device="cpu")


@pytest.fixture(scope="session")
def bundled():
    from cliplab.models import load_model

    return load_model("tiny", device="cpu")
