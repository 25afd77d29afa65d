"""``cliplab index build|add``, ``search`` and ``dedup`` end to end on embedded synthetic scenes."""

import json

import pytest


@pytest.fixture(scope="module")
def built(cli, scenes_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "scenes.index"
    result = cli("index", "build", "--features", scenes_dir, "--out", out, "--images", "synthetic:96:3")
    assert result.exit_code == 0, result.output
    assert "indexed 96 vectors (128 dims) as Flat" in result.stdout
    return out


def test_search_writes_the_same_hits_as_the_api(cli, built, tmp_path, clip, scene_index):
    from cliplab.search import query_vector

    result = cli("search", built, "a red star", "-k", "4", "--out", tmp_path / "hits.json")
    assert result.exit_code == 0, result.output
    hits = json.loads((tmp_path / "hits.json").read_text())["results"]
    want = scene_index.search(query_vector(clip, text="a red star"), 4)[0]
    assert [h["id"] for h in hits] == [h["id"] for h in want]
    assert set(hits[0]) >= {"id", "score", "caption", "short_caption", "objects"}


def test_search_with_filter_and_image(cli, built, tmp_path, scenes):
    from cliplab.data.sources import open_source

    result = cli("search", built, "a red star", "-k", "3", "--where", "background = 'plain'", "--out", tmp_path / "f.json")
    assert result.exit_code == 0, result.output
    assert all(h["background"] == "plain" for h in json.loads((tmp_path / "f.json").read_text())["results"])
    item = open_source("synthetic:96:3").items[4]
    (tmp_path / "q.png").write_bytes(item.read_bytes())
    result = cli("search", built, "--image", tmp_path / "q.png", "-k", "1", "--out", tmp_path / "i.json")
    assert json.loads((tmp_path / "i.json").read_text())["results"][0]["id"] == item.id
    composed = cli("search", built, "a blue star", "--image", tmp_path / "q.png", "-k", "2")
    assert composed.exit_code == 0, composed.output


def test_user_errors_are_one_line(cli, built, tmp_path, tiny_model_files):
    result = cli("search", built, "x", "--where", "nope = 1")
    assert result.exit_code == 2 and result.stderr.startswith("error: filter")
    result = cli("search", tmp_path, "x")
    assert result.exit_code == 2 and "not a search index" in result.stderr
    result = cli("search", built, "x", "--model", tiny_model_files["spec"], "--pretrained", tiny_model_files["weights"])
    assert result.exit_code == 2 and "not the model this index was built with" in result.stderr


def test_index_add_grows_the_index(cli, clip, tmp_path, scenes_dir):
    import cliplab

    first = tmp_path / "ix"
    assert cli("index", "build", "--features", scenes_dir, "--out", first).exit_code == 0
    more = cliplab.embed(clip, "synthetic:5:77", progress=False, num_workers=0).save(tmp_path / "more")
    result = cli("index", "add", first, "--features", more)
    assert result.exit_code == 0, result.output and "now holds 101" in result.stdout
    again = cli("index", "add", first, "--features", more)
    assert again.exit_code == 2 and "already in the index" in again.stderr


def test_dedup_reports_groups_and_scores(cli, clip, tmp_path):
    import cliplab
    from cliplab.data.items import ImageItem
    from cliplab.data.sources import ImageSource, open_source

    base = open_source("synthetic:12:21").items
    items = [ImageItem(it.id, it.read_bytes, captions=it.captions, meta={"group": it.id if i < 3 else None})
             for i, it in enumerate(base)]
    items += [ImageItem(f"dup-{i}", base[i].read_bytes, captions=base[i].captions, meta={"group": base[i].id}) for i in range(3)]
    feats = cliplab.embed(clip, ImageSource("dups", items), progress=False, num_workers=0).save(tmp_path / "feats")
    result = cli("dedup", "--features", feats, "--threshold", "0.99", "--truth", "group", "--out", tmp_path / "d.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "d.json").read_text())
    assert sorted(sorted(g) for g in report["groups"]) == sorted(sorted([base[i].id, f"dup-{i}"]) for i in range(3))
    assert report["scores"]["precision"] == 1.0 and report["scores"]["recall"] == 1.0
    assert "pairwise precision 1.0000, recall 1.0000" in result.stdout


def test_a_composed_query_without_source_text_does_not_return_the_query_image(cli, built, tmp_path):
    from cliplab.data.sources import open_source

    item = open_source("synthetic:96:3").items[4]
    (tmp_path / "q.png").write_bytes(item.read_bytes())
    result = cli("search", built, "a blue star", "--image", tmp_path / "q.png", "-k", "5", "--out", tmp_path / "c.json")
    assert result.exit_code == 0, result.output
    hits = json.loads((tmp_path / "c.json").read_text())["results"]
    assert len(hits) == 5 and item.id not in [h["id"] for h in hits]
    alone = cli("search", built, "--image", tmp_path / "q.png", "-k", "1", "--out", tmp_path / "i.json")  # an image query still finds it
    assert alone.exit_code == 0 and json.loads((tmp_path / "i.json").read_text())["results"][0]["id"] == item.id


@pytest.fixture(scope="module")
def vectors_1500(tmp_path_factory):
    """1,500 random 128-dim unit vectors (768 KB as float32) saved as a features folder."""
    from .conftest import features_of, unit_rows

    return features_of(unit_rows(1500, 128, seed=4)).save(tmp_path_factory.mktemp("v1500") / "feats")


@pytest.mark.parametrize("key", ["Foo", "IVF99999,Flat", "PQ7"])
def test_an_index_faiss_cannot_build_is_one_line(cli, vectors_1500, tmp_path, key):
    result = cli("index", "build", "--features", vectors_1500, "--out", tmp_path / "ix", "--key", key)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: --key {key}:") and "Traceback" not in result.output
    assert not (tmp_path / "ix").exists()


def test_a_memory_budget_smaller_than_the_vectors_is_a_warning(cli, vectors_1500, tmp_path):
    result = cli("index", "build", "--features", vectors_1500, "--out", tmp_path / "ix", "--memory-budget", "10KB")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "--memory-budget 10KB cannot hold the 1500 vectors" in warnings[0] and "768 KB" in warnings[0]
    roomy = cli("index", "build", "--features", vectors_1500, "--out", tmp_path / "ix2", "--memory-budget", "1MB")
    assert "warning" not in roomy.stderr


def test_dedup_refuses_a_model_that_did_not_embed_the_features(cli, scenes_dir, tmp_path, tiny_model_files):
    result = cli("dedup", "--features", scenes_dir, "--out", tmp_path / "d.json",
                 "--model", tiny_model_files["spec"], "--pretrained", tiny_model_files["weights"])
    assert result.exit_code == 2, result.output
    assert "is not the model that embedded the features" in result.stderr and "weights" in result.stderr
    assert not (tmp_path / "d.json").exists()


def test_dimension_errors_name_the_index_features_or_model_not_a_head(scene_index, clip):
    import numpy as np

    from cliplab.errors import InputError
    from cliplab.search import query_vector
    from cliplab.search.linking import pooled_embeddings

    with pytest.raises(InputError, match="index holds 128-dim vectors") as raised:
        scene_index.search(np.ones((1, 32), np.float32) / np.sqrt(32))
    with pytest.raises(InputError, match="embedding has 32 dims but the model") as raised_q:
        query_vector(clip, embedding=np.ones(32))
    with pytest.raises(InputError, match="text embeddings have 32 dims but the image embeddings 128") as raised_l:
        pooled_embeddings(np.eye(3, 128, dtype=np.float32), np.eye(3, 32, dtype=np.float32))
    assert not any("head" in str(r.value) for r in (raised, raised_q, raised_l))
