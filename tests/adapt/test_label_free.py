"""Label-free adaptation (NoLA): the confident set per class, the strong view, the estimator's
contract (no labels fitted on, the model left as it was) and ``cliplab adapt --methods nola``.

The quality target (NoLA against zero-shot and plain self-training) is ``benchmarks/label_free.py``.
"""

import csv
import json

import numpy as np
import pytest
import torch

from cliplab.adapt import LabelFree, confident_per_class
from cliplab.adapt.label_free import default_k, position_parameters, strong_view, tuned_parameters
from cliplab.errors import InputError


def test_confident_set_takes_the_top_k_predicted_rows_of_each_class():
    probs = np.array([
        [0.9, 0.05, 0.05],  # 0: class 0, most confident
        [0.6, 0.3, 0.1],    # 1: class 0
        [0.7, 0.2, 0.1],    # 2: class 0, second
        [0.1, 0.8, 0.1],    # 3: class 1
        [0.2, 0.7, 0.1],    # 4: class 1
        [0.5, 0.1, 0.4],    # 5: class 0 first, class 2 second
        [0.45, 0.2, 0.35],  # 6: class 0 first, class 2 second
    ])  # fmt: skip
    rows, labels = confident_per_class(probs, k=2)
    # class 0: rows 0 and 2 (the two highest of the rows predicted 0); class 1: rows 3 and 4;
    # class 2 is nobody's first choice: its two best among rows whose second choice it is, 5 and 6
    assert rows.tolist() == [0, 2, 3, 4, 5, 6]
    assert labels.tolist() == [0, 0, 1, 1, 2, 2]
    rows, labels = confident_per_class(probs, k=1)
    assert dict(zip(rows.tolist(), labels.tolist())) == {0: 0, 3: 1, 5: 2}


def test_confident_set_keeps_a_row_once():
    # class 1 is nobody's first choice and row 0 (already taken by class 0) is its best second choice
    probs = np.array([[0.6, 0.4, 0.0], [0.5, 0.2, 0.3], [0.1, 0.1, 0.8]])
    rows, labels = confident_per_class(probs, k=3)
    assert rows.tolist() == [0, 1, 2] and labels.tolist() == [0, 0, 2]
    with pytest.raises(InputError):
        confident_per_class(np.zeros(3), k=1)


def test_k_is_nolas_find_k():
    assert default_k(1000, 10) == 20  # floor(0.2 * 1000 / 10)
    assert default_k(100, 10) == 16  # at least 16
    assert default_k(600, 3, fraction=0.5) == 100


def test_strong_view_is_seeded_and_keeps_the_shape():
    pixels = torch.randn(4, 3, 16, 16)
    a = strong_view(pixels, torch.Generator().manual_seed(0))
    b = strong_view(pixels, torch.Generator().manual_seed(0))
    assert a.shape == pixels.shape and torch.equal(a, b) and not torch.equal(a, pixels)
    assert strong_view(pixels, torch.Generator().manual_seed(0), "crop").shape == pixels.shape


def test_the_default_strong_view_keeps_the_object_where_it_is_and_as_big():
    # size and position labels must survive the strong view: a bright square keeps its box (+-1 px)
    gen = torch.Generator().manual_seed(3)
    for top, left, side in [(2, 3, 6), (12, 20, 9), (22, 5, 4)]:
        pixels = torch.zeros(4, 3, 32, 32)
        pixels[:, :, top : top + side, left : left + side] = 3.0
        view = strong_view(pixels, gen).mean(1)
        for v in view:
            inside, outside = v[top : top + side, left : left + side].mean(), v[0 if top > 5 else 31, 0 if left > 5 else 31]
            rows, cols = torch.nonzero(v > (inside + outside) / 2, as_tuple=True)
            box = (rows.min().item(), cols.min().item(), rows.max().item() + 1, cols.max().item() + 1)
            assert all(abs(a - b) <= 1 for a, b in zip(box, (top, left, top + side, left + side))), box


def test_the_linear_labeller_fills_classes_missing_from_the_confident_set_with_zero(tiny_model):
    head = LabelFree(tiny_model, ["a", "b", "c"])
    head.classes_ = np.array(["a", "b", "c"])
    feats = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]], np.float32)
    head.labeller_ = head._train_labeller(feats, np.arange(4), np.array([0, 0, 2, 2]), 3)
    proba = head.labeller_proba(feats)
    assert proba.shape == (4, 3) and np.all(proba[:, 1] == 0) and np.allclose(proba.sum(1), 1)
    assert proba.argmax(1).tolist() == [0, 0, 2, 2]


def test_the_student_tunes_norms_and_the_positional_embeddings(tiny_model, hf_model):
    # the open_clip ViT's input positional embedding; the transformers tower's embedding table
    assert [name for name, _ in position_parameters(tiny_model)] == ["positional_embedding"]
    assert [name for name, _ in position_parameters(hf_model)] == ["embeddings.position_embedding.weight"]
    norms_only = tuned_parameters(tiny_model, "norms")
    both = [name for name, _ in tuned_parameters(tiny_model)]
    assert both == [name for name, _ in norms_only] + ["positional_embedding"]
    assert all(p.ndim == 1 for _, p in norms_only) and any(name.endswith("ln_post.weight") for name, _ in norms_only)


