"""Captioner on the tiny random test CLIP: its features, training, decoding limits, save/load."""

from __future__ import annotations

import pytest
import torch

from cliplab.caption import Captioner, CaptionFeatureModel
from cliplab.caption.features import split_rows
from cliplab.data import synthetic
from cliplab.errors import InputError


@pytest.fixture(scope="module")
def scenes():
    return synthetic.generate(24, seed=3, split="train")


@pytest.fixture(scope="module")
def fitted(tiny_model, scenes):
    cap = Captioner(tiny_model, steps=6, batch_size=8, width=32, heads=2, k=4, max_length=30, seed=1)
    return cap.fit([r.image for r in scenes], [r.caption for r in scenes], cache_dir=None)


def test_caption_features_hold_the_embedding_and_the_grid(tiny_model, scenes):
    fm = CaptionFeatureModel(tiny_model, grid=2)
    X = fm.encode_images([r.image for r in scenes[:4]])
    assert X.shape == (4, tiny_model.embed_dim + 4 * fm.width) and fm.tokens == 4
    emb, grid = split_rows(X, tiny_model.embed_dim, fm.width)
    torch.testing.assert_close(emb, torch.from_numpy(tiny_model.encode_images([r.image for r in scenes[:4]])), atol=1e-5, rtol=0)
    torch.testing.assert_close(grid.norm(dim=-1), torch.ones(4, 4))
    assert fm.identity.startswith(tiny_model.identity) and fm.identity != tiny_model.identity


def test_fit_then_caption(fitted, scenes):
    caps = fitted.caption_features(fitted.features([r.image for r in scenes[:3]], cache_dir=None).X)
    assert len(caps) == 3 and all(isinstance(c, str) for c in caps)
    assert len(fitted.history_) == 1 and fitted.history_[0]["step"] == 6
    assert len(fitted.vocab_) == 3 + len({t for r in scenes for t in fitted.feature_model().base.tokenize([r.caption])[0].tolist()} - {0, 49406, 49407})


def test_max_length_bounds_every_caption(fitted, scenes):
    X = fitted.features([r.image for r in scenes[:4]], cache_dir=None).X
    for limit in (1, 3):
        for beam in (1, 2):
            assert all(len(c.split()) <= limit for c in fitted.caption_features(X, max_length=limit, beam=beam))
    with pytest.raises(InputError, match="max_length"):
        fitted.caption_features(X, max_length=31)


def test_decoder_precisions_run(fitted, scenes):
    X = fitted.features([r.image for r in scenes[:2]], cache_dir=None).X
    for precision in ("bf16", "int8"):
        assert len(fitted.caption_features(X, precision=precision)) == 2
    with pytest.raises(InputError, match="fp16"):
        fitted.caption_features(X, precision="fp16")


def test_save_load_round_trip(fitted, scenes, tiny_model, tmp_path):
    X = fitted.features([r.image for r in scenes], cache_dir=None).X
    fitted.save(tmp_path / "cap")
    loaded = Captioner.load(tmp_path / "cap", model=tiny_model)
    assert loaded.concepts_ == fitted.concepts_ and loaded.vocab_.model_ids == fitted.vocab_.model_ids
    # weights are stored as fp16: the same captions (the fp16 copy of the fitted net decodes alike)
    half = {k: v.half().float() if v.is_floating_point() else v for k, v in fitted.net_.state_dict().items()}
    assert all(torch.equal(half[k], v) for k, v in loaded.net_.state_dict().items())
    assert loaded.caption_features(X) == loaded.caption_features(X, beam=1)
    with pytest.raises(InputError, match="not empty"):
        fitted.save(tmp_path / "cap")


def test_training_is_seeded_and_leaves_the_global_rng_alone(tiny_model, scenes):
    images, captions = [r.image for r in scenes[:8]], [r.caption for r in scenes[:8]]
    before = torch.random.get_rng_state()
    a = Captioner(tiny_model, steps=2, batch_size=4, width=16, heads=2, seed=5).fit(images, captions, cache_dir=None)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = Captioner(tiny_model, steps=2, batch_size=4, width=16, heads=2, seed=5).fit(images, captions, cache_dir=None)
    assert all(torch.equal(x, y) for x, y in zip(a.net_.state_dict().values(), b.net_.state_dict().values()))


def test_clear_errors(tiny_model, scenes):
    with pytest.raises(InputError, match="not fitted"):
        Captioner(tiny_model).caption_features([[0.0]])
    with pytest.raises(InputError, match="captions for"):
        Captioner(tiny_model, steps=1).fit([scenes[0].image], ["a", "b"], cache_dir=None)
    with pytest.raises(InputError, match="no captioner ships"):
        Captioner.load(model="openclip:RN50")


def test_decode_tokens_inverts_tokenize(tiny_model):
    text = "a small red star at the top left on a striped background"
    assert tiny_model.decode_tokens(tiny_model.tokenize([text])[0].tolist()) == text
