"""Small random models for the dense tests: the shared tiny open_clip ViT, a tiny ModifiedResNet CLIP
and a tiny transformers CLIP (no downloads)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch


@pytest.fixture(scope="session")
def resnet_model():
    from cliplab.models.openclip_backend import OpenClipModel

    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}  # fmt: skip
    torch.manual_seed(0)
    return OpenClipModel.from_config("test-resnet", cfg, {"size": 64}, None, device="cpu")


@pytest.fixture(scope="session")
def hf_clip():
    """A random transformers CLIPModel behind the attributes the dense code reads (no tokenizer needed)."""
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 1},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    torch.manual_seed(0)
    return SimpleNamespace(torch_module=CLIPModel(cfg).eval(), name="hf:test", device=torch.device("cpu"), input_dtype=torch.float32)
