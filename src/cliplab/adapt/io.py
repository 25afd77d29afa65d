"""Saving and loading fitted heads: one safetensors file, its JSON description in the header. No pickle.

Every head inherits :class:`SavableHead`: ``head.save("best.cliplab")`` writes every fitted array
(attributes ending in ``_``) as a tensor and the constructor arguments plus the other fitted values
as JSON in the safetensors metadata. A head
that wraps another (conformal sets, temperature scaling) stores it under a name prefix. A head built
on a model stores the model's name; ``load(path, model=...)`` needs the model again. Predictions of
a reloaded head are bit-identical (arrays are stored exactly, floats as their shortest repr).
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from typing import Any

import numpy as np

from cliplab.errors import InputError
from cliplab.files import atomic_target, jsonable

FORMAT = "cliplab.head"
VERSION = 1
REGISTRY: dict[str, type] = {}


def _is_estimator(value: Any) -> bool:
    return hasattr(value, "get_params") and hasattr(value, "fit")


def _describe(est: Any, prefix: str, arrays: dict[str, np.ndarray]) -> dict:
    if type(est).__name__ not in REGISTRY:
        raise InputError(f"{type(est).__name__} cannot be saved; save a cliplab.adapt head")
    params: dict[str, Any] = {}
    model_name = None
    for key, value in est.get_params(deep=False).items():
        if key == "model":
            model_name = getattr(value, "name", None)
        elif _is_estimator(value) and type(value).__name__ in REGISTRY:
            params[key] = {"__head__": _describe(value, f"{prefix}{key}.", arrays)}
        elif _is_estimator(value) or isinstance(value, np.ndarray):
            params[key] = None  # zero-shot weights: their resolved copy is the fitted ``text_weights_``
        else:
            params[key] = json.loads(json.dumps(value, default=jsonable))
    fitted: dict[str, Any] = {}
    for key, value in vars(est).items():
        if not key.endswith("_") or key.startswith("_"):
            continue
        if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
            arrays[prefix + key] = np.ascontiguousarray(value)
            fitted[key] = {"__array__": prefix + key}
        elif isinstance(value, np.ndarray):
            fitted[key] = {"__list__": value.tolist()}
        else:
            fitted[key] = json.loads(json.dumps(value, default=jsonable))
    return {"class": type(est).__name__, "model": model_name, "params": params, "fitted": fitted}


def _build(desc: dict, arrays: dict[str, np.ndarray], model: Any) -> Any:
    cls = REGISTRY.get(desc["class"])
    if cls is None:
        raise InputError(f"unknown head class {desc['class']!r} in the file; it was written by a newer cliplab?")
    params = {k: _build(v["__head__"], arrays, model) if isinstance(v, dict) and "__head__" in v else v
              for k, v in desc["params"].items()}  # fmt: skip
    if "model" in inspect.signature(cls).parameters:
        if model is None:
            raise InputError(f"this {desc['class']} head was built on model {desc['model']!r}; pass model=load_model(...)")
        if desc.get("model") and getattr(model, "name", None) != desc["model"]:
            warnings.warn(f"the head was fitted on {desc['model']!r} but is loaded with {model.name!r}", UserWarning, stacklevel=3)
        params["model"] = model
    head = cls(**params)
    for key, value in desc["fitted"].items():
        if isinstance(value, dict) and "__array__" in value:
            value = arrays[value["__array__"]]
        elif isinstance(value, dict) and "__list__" in value:
            value = np.array(value["__list__"])
        setattr(head, key, value)
    return head


def load(path: str | os.PathLike, model: Any = None) -> Any:
    """A head written by ``head.save(path)``; heads built on a model need ``model`` again."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        from safetensors import safe_open

        with safe_open(os.fspath(path), framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get("cliplab", "{}"))
        arrays = load_file(os.fspath(path))
    except FileNotFoundError as exc:
        raise InputError(f"head file not found: {path}") from exc
    except (SafetensorError, ValueError, OSError) as exc:
        raise InputError(f"{path} is not a saved cliplab head ({exc}); write one with head.save(path)") from exc
    if meta.get("format") != FORMAT:
        raise InputError(f"{path} is not a saved cliplab head; write one with head.save(path)")
    return _build(meta["head"], arrays, model)


class SavableHead:
    """Mixin of every saveable head: ``head.save(path)`` and ``Class.load(path, model=None)``.

    Each subclass is registered by its class name, which the file stores, so :func:`load` can
    rebuild it without unpickling anything.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        REGISTRY[cls.__name__] = cls

    def save(self, path: str | os.PathLike) -> None:
        """Write this fitted head to ``path`` (safetensors; the description is JSON in its header)."""
        from safetensors.numpy import save_file
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self)
        arrays: dict[str, np.ndarray] = {}
        meta = {"format": FORMAT, "version": VERSION, "head": _describe(self, "", arrays)}
        with atomic_target(path) as tmp:
            save_file(arrays, str(tmp), metadata={"cliplab": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | os.PathLike, model: Any = None) -> Any:
        """The head saved at ``path``, which must be a ``cls``; heads built on a model need ``model`` again."""
        head = load(path, model)
        if not isinstance(head, cls):
            raise InputError(f"{path} holds a {type(head).__name__}, not a {cls.__name__}; read it with cliplab.adapt.load(path)")
        return head
