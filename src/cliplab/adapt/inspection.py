"""One-class inspection behind ``cliplab inspect``: fit a detector on good images only, set its
threshold on held-out good images at a target false-alarm rate, then score new images.

    detector = fit_detector(X_good, method="knn", false_alarm=0.05, model=record_model(clip))
    detector.save("detector/")                     # detector.safetensors + detector.json
    detector = Detector.load("detector/")
    detector.check_model(clip)                     # refuses embeddings of another model
    scores = detector.anomaly_score(X_new)         # higher = more anomalous
    flagged = detector.flag(X_new)                 # scores above the threshold
    metrics = inspection_metrics(scores, is_anomaly, detector.threshold, kinds=labels)

The threshold is chosen on good images the head never saw (a held-out share of the good images,
or a separate set), so the false-alarm rate it promises is measured, not read off the training
rows; Hyp-OC's reference code tunes it on the test set instead, which is optimistic
(reference/wave3_methods.md, Hyp-OC pitfalls).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from PIL import Image

from cliplab.adapt._base import check_features
from cliplab.adapt.io import load as load_head
from cliplab.adapt.oneclass import GaussianOneClass, HypOneClass, KNNOneClass, one_class_metrics
from cliplab.errors import InputError, how_to_pass, spelled, warn

DETECTORS: dict[str, type] = {"knn": KNNOneClass, "gaussian": GaussianOneClass, "hypoc": HypOneClass}
HEAD_FILE = "detector.safetensors"
INFO_FILE = "detector.json"
REPORT_FILE = "report.html"
FORMAT = "cliplab.detector"
VERSION = 1


def build_detector(method: str, params: Mapping[str, Any] | None = None, false_alarm: float = 0.05) -> Any:
    """An unfitted one-class head for ``method`` (knn, gaussian, hypoc) with ``params`` set."""
    if method not in DETECTORS:
        raise InputError(f"unknown one-class method {method!r}; use one of {', '.join(DETECTORS)}")
    head = DETECTORS[method](fpr=false_alarm)
    params = dict(params or {})
    unknown = sorted(set(params) - set(head.get_params()) - {"fpr"})
    if unknown or "fpr" in params:
        allowed = ", ".join(sorted(set(head.get_params()) - {"fpr"})) or "none"
        bad = unknown[0] if unknown else "fpr"
        raise InputError(f"{method} has no parameter {bad!r} to set; its parameters are: {allowed} "
                         f"(the false-alarm rate is {how_to_pass('false_alarm')})")
    return head.set_params(**params)


def threshold_at(scores: Any, false_alarm: float) -> float:
    """The threshold t at which ``scores > t`` flags floor(false_alarm * n) of the n ``scores``
    (fewer where scores tie): midway between the k-th and (k+1)-th highest score, k = that count.
    With k = 0 (fewer than 1/false_alarm scores) it is the highest score: nothing is flagged."""
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    if s.ndim != 1 or not len(s):
        raise InputError("a threshold needs at least one score of a good image")
    if not 0.0 < false_alarm < 1.0:
        raise InputError(f"the false-alarm rate must be in (0, 1), got {false_alarm}")
    k = int(math.floor(false_alarm * len(s) + 1e-9))
    if k == 0:
        return float(s[0])
    return float((s[k - 1] + s[k]) / 2.0)


def record_model(model: Any, pretrained: str | os.PathLike | None = None) -> dict[str, Any]:
    """What identifies the model a detector's embeddings came from: spec, weights, precision, identity."""
    return {"name": model.name, "pretrained": None if pretrained is None else os.fspath(pretrained),
            "precision": model.precision, "identity": model.identity, "embed_dim": int(model.embed_dim)}  # fmt: skip


