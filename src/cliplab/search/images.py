"""Finding an indexed image's bytes by its id, so the service can show it.

The index records the source spec its features came from (``--images`` at build time) and the
folder it was built from, so a relative spec keeps working when the service starts elsewhere; the
source is listed once, on first use. Only images of that source are served, and an image that is
a file only when it is a regular image file inside the source's folder (a manifest's folder for a
manifest) after following symlinks: a link in the image folder that points elsewhere is refused.
"""

from __future__ import annotations

import io
import os
import stat
import threading
from typing import Any

from PIL import Image, UnidentifiedImageError

from cliplab.data.items import ImageItem

MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp", "BMP": "image/bmp", "TIFF": "image/tiff"}


class ImageLookup:
    """``lookup(id)`` -> (bytes, image mime type) or None when the id has no servable image.

    ``base`` is the folder a relative ``source_spec`` (and relative ids) are relative to: the
    folder the index was built from (default: the current one).
    """

    def __init__(self, source_spec: str | None, base: str | None = None) -> None:
        self.base = os.path.abspath(base or os.curdir)
        self.source_spec = _resolve(source_spec, self.base) if source_spec else None
        self._items: dict[str, ImageItem] | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_index(cls, info: dict[str, Any]) -> ImageLookup:
        """The lookup for an index's ``info`` (its ``images`` spec and ``images_base`` folder)."""
        return cls(info.get("images"), info.get("images_base"))

    @property
    def root(self) -> str | None:
        """The folder served files must lie in (symlinks resolved): the source folder, or a manifest's folder."""
        if self.source_spec is None or not os.path.lexists(self.source_spec):
            return None
        spec = os.path.realpath(self.source_spec)
        return spec if os.path.isdir(spec) else os.path.dirname(spec)

    def _key(self, image_id: str) -> str:
        return os.path.normpath(os.path.join(self.base, image_id))

    def _by_key(self) -> dict[str, ImageItem]:
        with self._lock:
            if self._items is None:
                from cliplab.data.sources import open_source

                items = open_source(self.source_spec).items if self.source_spec else []
                self._items = {self._key(it.id): it for it in items}
            return self._items

    def __call__(self, image_id: str) -> tuple[bytes, str] | None:
        key = self._key(image_id)
        item = self._by_key().get(key)
        if item is None:
            return None
        try:
            data = _read_inside(key, self.root) if os.path.lexists(key) else item.read_bytes()
        except OSError:
            return None
        mime = mime_type(data) if data else None
        return (data, mime) if mime is not None else None


def _resolve(spec: str, base: str) -> str:
    """``spec`` as seen from ``base``: a path (or shard pattern) joined to it, anything else (synthetic:N) as it is."""
    joined = os.path.join(base, spec)
    return joined if os.path.lexists(joined) or "{" in spec else spec


def _read_inside(path: str, root: str | None) -> bytes | None:
    """The bytes of ``path`` when it resolves to a regular file inside ``root``; None otherwise."""
    real = os.path.realpath(path)
    if root is None or os.path.commonpath([real, root]) != root or not stat.S_ISREG(os.stat(real).st_mode):
        return None
    with open(real, "rb") as f:
        return f.read()


def mime_type(data: bytes) -> str | None:
    """The image type of ``data`` (``image/png``, ...), or None when it is not an image."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return MIME.get(im.format or "")
    except (UnidentifiedImageError, OSError):
        return None
