"""The concept extractor (LightCap section 3, adapted offline as wave3_methods.md §10a(5) says): a
vocabulary of attribute-level concepts embedded by the model's text tower, scored against the image
embedding by cosine similarity, optionally rescored by a small MLP trained multi-label (BCE) from the
words of the training captions; the top K concepts go on to the modulator and the decoder.

The vocabulary stays at the attribute level (a colour, a shape, a size, a position, a background),
never whole caption phrases, so it cannot leak a test caption's wording (§10a(6)).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from cliplab.errors import InputError

Tensor = torch.Tensor


def scene_concepts() -> dict[str, str]:
    """The synthetic scenes' attribute values -> the prompt each is embedded with: 8 shapes, 8 colours,
    3 sizes, 9 positions, 5 backgrounds (33 concepts), prompted as cliplab's zero-shot prompts are."""
    from cliplab.data import synthetic

    concepts: dict[str, str] = {}
    for attribute in synthetic.ATTRIBUTES:
        for value, prompts in synthetic.attribute_prompts(attribute).items():
            concepts[value] = prompts[0]
    return concepts


def as_concepts(concepts: Sequence[str] | dict[str, str] | None) -> dict[str, str]:
    """Concept word -> the text embedded for it: the scene concepts by default; a list of words is embedded as written."""
    if concepts is None:
        return scene_concepts()
    found = dict(concepts) if isinstance(concepts, dict) else {str(c): str(c) for c in concepts}
    found = {word.strip().lower(): text for word, text in found.items() if word.strip()}
    if len(found) < 2:
        raise InputError(f"the concept vocabulary needs at least 2 words, got {len(found)}")
    return found


def concept_labels(captions: Sequence[str], words: Sequence[str]) -> np.ndarray:
    """(N, V) float32: 1 where caption ``i`` says concept ``words[j]`` as whole words. Longer concepts
    match first and take their words, so "top left" in a caption does not also count as "top"/"left"."""
    order = sorted(range(len(words)), key=lambda j: -len(words[j]))
    patterns = [(j, re.compile(rf"(?<![\w-]){re.escape(words[j])}(?![\w-])")) for j in order]
    out = np.zeros((len(captions), len(words)), np.float32)
    for i, caption in enumerate(captions):
        text = caption.lower()
        for j, pattern in patterns:
            if pattern.search(text):
                out[i, j] = 1.0
                text = pattern.sub(" | ", text)
    return out


def top_k(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """(indices (N, k), scores (N, k)) of the ``k`` highest scores per row, best first."""
    k = min(int(k), scores.shape[-1])
    values, indices = torch.topk(scores, k, dim=-1, largest=True, sorted=True)
    return indices, values


class ConceptExtractor(nn.Module):
    """Cosine similarities of image embeddings to the concept embeddings, and an MLP that rescores
    them as multi-label logits (``scored``: use the MLP's logits to rank; else the raw similarities)."""

    def __init__(self, concept_embeddings: Tensor, hidden: int = 128, scored: bool = True) -> None:
        super().__init__()
        n = concept_embeddings.shape[0]
        self.register_buffer("embeddings", torch.nn.functional.normalize(concept_embeddings.float(), dim=-1))
        self.scored = scored
        self.scorer = nn.Sequential(nn.Linear(n, hidden), nn.GELU(), nn.Linear(hidden, n))

    def similarities(self, image_embeddings: Tensor) -> Tensor:
        """(N, V) cosine similarities (rows and concepts are unit vectors)."""
        return image_embeddings @ self.embeddings.to(image_embeddings.dtype).T

    def logits(self, image_embeddings: Tensor) -> Tensor:
        """(N, V) multi-label logits of the MLP over the similarities (scaled to the model's logit range)."""
        return self.scorer(self.similarities(image_embeddings) * 10.0)

    def forward(self, image_embeddings: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
        """(top-k indices, their scores in [0, 1] or cosines, the MLP logits of every concept)."""
        logits = self.logits(image_embeddings)
        ranking = torch.sigmoid(logits) if self.scored else self.similarities(image_embeddings)
        indices, values = top_k(ranking, k)
        return indices, values, logits