@dataclass
class Detector:
    """A fitted one-class head with the threshold chosen on held-out good images and what it was made from.

    ``threshold``: anomaly scores above it are flagged; it flagged ``held_out_false_alarm`` of the
    ``n_held_out`` held-out good images (target ``false_alarm``). ``model``: :func:`record_model`
    of the model whose embeddings it was fitted on (None when fitted on bare arrays).
    """

    head: Any
    method: str
    threshold: float
    false_alarm: float
    held_out_false_alarm: float
    held_out_scores: np.ndarray
    n_fit: int
    model: dict[str, Any] | None = None
    normal_labels: list[str] = field(default_factory=list)
    source: str | None = None
    held_out_rows: np.ndarray | None = field(default=None, repr=False)  # rows of the fit's X held out (not saved)

    @property
    def n_held_out(self) -> int:
        return int(len(self.held_out_scores))

    def anomaly_score(self, X: Any) -> np.ndarray:
        """(N,) anomaly scores, higher = more anomalous."""
        return np.asarray(self.head.anomaly_score(check_features(X, self.head.n_features_in_)), dtype=np.float64)

    def flag(self, X: Any) -> np.ndarray:
        """(N,) True where the anomaly score is above the threshold."""
        return self.anomaly_score(X) > self.threshold

    def check_model(self, model: Any, where: str = "the detector") -> None:
        """Refuse a model other than the one the detector was fitted with (its embeddings differ)."""
        if self.model is None or model.identity == self.model["identity"]:
            return
        rec = self.model
        fitted = f"{rec['name']}" + (f" with weights {rec['pretrained']}" if rec.get("pretrained") else "") + f" at {rec['precision']}"
        flags = f"--model {rec['name']}" + (f" --pretrained {rec['pretrained']}" if rec.get("pretrained") else "") + f" --precision {rec['precision']}"
        how = spelled(f"load_model({rec['name']!r}, precision={rec['precision']!r})", flags)
        raise InputError(f"{where} was fitted on embeddings of {fitted}, not of {model.name} at {model.precision}; "
                         f"score with the same model: {how}")  # fmt: skip

    def info(self) -> dict[str, Any]:
        """The JSON description (what ``detector.json`` holds)."""
        from cliplab import __version__

        params = {k: v for k, v in self.head.get_params().items() if k != "fpr"}
        return {
            "format": FORMAT, "version": VERSION, "cliplab_version": __version__,
            "method": self.method, "params": json.loads(json.dumps(params, default=list)),
            "threshold": self.threshold, "false_alarm": self.false_alarm,
            "held_out_false_alarm": self.held_out_false_alarm, "n_fit": self.n_fit, "n_held_out": self.n_held_out,
            "model": self.model, "normal_labels": list(self.normal_labels), "source": self.source,
            "held_out_scores": [float(s) for s in self.held_out_scores],
        }  # fmt: skip

    def save(self, folder: str | os.PathLike, report: Any = None) -> Path:
        """Write ``detector.safetensors`` and ``detector.json`` (and ``report``, a ``Report``, as
        ``report.html``) into ``folder``, which must be absent or empty; written whole or not at all."""
        from cliplab.files import atomic_folder, write_json

        folder = Path(folder)
        with atomic_folder(folder) as tmp:
            self.head.save(tmp / HEAD_FILE)
            write_json(self.info(), tmp / INFO_FILE)
            if report is not None:
                report.save(tmp / REPORT_FILE)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "Detector":
        """The detector saved in ``folder`` by :meth:`save` (``cliplab inspect fit``)."""
        folder = Path(folder)
        info_path = folder / INFO_FILE
        if not info_path.is_file() or not (folder / HEAD_FILE).is_file():
            raise InputError(f"{folder} is not a detector folder (no {INFO_FILE} and {HEAD_FILE}); make one with cliplab inspect fit")
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{info_path} is not valid JSON ({exc}); fit the detector again") from exc
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise InputError(f"{info_path} is not a cliplab detector description; fit the detector again")
        if info.get("version", 0) > VERSION:
            raise InputError(f"{folder} was written by a newer cliplab (detector format {info['version']}); upgrade cliplab")
        head = load_head(folder / HEAD_FILE)
        if type(head) is not DETECTORS.get(info.get("method", "")):
            raise InputError(f"{folder / HEAD_FILE} holds a {type(head).__name__}, not the {info.get('method')!r} detector {INFO_FILE} names")
        return cls(head=head, method=info["method"], threshold=float(info["threshold"]), false_alarm=float(info["false_alarm"]),
                   held_out_false_alarm=float(info["held_out_false_alarm"]),
                   held_out_scores=np.asarray(info.get("held_out_scores", []), dtype=np.float64), n_fit=int(info["n_fit"]),
                   model=info.get("model"), normal_labels=list(info.get("normal_labels") or []), source=info.get("source"))  # fmt: skip


