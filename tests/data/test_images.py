"""decode_image: bad inputs raise BadImage with the right reason; odd inputs convert to RGB."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from cliplab.data.images import BadImage, decode_image, open_image, to_rgb


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def noise(w: int = 64, h: int = 48) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))


def reason(data: bytes, **kw) -> str:
    with pytest.raises(BadImage) as info:
        decode_image(data, "sample", **kw)
    return info.value.reason


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (the pixel data is never reached)."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


# --- bad inputs ---------------------------------------------------------------------------------
def test_zero_bytes_is_empty_file():
    assert reason(b"") == "empty file"


def test_text_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n")
    with pytest.raises(BadImage) as info:
        open_image(path)
    assert info.value.reason == "not an image"
    assert str(path) in str(info.value)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
@pytest.mark.parametrize("fraction", [0.3, 0.8])
def test_truncated_files_fail(fmt, fraction):
    data = encode(noise(), fmt)
    assert reason(data[: int(len(data) * fraction)]) == "truncated"


def test_truncation_is_not_silently_allowed_globally():
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_bomb_over_configured_limit_is_rejected():
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    assert reason(data, max_pixels=5000) == "decompression bomb"
    assert decode_image(data, max_pixels=10_000).size == (100, 100)


def test_bomb_is_refused_before_decoding():
    # The header claims 5000 x 5000 but holds one pixel: decoding first would say "truncated".
    assert reason(png_with_size(5000, 5000), max_pixels=1_000_000) == "decompression bomb"


def test_pillow_own_bomb_error_becomes_bad_image():
    assert reason(png_with_size(60_000, 60_000), max_pixels=None) == "decompression bomb"


def test_garbage_after_valid_header_is_unreadable_or_truncated():
    data = bytearray(encode(noise(), "PNG"))
    data[60:200] = bytes(140)  # corrupt the compressed stream
    assert reason(bytes(data)) in {"unreadable", "truncated"}


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="image file not found: .*nope.png"):
        open_image(tmp_path / "nope.png")
    with pytest.raises(BadImage) as info:
        open_image(tmp_path)  # a folder cannot be read as a file
    assert info.value.reason == "unreadable"


def test_bad_image_is_a_value_error_with_one_line_message():
    with pytest.raises(ValueError) as info:
        decode_image(b"xx", "a/b.jpg")
    assert "\n" not in str(info.value) and str(info.value).startswith("a/b.jpg: ")


# --- odd but valid inputs -----------------------------------------------------------------------
def pixel(data: bytes, xy=(0, 0)) -> tuple[int, int, int]:
    im = decode_image(data)
    assert im.mode == "RGB"
    return im.getpixel(xy)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16bit_gray_scales_to_8bit(fmt):
    a = np.zeros((8, 8), np.uint16)
    a[:, :4] = 32896  # mid-grey in 16 bits
    a[:, 4:] = 65535
    data = encode(Image.fromarray(a), fmt)
    assert pixel(data, (0, 0)) == (128, 128, 128)
    assert pixel(data, (7, 0)) == (255, 255, 255)


def test_32bit_int_gray_holding_16bit_values():
    data = encode(Image.fromarray(np.full((4, 4), 32896, np.int32)), "TIFF")
    assert pixel(data) == (128, 128, 128)


@pytest.mark.parametrize("value,expected", [(0.5, 128), (128.0, 128), (-1.0, 0)])
def test_float_gray(value, expected):
    a = np.full((4, 4), value, np.float32)
    a[0, 1] = 1.0 if value != -1.0 else 3.0  # the stretched case needs a range
    assert pixel(encode(Image.fromarray(a), "TIFF"))[0] == expected


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk(fmt):
    data = encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), fmt)
    r, g, b = pixel(data)
    assert r > 240 and g < 15 and b < 15


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparency_on_white(fmt):
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(1, (4, 0, 8, 8))
    data = encode(im, fmt, transparency=0)
    assert pixel(data, (0, 0)) == (255, 255, 255)
    assert pixel(data, (6, 0)) == (255, 0, 0)


def test_rgba_transparent_is_white_and_half_alpha_blends():
    im = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    im.paste((255, 0, 0, 128), (4, 0, 8, 8))
    data = encode(im, "PNG")
    assert pixel(data, (0, 0)) == (255, 255, 255)
    r, g, b = pixel(data, (6, 0))
    assert r == 255 and 120 <= g <= 135 and g == b


def test_la_and_rgb_transparency_key_on_white():
    assert pixel(encode(Image.new("LA", (4, 4), (0, 0)), "PNG")) == (255, 255, 255)
    keyed = encode(Image.new("RGB", (4, 4), (1, 2, 3)), "PNG", transparency=(1, 2, 3))
    assert pixel(keyed) == (255, 255, 255)


def test_gray_and_bilevel():
    assert pixel(encode(Image.new("L", (4, 4), 77), "PNG")) == (77, 77, 77)
    assert pixel(encode(Image.new("1", (4, 4), 1), "PNG")) == (255, 255, 255)
    assert pixel(encode(Image.new("1", (4, 4), 0), "BMP")) == (0, 0, 0)


def test_exif_orientation_applied():
    im = Image.new("RGB", (40, 20), (10, 200, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = decode_image(encode(im, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 40)


def test_plain_rgb_formats_roundtrip():
    src = noise(16, 12)
    for fmt in ["PNG", "BMP", "TIFF"]:
        assert np.array_equal(np.asarray(decode_image(encode(src, fmt))), np.asarray(src))
    assert decode_image(encode(src, "WEBP", lossless=True)).size == (16, 12)


def test_to_rgb_leaves_rgb_alone():
    im = Image.new("RGB", (2, 2))
    assert to_rgb(im) is im


def test_decoding_in_threads_leaves_the_warnings_filters_alone(monkeypatch):
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    entered = []

    class Spy(warnings.catch_warnings):
        def __enter__(self):
            entered.append(1)
            return super().__enter__()

    monkeypatch.setattr(warnings, "catch_warnings", Spy)
    datas = [encode(noise(8 + i % 5, 8), "PNG") for i in range(64)] + [png_with_size(5000, 5000)] * 16
    before = list(warnings.filters)

    def one(data: bytes) -> str:
        try:
            return decode_image(data, "t", max_pixels=1_000_000).mode
        except BadImage as e:
            return e.reason

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, datas))
    assert results.count("RGB") == 64 and results.count("decompression bomb") == 16
    assert warnings.filters == before and not entered
