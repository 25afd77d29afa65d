"""Dense open-vocabulary segmentation: dense CLIP features, the training-free last-block methods
(MaskCLIP, SCLIP, ClearCLIP, NACLIP), sliding windows, PAMR, mask classification and region relabelling,
a learned refinement (CLIP-DINOiser), region self-distillation of patch tokens (CLIPSelf), Trident
for large images, a trained open-vocabulary segmenter (mask proposals + MAFT+/OVSeg classification)
and an optional SAM mask proposer."""

from cliplab.dense.attention import METHODS
from cliplab.dense.features import dense_features
from cliplab.dense.ovseg import OVSegmenter
from cliplab.dense.refine import CorrelationRefiner, train_refiner
from cliplab.dense.regions import MaskPrompt, classify_regions, train_mask_prompt
from cliplab.dense.sam import SamProposer
from cliplab.dense.segment import Segmentation, Segmenter, segment
from cliplab.dense.self_distill import distill_regions

__all__ = [
    "METHODS",
    "CorrelationRefiner",
    "MaskPrompt",
    "OVSegmenter",
    "SamProposer",
    "Segmentation",
    "Segmenter",
    "classify_regions",
    "dense_features",
    "distill_regions",
    "segment",
    "train_mask_prompt",
    "train_refiner",
]
