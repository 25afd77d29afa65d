"""The narrow model interface prompt learning and CLIP-SVD use, on both backends."""

import numpy as np
import pytest
import torch

from cliplab.adapt.prompt import ClassPrompts, initial_context, token_ids, word_ids
from cliplab.adapt.svd import decompose, singular_values_applied


@pytest.fixture(params=["openclip-vit", "bundled-resnet", "hf"])
def model(request):
    name = {"openclip-vit": "tiny_model", "bundled-resnet": "bundled", "hf": "hf_model"}[request.param]
    return request.getfixturevalue(name)


def test_identity_edit_is_the_plain_text_forward(model):
    tokens = model.tokenize(["a red circle", "two blue squares."])
    with torch.no_grad():
        plain = model.text_features(tokens)
        hooked = model.text_features_from_embeddings(tokens, lambda e: e)
        changed = model.text_features_from_embeddings(tokens, lambda e: e.roll(1, dims=1))
    torch.testing.assert_close(hooked, plain)
    assert not torch.allclose(changed, plain)
    assert not model.token_embedding_module()._forward_hooks  # the hook is removed


def test_gradients_reach_the_edit(model):
    tokens = model.tokenize(["a shape"])
    delta = torch.zeros(1, requires_grad=True)
    out = model.text_features_from_embeddings(tokens, lambda e: e + delta * e.roll(1, dims=1))
    out.sum().backward()
    assert delta.grad is not None and delta.grad.abs().item() > 0


@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_prompt_slots(model, position):
    prompts = ClassPrompts(model, ["circle", "big star"], n_ctx=4, position=position)
    ids = token_ids(prompts.tokens)
    name_len = len(word_ids(model, "big star"))
    slots = prompts.cols[prompts.rows == 1].tolist()
    first = 1  # after the start token
    expected = {
        "end": [first, first + 1, first + 2, first + 3],
        "front": [first + name_len + i for i in range(4)],
        "middle": [first, first + 1, first + 2 + name_len, first + 3 + name_len],
    }[position]
    assert slots == expected
    assert ids.shape[0] == 2
    ctx = initial_context(model, 4, None, 1, seed=0)
    feats = prompts.features(model, ctx)
    assert feats.shape == (2, model.embed_dim)
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(2))


def test_ctx_init_words_reproduce_the_plain_prompt(model):
    """Context initialised from "a photo of a" in the slots gives the features of the written prompt."""
    prompts = ClassPrompts(model, ["circle"], n_ctx=len(word_ids(model, "a photo of a")), position="end")
    ctx = initial_context(model, 0, "a photo of a", 1, seed=0)
    with torch.no_grad():
        learned = prompts.features(model, ctx)
        written = torch.nn.functional.normalize(model.text_features(model.tokenize(["a photo of a circle."])).float(), dim=-1)
    torch.testing.assert_close(learned, written, atol=1e-5, rtol=1e-5)


def test_linear_weights_cover_attention_and_mlp(model):
    names = [w.name for w in model.linear_weights()]
    assert any(n.startswith("image.") for n in names) and any(n.startswith("text.") for n in names)
    text = [n for n in names if n.startswith("text.")]
    if model.name.startswith("hf:"):
        assert any(n.endswith("q_proj") for n in text) and any(n.endswith("fc1") for n in text)
    else:  # nn.MultiheadAttention keeps q/k/v in in_proj_weight: three entries
        assert any(n.endswith(".attn.q") for n in text) and any(n.endswith(".attn.v") for n in text)
        assert any(n.endswith("c_fc") for n in text) and any(n.endswith("out_proj") for n in text)


@pytest.fixture(params=["openclip-vit", "hf"])
def small_model(request):
    """The random-init tiny models only: SVD of the bundled ResNet's 1024-wide attention pool takes minutes on a busy CPU."""
    return request.getfixturevalue({"openclip-vit": "tiny_model", "hf": "hf_model"}[request.param])


def test_svd_parametrization_reproduces_then_restores(small_model):
    model = small_model
    pixels = torch.rand(2, 3, *model.preprocess_batch([np.zeros((8, 8, 3), np.uint8)]).shape[-2:])
    tokens = model.tokenize(["a red circle"])
    with torch.no_grad():
        image, text = model.image_features(pixels), model.text_features(tokens)
        _, groups, factors, values = decompose(model)
        with singular_values_applied(model, factors, groups, values):
            torch.testing.assert_close(model.image_features(pixels), image, atol=2e-4, rtol=1e-3)
            torch.testing.assert_close(model.text_features(tokens), text, atol=2e-4, rtol=1e-3)
        with singular_values_applied(model, factors, groups, [v * 0.5 for v in values]):
            assert not torch.allclose(model.text_features(tokens), text, atol=1e-3)
        assert torch.equal(model.image_features(pixels), image) and torch.equal(model.text_features(tokens), text)
