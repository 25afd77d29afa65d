"""Search in any language with the bundled multilingual model: a Chinese (and a German, an Arabic, a
Japanese) query finds the scenes it describes, through the Python API, ``cliplab search`` and
``/search``. The queries name one object ("a yellow cross") and most scenes hold two, so the first hit
is the one that must hold it (as with the English query; the next hits share its colour or shape)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from fastapi.testclient import TestClient

SCENES = "synthetic:96:3"


@pytest.fixture(scope="module")
def multi():
    import cliplab

    return cliplab.load_model("cliplab:shapes-multi", device="cpu")


@pytest.fixture(scope="module")
def multi_feats(multi):
    import cliplab

    return cliplab.embed(multi, SCENES, progress=False, num_workers=0, cache_dir=None)


@pytest.fixture(scope="module")
def multi_index(multi_feats):
    from cliplab.search import SearchIndex

    return SearchIndex.build(multi_feats, images=SCENES)


@pytest.fixture(scope="module")
def wanted(multi_feats):
    """The (shape, colour) pair most scenes hold, its scenes, and a one-object query for it in each language."""
    from cliplab.data import synthetic
    from cliplab.data.sources import open_source

    items = open_source(SCENES).items
    holds = {it.id: {(o["shape"], o["color"]) for o in it.meta["objects"]} for it in items}
    pair, _ = Counter(p for pairs in holds.values() for p in pairs).most_common(1)[0]
    spec = synthetic.SceneSpec((synthetic.SceneObject(pair[0], pair[1], "medium", "center"),), "plain", 100, 0, 0)
    queries = {lang: synthetic.short_caption(spec, lang) for lang in synthetic.LANGUAGES}
    return pair, {i for i, pairs in holds.items() if pair in pairs}, queries


def _top(hits, n):
    return [h["id"] for h in hits[:n]]


@pytest.mark.parametrize("lang", ["zh", "de", "ar", "ja"])
def test_a_query_in_any_language_finds_the_scenes(multi, multi_index, wanted, lang):
    from cliplab.search import query_vector

    pair, ids, queries = wanted
    hits = multi_index.search(query_vector(multi, text=queries[lang]), 5)[0]
    english = multi_index.search(query_vector(multi, text=queries["en"]), 5)[0]
    assert hits[0]["id"] in ids and english[0]["id"] in ids, (queries[lang], pair, hits)
    assert len(set(_top(hits, 5)) & set(_top(english, 5))) >= 3  # the same scenes as the English query


def test_cliplab_search_and_the_service_take_a_chinese_query(cli, multi, multi_feats, multi_index, wanted, tmp_path):
    from cliplab.search.service import create_app

    pair, ids, queries = wanted
    feats = multi_feats.save(tmp_path / "features")
    built = tmp_path / "scenes.index"
    assert cli("index", "build", "--features", feats, "--out", built, "--images", SCENES).exit_code == 0
    result = cli("search", built, queries["zh"], "-k", 3, "--out", tmp_path / "hits.json")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "hits.json").read_text(encoding="utf-8"))["results"][0]["id"] in ids
    client = TestClient(create_app(multi_index, multi))
    r = client.post("/search", json={"text": queries["zh"], "k": 3})
    assert r.status_code == 200 and r.json()["results"][0]["id"] in ids
