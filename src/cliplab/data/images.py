"""Decoding image files into RGB PIL images, robustly.

Bad inputs (empty, not an image, truncated, undecodable, too many pixels) raise ``BadImage`` with a
short ``reason``, so a caller can skip them and count why. Odd but valid inputs (CMYK, 16-bit,
float, palette, alpha, EXIF-rotated) are always converted to 8-bit RGB, never skipped.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cliplab.errors import BadImage

DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own warning threshold (about 9459 x 9459)

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_INT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


def decode_image(
    data: bytes, source_id: str = "", max_pixels: int | None = DEFAULT_MAX_PIXELS, min_side: int | None = None
) -> Image.Image:
    """Decode encoded image ``data`` into an RGB image, or raise ``BadImage``.

    ``max_pixels`` bounds width*height (checked before any pixel is decoded); ``None`` leaves only
    Pillow's own hard limit (``2 * Image.MAX_IMAGE_PIXELS``). With ``min_side``, a JPEG at least
    twice that on both sides is decoded at a reduced scale (libjpeg DCT scaling: 1/2, 1/4 or 1/8)
    that keeps both sides >= ``min_side``: several times faster for photos much larger than a
    model's input.
    """
    if not data:
        raise BadImage("empty file", source_id)
    _check_riff_length(data, source_id)
    # The size is checked here, between open and load, so the warnings filters (process-wide, not
    # thread-safe) are never touched; Pillow itself refuses more than 2 * Image.MAX_IMAGE_PIXELS.
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise BadImage("decompression bomb", source_id, str(e)) from e
    except UnidentifiedImageError as exc:
        raise BadImage("not an image", source_id) from exc
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad input
        raise _classify(e, source_id) from e
    width, height = im.size
    if max_pixels is not None and width * height > max_pixels:
        raise BadImage("decompression bomb", source_id, f"{width}x{height} pixels, limit {max_pixels}")
    if min_side and im.format == "JPEG" and min(width, height) >= 2 * min_side:
        im.draft("RGB", (min_side, min_side))
    try:
        im.load()
    except Image.DecompressionBombError as e:
        raise BadImage("decompression bomb", source_id, str(e)) from e
    except Exception as e:  # noqa: BLE001
        raise _classify(e, source_id) from e
    try:
        return to_rgb(_exif_upright(im))
    except Exception as e:  # noqa: BLE001 - e.g. a mode Pillow cannot convert
        raise BadImage("unreadable", source_id, f"{type(e).__name__}: {e}") from e


def open_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read the file at ``path`` and decode it with ``decode_image`` (RGB, EXIF orientation applied).

    A missing file raises ``FileNotFoundError``; any other read or decode failure ``BadImage``.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"image file not found: {path}") from exc
    except OSError as e:
        raise BadImage("unreadable", str(path), e.strerror or type(e).__name__) from e
    return decode_image(data, str(path), max_pixels)


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB: alpha composited on white, high bit depths rescaled."""
    if im.mode in _INT_MODES or im.mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(im), im.mode)).convert("RGB")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def _to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """Scale a single-channel 16/32-bit integer or float array to 0-255."""
    a = a.astype(np.float64)
    if mode == "F":
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        if lo >= 0.0 and hi <= 1.0:
            scaled = a * 255.0
        elif lo >= 0.0 and hi <= 255.0:
            scaled = a
        else:
            scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        return np.clip(np.nan_to_num(scaled) + 0.5, 0, 255).astype(np.uint8)
    lo, hi = float(a.min()), float(a.max())
    if mode != "I" or (lo >= 0 and hi <= 65535):  # 16-bit samples (how 16-bit PNG/TIFF decode)
        scaled = a / 257.0
    else:  # genuinely 32-bit data: stretch its range
        scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def _exif_upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a broken EXIF block leaves the image as stored."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - orientation is a nicety, the pixels are fine
        return im


def _classify(e: BaseException, source_id: str) -> BadImage:
    """Map a decoder exception to "truncated" or "unreadable"."""
    text = f"{type(e).__name__}: {e}"
    if isinstance(e, EOFError) or "truncat" in text.lower() or "end of" in text.lower():
        return BadImage("truncated", source_id, str(e))
    return BadImage("unreadable", source_id, text)


def _check_riff_length(data: bytes, source_id: str) -> None:
    """WebP (RIFF) files state their length; a shorter file is truncated (libwebp won't say so)."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        declared = int.from_bytes(data[4:8], "little") + 8
        if len(data) < declared:
            raise BadImage("truncated", source_id, f"{len(data)} of {declared} bytes")
