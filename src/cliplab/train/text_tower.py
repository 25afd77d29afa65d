"""Text tower swap (LLM2CLIP-style, small): a pretrained transformers text encoder plus a new
projection replaces a CLIP's text tower; the image tower and the logit scale are kept.

Built with open_clip's ``CustomTextCLIP`` and its Hugging Face text tower (``hf_model_name``),
so the result is an ordinary open_clip model: it trains, saves and encodes like any other.
"""

from __future__ import annotations

from copy import deepcopy

import torch

from cliplab.errors import InputError
from cliplab.models.base import Model
from cliplab.models.errors import brief


def swap_text_tower(model: Model, encoder: str, freeze: bool = False, pooler: str = "mean_pooler", proj: str = "linear") -> Model:
    """A new model: ``model``'s image tower with the transformers encoder ``encoder`` (a folder or
    repo id with its tokenizer) and a fresh ``proj`` projection to the same embedding width.
    With ``freeze`` the encoder's weights stay fixed and only the projection (and the image
    tower) train."""
    from open_clip import CustomTextCLIP

    from cliplab.models.openclip_backend import OpenClipModel, make_tokenizer

    if not isinstance(model, OpenClipModel):
        raise InputError(f"{model.name}: the text tower swap needs an open_clip-built model (openclip: or the bundled model)")
    old = model.torch_module
    cfg = deepcopy(model.model_cfg)
    context = int(cfg.get("text_cfg", {}).get("context_length", 77))
    cfg["text_cfg"] = {"hf_model_name": encoder, "hf_tokenizer_name": encoder, "hf_model_pretrained": True,
                       "hf_pooler_type": pooler, "hf_proj_type": proj, "context_length": context}  # fmt: skip
    cfg.pop("custom_text", None)
    try:
        module = CustomTextCLIP(**cfg)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot load the text encoder {encoder!r}: {brief(exc)}") from exc
    module.visual.load_state_dict(old.visual.state_dict())
    with torch.no_grad():
        module.logit_scale.copy_(old.logit_scale.reshape(module.logit_scale.shape))
    if freeze:
        module.lock_text_tower(unlocked_layers=0, freeze_layer_norm=True)
    name = f"{model.name}+text:{encoder}"
    return OpenClipModel(name=name, module=module.to(model.device), tokenizer=make_tokenizer(cfg, name), model_cfg=cfg,
                         preprocess_cfg=model.preprocess_cfg, device=model.device, precision=model.precision)  # fmt: skip
