"""Fixtures for the feature-store tests: a tiny open_clip model saved to a file, small image folders."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_PRE = {"size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bicubic", "resize_mode": "shortest"}


def build_tiny_weights(path: Path) -> Path:
    """Random tiny CLIP weights (perturbed so no tensor is degenerate) written as safetensors."""
    from open_clip import CLIP
    from safetensors.torch import save_file

    torch.manual_seed(0)
    module = CLIP(**TINY_CFG)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    return path


def load_tiny(weights: Path, precision: str = "fp32"):
    from cliplab.models.openclip_backend import OpenClipModel

    return OpenClipModel.from_config("test:tiny", TINY_CFG, TINY_PRE, weights, device="cpu", precision=precision)


class Counter:
    """Wraps ``model.encode_pixels_async`` (what ``embed`` and ``encode_pixels`` call) to count
    forward passes and the images they saw."""

    def __init__(self, model):
        self.calls = 0
        self.images = 0
        inner = model.encode_pixels_async

        def counted(pixels):
            self.calls += 1
            self.images += len(pixels)
            return inner(pixels)

        model.encode_pixels_async = counted


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    return build_tiny_weights(tmp_path_factory.mktemp("tiny") / "tiny.safetensors")


@pytest.fixture
def tiny(tiny_weights):
    """A fresh tiny model per test (so counters and monkeypatches do not leak)."""
    return load_tiny(tiny_weights)


def photo(rng: np.random.Generator, w: int = 48, h: int = 40) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w]
    base = rng.integers(0, 256, 3)
    img = (base + 0.5 * xx[..., None] * rng.uniform(-2, 2, 3) + 0.5 * yy[..., None] * rng.uniform(-2, 2, 3))
    img = img + rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def write_images(folder: Path, n: int, seed: int = 0, classes: tuple[str, ...] = ("cat", "dog"), start: int = 0) -> list[Path]:
    """``n`` distinct small JPEG/PNG files in ``folder/<class>/`` (alternating classes)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(start, start + n):
        cls = classes[i % len(classes)]
        (folder / cls).mkdir(parents=True, exist_ok=True)
        ext = "png" if i % 5 == 4 else "jpg"
        path = folder / cls / f"img{i:04d}.{ext}"
        photo(rng, 40 + (i % 7) * 3, 36 + (i % 5) * 2).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "images"
    write_images(root, 24)
    return root


def jpeg_bytes(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


# helpers handed to tests as fixtures (test modules cannot import this conftest by name)
@pytest.fixture
def counter():
    return Counter


@pytest.fixture
def make_tiny(tiny_weights):
    return lambda precision="fp32": load_tiny(tiny_weights, precision)


@pytest.fixture
def add_images():
    return write_images
