"""transformers backend: ``hf:<repo id or local folder>``.

Works with ``CLIPModel``, ``SiglipModel`` and any ``AutoModel`` exposing ``get_image_features`` /
``get_text_features``. A repo id resolves through the Hugging Face cache (read from the environment
at call time); with ``HF_HUB_OFFLINE=1`` it must already be there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

from cliplab.errors import ModelLoadError, brief, how_to_pass
from cliplab.models import hub
from cliplab.models.base import Model
from cliplab.models.options import check_precision, resolve_device
from cliplab.models.precision import prepare_module
from cliplab.models.weights import file_sha256

# weights transformers loads, in its order of preference (safetensors first, maybe sharded)
WEIGHT_PATTERNS = ("model*.safetensors", "pytorch_model*.bin", "*.safetensors", "*.bin")
# image-processor fields that decide the pixels (part of ``identity``)
PREPROCESS_KEYS = (
    "do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
    "do_normalize", "image_mean", "image_std", "do_convert_rgb", "do_pad",
)


def resolve_folder(target: str) -> Path:
    """Local folder for a folder path or a repo id (downloaded unless offline)."""
    path = Path(target).expanduser()
    if path.is_dir():
        return path
    if target.startswith(("/", ".", "~")) or target.count("/") > 1:
        raise ModelLoadError(f"hf:{target}: no such folder")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache, offline = hub.cache_dir(), hub.offline()
    hint = f"download it where there is network (`hf download {target}`) and pass the folder: {how_to_pass('spec', 'hf:/path/to/folder')}"
    try:
        if offline:
            return Path(snapshot_download(target, cache_dir=cache, local_files_only=True))
        # Fetch only what loading needs: configs, tokenizer/processor files and one weights format.
        patterns = ["*.json", "*.txt", "*.model", "*.tiktoken", "model*.safetensors"]
        folder = Path(snapshot_download(target, cache_dir=cache, allow_patterns=patterns))
        if not any(folder.glob("model*.safetensors")):
            folder = Path(snapshot_download(target, cache_dir=cache, allow_patterns=patterns + ["pytorch_model*.bin"]))
        return folder
    except LocalEntryNotFoundError as exc:
        raise ModelLoadError(f"hf:{target} is not in the Hugging Face cache ({cache}) and {hub.download_hint()}; {hint}") from exc
    except Exception as exc:  # RepositoryNotFoundError, gated repos, HTTP errors...
        raise ModelLoadError(f"hf:{target}: cannot fetch it from the Hugging Face hub ({brief(exc)}); {hint}") from exc


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "spiece.model", "tokenizer.model")


def check_saved_parts(name: str, folder: Path) -> None:
    """A folder must hold the model config, an image processor and a tokenizer; say which is missing."""
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{name}: no config.json in {folder}; save the model there with model.save_pretrained(folder)")
    if not (folder / "preprocessor_config.json").is_file():
        raise ModelLoadError(f"{name}: no image processor saved in {folder}; save one there with processor.save_pretrained(folder)")
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise ModelLoadError(f"{name}: no tokenizer saved in {folder}; save one there with tokenizer.save_pretrained(folder)")


def check_safetensors(name: str, folder: Path) -> None:
    """cliplab never unpickles: a folder whose weights are only pickled ``.bin`` files is refused."""
    pickled = sorted(folder.glob("*.bin"))
    if pickled and not any(folder.glob("*.safetensors")):
        raise ModelLoadError(
            f"{name}: {folder} holds only pickled weights ({pickled[0].name}), which cliplab never loads; convert them to "
            "safetensors where you trust the file: AutoModel.from_pretrained(folder).save_pretrained(folder)"
        )


def as_features(output: Any) -> torch.Tensor:
    """transformers returns a tensor, or (5.x) an output object whose ``pooler_output`` is the embedding."""
    if isinstance(output, torch.Tensor):
        return output
    pooled = getattr(output, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    if isinstance(output, (tuple, list)) and len(output) > 1 and isinstance(output[1], torch.Tensor):
        return output[1]
    raise TypeError(f"cannot find embeddings in a {type(output).__name__}")


def describe_processor(processor) -> str:
    cfg = processor.to_dict() if hasattr(processor, "to_dict") else {}
    kept = {k: cfg[k] for k in PREPROCESS_KEYS if k in cfg}
    kept["type"] = type(processor).__name__
    return json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)


class HFModel(Model):
    """A dual encoder loaded with transformers."""

    def __init__(self, *, name, module, tokenizer, image_processor, folder, device, precision):
        self.name = name
        self.device = device
        self.precision = precision
        self.torch_module = module
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.folder = Path(folder)
        config = module.config
        self.model_type = getattr(config, "model_type", "")
        self.padding = "max_length" if "siglip" in self.model_type else "longest"
        self.context_length = self._context_length()
        scale = getattr(module, "logit_scale", None)
        self.logit_scale = float(scale.detach().float().exp().reshape(-1)[0]) if scale is not None else 1.0
        dim = getattr(config, "projection_dim", None)
        self.embed_dim = int(dim) if dim else self._probe_dim()
        self._identity: str | None = None

    @classmethod
    def load(cls, target: str, device=None, precision: str = "fp32") -> "HFModel":
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        name = f"hf:{target}"
        device = resolve_device(device)
        precision = check_precision(precision, device)
        folder = resolve_folder(target)
        check_saved_parts(name, folder)
        check_safetensors(name, folder)
        try:
            module = AutoModel.from_pretrained(folder, dtype=torch.float32, use_safetensors=True)
            tokenizer = AutoTokenizer.from_pretrained(folder)
            image_processor = AutoImageProcessor.from_pretrained(folder)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"{name}: cannot load from {folder}: {brief(exc)}") from exc
        if not (hasattr(module, "get_image_features") and hasattr(module, "get_text_features")):
            raise ModelLoadError(
                f"{name}: {type(module).__name__} has no get_image_features/get_text_features; it is not a dual encoder"
            )
        module = prepare_module(module.to(device).eval(), precision, device)
        return cls(
            name=name, module=module, tokenizer=tokenizer, image_processor=image_processor,
            folder=folder, device=device, precision=precision,
        )

    def _context_length(self) -> int:
        text_config = getattr(self.torch_module.config, "text_config", None)
        n = getattr(text_config, "max_position_embeddings", None)
        if n:
            return int(n)
        n = getattr(self.tokenizer, "model_max_length", None)
        return int(n) if n and n < 1_000_000 else 77

    @torch.inference_mode()
    def _probe_dim(self) -> int:
        return int(self.text_features(self.tokenize(["a"])).shape[-1])

    # preprocessing -----------------------------------------------------------------------------
    def preprocess(self, image) -> torch.Tensor:
        return self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    # identity ----------------------------------------------------------------------------------
    @property
    def identity(self) -> str:
        if self._identity is None:
            files = []
            for pattern in WEIGHT_PATTERNS:
                files = sorted(self.folder.glob(pattern))
                if files:
                    break
            files += [f for f in (self.folder / "config.json",) if f.is_file()]
            digest = file_sha256(*files) if files else "none"
            ident = f"{self.name}|sha256={digest}|pre={describe_processor(self.image_processor)}"
            if self.precision != "fp32":
                ident += f"|{self.precision}"
            self._identity = ident
        return self._identity

    # the four backend methods ------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]):
        return self.tokenizer(
            list(texts), padding=self.padding, truncation=True, max_length=self.context_length, return_tensors="pt"
        )

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        ids = self.tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]
        return [len(i) for i in ids]

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return as_features(self.torch_module.get_image_features(pixel_values=pixels))

    def text_features(self, tokens) -> torch.Tensor:
        inputs = {k: tokens[k].to(self.device) for k in ("input_ids", "attention_mask") if k in tokens}
        return as_features(self.torch_module.get_text_features(**inputs))

    # model insides (cliplab.adapt) ---------------------------------------------------------------
    def token_embedding_module(self) -> torch.nn.Module:
        return self.torch_module.text_model.embeddings.token_embedding

    def tower_modules(self) -> dict[str, torch.nn.Module]:
        return {"image": self.torch_module.vision_model, "text": self.torch_module.text_model}
