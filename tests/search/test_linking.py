"""Near-duplicate linking: planted duplicates are found, clustering methods differ as they should."""

import io

import numpy as np
import pytest
from PIL import Image

from cliplab.data.items import ImageItem
from cliplab.data.sources import ImageSource, open_source
from cliplab.errors import InputError
from cliplab.search.linking import link, pair_scores, pooled_embeddings, similar_pairs
from cliplab.search.queries import normalise


def _reencoded(data: bytes, quality: int, scale: float) -> bytes:
    im = Image.open(io.BytesIO(data)).convert("RGB")
    im = im.resize((int(im.width * scale), int(im.height * scale)), Image.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_planted_near_duplicates_are_found_exactly(clip):
    import cliplab

    originals = open_source("synthetic:40:11").items
    items, truth = [], []
    for i, it in enumerate(originals):
        items.append(ImageItem(it.id, it.read_bytes, captions=it.captions))
        truth.append(i if i < 8 else None)
    for i, it in enumerate(originals[:8]):  # copies: re-encoded as JPEG and resized, same caption
        copy = _reencoded(it.read_bytes(), quality=92, scale=1.25)
        items.append(ImageItem(f"copy-{i}", lambda data=copy: data, captions=it.captions))
        truth.append(i)
    feats = cliplab.embed(clip, ImageSource("planted", items), progress=False, num_workers=0)
    text = normalise(clip.encode_texts([c[0] for c in feats.captions]))
    for method in ("components", "agglomerative"):
        linkage = link(pooled_embeddings(feats.X, text), threshold=0.97, method=method)
        scores = pair_scores(linkage.labels.tolist(), truth)
        assert scores["precision"] == 1.0 and scores["recall"] == 1.0, (method, scores)
        assert sorted(len(g) for g in linkage.groups) == [2] * 8


def test_components_chain_but_average_linkage_does_not():
    # a-b 0.97 and b-c 0.96 alike, a-c only 0.88: single linkage joins all three; average linkage
    # merges a-b first, then keeps c apart ((0.04 + 0.12) / 2 > 1 - 0.95)
    a = np.array([1.0, 0.0, 0.0])
    b = np.array([0.97, np.sqrt(1 - 0.97**2), 0.0])
    cos_bc, cos_ac = 0.96, 0.88
    c1 = (cos_bc - cos_ac * b[0]) / b[1]
    c = np.array([cos_ac, c1, np.sqrt(1 - cos_ac**2 - c1**2)])
    X = np.stack([a, b, c]).astype(np.float32)
    pairs, scores = similar_pairs(X, 0.95)
    assert pairs.tolist() == [[0, 1], [1, 2]] and np.allclose(scores, [0.97, 0.96], atol=1e-5)
    assert link(X, 0.95, "components").groups == [[0, 1, 2]]
    assert link(X, 0.95, "agglomerative").groups == [[0, 1]]


def test_pair_scores_by_hand():
    # predicted {0,1,2} {3}; truth {0,1} {2,3}: predicted pairs 3, true pairs 2, shared 1
    s = pair_scores([0, 0, 0, 1], ["x", "x", "y", "y"])
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 2)
    assert s["f1"] == pytest.approx(0.4)
    assert pair_scores([0, 1], [None, None])["precision"] == 1.0  # nothing linked, nothing to link


def test_bad_linking_arguments():
    X = np.eye(3, dtype=np.float32)
    with pytest.raises(InputError, match="method"):
        link(X, 0.9, "kmeans")
    with pytest.raises(InputError, match="one text per record"):
        pooled_embeddings(X, X[:2])
