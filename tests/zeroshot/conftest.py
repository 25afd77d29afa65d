"""A tiny deterministic stand-in for ``cliplab.models.base.Model`` (text side only)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest


class FakeModel:
    """Maps known strings to chosen vectors (L2-normalised on output, like a real Model).

    Unknown strings raise, unless ``hash_unknown`` gives them a seeded random unit vector.
    Every ``encode_texts`` call is recorded in ``calls``.
    """

    def __init__(self, table: dict[str, list[float]] | None = None, logit_scale: float = 10.0,
                 dim: int | None = None, hash_unknown: bool = False):
        self.table = {k: np.asarray(v, np.float32) for k, v in (table or {}).items()}
        self.embed_dim = dim or len(next(iter(self.table.values())))
        self.logit_scale = logit_scale
        self.name = "fake"
        self.hash_unknown = hash_unknown
        self.calls: list[list[str]] = []

    def __repr__(self) -> str:  # stable test ids: pytest-xdist workers must collect the same names
        return f"FakeModel(dim={self.embed_dim})"

    def _vector(self, text: str) -> np.ndarray:
        if text in self.table:
            return self.table[text]
        if not self.hash_unknown:
            raise KeyError(f"FakeModel has no vector for {text!r}")
        return np.random.default_rng(zlib.crc32(text.encode())).standard_normal(self.embed_dim).astype(np.float32)

    def encode_texts(self, texts):
        texts = list(texts)
        self.calls.append(texts)
        v = np.stack([self._vector(t) for t in texts]).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def make_model():
    return FakeModel
