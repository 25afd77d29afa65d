"""Image captioning on a frozen CLIP model, LightCap-style (Wang et al., AAAI 2023): a concept
extractor, a cross-modal modulator and a small transformer decoder; BLEU-4 and CIDEr-D.

    cap = cliplab.Captioner.load()            # the bundled captioner of the bundled model
    cap.caption(["scene.png"])
"""

from cliplab._lazy import lazy_exports

_NAMES = {
    "Captioner": "cliplab.caption.captioner",
    "CaptionFeatureModel": "cliplab.caption.features",
    "ConceptExtractor": "cliplab.caption.concepts",
    "bleu": "cliplab.caption.metrics",
    "caption_scores": "cliplab.caption.metrics",
    "cider_d": "cliplab.caption.metrics",
}
__all__ = ["CaptionFeatureModel", "Captioner", "ConceptExtractor", "bleu", "caption_scores", "cider_d"]

__getattr__, __dir__ = lazy_exports("cliplab.caption", _NAMES, globals())
