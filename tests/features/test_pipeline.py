"""embed(): sources, bad files, alignment with skipped items, workers, reduced-scale JPEG decoding."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cliplab.data.items import ImageItem
from cliplab.data.sources import ImageSource, open_source
from cliplab.errors import NothingEmbeddedError
from cliplab.features import Features, embed
from cliplab.data.images import decode_image
from cliplab.features.pipeline import default_num_workers, draft_side, skip_summary


def quiet_embed(*args, **kw) -> tuple[Features, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        feats = embed(*args, progress=False, **{"cache_dir": None, **kw})
    return feats, [str(w.message) for w in caught]


def add_bad_files(folder: Path) -> dict[str, str]:
    good = next(folder.rglob("*.jpg")).read_bytes()
    bad = {
        folder / "cat" / "truncated1.jpg": good[: len(good) // 2],
        folder / "dog" / "truncated2.jpg": good[: len(good) // 3],
        folder / "cat" / "empty.jpg": b"",
        folder / "dog" / "notes.png": b"these are not pixels\n" * 10,
    }
    for path, data in bad.items():
        path.write_bytes(data)
    return {str(p): r for p, r in zip(bad, ["truncated", "truncated", "empty file", "not an image"])}


def test_embeddings_match_the_model(tiny, folder):
    feats = embed(tiny, folder, batch_size=5, num_workers=0, progress=False, cache_dir=None)
    assert feats.X.dtype == np.float32 and feats.X.shape == (24, 32)
    np.testing.assert_allclose(np.linalg.norm(feats.X, axis=1), 1.0, atol=1e-5)
    direct = tiny.encode_images(feats.ids, batch_size=5)
    np.testing.assert_allclose(feats.X, direct, atol=1e-5)
    assert feats.classes == ["cat", "dog"]
    assert feats.labels == [Path(i).parent.name for i in feats.ids]
    assert feats.model == "test:tiny" and feats.identity == tiny.identity
    assert feats.stats["cache_misses"] == 24 and feats.stats["images_per_s"] > 0


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_processes_give_the_same_result(tiny, folder, workers):
    ref = embed(tiny, folder, batch_size=7, num_workers=0, progress=False, cache_dir=None)
    par = embed(tiny, folder, batch_size=7, num_workers=workers, progress=False, cache_dir=None)
    assert par.ids == ref.ids and par.stats["num_workers"] == workers
    np.testing.assert_allclose(par.X, ref.X, atol=1e-6)


@pytest.mark.parametrize("workers", [0, 1])
def test_bad_files_are_skipped_listed_and_summarised(tiny, folder, tmp_path, workers):
    expected = add_bad_files(folder)
    feats, messages = quiet_embed(tiny, folder, batch_size=4, num_workers=workers, cache_dir=tmp_path / "c")
    assert len(feats) == 24
    assert {s.id: s.reason for s in feats.skipped} == expected
    assert not set(expected) & set(feats.ids)
    assert feats.labels == [Path(i).parent.name for i in feats.ids]  # still aligned with the kept rows
    summary = [m for m in messages if "skipped" in m]
    assert summary == ["4 of 28 images skipped (2 truncated, 1 empty file, 1 not an image); the list is in Features.skipped"]
    clean = embed(tiny, feats.ids, batch_size=4, num_workers=0, progress=False, cache_dir=None)
    np.testing.assert_allclose(feats.X, clean.X, atol=1e-6)


def test_unreadable_and_missing_paths_are_skipped(tiny, folder, tmp_path):
    files = [str(p) for p in sorted(folder.rglob("*.jpg"))[:3]]
    missing = str(tmp_path / "gone.jpg")
    feats, messages = quiet_embed(tiny, [files[0], missing, *files[1:]], num_workers=0)
    assert feats.ids == files
    assert [(s.id, s.reason) for s in feats.skipped] == [(missing, "file not found")]
    assert any("1 of 4 images skipped (1 file not found)" in m for m in messages)


def test_source_skips_are_carried_over(tiny, folder, tmp_path):
    rows = [f"{p},a caption {i},{p.parent.name}" for i, p in enumerate(sorted(folder.rglob("*.jpg"))[:4])]
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,caption,label,extra\n" + "\n".join(r + ",x" for r in rows) + f"\n{tmp_path}/nope.jpg,c,cat,y\n")
    src = open_source(manifest)
    feats, messages = quiet_embed(tiny, src, num_workers=0)
    assert len(feats) == 4 and feats.captions == [[f"a caption {i}"] for i in range(4)]
    assert feats.meta == [{"extra": "x"}] * 4
    assert [s.reason for s in feats.skipped] == ["file not found"]
    assert any(m.startswith("1 of 5 images skipped") for m in messages)


def test_all_source_kinds(tiny, folder):
    files = sorted(str(p) for p in folder.rglob("*.jpg"))
    by_list = embed(tiny, files, num_workers=0, progress=False, cache_dir=None)
    assert by_list.ids == files and by_list.labels is None
    items = [ImageItem(id=f"x{i}", read_bytes=Path(f).read_bytes, label="a") for i, f in enumerate(files[:3])]
    by_src = embed(tiny, ImageSource(name="mine", items=items, classes=["a"]), num_workers=0, progress=False, cache_dir=None)
    np.testing.assert_allclose(by_src.X, by_list.X[:3], atol=1e-6)
    assert by_src.labels == ["a"] * 3 and list(by_src.y) == [0, 0, 0]
    synth = embed(tiny, "synthetic:6:1", num_workers=1, progress=False, cache_dir=None)
    assert len(synth) == 6 and all(c for c in synth.captions) and synth.meta is not None


def test_nothing_embedded_is_an_error(tiny, tmp_path):
    with pytest.raises(NothingEmbeddedError, match="nothing embedded from 'none': the source lists no images"):
        embed(tiny, ImageSource(name="none", items=[]), progress=False, cache_dir=None)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"junk")
    with pytest.raises(NothingEmbeddedError, match=r"1 of 1 image skipped \(1 not an image\)"):
        embed(tiny, [str(bad)], progress=False, num_workers=0, cache_dir=None)


def test_progress_bar_shows_rate(tiny, folder, capsys):
    embed(tiny, folder, num_workers=0, progress=True, cache_dir=None)
    err = capsys.readouterr().err
    assert "img/s" in err and "24/24" in err
    embed(tiny, folder, num_workers=0, progress=False, cache_dir=None)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("cores, cpu, cuda", [(1, 1, 1), (2, 2, 1), (5, 2, 4), (9, 3, 8), (16, 4, 15)])
def test_default_workers(monkeypatch, cores, cpu, cuda):
    from cliplab.features import pipeline

    monkeypatch.setattr(pipeline, "_cores", lambda: cores)
    assert default_num_workers(torch.device("cpu")) == cpu
    assert default_num_workers(torch.device("cuda")) == cuda


def test_skip_summary_format():
    from cliplab.data.items import Skipped

    s = [Skipped("a", "truncated"), Skipped("b", "not an image"), Skipped("c", "truncated")]
    assert skip_summary(s, 120) == "3 of 120 images skipped (2 truncated, 1 not an image)"
    s += [Skipped("m:3", "invalid JSON line", "row"), Skipped("x.tar", "shard not found", "shard")]
    assert skip_summary(s, 120) == (
        "1 manifest row skipped (1 invalid JSON line); 1 shard skipped (1 shard not found); "
        "3 of 120 images skipped (2 truncated, 1 not an image)"
    )


# --- reduced-scale JPEG decoding -----------------------------------------------------------------------
def big_jpeg(w=640, h=520) -> bytes:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], -1)
    img += np.random.default_rng(0).normal(0, 4, img.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def test_large_jpeg_decodes_at_reduced_scale_but_at_least_twice_the_input(tiny):
    assert draft_side(tiny) == 32
    data = big_jpeg()
    full = decode_image(data, "x", None)
    small = decode_image(data, "x", None, min_side=64)
    assert full.size == (640, 520)
    assert small.mode == "RGB" and min(small.size) >= 64 and small.size[0] < 640
    a = tiny.encode_pixels(torch.stack([tiny.preprocess(full)]))
    b = tiny.encode_pixels(torch.stack([tiny.preprocess(small)]))
    assert float((a * b).sum()) > 0.999
    assert decode_image(data, "x", None, min_side=800).size == (640, 520)  # not large enough to reduce


def test_reduced_decode_keeps_bad_jpeg_reasons():
    from cliplab.data.images import BadImage

    data = big_jpeg()
    with pytest.raises(BadImage) as e:
        decode_image(data[: len(data) // 3], "x", None, min_side=64)
    assert e.value.reason == "truncated"
    with pytest.raises(BadImage) as e:
        decode_image(data, "x", 1000, min_side=64)
    assert e.value.reason == "decompression bomb"


def test_a_full_cache_disk_turns_the_cache_off_with_one_warning(tiny, folder, tmp_path, monkeypatch):
    import errno

    from cliplab.features.cache import ChunkCache

    def full(self, keys, embeddings):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.dir / "chunk-x.safetensors"))

    monkeypatch.setattr(ChunkCache, "put", full)
    feats, messages = quiet_embed(tiny, folder, cache_dir=tmp_path / "cache", chunk_size=2, batch_size=2, num_workers=0)
    assert len(feats) == len(open_source(folder).items)
    assert messages == [f"embedding cache {tmp_path / 'cache'}: cannot write (no space left on device); carrying on without caching"]


def test_an_unwritable_cache_folder_is_a_warning_not_a_failure(tiny, folder, tmp_path):
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    feats, messages = quiet_embed(tiny, folder, cache_dir=tmp_path / "cache", num_workers=0)
    assert len(feats) == len(open_source(folder).items) and feats.stats["cache_hits"] == 0
    assert len(messages) == 1 and messages[0].startswith(f"embedding cache {tmp_path / 'cache'}: cannot write")


def test_progress_bar_prints_its_first_line_once(tiny, folder, capsys):
    import time

    preprocess = tiny.preprocess

    def slow(image):  # decoding takes longer than the bar's refresh interval (0.1 s)
        time.sleep(0.01)
        return preprocess(image)

    tiny.preprocess = slow
    embed(tiny, folder, num_workers=0, progress=True, cache_dir=None)
    err = capsys.readouterr().err
    assert err.count("0/24") == 1 and "24/24" in err


def test_embed_in_process_leaves_the_torch_thread_count_alone(tiny, folder, monkeypatch):
    preprocess, seen = tiny.preprocess, []

    def spy(image):
        seen.append(torch.get_num_threads())
        return preprocess(image)

    monkeypatch.setattr(tiny, "preprocess", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the caller's choice, whatever OMP_NUM_THREADS says
    try:
        feats = embed(tiny, folder, num_workers=0, progress=False, cache_dir=None)
        assert len(feats) == 24 and seen == [2] * 24  # decoding here runs with the caller's threads
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
