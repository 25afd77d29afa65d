"""Figures of the tasks beyond accuracy (PNG bytes, matplotlib ``Figure`` objects, no pyplot):
reliability diagrams, score histograms, a corruption x severity heat map, subgroup bars with intervals."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from cliplab.evaluate.calibration import ReliabilityBins
from cliplab.evaluate.plots import _short, figure_png

BLUE, ORANGE = "#4c78a8", "#f58518"


def reliability_diagram_png(panels: Mapping[str, ReliabilityBins], title: str = "Reliability diagram") -> bytes:
    """One panel per binning (e.g. before / after temperature scaling): per-bin accuracy as bars at
    the bins' mean confidence, the diagonal of perfect calibration, and the share of samples per bin."""
    fig = Figure(figsize=(4.2 * len(panels), 4.6))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, bins) in zip(axes, panels.items()):
        filled = bins.counts > 0
        lo, hi = bins.edges[:-1], bins.edges[1:]
        ax.bar(lo[filled], bins.accuracy[filled], width=(hi - lo)[filled], align="edge", color=BLUE, edgecolor="white", label="accuracy")
        ax.bar(lo[filled], (bins.confidence - bins.accuracy)[filled], bottom=bins.accuracy[filled], width=(hi - lo)[filled],
               align="edge", color=ORANGE, alpha=0.35, edgecolor=ORANGE, label="gap to confidence")  # fmt: skip
        ax.plot([0, 1], [0, 1], "--", color="#555", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.set_title(name)
        share = ax.twinx()
        share.plot((lo + hi)[filled] / 2, bins.counts[filled] / bins.counts.sum(), "o-", color="#333", ms=3, lw=0.8)
        share.set_ylim(0, 1)
        share.set_ylabel("share of samples", fontsize=8)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.subplots_adjust(wspace=0.5)
    return figure_png(fig)


def score_histograms_png(scores_in: Mapping[str, np.ndarray], scores_out: Mapping[str, np.ndarray], labels: tuple[str, str] = ("in-distribution", "OOD")) -> bytes:
    """One panel per OOD score: histograms of the in-distribution and OOD values on shared bins."""
    names = list(scores_in)
    fig = Figure(figsize=(4.0 * len(names), 3.4))
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    for ax, name in zip(axes, names):
        a, b = np.asarray(scores_in[name]), np.asarray(scores_out[name])
        lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, 41)
        ax.hist(a, bins=edges, alpha=0.6, color=BLUE, label=labels[0], density=True)
        ax.hist(b, bins=edges, alpha=0.6, color=ORANGE, label=labels[1], density=True)
        ax.set_title(name)
        ax.set_xlabel("score (higher: more in-distribution)", fontsize=8)
        ax.legend(fontsize=8)
    return figure_png(fig)


def heatmap_png(values: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str, xlabel: str, ylabel: str, vmin: float = 0.0, vmax: float = 1.0) -> bytes:
    """A heat map with the value printed in each cell (e.g. accuracy per corruption and severity)."""
    values = np.asarray(values, np.float64)
    fig = Figure(figsize=(1.0 + 0.9 * len(cols), 1.2 + 0.42 * len(rows)))
    ax = fig.subplots()
    im = ax.imshow(values, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [_short(str(r), 24) for r in rows])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = values[i, j]
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if v < (vmin + vmax) / 2 else "black")
    return figure_png(fig)


def interval_bars_png(values: Mapping[str, tuple[float, float, float]], title: str, xlabel: str) -> bytes:
    """Horizontal bars of (value, low, high) per group, with the interval drawn as an error bar."""
    names = [_short(str(k), 30) for k in values]
    v = np.array([x[0] for x in values.values()], np.float64)
    err = np.abs(np.array([[x[0] - x[1], x[2] - x[0]] for x in values.values()], np.float64).T)
    fig = Figure(figsize=(6.5, float(np.clip(0.32 * len(names) + 1.3, 2, 14))))
    ax = fig.subplots()
    y = np.arange(len(names))
    ax.barh(y, v, xerr=np.nan_to_num(err), color=BLUE, capsize=3, ecolor="#333")
    ax.set_yticks(y, names)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlim(0, 1.05)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return figure_png(fig)
