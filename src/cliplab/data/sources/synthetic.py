"""Synthetic scenes: seeded ``cliplab.data.synthetic`` scenes as PNG-encoded items."""

from __future__ import annotations

import io
from functools import partial
from typing import Any

from cliplab.data.items import ImageItem
from cliplab.data.sources.base import ImageSource, SourceError


def synthetic_source(n: int, seed: int = 0, split: str = "test", attribute: str | None = None, **kw: Any) -> ImageSource:
    """``n`` seeded synthetic scenes as PNG-encoded items (``kw``: image_size, max_objects, ...).

    Captions hold the full caption; with ``attribute`` (shape, color, size, position) the label
    is that attribute of the first object and ``classes`` its whole vocabulary.
    """
    from cliplab.data import synthetic

    vocab = {
        "shape": list(synthetic.SHAPES),
        "color": list(synthetic.COLOR_NAMES),
        "size": list(synthetic.SIZES),
        "position": list(synthetic.POSITIONS),
    }
    if attribute is not None and attribute not in vocab:
        raise SourceError(f"attribute={attribute!r} is not a scene attribute; use one of {', '.join(vocab)}")
    items = []
    for i, rec in enumerate(synthetic.iter_scenes(n, seed=seed, split=split, **kw)):
        buf = io.BytesIO()
        rec.image.save(buf, "PNG")
        label = str(rec.objects[0][attribute]) if attribute and rec.objects else None
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
    classes = vocab[attribute] if attribute else None
    return ImageSource(name=f"synthetic-{split}-{seed}", items=items, classes=classes)


def _constant(data: bytes) -> bytes:
    return data