def held_out_split(n: int, fraction: float, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, held-out rows): a seeded random ``fraction`` of ``n`` good images held out, at
    least one, leaving at least two to fit on."""
    if not 0.0 < fraction < 1.0:
        raise InputError(f"the held-out share of the good images must be in (0, 1), got {fraction}")
    n_held = max(1, int(round(fraction * n)))
    if n - n_held < 2:
        raise InputError(f"{n} good image(s) cannot be split into two or more to fit on and one or more to set the threshold on; "
                         "add good images or pass held-out good images separately")  # fmt: skip
    order = np.random.default_rng(random_state).permutation(n)
    return np.sort(order[n_held:]), np.sort(order[:n_held])


def fit_detector(X: Any, method: str = "knn", false_alarm: float = 0.05, *, X_held_out: Any = None, held_out: float = 0.2,
                 params: Mapping[str, Any] | None = None, random_state: int = 0, model: dict[str, Any] | None = None,
                 normal_labels: Sequence[str] = (), source: str | None = None) -> Detector:  # fmt: skip
    """Fit a ``method`` detector on good embeddings ``X`` and set its threshold at ``false_alarm`` on held-out good ones.

    ``X_held_out``: good embeddings to set the threshold on; None holds out a seeded ``held_out``
    share of ``X``, which the head is then not fitted on. ``params``: the head's parameters (e.g.
    ``{"k": 10}`` for knn). ``model``: :func:`record_model` of the embedding model, checked when scoring.
    """
    if not 0.0 < false_alarm < 1.0:
        raise InputError(f"the false-alarm rate must be in (0, 1), got {false_alarm}")
    head = build_detector(method, params, false_alarm)
    X = check_features(X)
    if X_held_out is None:
        fit_rows, held_rows = held_out_split(len(X), held_out, random_state)
        X_fit, X_held = X[fit_rows], X[held_rows]
    else:
        X_fit, X_held, held_rows = X, check_features(X_held_out, X.shape[1], name="X_held_out"), None
        if not len(X_held):
            raise InputError("the held-out good images are empty; pass some, or let a share of the good images be held out")
    if len(X_held) * false_alarm < 1:
        warn(f"{len(X_held)} held-out good images cannot measure a false-alarm rate of {false_alarm:g} (it needs "
             f"{math.ceil(1 / false_alarm)}); the threshold is the highest held-out score, so it flags none of them")  # fmt: skip
    head.fit(X_fit)
    scores = np.asarray(head.anomaly_score(X_held), dtype=np.float64)
    threshold = threshold_at(scores, false_alarm)
    return Detector(head=head, method=method, threshold=threshold, false_alarm=float(false_alarm),
                    held_out_false_alarm=float(np.mean(scores > threshold)), held_out_scores=scores, n_fit=len(X_fit),
                    model=model, normal_labels=sorted({str(n) for n in normal_labels}), source=source,
                    held_out_rows=held_rows)  # fmt: skip


def anomaly_truth(labels: Sequence[str | None], normal_labels: Sequence[str]) -> np.ndarray | None:
    """(N,) 1 anomalous, 0 normal, -1 unlabelled: a label among ``normal_labels`` is normal, any other
    anomalous. None when no image has a label."""
    if not any(lab is not None for lab in labels):
        return None
    normal = {str(n) for n in normal_labels}
    return np.array([-1 if lab is None else int(str(lab) not in normal) for lab in labels], dtype=np.int64)


def inspection_metrics(scores: Any, is_anomaly: Any, threshold: float, kinds: Sequence[str] | None = None) -> dict[str, Any]:
    """Ranking and thresholded error rates of an inspection, anomalies being the attacks / defects.

    AUROC, AUPR and FPR at 95% TPR (:func:`one_class_metrics`), then at ``threshold`` (flagged:
    score > threshold), with ISO/IEC 30107-3 names: BPCER = share of normal images flagged, APCER =
    share of anomalies passed, per anomaly kind (``kinds``: a label per row, e.g. the defect type)
    and over all; ACER = (worst kind's APCER + BPCER) / 2 and HTER = (FAR + FRR) / 2 with FAR the
    APCER over all anomalies and FRR the BPCER (they agree when there is one kind). Hyp-OC's code
    swaps the APCER/BPCER names; these follow the standard.
    """
    scores, truth = np.asarray(scores, dtype=np.float64), np.asarray(is_anomaly, dtype=bool)
    if scores.shape != truth.shape:
        raise InputError(f"{len(scores)} scores but {len(truth)} anomaly flags; pass one per image")
    out: dict[str, Any] = dict(one_class_metrics(scores, truth))
    flagged = scores > threshold
    bpcer = float(flagged[~truth].mean())
    apcer = float((~flagged[truth]).mean())
    per_kind: dict[str, float] = {}
    if kinds is not None:
        kinds = np.asarray([str(k) for k in kinds], dtype=object)
        for kind in sorted(set(kinds[truth].tolist())):
            rows = truth & (kinds == kind)
            per_kind[kind] = float((~flagged[rows]).mean())
    worst = max(per_kind.values()) if per_kind else apcer
    out.update({"threshold": float(threshold), "bpcer": bpcer, "apcer": apcer, "acer": (worst + bpcer) / 2,
                "hter": (apcer + bpcer) / 2, "apcer_per_kind": per_kind, "n_normal": int((~truth).sum()),
                "n_anomalous": int(truth.sum())})  # fmt: skip
    return out


def scores_csv(ids: Sequence[str], scores: np.ndarray, threshold: float) -> str:
    """CSV text ``id,anomaly_score,flagged`` (flagged: 1 where the score is above ``threshold``)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "anomaly_score", "flagged"])
    for id_, s in zip(ids, scores):
        writer.writerow([id_, repr(float(s)), int(s > threshold)])
    return buf.getvalue()


