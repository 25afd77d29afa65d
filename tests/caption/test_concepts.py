"""The concept extractor: top-k against a brute-force sort, cosine similarities, labels from caption words."""

from __future__ import annotations

import numpy as np
import torch

from cliplab.caption.concepts import ConceptExtractor, concept_labels, scene_concepts, top_k


def test_top_k_concepts_match_a_brute_force_sort():
    gen = torch.Generator().manual_seed(0)
    concepts = torch.nn.functional.normalize(torch.randn(33, 16, generator=gen), dim=-1)
    images = torch.nn.functional.normalize(torch.randn(20, 16, generator=gen), dim=-1)
    extractor = ConceptExtractor(concepts, scored=False)
    sims = extractor.similarities(images)
    brute = np.array([[float(np.dot(i, c)) for c in concepts.numpy()] for i in images.numpy()])
    np.testing.assert_allclose(sims.numpy(), brute, atol=1e-6)
    for k in (1, 5, 8, 33):
        indices, values, _ = extractor(images, k)
        order = np.argsort(-brute, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(indices.numpy(), order)
        np.testing.assert_allclose(values.numpy(), np.take_along_axis(brute, order, 1), atol=1e-6)


def test_the_scorer_ranks_by_its_own_scores():
    gen = torch.Generator().manual_seed(1)
    concepts = torch.randn(10, 8, generator=gen)
    images = torch.nn.functional.normalize(torch.randn(6, 8, generator=gen), dim=-1)
    extractor = ConceptExtractor(concepts, hidden=16, scored=True)
    indices, _, logits = extractor(images, 3)
    probs = torch.sigmoid(logits).detach().numpy()
    np.testing.assert_array_equal(indices.numpy(), np.argsort(-probs, axis=1, kind="stable")[:, :3])
    assert top_k(torch.tensor([[0.1, 0.9, 0.5]]), 5)[0].tolist() == [[1, 2, 0]]  # k is capped at the vocabulary


def test_scene_concepts_are_attribute_values_with_their_prompts():
    concepts = scene_concepts()
    assert len(concepts) == 33
    assert concepts["star"] == "a photo of a star" and concepts["red"] == "a red shape" and concepts["top left"] == "a shape at the top left"


def test_concept_labels_take_the_longest_concept_first():
    words = list(scene_concepts())
    caption = "a small red star at the top left and a large blue square at the bottom on a striped background"
    labels = concept_labels([caption, "A RED shape"], words)
    named = {w for w, v in zip(words, labels[0]) if v}
    assert named == {"small", "red", "star", "top left", "large", "blue", "square", "bottom", "striped"}
    assert {w for w, v in zip(words, labels[1]) if v} == {"red"}
