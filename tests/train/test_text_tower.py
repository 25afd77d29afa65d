"""Text tower swap with a randomly initialised small BERT-style encoder."""

import numpy as np
import pytest
import torch

from cliplab.errors import CliplabError
from cliplab.train import TrainConfig, train
from cliplab.train.text_tower import swap_text_tower

from .conftest import MICRO_VIT_CFG, micro_model

WORDS = ["a", "red", "blue", "green", "star", "square", "circle", "and", "small", "large", "on", "the", "left", "right",
         "background", "striped", "plain", "at", "top", "bottom", "in", "center", "of", "shape"]  # fmt: skip


def small_bert(folder):
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir()
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizer(str(vocab)).save_pretrained(folder)
    config = BertConfig(vocab_size=len(WORDS) + 5, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return str(folder)


def test_swapped_tower_encodes_trains_and_can_stay_frozen(tmp_path):
    encoder = small_bert(tmp_path / "bert")
    base = micro_model(MICRO_VIT_CFG)
    model = swap_text_tower(base, encoder, freeze=True)
    assert model.encode_texts(["a red star", "a blue square"]).shape == (2, 16)
    assert torch.equal(model.torch_module.visual.conv1.weight, base.torch_module.visual.conv1.weight)
    bert_before = {k: v.clone() for k, v in model.torch_module.text.transformer.state_dict().items()}
    proj_before = model.torch_module.text.proj.weight.detach().clone()
    cfg = TrainConfig(data="synthetic:16", objectives="clip", steps=2, batch_size=4, lr=1e-2, warmup=1, out=str(tmp_path / "run"),
                      eval_n=0, workers=0, progress=False, device="cpu")  # fmt: skip
    train(cfg, model=model)
    after = model.torch_module.text.transformer.state_dict()
    assert all(torch.equal(bert_before[k], after[k]) for k in bert_before)  # frozen encoder
    assert not torch.equal(proj_before, model.torch_module.text.proj.weight)  # the projection trained


def small_clip_text(folder):
    """A transformers ``CLIPTextModel`` folder (safetensors) with a CLIP BPE tokenizer over letters only."""
    import json
    import string

    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder.mkdir()
    letters = list(string.ascii_lowercase)
    tokens = letters + [c + "</w>" for c in letters] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(folder)
    config = CLIPTextConfig(vocab_size=len(tokens), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                            max_position_embeddings=64, pad_token_id=len(tokens) - 1, bos_token_id=len(tokens) - 2,
                            eos_token_id=len(tokens) - 1)  # fmt: skip
    torch.manual_seed(0)
    CLIPTextModel(config).save_pretrained(folder)
    return str(folder)


def test_a_clip_text_model_folder_is_a_text_tower(tmp_path):
    model = swap_text_tower(micro_model(MICRO_VIT_CFG), small_clip_text(tmp_path / "clip-text"))
    features = model.encode_texts(["a red star", "a blue square"])
    assert features.shape == (2, 16) and not np.allclose(features[0], features[1])
    cfg = TrainConfig(data="synthetic:16", objectives="clip", steps=1, batch_size=4, out=str(tmp_path / "run"), eval_n=0,
                      workers=0, progress=False, device="cpu")  # fmt: skip
    before = model.torch_module.text.transformer.get_input_embeddings().weight.detach().clone()
    train(cfg, model=model)
    assert not torch.equal(before, model.torch_module.text.transformer.get_input_embeddings().weight)  # the encoder trains


def test_a_text_tower_folder_with_only_pickled_weights_is_one_line(tmp_path):
    folder = tmp_path / "bert"
    small_bert(folder)
    model = torch.nn.Linear(1, 1)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CliplabError, match=r"holds only pickled weights \(pytorch_model.bin\).*convert them to safetensors"):
        swap_text_tower(micro_model(MICRO_VIT_CFG), str(folder))
