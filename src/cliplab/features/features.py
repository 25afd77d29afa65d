"""``Features``: an embedding matrix that travels with its ids, labels, captions and metadata.

Rows of ``X`` are float32 and L2-normalised; row ``i`` belongs to ``ids[i]`` (and ``labels[i]``,
``captions[i]``, ``meta[i]`` when known). Images that could not be embedded are in ``skipped``.
``save(dir)`` writes ``features.safetensors`` (the matrix) and ``features.json`` (everything else,
plus the matrix file's sha256), each to a temporary name renamed into place; the manifest is written
last, so a reader never pairs a manifest with a matrix it does not describe. Temporary files a
killed ``save`` left in the folder are removed by the next ``save`` there.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from cliplab.data.items import Skipped
from cliplab.errors import FeaturesFileError, InputError
from cliplab.files import atomic_write, remove_leftovers

MATRIX_FILE = "features.safetensors"
MANIFEST_FILE = "features.json"
FORMAT_VERSION = 1


@dataclass
class Features:
    X: np.ndarray
    ids: list[str]
    labels: list[str | None] | None = None
    captions: list[list[str]] | None = None
    meta: list[dict[str, Any]] | None = None
    classes: list[str] | None = None
    skipped: list[Skipped] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    model: str = ""  # the model's name (its spec)
    identity: str = ""  # the model's identity (weights hash, preprocessing, precision)

    def __post_init__(self) -> None:
        self.X = np.ascontiguousarray(self.X, dtype=np.float32)
        if self.X.ndim != 2:
            raise InputError(f"X must be 2-D (rows x dims), got shape {self.X.shape}")
        self.ids = list(self.ids)
        n = len(self.X)
        for name in ("ids", "labels", "captions", "meta"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise InputError(f"{name} has {len(value)} entries but X has {n} rows")

    # --- shape and access -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.X)

    @property
    def dim(self) -> int:
        return int(self.X.shape[1])

    def __getitem__(self, index: Any) -> Features:
        """Rows picked by a boolean mask, an index array/list or a slice, as a new ``Features``."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        if isinstance(index, slice):
            rows = np.arange(len(self))[index]
        else:
            arr = np.asarray(index)
            if arr.dtype == bool:
                if arr.shape != (len(self),):
                    raise IndexError(f"boolean mask has shape {arr.shape}, expected ({len(self)},)")
                rows = np.flatnonzero(arr)
            elif arr.size == 0:
                rows = np.zeros(0, dtype=np.int64)
            elif np.issubdtype(arr.dtype, np.integer):
                rows = arr.reshape(-1).astype(np.int64)
            else:
                raise IndexError(f"cannot index Features with {arr.dtype} values; use a boolean mask, integers or a slice")
        pick = lambda xs: None if xs is None else [xs[i] for i in rows]
        return replace(
            self,
            X=self.X[rows],
            ids=pick(self.ids),
            labels=pick(self.labels),
            captions=pick(self.captions),
            meta=pick(self.meta),
            skipped=list(self.skipped),
            stats=dict(self.stats),
        )

    def select_ids(self, ids: Sequence[str]) -> Features:
        """Rows for ``ids``, in that order; ``KeyError`` names the first unknown id."""
        where = {id_: i for i, id_ in enumerate(self.ids)}
        try:
            return self[[where[i] for i in ids]]
        except KeyError as e:
            raise KeyError(f"id {e.args[0]!r} is not in these features") from e

    def labelled(self) -> Features:
        """The rows that have a label (what a head fitted on labels uses); images kept unlabelled,
        e.g. those beside a folder's class subfolders, are left out. No labels at all: no rows."""
        if self.labels is None:
            return self[[]]
        return self[[i for i, label in enumerate(self.labels) if label is not None]]

    @property
    def y(self) -> np.ndarray:
        """Labels as indices into ``classes`` (-1 where an image has no label)."""
        if self.labels is None or self.classes is None:
            raise InputError("these features have no labels/classes")
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index.get(lab, -1) if lab is not None else -1 for lab in self.labels], dtype=np.int64)

    def __repr__(self) -> str:
        extra = f", {len(self.skipped)} skipped" if self.skipped else ""
        return f"Features({len(self)} x {self.X.shape[1]}, model={self.model!r}{extra})"

    # --- files ------------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``features.safetensors`` + ``features.json`` under ``folder`` (created if needed)."""
        from safetensors.numpy import save as st_save

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        blob = st_save({"X": self.X})
        manifest = {
            "format": "cliplab.features",
            "version": FORMAT_VERSION,
            "matrix": {"file": MATRIX_FILE, "sha256": hashlib.sha256(blob).hexdigest(), "shape": list(self.X.shape)},
            "model": self.model,
            "identity": self.identity,
            "ids": self.ids,
            "labels": self.labels,
            "captions": self.captions,
            "meta": self.meta,
            "classes": self.classes,
            "skipped": [{"id": s.id, "reason": s.reason, "kind": s.kind} for s in self.skipped],
            "stats": self.stats,
        }
        text = json.dumps(manifest, ensure_ascii=False, default=str)
        for name in (MATRIX_FILE, MANIFEST_FILE):
            remove_leftovers(folder / name)
        atomic_write(folder / MATRIX_FILE, blob)
        atomic_write(folder / MANIFEST_FILE, text.encode("utf-8"))
        return folder

    def save_skipped(self, path: str | os.PathLike) -> Path:
        """Write what was left out as CSV (kind, where, reason) to ``path``, atomically."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["kind", "where", "reason"])
        writer.writerows([s.kind, s.id, s.reason] for s in self.skipped)
        remove_leftovers(path)
        return atomic_write(path, buf.getvalue())

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Features:
        from safetensors.numpy import load as st_load

        folder = Path(folder)
        mpath, xpath = folder / MANIFEST_FILE, folder / MATRIX_FILE
        if not mpath.is_file():
            raise FeaturesFileError(f"{mpath} not found; pass a folder written by Features.save")
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise FeaturesFileError(f"cannot read {mpath}: {e}") from e
        if manifest.get("format") != "cliplab.features":
            raise FeaturesFileError(f"{mpath} is not a cliplab features manifest")
        try:
            blob = xpath.read_bytes()
        except OSError as e:
            raise FeaturesFileError(f"cannot read {xpath}: {e.strerror or e}") from e
        if hashlib.sha256(blob).hexdigest() != manifest["matrix"]["sha256"]:
            raise FeaturesFileError(f"{xpath} does not match {mpath} (damaged or overwritten); save the features again")
        X = st_load(blob)["X"]
        return cls(
            X=X,
            ids=manifest["ids"],
            labels=manifest.get("labels"),
            captions=manifest.get("captions"),
            meta=manifest.get("meta"),
            classes=manifest.get("classes"),
            skipped=[Skipped(s["id"], s["reason"], s.get("kind", "image")) for s in manifest.get("skipped", [])],
            stats=manifest.get("stats", {}),
            model=manifest.get("model", ""),
            identity=manifest.get("identity", ""),
        )

