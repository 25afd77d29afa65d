"""Finding an indexed image's bytes by its id, so the service can show it.

The index records the source spec its features came from (``--images`` at build time); the source
is listed once, on first use. Without a recorded source, an id that is a readable file path is
served as that file.
"""

from __future__ import annotations

import io
import os
import threading

from PIL import Image, UnidentifiedImageError

from cliplab.data.items import ImageItem

MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp", "BMP": "image/bmp", "TIFF": "image/tiff"}


class ImageLookup:
    """``lookup(id)`` -> (bytes, mime type) or None when the id has no readable image."""

    def __init__(self, source_spec: str | None) -> None:
        self.source_spec = source_spec
        self._items: dict[str, ImageItem] | None = None
        self._lock = threading.Lock()

    def _by_id(self) -> dict[str, ImageItem]:
        with self._lock:
            if self._items is None:
                from cliplab.data.sources import open_source

                self._items = {it.id: it for it in open_source(self.source_spec).items} if self.source_spec else {}
            return self._items

    def __call__(self, image_id: str) -> tuple[bytes, str] | None:
        item = self._by_id().get(image_id)
        try:
            if item is not None:
                data = item.read_bytes()
            elif os.path.isfile(image_id):
                with open(image_id, "rb") as f:
                    data = f.read()
            else:
                return None
        except OSError:
            return None
        return data, mime_type(data)


def mime_type(data: bytes) -> str:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return MIME.get(im.format or "", "application/octet-stream")
    except (UnidentifiedImageError, OSError):
        return "application/octet-stream"
