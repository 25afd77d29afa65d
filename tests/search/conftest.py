"""Fixtures for the search tests: the bundled model, embedded synthetic scenes, a built index."""

from __future__ import annotations

import numpy as np
import pytest

SCENES = "synthetic:96:3"


@pytest.fixture(scope="session")
def clip():
    """The bundled cliplab:shapes-tiny (trained on synthetic scenes, so text queries mean something)."""
    import cliplab

    return cliplab.load_model("tiny", device="cpu")


@pytest.fixture(scope="session")
def scenes(clip):
    """96 embedded synthetic scenes with captions and metadata (objects, short_caption, background)."""
    import cliplab

    return cliplab.embed(clip, SCENES, progress=False, num_workers=0)


@pytest.fixture(scope="session")
def scenes_dir(scenes, tmp_path_factory):
    return scenes.save(tmp_path_factory.mktemp("scenes") / "features")


@pytest.fixture(scope="session")
def scene_index(scenes):
    from cliplab.search import SearchIndex

    return SearchIndex.build(scenes, images=SCENES)


def unit_rows(n: int, d: int, seed: int = 0, clusters: int = 0) -> np.ndarray:
    """``n`` random unit vectors (around ``clusters`` centres when given)."""
    rng = np.random.default_rng(seed)
    if clusters:
        centres = rng.standard_normal((clusters, d))
        x = centres[rng.integers(0, clusters, n)] + 0.4 * rng.standard_normal((n, d))
    else:
        x = rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def features_of(X: np.ndarray, prefix: str = "v", labels=None, model: str = "m", identity: str = "m-1"):
    from cliplab.features import Features

    return Features(X=X, ids=[f"{prefix}{i}" for i in range(len(X))], labels=labels, model=model, identity=identity)
