"""open_clip backend: ``openclip:<arch>`` with a pretrained tag, a local checkpoint or ``hf-hub:`` weights.

The module is built from the architecture config and the checkpoint is loaded here (not by
``open_clip.create_model``) so that every failure is one clear line and the weights are read only
with safetensors or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import functools
from copy import copy, deepcopy
from pathlib import Path
from typing import Sequence

import torch
from torch.overrides import TorchFunctionMode

from cliplab.errors import InputError, ModelLoadError, brief, warn
from cliplab.models import hub
from cliplab.models.base import Model
from cliplab.models.openclip_fetch import hub_repo, looks_like_path, tag_weights
from cliplab.models.options import check_precision, resolve_device
from cliplab.models.precision import prepare_module
from cliplab.models.weights import (
    check_compatible,
    file_sha256,
    read_state_dict,
    state_dict_sha256,
)


# --- decisions that need no weights --------------------------------------------------------------
def arch_config(arch: str) -> dict:
    """A copy of open_clip's config for ``arch``; unknown names suggest the closest known ones."""
    import open_clip

    cfg = open_clip.get_model_config(arch)
    if cfg is not None:
        return deepcopy(cfg)
    close = closest_names(arch, open_clip.list_models())
    hint = f"did you mean {', '.join(close)}?" if close else "see open_clip.list_models()"
    raise ModelLoadError(f"unknown open_clip architecture {arch!r}; {hint}")


def closest_names(arch: str, known: list[str], n: int = 3) -> list[str]:
    """Known architectures closest to ``arch``: the longest shared prefix first, then the most used
    (most pretrained tags), then spelling similarity. ``ViT-Nope`` suggests ``ViT-B-32`` first."""
    import open_clip

    lower = arch.lower()
    by_lower = {name.lower(): name for name in known}
    pool = [by_lower[m] for m in difflib.get_close_matches(lower, list(by_lower), n=15, cutoff=0.4)]

    def rank(name: str) -> tuple[int, int, float]:
        prefix = len(os.path.commonprefix([lower, name.lower()]))
        tags = len(open_clip.list_pretrained_tags_by_model(name))
        return (-prefix, -tags, -difflib.SequenceMatcher(None, lower, name.lower()).ratio())

    return sorted(pool, key=rank)[:n]


def needs_quick_gelu(arch: str, tag: str | None) -> bool:
    """True when open_clip's pretrained cfg says the tag was trained with QuickGELU (e.g. ``openai``)."""
    import open_clip

    if not tag:
        return False
    return bool(open_clip.get_pretrained_cfg(arch, tag).get("quick_gelu", False))


def preprocess_config(image_size, overlay: dict | None) -> dict:
    """open_clip PreprocessCfg fields: defaults, the module's image size, then ``overlay``."""
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    return merge_preprocess_dict(PreprocessCfg(size=image_size), overlay or {})


def describe_preprocess(cfg: dict) -> str:
    """Compact, stable text for a preprocess cfg (part of ``identity``)."""
    size = cfg["size"]
    size = f"{size[0]}x{size[1]}" if isinstance(size, (tuple, list)) else f"{size}"
    nums = lambda xs: ",".join(format(float(x), ".6g") for x in xs)  # noqa: E731
    return (
        f"{size}/{cfg['resize_mode']}/{cfg['interpolation']}/mean={nums(cfg['mean'])}/std={nums(cfg['std'])}"
        f"/fill={cfg.get('fill_color', 0)}"
    )


