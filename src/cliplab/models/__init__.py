"""Loading CLIP-style models behind one interface (:class:`Model`).

``load_model("openclip:ViT-B-32", pretrained="laion2b_s34b_b79k")``, ``load_model("hf:openai/clip-vit-base-patch32")``,
``load_model("hf:/path/to/folder")``, ``load_model()`` (the bundled ``cliplab:shapes-tiny``).
``model.multilevel([-1, -2, -3])`` reads a ViT's intermediate layers instead (``MultiLevelModel``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from cliplab._lazy import lazy_exports
from cliplab.errors import ModelLoadError
from cliplab.models.options import DEFAULT_PRECISION

if TYPE_CHECKING:
    import torch

    from cliplab.models.base import Model

DEFAULT_MODEL = "cliplab:shapes-tiny"

__all__ = ["DEFAULT_MODEL", "GRAMMAR", "MergedEncoders", "Model", "ModelLoadError", "ModelSpec", "MultiLevelModel", "TextTokenizer", "load_model",
           "parse_spec", "train_tokenizer"]
# torch and the backends load on first use, so the command line starts without them
__getattr__, __dir__ = lazy_exports("cliplab.models", {
    "Model": "cliplab.models.base",
    **dict.fromkeys(("MergedEncoders", "MultiLevelModel"), "cliplab.models.multilevel"),
    **dict.fromkeys(("GRAMMAR", "ModelSpec", "parse_spec"), "cliplab.models.spec"),
    **dict.fromkeys(("TextTokenizer", "train_tokenizer"), "cliplab.models.text_tokenizer"),
}, globals())


def load_model(
    spec: str = DEFAULT_MODEL,
    pretrained: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    precision: str = DEFAULT_PRECISION,
    seed: int = 0,
) -> Model:
    """Load a model by spec.

    spec: ``openclip:<arch>`` | ``hf:<repo id or folder>`` | ``cliplab:<name>`` | a bundled alias (``tiny``)
        | the path of a model folder that cliplab wrote (``cliplab train --out DIR``, ``moe upcycle``, ``un2clip``).
    pretrained: for ``openclip:`` an open_clip tag, a checkpoint file (.safetensors/.pt/.pth/.bin) or
        ``hf-hub:org/name``; for ``cliplab:`` a weights file that replaces the shipped one; unused for ``hf:``.
    device: default cuda when available, else cpu.
    precision: "fp32" (default) | "bf16" | "fp16" (CUDA only) | "int8" (CPU only, dynamic quantisation)
        | "auto" (bf16 where the hardware runs it natively, else fp32); see ``cliplab.models.precision``.
        ``model.precision`` is the effective one. fp32 is also the CLI's default, so the same model gives
        the same numbers on every machine and in Python and the CLI alike; pass "auto" for speed.
    seed: random initialisation of an ``openclip:`` architecture without weights (same seed, same
        weights): such a model is for testing code paths and measuring speed, not for predictions.
    Errors a user can fix raise :class:`ModelLoadError` with a one-line message.
    """
    from cliplab.models.spec import parse_spec

    parsed = parse_spec(spec)
    if parsed.kind == "openclip":
        from cliplab.models.openclip_backend import OpenClipModel

        return OpenClipModel.load(parsed.target, pretrained=pretrained, device=device, precision=precision, seed=seed)
    if parsed.kind == "hf":
        from cliplab.models.hf_backend import HFModel

        if pretrained is not None:
            raise ModelLoadError(f"pretrained is not used with hf: specs; name the repo id or folder in the spec (hf:{pretrained})")
        return HFModel.load(parsed.target, device=device, precision=precision)
    if parsed.kind == "folder":
        from cliplab.models.folder import load_folder

        if pretrained is not None:
            raise ModelLoadError(f"pretrained is not used with a model folder; its weights are in {parsed.target}")
        return load_folder(parsed.target, device=device, precision=precision)
    from cliplab.models.bundled import load_bundled

    return load_bundled(parsed.target, weights=pretrained, device=device, precision=precision)
