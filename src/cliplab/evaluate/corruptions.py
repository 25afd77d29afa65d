"""Image corruptions with the definitions and severity parameters of ImageNet-C (Hendrycks &
Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions...", ICLR 2019).

Written with numpy, scipy and PIL because the ``imagecorruptions`` package does not work with the
pinned stack (it imports ``pkg_resources``, and its glass blur, Gaussian blur and fog fail with
NumPy 2 / scikit-image 0.26). Parameters are the ImageNet-C ones, in pixels of the image as given
(ImageNet-C applies them to 224 px crops); frost (needs its photo files), snow and spatter are not
included. ``corrupt(image, name, severity, rng)`` returns a new RGB ``PIL.Image``.
"""

from __future__ import annotations

import io
from typing import Callable

import numpy as np
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
from PIL import Image
from scipy import ndimage

from cliplab.errors import InputError

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]  # float RGB in [0, 255]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / 255.0


def gaussian_noise(x, severity, rng):
    c = [0.08, 0.12, 0.18, 0.26, 0.38][severity - 1]
    return np.clip(_unit(x) + rng.normal(scale=c, size=x.shape), 0, 1) * 255


def shot_noise(x, severity, rng):
    c = [60, 25, 12, 5, 3][severity - 1]
    return np.clip(rng.poisson(_unit(x) * c) / c, 0, 1) * 255


def impulse_noise(x, severity, rng):
    """Salt and pepper on each channel value with probability c, half each (skimage ``s&p``)."""
    c = [0.03, 0.06, 0.09, 0.17, 0.27][severity - 1]
    out = _unit(x).copy()
    flipped = rng.random(x.shape) < c
    salted = rng.random(x.shape) < 0.5
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return out * 255


def speckle_noise(x, severity, rng):
    c = [0.15, 0.2, 0.35, 0.45, 0.6][severity - 1]
    u = _unit(x)
    return np.clip(u + u * rng.normal(scale=c, size=x.shape), 0, 1) * 255


def _gaussian(u: np.ndarray, sigma: float) -> np.ndarray:
    """skimage.filters.gaussian on an RGB image: per channel, 'nearest' borders, truncate 4."""
    return ndimage.gaussian_filter(u, sigma=(sigma, sigma, 0), mode="nearest", truncate=4.0)


def gaussian_blur(x, severity, rng):
    c = [1, 2, 3, 4, 6][severity - 1]
    return np.clip(_gaussian(_unit(x), c), 0, 1) * 255


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """ImageNet-C's defocus kernel: a normalised disk on a grid of at least 17 x 17, smoothed by a
    3 x 3 (5 x 5 above radius 8) Gaussian of std ``alias_blur`` (OpenCV GaussianBlur, reflect-101)."""
    half = 8 if radius <= 8 else int(radius)
    ksize = 3 if radius <= 8 else 5
    L = np.arange(-half, half + 1)
    X, Y = np.meshgrid(L, L)
    disk = ((X**2 + Y**2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    taps = np.arange(ksize) - ksize // 2
    g = np.exp(-(taps**2) / (2 * alias_blur**2))
    g /= g.sum()
    return ndimage.convolve1d(ndimage.convolve1d(disk, g, axis=0, mode="mirror"), g, axis=1, mode="mirror")


def defocus_blur(x, severity, rng):
    radius, alias = [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)][severity - 1]
    k = disk_kernel(radius, alias)
    u = _unit(x)
    out = np.stack([ndimage.correlate(u[..., ch], k, mode="mirror") for ch in range(3)], axis=-1)
    return np.clip(out, 0, 1) * 255


def glass_blur(x, severity, rng):
    """Gaussian blur, then local pixel swaps sweeping bottom-right to top-left, then blur again."""
    sigma, delta, iterations = [(0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)][severity - 1]
    img = np.uint8(_gaussian(_unit(x), sigma) * 255)
    h, w = img.shape[:2]
    for _ in range(iterations):
        for r in range(h - delta, delta, -1):
            for col in range(w - delta, delta, -1):
                dx, dy = rng.integers(-delta, delta, size=2)
                r2, c2 = r + dy, col + dx
                img[r, col], img[r2, c2] = img[r2, c2].copy(), img[r, col].copy()
    return np.clip(_gaussian(img / 255.0, sigma), 0, 1) * 255


def motion_kernel_offsets(radius: int, sigma: float, angle_deg: float) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """ImageMagick's motion blur (what ImageNet-C calls through Wand): weights of a one-sided
    Gaussian over 2 * radius + 1 taps and the (row, col) offset of each tap along ``angle``."""
    width = 2 * radius + 1
    i = np.arange(width)
    weights = np.exp(-(i**2) / (2 * sigma**2))
    weights /= weights.sum()
    a = np.deg2rad(angle_deg)
    # ImageMagick rounds half down: ceil(v - 0.5)
    offsets = [(int(np.ceil(k * np.sin(a) - 0.5)), int(np.ceil(k * np.cos(a) - 0.5))) for k in i]
    return weights, offsets


def motion_blur(x, severity, rng):
    radius, sigma = [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)][severity - 1]
    weights, offsets = motion_kernel_offsets(radius, sigma, float(rng.uniform(-45, 45)))
    h, w = x.shape[:2]
    rows, cols = np.arange(h), np.arange(w)
    out = np.zeros_like(x, dtype=np.float64)
    for wt, (dr, dc) in zip(weights, offsets):  # each output pixel gathers the pixels ahead of it
        if abs(dr) >= h or abs(dc) >= w:  # the motion left the image: later taps are dropped
            break
        out += wt * x[np.clip(rows + dr, 0, h - 1)][:, np.clip(cols + dc, 0, w - 1)]  # edge pixels repeat
    return np.clip(out, 0, 255)


