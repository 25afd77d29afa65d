"""``embed(decode="gpu")``: JPEGs decoded and preprocessed by torchvision on the model's device. Here
the device is the CPU (torchvision's CPU decoder runs the same code); parity with the PIL path,
fallbacks for what the tensor path does not take, its own cache namespace, per-device defaults."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from cliplab.errors import InputError
from cliplab.features import embed
from cliplab.features.pipeline import (
    default_batch_size,
    default_num_workers,
    pick_decode,
)


def both_paths(model, source, **kw):
    cpu = embed(model, source, decode="cpu", cache_dir=None, num_workers=0, progress=False, **kw)
    gpu = embed(model, source, decode="gpu", cache_dir=None, num_workers=0, progress=False, **kw)
    return cpu, gpu


def test_parity_with_the_pil_path_on_the_bundled_model():
    from cliplab.models import load_model

    model = load_model("tiny", device="cpu")
    cpu, gpu = both_paths(model, "synthetic:48:3")
    assert cpu.stats["decode"] == "cpu" and gpu.stats["decode"] == "gpu"
    assert gpu.ids == cpu.ids
    cos = (cpu.X * gpu.X).sum(1)
    assert cos.min() >= 0.999, cos.min()


def test_parity_on_a_random_vit_with_photo_sized_jpegs(tmp_path):
    from cliplab.models.openclip_backend import OpenClipModel

    cfg = {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 96, "patch_size": 16, "width": 128, "layers": 3, "head_width": 32},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
    }
    torch.manual_seed(0)
    vit = OpenClipModel.from_config("test:vit", cfg, {"size": 96, "interpolation": "bicubic"}, None, device="cpu")
    rng = np.random.default_rng(1)
    files = []
    for i in range(24):
        w, h = int(rng.integers(120, 400)), int(rng.integers(100, 300))
        yy, xx = np.mgrid[0:h, 0:w]
        img = rng.integers(0, 256, 3) + xx[..., None] * rng.uniform(-0.5, 0.5, 3) + yy[..., None] * rng.uniform(-0.5, 0.5, 3)
        path = tmp_path / f"p{i:02d}.jpg"
        Image.fromarray(np.clip(img + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)).save(path, quality=88)
        files.append(str(path))
    cpu, gpu = both_paths(vit, files, batch_size=8)
    assert gpu.ids == cpu.ids == files
    cos = (cpu.X * gpu.X).sum(1)
    assert cos.min() >= 0.999, cos.min()


def test_fallbacks_keep_the_hostile_file_behaviour(tiny, tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mixed"
    folder.mkdir()
    base = Image.fromarray(rng.integers(0, 256, (50, 60, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    base.save(folder / "plain.jpg", quality=90)
    base.save(folder / "progressive.jpg", quality=90, progressive=True)
    base.convert("L").save(folder / "grey.jpg")
    base.convert("CMYK").save(folder / "cmyk.jpg")
    base.save(folder / "rotated.jpg", exif=exif.tobytes())
    base.save(folder / "image.png")
    good = (folder / "plain.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "notes.jpg").write_bytes(b"not an image at all")
    (folder / "empty.jpg").write_bytes(b"")
    files = sorted(str(p) for p in folder.iterdir())
    cpu, gpu = both_paths(tiny, files)
    assert gpu.ids == cpu.ids and len(gpu) == 6
    assert sorted((s.id, s.reason) for s in gpu.skipped) == sorted((s.id, s.reason) for s in cpu.skipped)
    assert {s.reason for s in gpu.skipped} == {"truncated", "not an image", "empty file"}
    assert (cpu.X * gpu.X).sum(1).min() >= 0.999
    # the rotated JPEG went through PIL (EXIF applied): exactly the PIL path's embedding
    k = gpu.ids.index(str(folder / "rotated.jpg"))
    np.testing.assert_allclose(gpu.X[k], cpu.X[k], atol=1e-6)


def test_decode_paths_have_their_own_cache_namespaces(tiny, folder, tmp_path):
    kw = dict(cache_dir=tmp_path / "c", num_workers=0, progress=False)
    first = embed(tiny, folder, decode="cpu", **kw)
    other = embed(tiny, folder, decode="gpu", **kw)
    again = embed(tiny, folder, decode="gpu", **kw)
    assert first.stats["cache_hits"] == 0 and other.stats["cache_hits"] == 0
    assert again.stats["cache_hits"] == len(again) == len(first)


def test_decode_choice_and_per_device_defaults(tiny):
    assert pick_decode("auto", tiny)[0] == "cpu"  # a CPU model
    assert pick_decode("gpu", tiny)[1] is not None
    with pytest.raises(InputError, match="decode"):
        pick_decode("fast", tiny)

    class NoTorchvision:
        name, device, preprocess = "x", torch.device("cpu"), staticmethod(lambda im: im)

    with pytest.raises(InputError, match="decode='cpu'"):
        pick_decode("gpu", NoTorchvision())
    assert pick_decode("auto", NoTorchvision())[0] == "cpu"
    assert default_batch_size(torch.device("cuda")) == 256 and default_batch_size(torch.device("cpu")) == 64
    from cliplab.features.pipeline import _cores

    assert default_num_workers(torch.device("cuda")) == max(1, _cores() - 1)


def test_pixels_reach_the_model_in_its_dtype(make_tiny):
    model = make_tiny("bf16")
    x = torch.randn(2, 3, 32, 32)
    assert model.to_device(x).dtype == torch.bfloat16
    np.testing.assert_allclose(model.encode_pixels(x), model.encode_pixels_async(x).numpy(), atol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: checks that auto decodes on the GPU there")
def test_auto_decodes_on_the_gpu_under_cuda(tiny_model_files, folder):
    from cliplab.models import load_model

    model = load_model(tiny_model_files["spec"], pretrained=tiny_model_files["weights"], device="cuda")
    cpu_model = load_model(tiny_model_files["spec"], pretrained=tiny_model_files["weights"], device="cpu")
    on_gpu = embed(model, folder, cache_dir=None, progress=False)
    on_cpu = embed(cpu_model, folder, decode="cpu", cache_dir=None, progress=False)
    assert on_gpu.stats["decode"] == "gpu" and on_gpu.stats["batch_size"] == 256
    assert (on_gpu.X * on_cpu.X).sum(1).min() >= 0.999


def small_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (24, 16), (200, 40, 90)).save(buf, format="JPEG")
    return buf.getvalue()


def test_decode_jpegs_leaves_the_warnings_filters_alone(monkeypatch):
    """The filters are process-wide and not thread-safe: decoding reads them, never swaps them."""
    import warnings

    import torchvision.io

    from cliplab.data.tensor_decode import decode_jpegs

    real, seen = torchvision.io.decode_jpeg, []

    def spy(*args, **kwargs):
        seen.append(warnings.filters)
        return real(*args, **kwargs)

    monkeypatch.setattr(torchvision.io, "decode_jpeg", spy)
    before, snapshot = warnings.filters, list(warnings.filters)
    good = small_jpeg()
    out = decode_jpegs([good, b"\xff\xd8garbage"], torch.device("cpu"))  # the batch fails: one by one
    assert out[0].shape == (3, 16, 24) and out[1] is None
    assert len(seen) == 3 and all(f is before for f in seen)
    assert warnings.filters is before and warnings.filters == snapshot


def test_without_a_pixel_limit_the_tensor_path_keeps_pillows(monkeypatch):
    """max_pixels=None: JPEGs over Pillow's MAX_IMAGE_PIXELS go to the PIL path, which warns or
    refuses them as it does any image."""
    from cliplab.data.tensor_decode import tensor_decodable

    data = small_jpeg()
    assert tensor_decodable(data, None) and tensor_decodable(data, 24 * 16)
    assert not tensor_decodable(data, 24 * 16 - 1)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 24 * 16 - 1)
    assert not tensor_decodable(data, None)
    assert tensor_decodable(data, 24 * 16)  # an explicit limit is the caller's
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's own "no limit"
    assert tensor_decodable(data, None)
