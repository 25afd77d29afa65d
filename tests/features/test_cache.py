"""The content-addressed cache: hits, incremental adds, duplicates, corrupt chunks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cliplab.features import CacheWarning, embed


def chunks(cache_dir):
    return sorted(cache_dir.glob("*/chunk-*.safetensors"))


def test_second_run_does_no_forward_pass(tiny, folder, tmp_path, counter):
    cache = tmp_path / "cache"
    first = embed(tiny, folder, cache_dir=cache, batch_size=8, num_workers=0, progress=False)
    count = counter(tiny)
    second = embed(tiny, folder, cache_dir=cache, batch_size=8, num_workers=0, progress=False)
    assert count.calls == 0
    assert second.stats["cache_hits"] == 24 and second.stats["cache_misses"] == 0
    assert first.stats["cache_misses"] == 24 and first.stats["cache_hits"] == 0
    assert second.ids == first.ids
    np.testing.assert_array_equal(second.X, first.X)


def test_cache_survives_a_new_model_object(make_tiny, folder, tmp_path, counter):
    """The key is the model identity, not the Python object: a reloaded model hits the cache."""
    cache = tmp_path / "cache"
    embed(make_tiny(), folder, cache_dir=cache, num_workers=0, progress=False)
    again = make_tiny()
    count = counter(again)
    embed(again, folder, cache_dir=cache, num_workers=0, progress=False)
    assert count.calls == 0


def test_other_precision_uses_another_namespace(make_tiny, folder, tmp_path, counter):
    cache = tmp_path / "cache"
    embed(make_tiny(), folder, cache_dir=cache, num_workers=0, progress=False)
    bf16 = make_tiny("bf16")
    count = counter(bf16)
    embed(bf16, folder, cache_dir=cache, num_workers=0, progress=False)
    assert count.images == 24
    assert len({p.parent for p in chunks(cache)}) == 2


def test_adding_images_embeds_only_the_new_ones(tiny, folder, tmp_path, counter, add_images):
    cache = tmp_path / "cache"
    before = embed(tiny, folder, cache_dir=cache, batch_size=8, num_workers=1, progress=False)
    add_images(folder, 10, seed=99, start=100)
    count = counter(tiny)
    after = embed(tiny, folder, cache_dir=cache, batch_size=8, num_workers=1, progress=False)
    assert count.images == 10
    assert len(after) == 34 and after.stats["cache_hits"] == 24 and after.stats["cache_misses"] == 10
    old = after.select_ids(before.ids)
    np.testing.assert_array_equal(old.X, before.X)
    clean = embed(tiny, folder, batch_size=8, num_workers=0, progress=False, cache_dir=None)
    np.testing.assert_allclose(after.X, clean.X, atol=1e-6)


def test_identical_bytes_are_encoded_once(tiny, folder, tmp_path, counter):
    files = sorted(folder.rglob("*.jpg"))[:5]
    copy = tmp_path / "copy.jpg"
    copy.write_bytes(files[0].read_bytes())
    count = counter(tiny)
    feats = embed(tiny, [*map(str, files), str(copy)], num_workers=0, progress=False, cache_dir=None)
    assert count.images == 5 and len(feats) == 6
    np.testing.assert_array_equal(feats.X[0], feats.X[5])


def test_chunks_hold_at_most_chunk_size_rows(tiny, folder, tmp_path):
    from safetensors import safe_open

    cache = tmp_path / "cache"
    embed(tiny, folder, cache_dir=cache, batch_size=5, chunk_size=7, num_workers=0, progress=False)
    rows = []
    for path in chunks(cache):
        with safe_open(str(path), framework="numpy") as f:
            rows.append(f.get_slice("embeddings").get_shape()[0])
    assert sorted(rows) == [3, 7, 7, 7]
    assert not list(cache.glob("*/.tmp-*"))


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_corrupt_chunk_is_reported_removed_and_recomputed(tiny, folder, tmp_path, damage, counter):
    cache = tmp_path / "cache"
    clean = embed(tiny, folder, cache_dir=cache, chunk_size=8, num_workers=0, progress=False)
    victim = chunks(cache)[1]
    data = bytearray(victim.read_bytes())
    if damage == "flip":  # header intact, one embedding value changed: only the checksum sees it
        data[len(data) // 2] ^= 0x40  # lands in the embeddings block
        victim.write_bytes(bytes(data))
    elif damage == "truncate":
        victim.write_bytes(bytes(data[: len(data) // 2]))
    else:
        victim.write_bytes(b"this is not a safetensors file")
    count = counter(tiny)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = embed(tiny, folder, cache_dir=cache, chunk_size=8, num_workers=0, progress=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(messages) == 1 and str(victim) in messages[0] and "corrupt" in messages[0]
    assert count.images == 8
    assert again.stats["cache_hits"] == 16 and again.stats["corrupt_chunks"] == [str(victim)]
    np.testing.assert_allclose(again.X, clean.X, atol=1e-6)
    assert len(chunks(cache)) == 3  # the damaged one replaced by a fresh chunk
    count2 = counter(tiny)
    embed(tiny, folder, cache_dir=cache, num_workers=0, progress=False)
    assert count2.calls == 0


def test_stray_files_in_the_cache_are_ignored(tiny, folder, tmp_path, counter):
    cache = tmp_path / "cache"
    embed(tiny, folder, cache_dir=cache, num_workers=0, progress=False)
    ns = chunks(cache)[0].parent
    (ns / ".tmp-chunk-dead.safetensors.123").write_bytes(b"half a chunk")  # a killed writer's leftover
    (ns / "notes.txt").write_text("hello")
    count = counter(tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        embed(tiny, folder, cache_dir=cache, num_workers=0, progress=False)
    assert count.calls == 0


def test_many_small_runs_are_compacted(tiny, tmp_path, counter, add_images):
    folder, cache = tmp_path / "images", tmp_path / "cache"
    add_images(folder, 2)
    for i in range(10):  # ten runs, each adding one image: ten one-row chunks unless compacted
        add_images(folder, 1, seed=100 + i, start=10 + i)
        embed(tiny, folder, cache_dir=cache, chunk_size=64, num_workers=0, progress=False)
    assert len(chunks(cache)) < 8
    count = counter(tiny)
    final = embed(tiny, folder, cache_dir=cache, num_workers=0, progress=False)
    assert count.calls == 0 and len(final) == 12
    clean = embed(tiny, folder, num_workers=0, progress=False, cache_dir=None)
    np.testing.assert_allclose(final.X, clean.X, atol=1e-6)


def test_a_chunk_merged_away_by_another_process_is_found_again(tiny, folder, tmp_path):
    from cliplab.features.cache import ChunkCache

    cache = tmp_path / "cache"
    embed(tiny, folder, cache_dir=cache, chunk_size=3, num_workers=0, progress=False)
    ns = chunks(cache)[0].parent
    reader = ChunkCache(cache, ns.name)  # indexed before the merge
    ChunkCache(cache, ns.name).compact(chunk_rows=64)
    keys = list(reader._index)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        found = reader.get_many(keys)
    assert len(found) == 24
