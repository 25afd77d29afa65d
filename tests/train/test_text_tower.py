"""Text tower swap with a randomly initialised small BERT-style encoder."""

import torch

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
