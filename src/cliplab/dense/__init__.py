"""Dense open-vocabulary segmentation: dense CLIP features, the training-free last-block methods
(MaskCLIP, SCLIP, ClearCLIP, NACLIP), sliding windows, PAMR, mask classification and region relabelling,
a learned refinement (CLIP-DINOiser) and region self-distillation of patch tokens (CLIPSelf)."""

from cliplab.dense.attention import METHODS
from cliplab.dense.features import dense_features
from cliplab.dense.segment import Segmentation, Segmenter, segment

__all__ = ["METHODS", "Segmentation", "Segmenter", "dense_features", "segment"]
