"""Inputs a head cannot use are refused with one line saying what to pass (never a traceback)."""

import numpy as np
import pytest

import cliplab.adapt as adapt
from cliplab.errors import CliplabError

from .test_trained_heads import features_and_labels


@pytest.mark.parametrize("make", [
    lambda m: adapt.CoOp(m, n_ctx=2, epochs=1),
    lambda m: adapt.CoCoOp(m, epochs=1),
    lambda m: adapt.CLIPSVD(m, epochs=1),
])  # fmt: skip
def test_prompt_heads_refuse_integer_labels_without_classnames(tiny_model, make):
    images, X, y = features_and_labels(tiny_model, n_per_class=2)
    codes = np.unique(y, return_inverse=True)[1]  # 0, 1, 2: "a photo of a 0." would name nothing
    head = make(tiny_model)
    data = images if isinstance(head, adapt.CLIPSVD) else X
    with pytest.raises(CliplabError, match="classnames=") as caught:
        head.fit(data, codes)
    assert "\n" not in str(caught.value) and type(head).__name__ in str(caught.value)
    head.set_params(classnames=["circle", "square", "star"]).fit(data, codes)
    assert head.prompt_names_ == ["circle", "square", "star"]


def test_string_labels_still_name_their_classes(tiny_model):
    _, X, y = features_and_labels(tiny_model, n_per_class=2)
    assert adapt.CoOp(tiny_model, n_ctx=2, epochs=1).fit(X, y).prompt_names_ == ["circle", "square", "star"]


@pytest.mark.parametrize("wrapper", [adapt.ConformalClassifier, adapt.TemperatureScaling])
def test_wrappers_refuse_an_unfitted_head(toy, wrapper):
    with pytest.raises(CliplabError, match="GDA is not fitted; call head.fit"):
        wrapper(adapt.GDA()).fit(toy["X_val"], toy["y_val"])


def test_clip_svd_says_it_needs_images_not_embeddings(tiny_model):
    _, X, y = features_and_labels(tiny_model, n_per_class=2)
    with pytest.raises(CliplabError, match="takes images, not embeddings"):
        adapt.CLIPSVD(tiny_model, epochs=1).fit(X, y)
