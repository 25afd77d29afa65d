"""From results to figures and an HTML report: pick the examples worth showing, then draw them.

``eval_report(result)`` turns a runner result (``cliplab.evaluate.runner``) into a ``Report``.
``retrieval_grid`` and ``error_grid`` work from plain arrays, for any caller (e.g. ``cliplab demo``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from cliplab.data.items import ImageItem
from cliplab.evaluate import plots
from cliplab.evaluate.metrics import confusion_matrix
from cliplab.evaluate.report import Report
from cliplab.evaluate.runner import ClassificationResult, RetrievalResult

THUMB = 112  # pixels: longest side of images drawn in grids
MAX_BARS = 50  # classes in the per-class recall figure (the lowest recalls when there are more)


def thumbnail(item: ImageItem, side: int = THUMB) -> Image.Image:
    """The item's image decoded and shrunk to at most ``side`` pixels; a grey tile if unreadable."""
    from cliplab.data.images import decode_image

    try:
        image = decode_image(item.read_bytes(), item.id)
    except (OSError, ValueError):
        return Image.new("RGB", (side, side), (200, 200, 200))
    image.thumbnail((side, side))
    return image


def spread(n: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(n)`` (deterministic)."""
    if n <= 0 or count <= 0:
        return []
    return sorted(set(np.linspace(0, n - 1, min(count, n)).round().astype(int).tolist()))


def retrieval_grid(
    text_emb: np.ndarray,
    image_emb: np.ndarray,
    texts: Sequence[str],
    text_to_image: Sequence[int],
    image: Callable[[int], Image.Image | np.ndarray],
    queries: Sequence[int] | None = None,
    k: int = 5,
) -> bytes:
    """PNG: for each text query (index into ``texts``; default 4 spread over them) its top-``k``
    images by cosine similarity, the true image outlined green, others red. ``image(i)`` returns
    image ``i``."""
    text_emb, image_emb = np.asarray(text_emb, np.float32), np.asarray(image_emb, np.float32)
    t2i = np.asarray(text_to_image)
    queries = list(queries) if queries is not None else spread(len(texts), 4)
    k = max(1, min(k, len(image_emb)))
    rows, correct, scores = [], [], []
    for q in queries:
        s = image_emb @ text_emb[q]
        top = np.argsort(-s, kind="stable")[:k]
        rows.append([image(int(i)) for i in top])
        correct.append([int(i) == int(t2i[q]) for i in top])
        scores.append([float(s[i]) for i in top])
    return plots.retrieval_grid_png([texts[q] for q in queries], rows, correct, scores)


def error_grid(
    logits: np.ndarray, y: np.ndarray, classes: Sequence[str], image: Callable[[int], Image.Image | np.ndarray], n: int = 12
) -> bytes | None:
    """PNG of the ``n`` most confident mistakes (softmax probability of the wrong class), or None
    when there is no mistake."""
    from scipy.special import softmax

    probs = softmax(np.asarray(logits, np.float64), axis=1)
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != np.asarray(y))
    if not len(wrong):
        return None
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:n]
    return plots.error_grid_png(
        [image(int(i)) for i in wrong],
        [classes[int(y[i])] for i in wrong],
        [classes[int(pred[i])] for i in wrong],
        [float(probs[i, pred[i]]) for i in wrong],
    )


RUN_FIELDS = ("dataset", "model", "pretrained", "precision", "task", "templates", "attribute", "n_images", "n_texts",
              "n_unlabelled", "n_skipped", "cliplab_version")  # fmt: skip


def _summary(result: ClassificationResult | RetrievalResult) -> dict[str, Any]:
    """The run table: what was evaluated, how (model, precision, templates, attribute) and by which cliplab."""
    data = result.to_json()
    row = {k: data[k] for k in RUN_FIELDS if k in data}
    if isinstance(row.get("templates"), dict):
        row["templates"] = "; ".join(f"{c}: {' | '.join(t)}" for c, t in list(row["templates"].items())[:8])
    elif isinstance(row.get("templates"), list):
        row["templates"] = " | ".join(row["templates"][:8]) + (" ..." if len(row["templates"]) > 8 else "")
    return row


def retrieval_queries(text_emb: np.ndarray, image_emb: np.ndarray, text_to_image: Sequence[int], n_ok: int = 2, n_failed: int = 4) -> tuple[list[int], list[int]]:
    """Text queries to show: some whose true image ranks first, and some where it does not (spread over each kind)."""
    top1 = np.argmax(np.asarray(text_emb, np.float32) @ np.asarray(image_emb, np.float32).T, axis=1)
    hit = top1 == np.asarray(text_to_image)
    ok, failed = np.flatnonzero(hit), np.flatnonzero(~hit)
    return [int(ok[i]) for i in spread(len(ok), n_ok)], [int(failed[i]) for i in spread(len(failed), n_failed)]


def eval_report(result: ClassificationResult | RetrievalResult, title: str | None = None) -> Report:
    """A report for a runner result: what was run, metrics and, by task, the figures that explain them."""
    task = result.task
    report = Report(title or f"{task.replace('_', ' ')}: {result.model} on {result.dataset}")
    report.add_table("Run", _summary(result))
    report.add_table("Metrics", result.metrics)
    details = result.details
    image = lambda i: thumbnail(details.items[i])  # noqa: E731
    if isinstance(result, ClassificationResult):
        classes = details.classes
        cm = confusion_matrix(details.y, details.y_pred, len(classes))
        report.add_figure("Confusion matrix", plots.confusion_matrix_png(cm, classes), caption="Rows (true classes) sum to 1; the diagonal is each class's recall.")
        recall = {c: v["recall"] for c, v in result.per_class.items()}
        bars_title = "Per-class recall"
        if len(recall) > MAX_BARS:
            recall = dict(sorted(recall.items(), key=lambda kv: kv[1])[:MAX_BARS])
            bars_title += f" ({MAX_BARS} lowest)"
        report.add_figure(bars_title, plots.per_class_bars_png(recall, title=bars_title))
        report.add_table("Per class", [{"class": c, **v} for c, v in result.per_class.items()])
        errors = error_grid(details.logits, details.y, classes, image)
        if errors is not None:
            report.add_figure("Most confident errors", errors, caption="true class, predicted class and its softmax probability")
    else:
        ok, failed = retrieval_queries(details.text_emb, details.image_emb, details.text_to_image)
        for heading, queries, caption in (
            ("Text to image retrieval: successes", ok, "Captions whose image ranks first; green: the captioned image, red: another image."),
            ("Text to image retrieval: failures", failed, "Captions whose image does not rank first; green: the captioned image, red: another image."),
        ):
            if queries:
                grid = retrieval_grid(details.text_emb, details.image_emb, details.texts, details.text_to_image, image, queries=queries, k=5)
                report.add_figure(heading, grid, caption=caption)
        if not failed:
            report.add_text("Text to image retrieval: failures", "Every caption retrieved its own image first: there is no failure to show.")
    return report
