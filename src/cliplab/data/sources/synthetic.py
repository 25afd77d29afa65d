"""Synthetic scenes: seeded ``cliplab.data.synthetic`` scenes as PNG-encoded items."""

from __future__ import annotations

import io
from functools import partial
from typing import Any

from cliplab.data.items import ImageItem
from cliplab.data.sources.base import ImageSource


def synthetic_source(n: int, seed: int = 0, split: str = "test", attribute: str | None = None, language: str = "en", **kw: Any) -> ImageSource:
    """``n`` seeded synthetic scenes as PNG-encoded items (``kw``: image_size, max_objects, ...).

    Captions hold the full caption, in ``language`` (one of ``synthetic.LANGUAGES``; the prompts too). With ``attribute`` (shape, color, size, position, background)
    the label is that attribute of the first object (or the background), ``classes`` its whole
    vocabulary and ``templates`` the attribute's own prompt per class.
    """
    from cliplab.data import synthetic

    if language not in synthetic.LANGUAGES:
        from cliplab.errors import InputError

        raise InputError(f"unknown language {language!r}; use one of {', '.join(synthetic.LANGUAGES)}")
    classes = synthetic.attribute_values(attribute) if attribute is not None else None
    items = []
    for i, rec in enumerate(synthetic.iter_scenes(n, seed=seed, split=split, **kw)):
        buf = io.BytesIO()
        rec.image.save(buf, "PNG")
        label = synthetic.attribute_label(rec.objects, rec.background, attribute) if attribute and rec.objects else None
        meta = {"objects": rec.objects, "background": rec.background, "short_caption": synthetic.short_caption(rec.spec, language)}
        if language != "en":  # the language, and the English parallel (for cross-lingual retrieval)
            meta.update(caption_languages=[language], english_caption=rec.caption)
        items.append(
            ImageItem(
                id=f"synthetic-{split}-{seed}-{i:06d}",
                read_bytes=partial(_constant, buf.getvalue()),
                label=label,
                captions=[synthetic.full_caption(rec.spec, language)],
                meta=meta,
            )
        )
    templates = synthetic.attribute_prompts(attribute, language) if attribute is not None else None
    return ImageSource(name=f"synthetic-{split}-{seed}", items=items, classes=classes, templates=templates)


def _constant(data: bytes) -> bytes:
    return data
