"""CoOp, CoCoOp and CLIP-SVD on tiny models: a few steps each (the quality check is test_trained_heads_beat_zero_shot.py)."""

import numpy as np
import pytest
import torch

import cliplab.adapt as adapt


def features_and_labels(model, n_per_class=6, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 255, size=(20, 20, 3), dtype=np.uint8) for _ in range(n_per_class * n_classes)]
    for i, im in enumerate(images):  # a class-dependent colour cast so the classes differ
        im[..., i % n_classes] = 255
    y = np.array([["circle", "square", "star"][i % n_classes] for i in range(len(images))])
    return images, model.encode_images(images), y


@pytest.mark.parametrize("fixture", ["tiny_model", "hf_model"])
def test_coop_trains_context_and_round_trips(request, fixture, tmp_path):
    model = request.getfixturevalue(fixture)
    _, X, y = features_and_labels(model)
    head = adapt.CoOp(model, n_ctx=2, epochs=3, lr=0.05, batch_size=8, val_fraction=0.3).fit(X, y)
    assert head.ctx_.shape == (1, 2, model.token_embedding_module().weight.shape[1])
    assert head.text_weights_.shape == (3, model.embed_dim)
    assert head.predict(X).shape == (len(X),) and set(head.predict(X)) <= {"circle", "square", "star"}
    head.save(tmp_path / "coop.cliplab")
    back = adapt.load(tmp_path / "coop.cliplab", model=model)
    assert np.array_equal(back.decision_function(X), head.decision_function(X))


def test_coop_class_specific_trains_each_class_context(tiny_model):
    from cliplab.adapt.prompt import initial_context

    _, X, y = features_and_labels(tiny_model, n_per_class=1)
    with pytest.warns(UserWarning, match="no validation rows"):  # one shot: the last epoch is kept
        head = adapt.CoOp(tiny_model, n_ctx=2, class_specific=True, class_token_position="middle", epochs=2, lr=0.5).fit(X, y)
    start = initial_context(tiny_model, 2, None, 3, seed=0).numpy()
    assert head.ctx_.shape == start.shape and head.best_epoch_ == 2
    assert not np.allclose(head.ctx_, start)
    assert not np.allclose(head.ctx_[0] - start[0], head.ctx_[1] - start[1])  # each class its own update


def test_cocoop_predicts_per_image_and_round_trips(tiny_model, tmp_path):
    _, X, y = features_and_labels(tiny_model, n_per_class=4)
    head = adapt.CoCoOp(tiny_model, epochs=1, batch_size=4).fit(X, y)
    scores = head.decision_function(X)
    assert scores.shape == (len(X), 3)
    head.save(tmp_path / "cocoop.cliplab")
    with pytest.raises(adapt.io.InputError, match="pass model"):
        adapt.load(tmp_path / "cocoop.cliplab")
    back = adapt.load(tmp_path / "cocoop.cliplab", model=tiny_model)
    assert np.array_equal(back.decision_function(X), scores)


def test_clip_svd_tunes_only_singular_values(tiny_model, tmp_path):
    images, _, y = features_and_labels(tiny_model, n_per_class=4)
    before = {k: v.clone() for k, v in tiny_model.torch_module.state_dict().items()}
    head = adapt.CLIPSVD(tiny_model, epochs=2, batch_size=6, lr=1e-2).fit(images, y)
    after = tiny_model.torch_module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the model is left as it was
    assert all(p.requires_grad for p in tiny_model.torch_module.parameters())
    assert head.singular_values_.shape == (int(head.layer_sizes_.sum()),)
    assert len(head.layer_names_) == len(tiny_model.linear_weights())
    scores = head.decision_function(images)
    assert scores.shape == (len(images), 3)
    head.save(tmp_path / "svd.cliplab")
    assert np.array_equal(adapt.load(tmp_path / "svd.cliplab", model=tiny_model).decision_function(images), scores)
