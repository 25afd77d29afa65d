"""Text tower swap (LLM2CLIP-style, small): a pretrained transformers text encoder plus a new
projection replaces a CLIP's text tower; the image tower and the logit scale are kept.

The result is an open_clip ``CustomTextCLIP`` whose text tower is :class:`EncoderTower`, so it
trains, saves and encodes like any other open_clip model.
"""

from __future__ import annotations

import inspect
from copy import deepcopy
from pathlib import Path

import torch

from cliplab.errors import InputError, brief
from cliplab.models.base import Model


class EncoderTower(torch.nn.Module):
    """A transformers text encoder, mean-pooled over its non-padding tokens, then a linear projection.

    open_clip's ``HFTextEncoder`` with ``mean_pooler`` and a ``linear`` projection, for any AutoModel
    text encoder: open_clip's own knows only the architectures in its ``arch_dict`` and passes
    ``add_pooling_layer`` to every model (a transformers ``CLIPTextModel`` has no such argument).
    """

    def __init__(self, transformer: torch.nn.Module, pad_id: int, output_dim: int) -> None:
        super().__init__()
        self.transformer = transformer
        self.pad_id = pad_id
        self.proj = torch.nn.Linear(transformer.get_input_embeddings().embedding_dim, output_dim, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != self.pad_id).long()
        hidden = self.transformer(input_ids=tokens, attention_mask=mask).last_hidden_state
        pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return self.proj(pooled)


def load_encoder(encoder: str) -> torch.nn.Module:
    """The transformers model ``encoder`` names (a folder or repo id), from safetensors weights only;
    without the pooling layer models like BERT add (it would get no gradient), the encoder half of an
    encoder-decoder."""
    from transformers import MODEL_MAPPING, AutoConfig

    from cliplab.models.hf_backend import check_safetensors

    if Path(encoder).is_dir():
        check_safetensors(f"--text-tower {encoder}", Path(encoder))
    config = AutoConfig.from_pretrained(encoder)
    model_class = MODEL_MAPPING[type(config)]
    extra = {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(model_class.__init__).parameters else {}
    model = model_class.from_pretrained(encoder, use_safetensors=True, **extra)
    return model.get_encoder() if getattr(config, "is_encoder_decoder", False) else model


def swap_text_tower(model: Model, encoder: str, freeze: bool = False) -> Model:
    """A new model: ``model``'s image tower with the transformers encoder ``encoder`` (a folder or
    repo id with its tokenizer) and a fresh linear projection to the same embedding width.
    With ``freeze`` the encoder's weights stay fixed and only the projection (and the image
    tower) train."""
    from open_clip import CustomTextCLIP

    from cliplab.models.openclip_backend import OpenClipModel, make_tokenizer

    if not isinstance(model, OpenClipModel):
        raise InputError(f"{model.name}: the text tower swap needs an open_clip-built model (openclip: or the bundled model)")
    old = model.torch_module
    cfg = deepcopy(model.model_cfg)
    context = int(cfg.get("text_cfg", {}).get("context_length", 77))
    name = f"{model.name}+text:{encoder}"
    try:
        transformer = load_encoder(encoder)
        tokenizer = make_tokenizer({**cfg, "text_cfg": {"hf_tokenizer_name": encoder, "context_length": context}}, name)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot load the text encoder {encoder!r}: {brief(exc)}") from exc
    module = CustomTextCLIP(**{k: v for k, v in cfg.items() if k != "custom_text"})  # its text tower is replaced below
    module.text = EncoderTower(transformer, tokenizer.tokenizer.pad_token_id, cfg["embed_dim"])
    module.visual.load_state_dict(old.visual.state_dict())
    with torch.no_grad():
        module.logit_scale.copy_(old.logit_scale.reshape(module.logit_scale.shape))
    if freeze:
        module.text.transformer.requires_grad_(False)
    cfg["text_cfg"] = {"hf_model_name": encoder, "hf_tokenizer_name": encoder, "hf_pooler_type": "mean_pooler",
                       "hf_proj_type": "linear", "context_length": context}  # fmt: skip
    cfg.pop("custom_text", None)
    return OpenClipModel(name=name, module=module.to(model.device), tokenizer=tokenizer, model_cfg=cfg,
                         preprocess_cfg=model.preprocess_cfg, device=model.device, precision=model.precision)  # fmt: skip
