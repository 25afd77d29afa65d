"""Figures for reports, drawn with matplotlib's Agg renderer and returned as PNG bytes.

Every function builds its own ``matplotlib.figure.Figure`` (never ``pyplot``), so no global
backend or figure state is touched and nothing needs a display. ``to_data_uri`` turns the PNG
bytes into a ``data:image/png;base64,...`` string for self-contained HTML.
"""

from __future__ import annotations

import base64
import io
import textwrap
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from cliplab.errors import InputError

ImageLike = Image.Image | np.ndarray
GREEN, RED, GREY = "#2ca02c", "#d62728", "#999999"


def to_data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """Render ``fig`` to PNG bytes (Agg)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def _short(text: str, width: int = 24) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _pixels(image: ImageLike) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    return np.asarray(image)


def _label_fontsize(n: int) -> float:
    """Tick label size that stays readable from 2 to ~50 classes."""
    return float(np.clip(300 / max(n, 1), 7, 11))


# --- classification --------------------------------------------------------------------------------
def confusion_matrix_png(cm: np.ndarray, classnames: Sequence[str], title: str = "Confusion matrix (rows normalised)") -> bytes:
    """Heat map of a (C, C) count matrix with each row divided by its total (recall on the diagonal).

    Rows with no samples stay 0. Cells carry their value up to 15 classes, axes their names up to 60.
    """
    cm = np.asarray(cm, dtype=np.float64)
    n = len(classnames)
    if cm.shape != (n, n):
        raise InputError(f"confusion matrix has shape {cm.shape} but {n} class names were given")
    totals = cm.sum(1, keepdims=True)
    norm = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    side = float(np.clip(0.26 * n + 2.5, 4, 16))
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fs = _label_fontsize(n)
    if n <= 60:
        names = [_short(str(c)) for c in classnames]
        ax.set_xticks(range(n), names, rotation=90, fontsize=fs)
        ax.set_yticks(range(n), names, fontsize=fs)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 15:
        for i in range(n):
            for j in range(n):
                if norm[i, j] > 0:
                    colour = "white" if norm[i, j] > 0.5 else "black"
                    ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=fs - 1, color=colour)
    return figure_png(fig)


def per_class_bars_png(values: Mapping[str, float], title: str = "Per-class recall", xlabel: str = "recall") -> bytes:
    """Horizontal bars of one value in [0, 1] per class (in the given order, first at the top)."""
    names = [_short(str(k), 30) for k in values]
    vals = np.array([float(v) for v in values.values()], dtype=np.float64)
    n = len(names)
    fig = Figure(figsize=(6.5, float(np.clip(0.24 * n + 1.2, 2, 14))))
    ax = fig.subplots()
    y = np.arange(n)
    ax.barh(y, np.nan_to_num(vals), color="#4c78a8")
    ax.set_yticks(y, names, fontsize=_label_fontsize(n))
    ax.set_ylim(n - 0.5, -0.5)  # first class at the top
    ax.set_xlim(0, 1.08)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    if n <= 40:
        for yi, v in zip(y, vals):
            ax.text(min(np.nan_to_num(v), 1.0) + 0.01, yi, "–" if np.isnan(v) else f"{v:.2f}", va="center", fontsize=7)
    return figure_png(fig)


# --- image grids -----------------------------------------------------------------------------------
def _outline(ax, colour: str, width: float = 4.0) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(width)


def retrieval_grid_png(
    queries: Sequence[str],
    images: Sequence[Sequence[ImageLike]],
    correct: Sequence[Sequence[bool]],
    scores: Sequence[Sequence[float]] | None = None,
) -> bytes:
    """One row per text query: the query, then its top-k images in rank order, each outlined green
    when it is a correct match and red when not (scores, when given, are printed above)."""
    if not (len(queries) == len(images) == len(correct)):
        raise InputError("queries, images and correct must have one entry per query")
    n = len(queries)
    k = max((len(row) for row in images), default=0)
    if n == 0 or k == 0:
        raise InputError("a retrieval grid needs at least one query with one image")
    fig = Figure(figsize=(2.8 + 1.6 * k, 1.8 * n))
    axes = np.atleast_2d(fig.subplots(n, k + 1, gridspec_kw={"width_ratios": [2.2] + [1] * k}))
    for r in range(n):
        text_ax = axes[r, 0]
        text_ax.axis("off")
        text_ax.text(0, 0.5, "\n".join(textwrap.wrap(queries[r], 28)[:6]), va="center", ha="left", fontsize=9)
        for c in range(k):
            ax = axes[r, c + 1]
            if c >= len(images[r]):
                ax.axis("off")
                continue
            ax.imshow(_pixels(images[r][c]))
            _outline(ax, GREEN if correct[r][c] else RED)
            label = f"#{c + 1}" + (f"  {scores[r][c]:.3f}" if scores is not None else "")
            ax.set_title(label, fontsize=8)
    fig.subplots_adjust(wspace=0.08, hspace=0.3)
    return figure_png(fig)


def image_grid_png(
    images: Sequence[ImageLike], titles: Sequence[str], colours: Sequence[str] | None = None, cols: int = 6
) -> bytes:
    """Images in a grid with a (multi-line) title each and an optional outline colour each."""
    n = len(images)
    if n == 0:
        raise InputError("an image grid needs at least one image")
    if len(titles) != n or (colours is not None and len(colours) != n):
        raise InputError("titles (and colours) must have one entry per image")
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig = Figure(figsize=(2.2 * cols, 2.5 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)
    for i, ax in enumerate(axes):
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(_pixels(images[i]))
        _outline(ax, colours[i] if colours is not None else GREY, 3.0)
        ax.set_title(titles[i], fontsize=8)
    fig.subplots_adjust(wspace=0.1, hspace=0.5)
    return figure_png(fig)


def error_grid_png(
    images: Sequence[ImageLike], true: Sequence[str], predicted: Sequence[str], scores: Sequence[float], cols: int = 6
) -> bytes:
    """Misclassified examples: each image with its true class, the predicted class and its score."""
    titles = [f"true: {_short(t, 20)}\npred: {_short(p, 20)} ({s:.2f})" for t, p, s in zip(true, predicted, scores)]
    colours = [GREEN if t == p else RED for t, p in zip(true, predicted)]
    return image_grid_png(images, titles, colours, cols=cols)
