"""The shipped cliplab:shapes-vit-dense: only an image tower over shapes-vit's text tower, and its
localisation on a few hidden test scenes (bounds under benchmarks/vit_dense.py's figures on 200 scenes)."""

import numpy as np
from safetensors import safe_open

from cliplab.data import synthetic
from cliplab.dense.masked_class import MaskedClassPrompter
from cliplab.evaluate.regions import dense_figures, region_accuracy
from cliplab.models import load_model
from cliplab.models.bundled import BUNDLED

ENTRY = BUNDLED["shapes-vit-dense"]
BOUND_MIOU, BOUND_REGION = 0.20, 0.80  # measured on 200 scenes (0.424, 0.924): see the model card


def test_it_ships_an_image_tower_and_reads_the_text_tower_of_shapes_vit():
    assert ENTRY.weights.stat().st_size <= 30e6 and ENTRY.card.is_file() and ENTRY.base == "shapes-vit"
    with safe_open(str(ENTRY.weights), "pt") as f:
        assert all(k.startswith("visual.") or k == "logit_scale" for k in f.keys())
    dense, vit = load_model("vit-dense", device="cpu"), load_model("vit", device="cpu")
    texts = ["a photo of a star.", "a small red heart at the top left"]
    assert np.array_equal(dense.encode_texts(texts), vit.encode_texts(texts))
    image = [synthetic.scene(0, seed=5, split="test").image]
    assert not np.allclose(dense.encode_images(image), vit.encode_images(image))


def test_it_localises_better_than_the_model_it_was_trained_from():
    dense, vit = load_model("vit-dense", device="cpu"), load_model("vit", device="cpu")
    mine, base = dense_figures(dense, 30, seed=77), dense_figures(vit, 30, seed=77)
    assert mine["miou"] >= BOUND_MIOU and mine["miou"] >= 1.3 * base["miou"]
    assert isinstance(dense.region_prompter, MaskedClassPrompter) and getattr(vit, "region_prompter", None) is None
    assert region_accuracy(dense, 40, seed=77) >= BOUND_REGION
