"""Decoding and preprocessing JPEGs as tensors, in batches, on the model's device.

``torchvision.io.decode_jpeg`` decodes a list of JPEG byte tensors on CUDA (nvjpeg) or on the CPU
(libjpeg-turbo); resize (antialiased, the model's interpolation), centre crop and normalisation then
run as tensor ops on the same device, mirroring the model's torchvision preprocessing. The same
code runs on CPU tensors, which is how it is tested without a GPU.

What this path does not take goes to the PIL path (``decode_image`` + the model's own
``preprocess``) image by image: non-JPEGs, CMYK/YCCK JPEGs, JPEGs with an EXIF rotation, more pixels
than ``max_pixels`` (or, without a limit, than Pillow's ``Image.MAX_IMAGE_PIXELS``, so Pillow warns or
refuses as it does for any image), and any JPEG the tensor decoder refuses (nvjpeg rejects some progressive or
unusual files). So a bad file is still skipped with the same reason as before, never a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from PIL import Image

SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
PROGRESSIVE_SOF = {0xC2, 0xC6, 0xCA, 0xCE}


# --- reading a JPEG's header without decoding it -----------------------------------------------------
@dataclass(frozen=True)
class JpegHeader:
    width: int
    height: int
    components: int  # 1 grey, 3 YCbCr, 4 CMYK/YCCK
    progressive: bool
    orientation: int  # EXIF orientation; 1 upright (also when there is no EXIF), 0 unreadable


def jpeg_header(data: bytes) -> JpegHeader | None:
    """Size, components, progressiveness and EXIF orientation from the markers before the first
    frame header (ITU-T T.81 annex B); None when ``data`` is not a readable JPEG header."""
    if data[:2] != b"\xff\xd8":
        return None
    i, orientation = 2, 1
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        segment = data[i + 4 : i + 2 + length]
        if length < 2 or len(segment) < length - 2:
            return None
        if marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            orientation = exif_orientation(segment[6:])
        elif marker in SOF_MARKERS:
            if len(segment) < 6:
                return None
            height, width = int.from_bytes(segment[1:3], "big"), int.from_bytes(segment[3:5], "big")
            return JpegHeader(width, height, segment[5], marker in PROGRESSIVE_SOF, orientation)
        elif marker == 0xDA:  # scan data before any frame header
            return None
        i += 2 + length
    return None


def exif_orientation(tiff: bytes) -> int:
    """The orientation tag (0x0112) of IFD0 of an EXIF TIFF block; 1 when absent, 0 when unreadable."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 0
    u16 = lambda b: int.from_bytes(b, order)
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 0
    for k in range(u16(tiff[ifd : ifd + 2])):
        entry = tiff[ifd + 2 + 12 * k : ifd + 14 + 12 * k]
        if len(entry) < 12:
            return 0
        if u16(entry[0:2]) == 0x0112:
            return u16(entry[8:10])
    return 1


# --- the model's preprocessing, as tensor ops ----------------------------------------------------------
@dataclass(frozen=True)
class TensorPreprocess:
    """Resize (shortest side to ``size``, antialiased), centre crop to ``crop``, scale to [0, 1],
    normalise: torchvision's ``Resize(int) -> CenterCrop -> ToTensor -> Normalize`` on uint8 CHW tensors."""

    size: int
    crop: tuple[int, int]
    interpolation: str  # torchvision InterpolationMode value: "bicubic", "bilinear", ...
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def mirror(cls, preprocess: Callable) -> TensorPreprocess | None:
        """The tensor version of a torchvision ``Compose`` of exactly Resize(int), CenterCrop, optional
        RGB conversion, ToTensor and Normalize (what open_clip builds for 'shortest' resizing); None
        for anything else (those models keep the PIL path)."""
        from torchvision import transforms as T

        steps = list(getattr(preprocess, "transforms", None) or [])
        kinds = [type(t).__name__ for t in steps]
        optional = {"MaybeConvertMode", "MaybeToTensor", "ToTensor", "_convert_to_rgb", "function"}
        core = [t for t, k in zip(steps, kinds) if k not in optional]
        if [type(t) for t in core] != [T.Resize, T.CenterCrop, T.Normalize]:
            return None
        if not any(k in ("MaybeToTensor", "ToTensor") for k in kinds):
            return None
        resize, crop, norm = core
        size = resize.size[0] if isinstance(resize.size, (list, tuple)) and len(resize.size) == 1 else resize.size
        if not isinstance(size, int) or resize.max_size is not None or resize.antialias is False:
            return None
        ch, cw = crop.size if len(crop.size) == 2 else (crop.size[0], crop.size[0])
        return cls(size, (int(ch), int(cw)), resize.interpolation.value, tuple(map(float, norm.mean)), tuple(map(float, norm.std)))

    def __call__(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """uint8 CHW RGB images (any sizes, one device) -> a normalised float32 NCHW batch there."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms.v2 import functional as F

        mode = InterpolationMode(self.interpolation)
        out = [F.center_crop(F.resize(im, [self.size], interpolation=mode, antialias=True), list(self.crop)) for im in images]
        batch = torch.stack(out).float().div_(255.0)
        mean = torch.tensor(self.mean, device=batch.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=batch.device).view(1, -1, 1, 1)
        return batch.sub_(mean).div_(std)


# --- decoding ------------------------------------------------------------------------------------------
def tensor_decodable(data: bytes, max_pixels: int | None) -> bool:
    """True when ``data`` is a JPEG the tensor path takes (see the module docstring). It must end
    with the end-of-image marker: libjpeg fills a truncated file with grey where PIL reports it."""
    head = jpeg_header(data)
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels  # None there too: no limit
    return (
        head is not None
        and data.endswith(b"\xff\xd9")
        and head.components in (1, 3)
        and head.orientation == 1
        and head.width > 0
        and head.height > 0
        and (limit is None or head.width * head.height <= limit)
    )


def decode_jpegs(datas: Sequence[bytes], device: torch.device) -> list[torch.Tensor | None]:
    """uint8 CHW RGB tensors on ``device`` for JPEG bytes, decoded as one batch; None for any the
    decoder refuses (found by decoding one by one when the batch fails).

    torchvision 0.29 announces with a DeprecationWarning that its decoders move to TorchCodec. Python's
    default filters hide it (it is raised in torchvision's code); the warnings filters are process-wide
    and not thread-safe, so they are left alone here and the CLI hides it from its users.
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    if not datas:
        return []
    encoded = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    where = "cuda" if device.type == "cuda" else "cpu"
    try:
        return list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=where))
    except RuntimeError:
        pass
    out: list[torch.Tensor | None] = []
    for e in encoded:
        try:
            out.append(decode_jpeg(e, mode=ImageReadMode.RGB, device=where))
        except RuntimeError:
            out.append(None)
    return out
