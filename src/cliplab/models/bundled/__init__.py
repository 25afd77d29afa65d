"""Models that ship with cliplab: name -> folder with config.json, model.safetensors, MODEL_CARD.md.

A new bundled model is one entry in ``BUNDLED`` (and, optionally, an alias in ``ALIASES``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cliplab.errors import ModelLoadError
from cliplab.models.openclip_backend import OpenClipModel

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class BundledModel:
    config: Path  # json with "model_cfg" (open_clip CLIP kwargs), "preprocess_cfg" (PreprocessCfg fields) and, optionally,
    # "tokenizer" (a tokenizer.json of cliplab.models.text_tokenizer beside it, replacing the CLIP BPE) and "prompter"
    # (the region prompter: "masked-class" or a prompter file beside it, as in a model folder's manifest)
    weights: Path  # safetensors state dict of the open_clip module
    card: Path  # markdown model card
    rebuild: str  # command that recreates the weights file
    base: str | None = None  # a bundled model whose weights fill in what this weights file lacks (a shared, frozen text tower)


BUNDLED: dict[str, BundledModel] = {
    "shapes-tiny": BundledModel(
        config=HERE / "shapes-tiny" / "config.json",
        weights=HERE / "shapes-tiny" / "model.safetensors",
        card=HERE / "shapes-tiny" / "MODEL_CARD.md",
        rebuild="python scripts/train_tiny.py --ship",
    ),
    "shapes-vit": BundledModel(
        config=HERE / "shapes-vit" / "config.json",
        weights=HERE / "shapes-vit" / "model.safetensors",
        card=HERE / "shapes-vit" / "MODEL_CARD.md",
        rebuild="python scripts/train_vit.py --ship",
    ),
    "shapes-multi": BundledModel(
        config=HERE / "shapes-multi" / "config.json",
        weights=HERE / "shapes-multi" / "model.safetensors",
        card=HERE / "shapes-multi" / "MODEL_CARD.md",
        rebuild="python scripts/train_multi.py --ship",
    ),
    "shapes-vit-dense": BundledModel(
        config=HERE / "shapes-vit-dense" / "config.json",
        weights=HERE / "shapes-vit-dense" / "model.safetensors",  # the image tower only
        card=HERE / "shapes-vit-dense" / "MODEL_CARD.md",
        rebuild="python scripts/train_vit_dense.py --ship",
        base="shapes-vit",
    ),
}
ALIASES: dict[str, str] = {"tiny": "shapes-tiny", "vit": "shapes-vit", "multi": "shapes-multi", "vit-dense": "shapes-vit-dense"}


def names() -> list[str]:
    """Every name and alias that resolves to a bundled model."""
    return sorted([*BUNDLED, *ALIASES])


def canonical_name(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in BUNDLED:
        raise ModelLoadError(f"unknown bundled model {name!r}; bundled models: {', '.join(names())}")
    return name


def read_config(name: str) -> dict:
    entry = BUNDLED[canonical_name(name)]
    try:
        config = json.loads(entry.config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read the config of bundled model {name!r} at {entry.config}: {exc}") from exc
    if "model_cfg" not in config:
        raise ModelLoadError(f"config of bundled model {name!r} at {entry.config} has no 'model_cfg'")
    return config


def load_bundled(name: str, weights: str | os.PathLike | None = None, device=None, precision: str = "fp32", seed: int | None = None):
    """Load a bundled model; ``weights`` replaces the shipped weights file (e.g. a retrained one).

    ``seed``: the bundled architecture (config, tokenizer, preprocessing) with random weights drawn from
    ``seed`` instead of any weights file, to train from scratch; the same seed gives the same weights."""
    name = canonical_name(name)
    entry = BUNDLED[name]
    if seed is not None and weights is not None:
        raise ModelLoadError(f"bundled model {name!r}: give weights or a random-init seed, not both")
    path = base = None
    if seed is None:
        path = Path(weights) if weights is not None else entry.weights
        if not path.is_file():
            if weights is not None:
                raise ModelLoadError(f"weights file not found: {path}")
            raise ModelLoadError(f"bundled model {name!r} has no weights file at {path}; rebuild it with `{entry.rebuild}`")
        base = BUNDLED[entry.base].weights if entry.base else None
    config = read_config(name)
    tokenizer = None
    if "tokenizer" in config:  # a tokenizer of its own (cliplab.models.text_tokenizer), beside the config
        from cliplab.models.text_tokenizer import TextTokenizer

        context = int(config["model_cfg"].get("text_cfg", {}).get("context_length", 77))
        tokenizer = TextTokenizer.load(entry.config.parent / config["tokenizer"], context)
    model = OpenClipModel.from_config(
        f"cliplab:{name}", config["model_cfg"], config.get("preprocess_cfg", {}), path, device=device, precision=precision,
        seed=seed, tokenizer=tokenizer, base_weights=base,
    )
    if "prompter" in config:  # the region prompter Model.encode_regions reads boxes with (cliplab.dense.prompter)
        from cliplab.dense.prompter import named_prompter

        model.region_prompter = named_prompter(entry.config.parent, config["prompter"], model.device)
    return model
