"""Tensor decoding: JPEG headers read without decoding, the model's preprocessing as tensor ops,
and parity of the tensor path with the PIL path (run on CPU tensors; the same code runs on CUDA)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from cliplab.data.images import decode_image
from cliplab.data.tensor_decode import (
    TensorPreprocess,
    decode_jpegs,
    exif_orientation,
    jpeg_header,
    tensor_decodable,
)


def photo(seed: int, w: int = 120, h: int = 90) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = rng.integers(0, 256, 3) + 0.8 * xx[..., None] * rng.uniform(-1, 1, 3) + 0.8 * yy[..., None] * rng.uniform(-1, 1, 3)
    return Image.fromarray(np.clip(img + rng.normal(0, 5, (h, w, 3)), 0, 255).astype(np.uint8))


def jpeg(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


def rotated(im: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg(im, exif=exif.tobytes())


def test_jpeg_header_reads_size_components_progressive_and_orientation():
    im = photo(0, 120, 90)
    assert jpeg_header(jpeg(im)) == jpeg_header(jpeg(im))
    h = jpeg_header(jpeg(im))
    assert (h.width, h.height, h.components, h.progressive, h.orientation) == (120, 90, 3, False, 1)
    assert jpeg_header(jpeg(im, progressive=True)).progressive
    assert jpeg_header(jpeg(im.convert("L"))).components == 1
    assert jpeg_header(jpeg(im.convert("CMYK"))).components == 4
    assert jpeg_header(rotated(im, 6)).orientation == 6
    assert jpeg_header(rotated(im, 1)).orientation == 1


@pytest.mark.parametrize("data", [b"", b"\xff\xd8", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, b"\xff\xd8\xff\xe0\x00\x10JF"])
def test_jpeg_header_is_none_for_what_is_not_a_jpeg_header(data):
    assert jpeg_header(data) is None


def test_exif_orientation_in_both_byte_orders():
    big = b"MM\x00\x2a\x00\x00\x00\x08" + b"\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x08\x00\x00"
    little = b"II\x2a\x00\x08\x00\x00\x00" + b"\x01\x00" + b"\x12\x01\x03\x00\x01\x00\x00\x00\x03\x00\x00\x00"
    assert exif_orientation(big) == 8 and exif_orientation(little) == 3
    assert exif_orientation(b"XX") == 0


def test_what_the_tensor_path_takes():
    im = photo(1)
    assert tensor_decodable(jpeg(im), None)
    assert tensor_decodable(jpeg(im.convert("L")), None)
    assert not tensor_decodable(jpeg(im.convert("CMYK")), None)  # colour conversion left to PIL
    assert not tensor_decodable(rotated(im, 6), None)  # EXIF rotation left to PIL
    assert not tensor_decodable(jpeg(im), max_pixels=100)  # the PIL path names it a decompression bomb
    assert not tensor_decodable(jpeg(im)[:-200], None)  # truncated: the PIL path names it so
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    assert not tensor_decodable(buf.getvalue(), None)


def test_mirror_reads_open_clip_preprocessing_and_refuses_others():
    from cliplab.models import load_model

    model = load_model("tiny", device="cpu")
    tp = TensorPreprocess.mirror(model.preprocess)
    assert tp == TensorPreprocess(64, (64, 64), "bicubic", (0.5,) * 3, (0.25,) * 3)
    assert TensorPreprocess.mirror(T.Compose([T.Resize((64, 64)), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])) is None
    assert TensorPreprocess.mirror(lambda im: im) is None


@pytest.mark.parametrize("interpolation", [T.InterpolationMode.BICUBIC, T.InterpolationMode.BILINEAR])
def test_tensor_preprocessing_matches_torchvision_on_pil_images(interpolation):
    pil = T.Compose([T.Resize(48, interpolation=interpolation), T.CenterCrop(48), T.ToTensor(), T.Normalize([0.4, 0.5, 0.6], [0.2, 0.3, 0.25])])
    tp = TensorPreprocess.mirror(pil)
    datas = [jpeg(photo(s, 100 + 13 * s, 70 + 7 * s)) for s in range(6)]
    got = tp(decode_jpegs(datas, torch.device("cpu")))
    want = torch.stack([pil(decode_image(d)) for d in datas])
    assert got.shape == want.shape == (6, 3, 48, 48)
    # same decoder family (libjpeg-turbo) and resampling: within a couple of grey levels (in std units)
    assert (got - want).abs().max() <= 3 / 255 / 0.2 + 1e-6
    assert (got - want).abs().mean() <= 0.2 / 255 / 0.2


def test_decode_jpegs_marks_what_it_refuses():
    good = jpeg(photo(2))
    out = decode_jpegs([good, good[: len(good) // 3], b"\xff\xd8garbage", good], torch.device("cpu"))
    assert out[0] is not None and out[0].dtype == torch.uint8 and out[0].shape == (3, 90, 120)
    assert out[2] is None
    assert out[3] is not None