def extremes(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows of the ``n`` highest scores, highest first; rows of the ``n`` lowest, lowest first), not overlapping."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    n_top = min(n, len(order))
    n_bottom = min(n, len(order) - n_top)
    return order[:n_top], order[::-1][:n_bottom]


def inspection_report(detector: Detector, ids: Sequence[str], scores: np.ndarray, image: Callable[[int], Image.Image],
                      metrics: Mapping[str, Any] | None = None, truth: np.ndarray | None = None, n_examples: int = 12,
                      title: str = "One-class inspection", show_held_out: bool = True) -> Any:  # fmt: skip
    """A ``Report``: the detector and run, the metrics (with labels), the score histograms against the
    threshold (with the held-out good images' unless ``show_held_out`` is False), and the most and
    least anomalous images (``image(row)`` gives row's image)."""
    from cliplab.evaluate import plots
    from cliplab.evaluate.report import Report

    scores = np.asarray(scores, dtype=np.float64)
    flagged = scores > detector.threshold
    model = detector.model or {}
    report = Report(title, f"{detector.method} detector on {model.get('name', 'bare embeddings')}; {len(scores)} images scored, "
                           f"{int(flagged.sum())} flagged")  # fmt: skip
    report.add_table("Detector", {
        "method": detector.method, "model": model.get("name"), "pretrained": model.get("pretrained"),
        "precision": model.get("precision"), "fitted on": f"{detector.n_fit} good images" + (f" ({detector.source})" if detector.source else ""),
        "threshold": detector.threshold, "target false-alarm rate": detector.false_alarm,
        "false alarms on held-out good images": f"{detector.held_out_false_alarm:.4f} of {detector.n_held_out}",
    })  # fmt: skip
    if metrics:
        shown = {k: v for k, v in metrics.items() if k != "apcer_per_kind"}
        report.add_table("Metrics", shown, caption="anomalies are the positives; BPCER: normal images flagged, APCER: anomalies passed, "
                                                   "at the threshold set on held-out good images (never on these)")  # fmt: skip
        if metrics.get("apcer_per_kind"):
            report.add_table("APCER per anomaly kind", [{"kind": k, "apcer": v} for k, v in metrics["apcer_per_kind"].items()])
    report.add_figure("Anomaly scores", _histogram_png(scores, truth, detector, show_held_out), caption="dashed line: the threshold; scores above it are flagged")
    top, bottom = extremes(scores, n_examples)
    for name, rows in (("Most anomalous", top), ("Least anomalous", bottom)):
        if len(rows):
            titles = [f"{_short(str(ids[r]))}\n{scores[r]:.4g}" for r in rows]
            colours = [plots.RED if flagged[r] else plots.GREEN for r in rows]
            report.add_figure(name, plots.image_grid_png([image(int(r)) for r in rows], titles, colours),
                              caption="score under each image; red outline: flagged, green: passed")  # fmt: skip
    return report


def _short(text: str, width: int = 20) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]


def _histogram_png(scores: np.ndarray, truth: np.ndarray | None, detector: Detector, show_held_out: bool) -> bytes:
    from matplotlib.figure import Figure

    from cliplab.evaluate.plots import figure_png

    groups: dict[str, np.ndarray] = {}
    if truth is not None and (truth >= 0).any():
        groups = {"normal": scores[truth == 0], "anomalous": scores[truth == 1], "unlabelled": scores[truth < 0]}
    else:
        groups = {"scored images": scores}
    if show_held_out and detector.n_held_out:
        groups["held-out good (threshold set here)"] = detector.held_out_scores
    groups = {k: v for k, v in groups.items() if len(v)}
    everything = np.concatenate([*groups.values(), [detector.threshold]])
    lo, hi = float(everything.min()), float(everything.max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1e-6, 41)
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    for name, values in groups.items():
        ax.hist(values, bins=edges, alpha=0.55, density=True, label=f"{name} ({len(values)})")
    ax.axvline(detector.threshold, color="black", linestyle="--", linewidth=1.2)
    ax.set_xlabel("anomaly score (higher: more anomalous)")
    ax.legend(fontsize=8)
    return figure_png(fig)