@pytest.fixture(scope="module")
def scenes():
    from cliplab.data import synthetic

    records = synthetic.generate(36, seed=5, split="test", image_size=32, max_objects=1)
    return [r.image for r in records], np.array([r.objects[0]["size"] for r in records])


def test_fit_uses_no_labels_predicts_names_and_leaves_the_model_as_it_was(tiny_model, scenes):
    images, y = scenes
    before = {k: v.clone() for k, v in tiny_model.torch_module.state_dict().items()}
    head = LabelFree(tiny_model, ["small", "medium", "large"], templates=["a photo of a {c} shape."],
                     descriptors={"small": ["a tiny shape"], "large": ["a big shape"]}, labeller_epochs=3, epochs=1,
                     batch_size=16, k=4).fit(images)  # fmt: skip
    assert head.stage_accuracy_ is None
    after = tiny_model.torch_module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the tuned norms live in the head
    assert not all(torch.equal(v, p.detach()) for v, (_, p) in zip(head.tuned_values_, tuned_parameters(tiny_model)))
    pred = head.predict(images)
    assert set(pred.tolist()) <= {"small", "medium", "large"} and len(pred) == len(images)
    proba = head.predict_proba(images[:5])
    assert proba.shape == (5, 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert len(head.pseudo_labels_) == len(images) and head.confident_rows_.size <= 3 * 4
    # the same seed gives the same head; labels given for evaluation change nothing that is fitted
    again = LabelFree(**head.get_params()).fit(images, y_eval=y)
    assert np.array_equal(again.head_, head.head_) and np.array_equal(again.pseudo_labels_, head.pseudo_labels_)
    stages = again.stage_accuracy_
    assert {"zero_shot", "descriptor_ensemble", "confident_set", "labeller", "pseudo_labels", "student"} <= set(stages)
    assert stages["student"] == pytest.approx(float((again.predict(images) == y).mean()))


def test_an_ssl_encoder_feeds_the_labeller_and_bad_input_is_refused(tiny_model, hf_model, scenes):
    images, _ = scenes
    head = LabelFree(tiny_model, ["small", "medium", "large"], ssl_model=hf_model, labeller="mlp", labeller_epochs=2, epochs=1, k=4).fit(images)
    assert head.labeller_[0].in_features == hf_model.embed_dim
    proba = head.labeller_proba(hf_model.encode_images(images[:3]))
    assert proba.shape == (3, 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    with pytest.raises(InputError, match="not embeddings"):
        LabelFree(tiny_model, ["a", "b"]).fit(np.zeros((4, 32), np.float32))
    with pytest.raises(InputError, match="y_eval"):
        LabelFree(tiny_model, ["small", "large"], epochs=1, labeller_epochs=1).fit(images, y_eval=["huge"] * len(images))
    with pytest.raises(InputError, match="descriptors"):
        LabelFree(tiny_model, ["small", "large"], descriptors={"red": ["x"]}).fit(images)


@pytest.fixture
def unlabelled(tmp_path, scenes, tiny_model_files):
    """A folder of the scenes without labels, and the tiny model's options."""
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for i, im in enumerate(scenes[0]):
        im.save(folder / f"img{i:02d}.png")
    return folder, ["--model", tiny_model_files["spec"], "--pretrained", tiny_model_files["weights"]]


def test_cli_adapt_nola_on_an_unlabelled_folder(cli, unlabelled, tmp_path, scenes):
    images, _ = scenes
    folder, model = unlabelled
    out = tmp_path / "run"
    result = cli("adapt", "--methods", "nola", "--train", folder, "--classnames", "small,medium,large", "--epochs", "1",
                 "--out", out, "--no-progress", *model)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "confident set" in result.stdout
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == len(images) and {r["prediction"] for r in rows} <= {"small", "medium", "large"}
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == "nola" and results["n_images"] == len(images) and results["stage_accuracy"] is None
    result = cli("adapt", "--methods", "nola", "--train", folder, "--out", tmp_path / "x", *model)
    assert result.exit_code == 2 and "--classnames" in result.stderr
    result = cli("adapt", "--methods", "nola", "--train", folder, "--classnames", "a,b", "--ssl-tokens", "grid2", "--out", tmp_path / "x", *model)
    assert result.exit_code == 2 and "--ssl-tokens applies with --ssl-layers" in result.stderr
    result = cli("adapt", "--methods", "nola,gda", "--train", folder, "--classnames", "a,b", "--out", tmp_path / "y", *model)
    assert result.exit_code == 2 and "alone" in result.stderr


def test_cli_nola_reads_the_ssl_encoders_patch_grid_with_ssl_layers(cli, unlabelled, tmp_path):
    folder, model = unlabelled
    result = cli("adapt", "--methods", "nola", "--train", folder, "--classnames", "small,medium,large", "--epochs", "1", "--ssl-model",
                 "cliplab:shapes-vit", "--ssl-layers", "-1", "--ssl-tokens", "grid2", "--out", tmp_path / "run", "--no-progress", *model)  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    from cliplab.models import load_model

    assert results["ssl_model"] == load_model("cliplab:shapes-vit", device="cpu").multilevel("-1", tokens="grid2").name != "cliplab:shapes-vit"
