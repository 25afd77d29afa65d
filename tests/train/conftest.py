import pytest
import torch

from cliplab.models.openclip_backend import OpenClipModel

# A very small open_clip CLIP (ResNet image tower with batch norm, causal text transformer) for fast tests.
MICRO_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
# The same without batch norm (a ViT image tower): per-process batch statistics cannot differ.
MICRO_VIT_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "patch_size": 16, "head_width": 8},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}
PREPROCESS = {"size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}


def micro_model(cfg=MICRO_CFG, seed: int = 0) -> OpenClipModel:
    torch.manual_seed(seed)
    return OpenClipModel.from_config("micro", cfg, PREPROCESS, None, device="cpu")


@pytest.fixture
def micro():
    return micro_model()
