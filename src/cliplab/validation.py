"""Input checks every head over embeddings shares (the scikit-learn contract, one clear line each).

    X = check_embeddings(X, dim=self.n_features_in_)      # float, 2-D, finite, right width
    X, y = check_embeddings_labels(X, y)                  # same length, labels 1-D
    names = check_classnames(classnames)                  # a sequence of distinct strings

Constructor parameters follow scikit-learn's contract: each estimator declares
``_parameter_constraints`` (built from the shared ranges below) and validates them at the start of
``fit`` with ``sklearn.base._fit_context``; :class:`ValidatedParams` raises the failure as a
:class:`ParameterError`, which is both scikit-learn's ``InvalidParameterError`` and a cliplab ``InputError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.utils._param_validation import Interval, InvalidParameterError

from cliplab.errors import InputError, warn

UNIT_NORM_TOLERANCE = 0.05  # rows whose length differs from 1 by more than this get a warning


POSITIVE = Interval(Real, 0, None, closed="neither")
NON_NEGATIVE = Interval(Real, 0, None, closed="left")
FRACTION = Interval(Real, 0, 1, closed="neither")  # a share strictly between none and all
PROBABILITY = Interval(Real, 0, 1, closed="both")
COUNT = Interval(Integral, 1, None, closed="left")
SEED = Interval(Integral, 0, None, closed="left")


class ParameterError(InputError, InvalidParameterError):
    """A constructor parameter of the wrong type or out of range (scikit-learn's message, one line)."""


class ValidatedParams:
    """Mixin for estimators: ``_validate_params`` (run by ``_fit_context``) raises :class:`ParameterError`."""

    def _validate_params(self) -> None:
        try:
            super()._validate_params()  # type: ignore[misc]
        except InvalidParameterError as exc:
            raise ParameterError(str(exc)) from exc


class NormWarning(UserWarning):
    """Embeddings that are not L2-normalised (cosine scores and logit scales assume they are)."""


def check_embeddings(X: Any, dim: int | None = None, *, name: str = "X", warn_norm: bool = True) -> np.ndarray:
    """``X`` as a C-contiguous float32 (n, dim) array, or one ``InputError``.

    Refuses sparse matrices, non-float and complex dtypes, NaN/inf, wrong rank or width. Warns once
    per call when rows are far from unit length (``NormWarning``).
    """
    if hasattr(X, "tocsr") or hasattr(X, "toarray") and not isinstance(X, np.ndarray):
        raise InputError(f"{name} is a sparse matrix; sparse input is not supported: pass a dense float array of embeddings")
    arr = np.asarray(X)
    if np.iscomplexobj(arr):
        raise InputError(f"{name} holds complex numbers: Complex data not supported; pass a float array of embeddings")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputError(f"{name} has dtype {arr.dtype}; pass a float array of embeddings")
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        raise InputError(f"{name} has integer dtype {arr.dtype}; embeddings are float arrays (did you pass labels?)")
    if arr.ndim != 2:
        raise InputError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise InputError(f"{name} has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required.")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise InputError(f"{name} has {bad} row(s) with NaN or inf values; drop or re-embed them")
    if dim is not None and arr.shape[1] != dim:
        raise InputError(
            f"{name} has {arr.shape[1]} features per row but this head expects {dim}; "
            "pass embeddings from the same model the head was built with"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if warn_norm and len(arr):
        norms = np.linalg.norm(arr, axis=1)
        off = np.abs(norms - 1.0) > UNIT_NORM_TOLERANCE
        if off.any():
            warn(
                f"{int(off.sum())} of {len(arr)} rows of {name} are not unit length (norms {norms.min():.3g}..{norms.max():.3g}); "
                "CLIP heads expect L2-normalised embeddings",
                NormWarning,
            )
    return arr


def check_labels(y: Any, n: int, *, name: str = "y") -> np.ndarray:
    """``y`` as a 1-D array of ``n`` labels (ints or strings), or one ``InputError``."""
    if y is None:
        raise InputError(f"{name} is required: pass one label per row of X")
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr.ravel()
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D (one label per row), got shape {arr.shape}")
    if len(arr) != n:
        raise InputError(f"X has {n} rows but {name} has {len(arr)} labels; pass one label per row")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise InputError(f"{name} has NaN or inf labels")
    return arr


def check_embeddings_labels(X: Any, y: Any, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Both checks at once: ``X`` float32 (n, d), ``y`` 1-D with n labels."""
    X = check_embeddings(X, dim)
    return X, check_labels(y, len(X))


def check_classnames(classnames: Any, *, name: str = "classnames") -> list[str]:
    """A list of distinct non-empty strings, or one ``InputError`` saying what was wrong.

    Warns when two names are equal up to case and spaces ("circle" and " Circle").
    """
    if isinstance(classnames, (str, bytes)):
        raise InputError(f"{name} must be a sequence of class names, not a single string ({classnames!r}); pass a list such as ['cat', 'dog']")
    if isinstance(classnames, np.ndarray):
        classnames = classnames.tolist()
    if not isinstance(classnames, Sequence):
        raise InputError(f"{name} must be a sequence of strings, got {type(classnames).__name__}")
    bad = [c for c in classnames if not isinstance(c, str)]
    if bad:
        raise InputError(f"{name} must be strings; got {type(bad[0]).__name__} {bad[0]!r}")
    names = list(classnames)
    if not names:
        raise InputError(f"{name} is empty; pass at least one class name")
    if any(not n.strip() for n in names):
        raise InputError(f"{name} contains an empty name")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"{name} repeats {', '.join(repr(d) for d in dup[:3])}; class names must be unique")
    folded: dict[str, str] = {}
    for n in names:
        key = " ".join(n.lower().split())
        if key in folded:
            warn(f"class names {folded[key]!r} and {n!r} differ only in case or spacing", UserWarning)
        folded.setdefault(key, n)
    return names