# --- building ---------------------------------------------------------------------------------
class SkipRandomInit(TorchFunctionMode):
    """Within it, ``torch.nn.init``'s random fills do nothing: for a module whose every weight a
    checkpoint is about to replace (drawing them takes seconds for a ViT-B; skipped, the build takes
    0.1 s). Deterministic fills (``zeros_``, ``fill_``, a causal mask) still run. The mode is
    thread-local, like every torch function mode."""

    RANDOM_FILLS = frozenset(
        {"normal_", "uniform_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "orthogonal_"}
    )

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__name__", None) in self.RANDOM_FILLS:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def build_module(model_cfg: dict, what: str, random_init: bool = True) -> torch.nn.Module:
    """Instantiate the open_clip model class for ``model_cfg`` (no downloads), with random weights, or
    with ``random_init=False`` uninitialised ones that a full state dict must replace."""
    from open_clip import CLIP, CustomTextCLIP
    from open_clip.coca_model import CoCa

    cfg = deepcopy(model_cfg)
    vision_cfg, text_cfg = cfg.get("vision_cfg", {}), cfg.get("text_cfg", {})
    if "timm_model_name" in vision_cfg:
        vision_cfg["timm_model_pretrained"] = False
    hf_text = "hf_model_name" in text_cfg
    if hf_text:
        text_cfg["hf_model_pretrained"] = False
    custom_text = cfg.pop("custom_text", False) or hf_text
    model_class = (CoCa if "multimodal_cfg" in cfg else CustomTextCLIP) if custom_text else CLIP
    try:
        if not random_init:
            with SkipRandomInit():
                return model_class(**cfg)
        return model_class(**cfg)
    except OSError as exc:  # an HF text tower reads its config from the hub
        raise ModelLoadError(
            f"{what}: the text tower config {text_cfg.get('hf_model_name')!r} is not in the Hugging Face cache "
            f"({hub.cache_dir()}) and {hub.download_hint()}: {brief(exc)}"
        ) from exc
    except (TypeError, KeyError, ValueError) as exc:
        raise ModelLoadError(f"{what}: invalid open_clip model config: {brief(exc)}") from exc


def adapt_state_dict(module: torch.nn.Module, state: dict) -> dict:
    """The small, lossless layout fixes open_clip applies to its own checkpoints."""
    from open_clip.model import convert_to_custom_text_state_dict

    try:
        from open_clip.convert import convert_state_dict

        state = convert_state_dict(module, state)
    except ImportError:  # pragma: no cover - older open_clip
        pass
    if "positional_embedding" in state and not hasattr(module, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    for key in ("logit_scale", "logit_bias"):
        own = getattr(module, key, None)
        if key in state and own is not None and state[key].numel() == own.numel():
            state[key] = state[key].reshape(own.shape)
    if "logit_bias" not in state and getattr(module, "logit_bias", None) is not None and "logit_scale" in state:
        state["logit_bias"] = torch.zeros_like(module.logit_bias)  # non-SigLIP weights in a SigLIP model
    state.pop("text.transformer.embeddings.position_ids", None)
    return state


def adopt_context_length(model_cfg: dict, state: dict | None) -> None:
    """Build with the text length the weights were saved with (e.g. a Long-CLIP-stretched table)."""
    table = None if state is None else state.get("positional_embedding", state.get("text.positional_embedding"))
    text_cfg = model_cfg.get("text_cfg", {})
    if table is not None and table.ndim == 2 and "hf_model_name" not in text_cfg and not text_cfg.get("embed_cls"):
        text_cfg["context_length"] = int(table.shape[0])


@functools.lru_cache(maxsize=8)
def clip_bpe(context_length: int, kwargs_json: str):
    """The CLIP BPE tokenizer, built once per process (reading its merges takes 0.2 s); callers take a
    shallow copy, so a model that changes its ``context_length`` changes only its own."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length, **json.loads(kwargs_json))


def make_tokenizer(model_cfg: dict, what: str):
    """open_clip tokenizer for a model config: HF tokenizer if the config names one, else the CLIP BPE."""
    from open_clip.tokenizer import HFTokenizer

    text_cfg = model_cfg.get("text_cfg", {})
    context_length = text_cfg.get("context_length", 77)
    kwargs = dict(text_cfg.get("tokenizer_kwargs", {}))
    name = text_cfg.get("hf_tokenizer_name")
    if not name:
        return copy(clip_bpe(context_length, json.dumps(kwargs, sort_keys=True)))
    try:
        return HFTokenizer(
            name,
            context_length=context_length,
            cache_dir=hub.cache_dir(),
            tokenizer_mode=text_cfg.get("tokenizer_mode"),
            local_files_only=hub.offline(),
            **kwargs,
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"{what}: the tokenizer {name!r} is not in the Hugging Face cache ({hub.cache_dir()}) and "
            f"{hub.download_hint()}; download it where there is network (`hf download {name}`) and copy the cache "
            f"here or point HF_HOME at it ({brief(exc)})"
        ) from exc


# --- the model --------------------------------------------------------------------------------
class OpenClipModel(Model):
    """A CLIP-style model built with open_clip. Use :meth:`load` or :meth:`from_config`."""

    def __init__(
        self,
        *,
        name: str,
        module: torch.nn.Module,
        tokenizer,
        model_cfg: dict,
        preprocess_cfg: dict,
        device: torch.device,
        precision: str,
        weights_file: str | Path | None = None,
        pretrained: str | None = None,
    ):
        from open_clip.transform import PreprocessCfg, image_transform_v2

        self.name = name
        self.device = device
        self.precision = precision
        self.torch_module = module
        self.tokenizer = tokenizer
        self.model_cfg = model_cfg
        self.preprocess_cfg = preprocess_cfg
        self.preprocess = image_transform_v2(PreprocessCfg(**preprocess_cfg), is_train=False)
        self.context_length = int(model_cfg.get("text_cfg", {}).get("context_length", 77))
        self.embed_dim = int(model_cfg["embed_dim"])
        self.logit_scale = float(module.logit_scale.detach().float().exp().reshape(-1)[0])
        self.weights_file = str(weights_file) if weights_file else None
        self.pretrained = pretrained
        self._identity: str | None = None
        self._weights_digest: str | None = None  # of the fp32 weights, when there is no file

    # construction ------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        arch: str,
        pretrained: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        seed: int = 0,
    ) -> "OpenClipModel":
        """``openclip:<arch>`` with ``pretrained`` = an open_clip tag, a checkpoint file or ``hf-hub:org/name``.

        ``arch`` may itself be ``hf-hub:org/name`` (config and weights from that repo). A tag trained
        with QuickGELU (``openai``) switches QuickGELU on; for a local file of such weights use the
        ``<arch>-quickgelu`` architecture name. Without weights the model is randomly initialised
        from ``seed``: the same seed gives the same weights (and so the same cache identity).
        """
        name = f"openclip:{arch}"
        pretrained = os.fspath(pretrained) if pretrained is not None else None
        if arch.startswith("hf-hub:"):
            if pretrained is not None:
                raise ModelLoadError(f"{name} takes its weights from the hub repo; drop pretrained={pretrained!r}")
            pretrained, arch = arch, None
        overlay: dict = {}
        if pretrained and pretrained.startswith("hf-hub:"):
            config, weights = hub_repo(pretrained[len("hf-hub:") :])
            model_cfg, overlay = config["model_cfg"], config.get("preprocess_cfg", {})
        else:
            model_cfg = arch_config(arch)
            weights = None
            if pretrained:
                import open_clip

                tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained)
                if tag_cfg:
                    weights = tag_weights(arch, pretrained, tag_cfg)
                    overlay = tag_cfg
                    if needs_quick_gelu(arch, pretrained):
                        model_cfg["quick_gelu"] = True
                elif os.path.isfile(pretrained):
                    weights = pretrained
                elif looks_like_path(pretrained):
                    raise ModelLoadError(f"weights file not found: {pretrained}")
                else:
                    tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
                    raise ModelLoadError(
                        f"pretrained={pretrained!r} is neither an open_clip tag for {arch} (tags: {tags}) nor an existing file"
                    )
            else:
                warn(f"{name}: no pretrained weights given; the model is randomly initialised")
        return cls._assemble(name, model_cfg, overlay, weights, device, precision, pretrained=pretrained, seed=seed)

    @classmethod
    def from_config(
        cls,
        name: str,
        model_cfg: dict,
        preprocess_cfg: dict | None,
        weights_path: str | os.PathLike | None,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        seed: int | None = None,
        tokenizer=None,
        base_weights: str | os.PathLike | None = None,
    ) -> "OpenClipModel":
        """A model from an open_clip config dict (``embed_dim``, ``vision_cfg``, ``text_cfg``, ...),
        open_clip ``PreprocessCfg`` fields and a weights file (``CLIP.state_dict()``; fp16 is cast to
        fp32). ``weights_path=None`` gives random weights (e.g. to start training), drawn from ``seed``,
        or from torch's global random state when ``seed`` is None (so a training script's seed decides).
        ``tokenizer`` (e.g. a :class:`cliplab.models.text_tokenizer.TextTokenizer`) replaces the one the
        config implies (the CLIP BPE, or ``text_cfg.hf_tokenizer_name``). ``base_weights``: a weights file
        whose tensors fill in those ``weights_path`` lacks (a file holding one tower of a shared model)."""
        return cls._assemble(name, deepcopy(model_cfg), preprocess_cfg or {}, weights_path, device, precision, seed=seed, tokenizer=tokenizer,
                             base_weights=base_weights)  # fmt: skip

    @classmethod
    def _assemble(cls, name, model_cfg, preprocess_overlay, weights, device, precision, pretrained=None, seed=0, tokenizer=None,
                  base_weights=None):  # fmt: skip
        device = resolve_device(device)
        precision = check_precision(precision, device)
        state = read_state_dict(weights) if weights else None  # a bad file fails before the build
        if state is not None and base_weights is not None:
            state = {**read_state_dict(base_weights), **state}
        adopt_context_length(model_cfg, state)
        random_init = state is None  # else every weight comes from the file (load_state_dict is strict)
        if random_init and seed is None:
            module = build_module(model_cfg, name)
        else:
            with torch.random.fork_rng(devices=[]):  # random init from ``seed``, the caller's RNG untouched
                torch.manual_seed(seed or 0)
                module = build_module(model_cfg, name, random_init)
        if state is not None:
            state = adapt_state_dict(module, state)
            check_compatible(module, state, weights, name)
            state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
            # the read tensors become the parameters (no copy) unless the module ties some (assign would untie them)
            tied = len(list(module.named_parameters(remove_duplicate=False))) != len(list(module.parameters()))
            module.load_state_dict(state, strict=True, assign=not tied)
        visual = getattr(module, "visual", None)
        image_size = getattr(visual, "image_size", None) or model_cfg.get("vision_cfg", {}).get("image_size", 224)
        pp = preprocess_config(image_size, preprocess_overlay)
        try:
            from open_clip.model import set_model_preprocess_cfg

            set_model_preprocess_cfg(module, pp)
        except ImportError:  # pragma: no cover
            pass
        module = module.to(device).eval()
        digest = None if weights or precision == "fp32" else state_dict_sha256(module.state_dict())
        module = prepare_module(module, precision, device)
        if tokenizer is None:
            tokenizer = make_tokenizer(model_cfg, name)
        model = cls(
            name=name,
            module=module,
            tokenizer=tokenizer,
            model_cfg=model_cfg,
            preprocess_cfg=pp,
            device=device,
            precision=precision,
            weights_file=weights,
            pretrained=pretrained,
        )
        model._weights_digest = digest
        return model

    # identity ----------------------------------------------------------------------------------
    @property
    def identity(self) -> str:
        if self._identity is None:
            if self.weights_file:
                weights = file_sha256(self.weights_file)
            else:
                weights = self._weights_digest or state_dict_sha256(self.torch_module.state_dict())
            arch = hashlib.sha256(json.dumps(self.model_cfg, sort_keys=True, default=str).encode()).hexdigest()[:12]
            ident = f"{self.name}|sha256={weights}|arch={arch}|pre={describe_preprocess(self.preprocess_cfg)}"
            if self.precision != "fp32":
                ident += f"|{self.precision}"
            own = getattr(self.tokenizer, "tokenizer", None)
            if hasattr(own, "to_str"):  # a tokenizers.Tokenizer of its own (TextTokenizer): a part of the identity
                ident += f"|tok={hashlib.sha256(own.to_str().encode()).hexdigest()[:12]}"
            self._identity = ident
        return self._identity

    # the four backend methods ------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts))

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        from open_clip.tokenizer import SimpleTokenizer, basic_clean, canonicalize_text

        tok = self.tokenizer
        if isinstance(tok, SimpleTokenizer) or hasattr(tok, "eot_id"):  # the CLIP BPE, or a TextTokenizer (ids with <sot>/<eot>)
            return [len(tok.encode(t)) + (0 if hasattr(tok, "eot_id") else 2) for t in texts]
        clean = getattr(tok, "clean_fn", None) or (lambda t: canonicalize_text(basic_clean(t)))
        ids = tok.tokenizer([clean(t) for t in texts], truncation=False, verbose=False)["input_ids"]
        return [len(i) for i in ids]

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.torch_module.encode_image(pixels)

    def decode_tokens(self, ids: Sequence[int]) -> str:
        special = {0, *self.tokenize([""])[0, :2].tolist()}  # padding, <sot> and <eot>
        keep = [int(i) for i in ids if int(i) not in special]
        tok = self.tokenizer
        text = tok.decode(keep) if hasattr(tok, "decode") else tok.tokenizer.decode(keep, skip_special_tokens=True)
        return " ".join(text.split())

    def text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.torch_module.encode_text(tokens.to(self.device))

    # model insides (cliplab.adapt) ---------------------------------------------------------------
    def token_embedding_module(self) -> torch.nn.Module:
        module = self.torch_module
        text = module if hasattr(module, "token_embedding") else getattr(module, "text", None)
        embedding = getattr(text, "token_embedding", None)
        if embedding is None:  # an HF text tower inside open_clip
            raise InputError(f"{self.name}: its text tower (a Hugging Face model inside open_clip) has no token embedding layer; prompt learning needs one")
        return embedding

    def tower_modules(self) -> dict[str, torch.nn.Module]:
        module = self.torch_module
        text = module.transformer if hasattr(module, "token_embedding") else module.text
        return {"image": module.visual, "text": text}

    # text positions (Long-CLIP stretching) -----------------------------------------------------
    def _text_tower(self) -> torch.nn.Module:
        """The module holding the text positional table: the CLIP itself, or ``.text`` of a CustomTextCLIP."""
        module = self.torch_module
        tower = module if hasattr(module, "positional_embedding") else getattr(module, "text", None)
        if tower is None or not isinstance(getattr(tower, "positional_embedding", None), torch.nn.Parameter):
            raise ModelLoadError(f"{self.name}: its text tower has no learned positional embedding table")
        return tower

    def text_positional_embedding(self) -> torch.nn.Parameter:
        """The learned text positional table (context_length x width), as a live parameter."""
        return self._text_tower().positional_embedding

    def set_text_positional_embedding(self, table: torch.Tensor) -> None:
        """Replace the positional table; the context length, the causal mask, the tokenizer and the
        config follow its length, so the model encodes (and saves/loads) texts that long."""
        tower = self._text_tower()
        n = int(table.shape[0])
        old = tower.positional_embedding
        tower.positional_embedding = torch.nn.Parameter(table.detach().to(old.device, old.dtype).clone(), requires_grad=old.requires_grad)
        tower.context_length = n
        if hasattr(tower, "num_pos"):
            tower.num_pos = n
        if getattr(tower, "attn_mask", None) is not None:
            tower.attn_mask = torch.full((n, n), float("-inf"), device=old.device).triu_(1)
        self.tokenizer.context_length = n
        self.model_cfg.setdefault("text_cfg", {})["context_length"] = n
        self.context_length = n
        self._identity = None
