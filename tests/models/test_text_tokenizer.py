"""The multilingual scene tokenizer: what it does to captions, and its save/load round trip."""

import json

import pytest
import torch

from cliplab.data import synthetic
from cliplab.errors import ModelLoadError
from cliplab.models.openclip_backend import OpenClipModel
from cliplab.models.text_tokenizer import EOT, PAD, SOT, TextTokenizer, synthetic_corpus, token_lengths, train_tokenizer


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(synthetic_corpus(300, seed=3), vocab_size=600, context_length=48)


def test_special_ids_suit_the_text_tower(tok):
    vocab = tok.tokenizer.get_vocab()
    assert vocab[PAD] == 0 and vocab[EOT] == tok.vocab_size - 1 and vocab[SOT] == tok.sot_id
    ids = tok(["ein roter Stern", "一个红色星形"])
    assert ids.shape == (2, 48) and ids.dtype == torch.long
    for row in ids:
        n = int((row != 0).sum())
        assert row[0] == tok.sot_id and row[n - 1] == tok.eot_id and row.argmax() == n - 1  # argmax pooling finds <eot>


def test_truncation_keeps_eot(tok):
    long = " und ".join(["ein kleiner roter Stern oben links"] * 20)
    ids = tok([long], context_length=10)[0]
    assert len(ids) == 10 and ids[-1] == tok.eot_id and (ids != 0).all()


def test_decodes_every_language(tok):
    spec = synthetic.scene(7, max_objects=2).spec
    for lang in synthetic.LANGUAGES:
        text = synthetic.full_caption(spec, lang)
        assert tok.decode(tok.encode(text)) == text.lower()
        assert tok.tokenizer.token_to_id("<unk>") not in tok.encode(text)


def test_save_load_round_trip(tok, tmp_path):
    path = tok.save(tmp_path / "tokenizer.json")
    back = TextTokenizer.load(path, context_length=48)
    texts = [synthetic.full_caption(synthetic.scene(i, max_objects=2).spec, lang) for i in range(5) for lang in synthetic.LANGUAGES]
    assert torch.equal(back(texts), tok(texts)) and back.vocab_size == tok.vocab_size
    with pytest.raises(ModelLoadError, match="cannot read the tokenizer file"):
        TextTokenizer.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text(json.dumps({"not": "a tokenizer"}))
    with pytest.raises(ModelLoadError, match="cannot read"):
        TextTokenizer.load(tmp_path / "bad.json")


def test_model_with_its_own_tokenizer(tok):
    cfg = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 8},
           "text_cfg": {"context_length": 48, "vocab_size": tok.vocab_size, "width": 16, "heads": 2, "layers": 1}}  # fmt: skip
    model = OpenClipModel.from_config("micro", cfg, {"size": 32}, None, device="cpu", seed=0, tokenizer=tok)
    assert model.tokenizer is tok and model.token_counts(["一个红色星形"]) == [len(tok.encode("一个红色星形"))]
    assert model.encode_texts(["ein roter Stern", "一个红色星形"]).shape == (2, 16)
    other = OpenClipModel.from_config("micro", cfg, {"size": 32}, None, device="cpu", seed=0)
    assert model.identity != other.identity  # the tokenizer is part of what the embeddings depend on


def test_clip_bpe_truncates_what_the_scene_tokenizer_does_not(tok):
    from open_clip.tokenizer import SimpleTokenizer

    bpe = SimpleTokenizer()
    clip = token_lengths(lambda xs: [len(bpe.encode(x)) + 2 for x in xs], n_scenes=60, context_length=48)
    own = token_lengths(lambda xs: [len(tok.encode(x)) for x in xs], n_scenes=60, context_length=48)
    assert clip["zh"]["mean"] > 2.5 * clip["en"]["mean"] and clip["zh"]["truncated"] > 0.3
    for lang in ("zh", "ja", "ar"):
        assert own[lang]["truncated"] == 0 and own[lang]["mean"] < clip[lang]["mean"] / 2, (lang, own[lang], clip[lang])
