"""Datasets: sources, synthetic scenes (with captions and prompts in every language of ``LANGUAGES``), few-shot splits."""

from cliplab._lazy import lazy_exports
from cliplab.data.few_shot import few_shot_split

__all__ = ["LANGUAGES", "alt_text", "attribute_prompts", "few_shot_split", "full_caption", "long_caption", "long_tail"]
# the renderer (PIL) loads on first use
EXPORTS = {
    **dict.fromkeys(("LANGUAGES", "attribute_prompts", "full_caption", "long_tail"), "cliplab.data.synthetic"),
    **dict.fromkeys(("alt_text", "long_caption"), "cliplab.data.scene_text"),
}
__getattr__, __dir__ = lazy_exports("cliplab.data", EXPORTS, globals())
