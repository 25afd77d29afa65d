"""Synthetic scenes: seeded ``cliplab.data.synthetic`` scenes as PNG-encoded items."""

from __future__ import annotations

import io
from functools import partial
from typing import Any

from cliplab.data.items import ImageItem
from cliplab.data.sources.base import ImageSource


def synthetic_source(n: int, seed: int = 0, split: str = "test", attribute: str | None = None, **kw: Any) -> ImageSource:
    """``n`` seeded synthetic scenes as PNG-encoded items (``kw``: image_size, max_objects, ...).

    Captions hold the full caption. With ``attribute`` (shape, color, size, position, background)
    the label is that attribute of the first object (or the background), ``classes`` its whole
    vocabulary and ``templates`` the attribute's own prompt per class.
    """
    from cliplab.data import synthetic

    classes = synthetic.attribute_values(attribute) if attribute is not None else None
    items = []
    for i, rec in enumerate(synthetic.iter_scenes(n, seed=seed, split=split, **kw)):
        buf = io.BytesIO()
        rec.image.save(buf, "PNG")
        label = synthetic.attribute_label(rec.objects, rec.background, attribute) if attribute and rec.objects else None
        meta = {"objects": rec.objects, "background": rec.background, "short_caption": rec.short_caption}
        items.append(
            ImageItem(
                id=f"synthetic-{split}-{seed}-{i:06d}",
                read_bytes=partial(_constant, buf.getvalue()),
                label=label,
                captions=[rec.caption],
                meta=meta,
            )
        )
    templates = synthetic.attribute_prompts(attribute) if attribute is not None else None
    return ImageSource(name=f"synthetic-{split}-{seed}", items=items, classes=classes, templates=templates)


def _constant(data: bytes) -> bytes:
    return data
