"""The index against brute force: exact results, tuned recall, filters, incremental add, files."""

import numpy as np
import pytest

import cliplab.search.index as index_module
from cliplab.errors import InputError
from cliplab.search import SearchIndex
from cliplab.search.tuning import exact_neighbours, recall_at_k

from .conftest import features_of, unit_rows


def brute_force(X, q, k, allowed=None):
    scores = X @ q
    rows = np.arange(len(X)) if allowed is None else np.asarray(allowed)
    order = rows[np.argsort(-scores[rows], kind="stable")][:k]
    return order, scores[order]


def test_exact_index_returns_brute_force_top_k_with_scores():
    X = unit_rows(500, 16, seed=1)
    index = SearchIndex.build(features_of(X))
    assert index.info["key"] == "Flat"
    q = unit_rows(1, 16, seed=2)[0]
    hits = index.search(q, k=7)[0]
    rows, scores = brute_force(X, q, 7)
    assert [h["id"] for h in hits] == [f"v{r}" for r in rows]
    np.testing.assert_allclose([h["score"] for h in hits], scores, rtol=1e-5)
    assert all(a["score"] >= b["score"] for a, b in zip(hits, hits[1:]))


@pytest.mark.parametrize("key", [None, "IVF64,Flat"])  # None: the automatic choice (HNSW at this size)
def test_effort_is_tuned_to_reach_the_target_recall_on_new_queries(key):
    data = unit_rows(12_200, 32, seed=3, clusters=40)
    X, queries = data[:12_000], data[12_000:]
    index = SearchIndex.build(features_of(X), key=key, target_recall=0.9)
    assert index.info["kind"] in ({"hnsw"} if key is None else {"custom"})
    assert index.info["recall_at_10"] >= 0.9
    # an independent check: recall on queries that were never in the collection
    assert recall_at_k(index.index.search(queries, 10)[1], exact_neighbours(X, queries, 10)) >= 0.85


def test_filters_keep_only_matching_rows_and_rank_them_like_brute_force(monkeypatch):
    X = unit_rows(3000, 16, seed=5)
    labels = ["cat" if i % 7 == 0 else "dog" for i in range(len(X))]
    index = SearchIndex.build(features_of(X, labels=labels), key="IVF16,Flat", target_recall=1.0)
    q = unit_rows(1, 16, seed=6)[0]
    cats = [i for i, lab in enumerate(labels) if lab == "cat"]
    want, _ = brute_force(X, q, 5, cats)
    assert [h["id"] for h in index.search(q, 5, where="label = 'cat'")[0]] == [f"v{r}" for r in want]
    monkeypatch.setattr(index_module, "EXACT_FILTER_BELOW", 0)  # the FAISS selector path
    hits = index.search(q, 5, where="label = 'cat'")[0]
    assert all(h["label"] == "cat" for h in hits) and len(hits) == 5
    assert index.search(q, 5, where="label = 'bird'") == [[]]


def test_filters_cannot_change_the_metadata():
    index = SearchIndex.build(features_of(unit_rows(20, 8), labels=["a"] * 20))
    q = unit_rows(1, 8, seed=9)
    for bad in ["1; DELETE FROM items", "label = 'a' AND (SELECT 1 FROM nowhere)", "load_extension('x') = 1"]:
        with pytest.raises(InputError):
            index.search(q, 3, where=bad)
    assert len(index.metadata) == 20 and len(index.search(q, 30, where="label = 'a'")[0]) == 20


def test_incremental_add_gives_the_same_results_as_one_build():
    X = unit_rows(800, 16, seed=7)
    whole = SearchIndex.build(features_of(X))
    part = SearchIndex.build(features_of(X[:500]))
    rest = features_of(X[500:])
    rest.ids = [f"v{i}" for i in range(500, 800)]
    assert part.add(rest) == 300
    q = unit_rows(3, 16, seed=8)
    assert part.search(q, 10) == whole.search(q, 10)
    with pytest.raises(InputError, match="already in the index"):
        part.add(rest)
    with pytest.raises(InputError, match="embedded with"):
        part.add(features_of(X[:2], prefix="new", identity="another-model"))


def test_many_shards_build_like_one(tmp_path):
    X = unit_rows(12_000, 16, seed=10, clusters=20)
    shards = []
    for s, (a, b) in enumerate([(0, 5000), (5000, 12_000)]):
        f = features_of(X[a:b])
        f.ids = [f"v{i}" for i in range(a, b)]
        shards.append(f.save(tmp_path / f"shard{s}"))
    index = SearchIndex.build(shards, key="IVF32,Flat", target_recall=1.0)
    assert len(index) == 12_000 and index.info["recall_at_10"] == 1.0
    q = unit_rows(1, 16, seed=11)[0]
    rows, _ = brute_force(X, q, 5)
    assert [h["id"] for h in index.search(q, 5)[0]] == [f"v{r}" for r in rows]


def test_save_load_and_memory_mapped_load(tmp_path):
    X = unit_rows(2000, 16, seed=12)
    labels = [str(i % 3) for i in range(2000)]
    index = SearchIndex.build(features_of(X, labels=labels), key="IVF16,Flat")
    q = unit_rows(2, 16, seed=13)
    want = index.search(q, 8, where="label = '1'")
    index.save(tmp_path / "ix")
    loaded = SearchIndex.load(tmp_path / "ix")
    assert loaded.search(q, 8, where="label = '1'") == want and loaded.info["effort"] == index.info["effort"]
    mapped = SearchIndex.load(tmp_path / "ix", mmap=True)
    assert mapped.search(q, 8, where="label = '1'") == want
    with pytest.raises(InputError, match="memory-mapped"):
        mapped.add(features_of(X[:1], prefix="n"))
    # loaded read-write: add, save in place, load again
    more = features_of(unit_rows(10, 16, seed=14), prefix="extra")
    loaded.add(more)
    loaded.save(tmp_path / "ix")
    again = SearchIndex.load(tmp_path / "ix")
    assert len(again) == 2010 and again.search(more.X[:1], 1)[0][0]["id"] == "extra0"


def test_loading_something_else_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not a search index"):
        SearchIndex.load(tmp_path)


def test_effort_is_tuned_to_a_lower_confidence_bound():
    import numpy as np

    from cliplab.search.tuning import recall_lower_bound

    sure = np.ones(100)
    assert recall_lower_bound(sure) == 1.0
    noisy = np.array([1.0, 0.8] * 50)  # mean 0.9, sd ~0.1005: bound = 0.9 - 1.645 * 0.01005
    assert abs(recall_lower_bound(noisy) - (0.9 - 1.645 * noisy.std(ddof=1) / 10)) < 1e-12
    assert recall_lower_bound(noisy) < 0.9


def test_shards_of_one_model_at_any_precision_share_an_index_and_another_model_is_named():
    X = unit_rows(40, 16, seed=5)
    ident = "openclip:x|sha256=aaa|arch=1|pre=224"
    index = SearchIndex.build(features_of(X[:20], "a", identity=ident + "|bf16"))
    assert index.add(features_of(X[20:30], "b", identity=ident)) == 10
    assert index.add(features_of(X[30:], "c", identity=ident + "|int8")) == 10
    with pytest.raises(InputError, match=r"\(weights differ\)"):
        index.add(features_of(X[:5], "d", identity="openclip:x|sha256=bbb|arch=1|pre=224"))
