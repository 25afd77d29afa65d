"""Datasets: sources, synthetic scenes (with captions and prompts in every language of ``LANGUAGES``), few-shot splits."""

from cliplab._lazy import lazy_exports
from cliplab.data.few_shot import few_shot_split

__all__ = ["LANGUAGES", "attribute_prompts", "few_shot_split", "full_caption"]
# the renderer (PIL) loads on first use
__getattr__, __dir__ = lazy_exports("cliplab.data", dict.fromkeys(("LANGUAGES", "attribute_prompts", "full_caption"), "cliplab.data.synthetic"), globals())