def _clipped_zoom(u: np.ndarray, zoom: float) -> np.ndarray:
    """Zoom into the centre by ``zoom`` (bilinear) and crop back to the input size."""
    h, w = u.shape[:2]
    ch, cw = int(np.ceil(h / zoom)), int(np.ceil(w / zoom))
    top, left = (h - ch) // 2, (w - cw) // 2
    z = ndimage.zoom(u[top : top + ch, left : left + cw], (zoom, zoom, 1), order=1)
    t, l = (z.shape[0] - h) // 2, (z.shape[1] - w) // 2
    return z[t : t + h, l : l + w]


def zoom_blur(x, severity, rng):
    zooms = [np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01), np.arange(1, 1.21, 0.02),
             np.arange(1, 1.26, 0.02), np.arange(1, 1.31, 0.03)][severity - 1]  # fmt: skip
    u = _unit(x)
    out = np.zeros_like(u)
    for z in zooms:
        out += _clipped_zoom(u, float(z))
    return np.clip((u + out) / (len(zooms) + 1), 0, 1) * 255


def plasma_fractal(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """A (size, size) diamond-square fractal in [0, 1] (size a power of two): the ImageNet-C fog
    texture. Each new point is the mean of its 4 neighbours plus uniform noise of amplitude
    wibble^2, with wibble starting at 100 and divided by ``decay`` at each halving of the step."""
    grid = np.zeros((size, size))
    step, wibble = size, 100.0

    def noisy_mean(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = grid[0:size:step, 0:size:step]
        squares = corners + np.roll(corners, -1, axis=0)
        squares = squares + np.roll(squares, -1, axis=1)
        grid[half:size:step, half:size:step] = noisy_mean(squares)
        centres = grid[half:size:step, half:size:step]
        grid[0:size:step, half:size:step] = noisy_mean(centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1))
        grid[half:size:step, 0:size:step] = noisy_mean(centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0))
        step = half
        wibble /= decay
    grid -= grid.min()
    return grid / grid.max()


def fog(x, severity, rng):
    strength, decay = [(1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)][severity - 1]
    u = _unit(x)
    h, w = u.shape[:2]
    size = 1 << int(np.ceil(np.log2(max(h, w, 2))))
    peak = u.max()
    u = u + strength * plasma_fractal(size, decay, rng)[:h, :w, None]
    return np.clip(u * peak / (peak + strength), 0, 1) * 255


def _hsv_edit(x: np.ndarray, edit: Callable[[np.ndarray], None]) -> np.ndarray:
    hsv = rgb_to_hsv(_unit(x))
    edit(hsv)
    return hsv_to_rgb(hsv) * 255


def brightness(x, severity, rng):
    c = [0.1, 0.2, 0.3, 0.4, 0.5][severity - 1]
    return _hsv_edit(x, lambda hsv: hsv.__setitem__((..., 2), np.clip(hsv[..., 2] + c, 0, 1)))


def saturate(x, severity, rng):
    scale, shift = [(0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)][severity - 1]
    return _hsv_edit(x, lambda hsv: hsv.__setitem__((..., 1), np.clip(hsv[..., 1] * scale + shift, 0, 1)))


def contrast(x, severity, rng):
    c = [0.4, 0.3, 0.2, 0.1, 0.05][severity - 1]
    u = _unit(x)
    means = u.mean(axis=(0, 1), keepdims=True)
    return np.clip((u - means) * c + means, 0, 1) * 255


def jpeg_compression(x, severity, rng):
    quality = [25, 18, 15, 10, 7][severity - 1]
    buf = io.BytesIO()
    Image.fromarray(np.uint8(x)).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), np.float64)


def pixelate(x, severity, rng):
    c = [0.6, 0.5, 0.4, 0.3, 0.25][severity - 1]
    img = Image.fromarray(np.uint8(x))
    w, h = img.size
    small = img.resize((max(1, int(w * c)), max(1, int(h * c))), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.BOX), np.float64)


CORRUPTIONS: dict[str, Corruption] = {
    f.__name__: f
    for f in (gaussian_noise, shot_noise, impulse_noise, speckle_noise, gaussian_blur, defocus_blur, glass_blur,
              motion_blur, zoom_blur, fog, brightness, contrast, saturate, jpeg_compression, pixelate)
}  # fmt: skip


def check_corruptions(names: list[str], severities: list[int]) -> None:
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise InputError(f"unknown corruption {unknown[0]!r}; use any of {', '.join(CORRUPTIONS)}")
    if not names or not severities or any(s not in range(1, 6) for s in severities):
        raise InputError(f"need at least one corruption and severities among 1-5, got {severities}")


def corrupt(image: Image.Image | np.ndarray, name: str, severity: int, rng: np.random.Generator) -> Image.Image:
    """``image`` corrupted by ``name`` at ``severity`` (1-5); randomness from ``rng``."""
    check_corruptions([name], [severity])
    x = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, np.float64)
    if x.ndim != 3 or x.shape[2] != 3:
        raise InputError(f"expected an RGB image, got an array of shape {x.shape}")
    return Image.fromarray(np.uint8(np.clip(CORRUPTIONS[name](x, severity, rng), 0, 255)))
