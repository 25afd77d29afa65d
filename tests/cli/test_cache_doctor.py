"""``cliplab cache info|clear`` and ``cliplab doctor``; the default cache folder of ``cliplab embed``."""

from __future__ import annotations

import json

from cliplab.features.cache_folder import default_cache_dir

FAST = ["--batch-size", "8", "--workers", "0", "--no-progress"]


def test_default_cache_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "cliplab" / "embeddings"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "cliplab" / "embeddings"


def test_embed_caches_by_default_and_no_cache_turns_it_off(cli, model_args, private_cache_home, tmp_path):
    args = ["embed", *model_args, "--images", "synthetic:5:3", *FAST]
    first = cli(*args, "--out", tmp_path / "a")
    assert first.exit_code == 0, first.output
    assert "cache hits 0 of 5" in first.stdout
    assert list((private_cache_home / "cliplab" / "embeddings").glob("*/chunk-*.safetensors"))
    second = cli(*args, "--out", tmp_path / "b")
    assert "cache hits 5 of 5" in second.stdout
    off = cli(*args, "--no-cache", "--out", tmp_path / "c")
    assert off.exit_code == 0 and "cache hits 0 of 5" in off.stdout
    both = cli(*args, "--no-cache", "--cache-dir", tmp_path / "x", "--out", tmp_path / "d")
    assert both.exit_code == 2 and "--no-cache" in both.stderr


def test_cache_info_and_clear(cli, model_args, tmp_path):
    cache = tmp_path / "cache"
    for precision in ("fp32", "bf16"):
        ok = cli("embed", *model_args, "--images", "synthetic:4:1", "--precision", precision, "--cache-dir", cache,
                 "--out", tmp_path / precision, *FAST)  # fmt: skip
        assert ok.exit_code == 0, ok.output
    ok = cli("embed", "--model", "tiny", "--images", "synthetic:3:1", "--precision", "fp32", "--cache-dir", cache,
             "--out", tmp_path / "tiny", *FAST)  # fmt: skip
    assert ok.exit_code == 0, ok.output

    info = cli("cache", "info", "--cache-dir", cache, "--out", tmp_path / "info.json")
    assert info.exit_code == 0, info.output
    assert str(cache) in info.stdout and "3 model folder(s)" in info.stdout
    report = json.loads((tmp_path / "info.json").read_text())
    rows = sorted((m["model"], m["precision"], m["embeddings"]) for m in report["models"])
    assert rows == [("cliplab:shapes-tiny", "fp32", 3), ("openclip:cliplab-test-tiny", "bf16", 4), ("openclip:cliplab-test-tiny", "fp32", 4)]
    assert report["bytes"] == sum(m["bytes"] for m in report["models"]) > 0

    cleared = cli("cache", "clear", "--model", "tiny", "--cache-dir", cache)  # an alias names the bundled model
    assert cleared.exit_code == 0 and "removed 1 model folder(s)" in cleared.stdout
    left = cli("cache", "info", "--cache-dir", cache, "--out", tmp_path / "left.json")
    assert {m["model"] for m in json.loads((tmp_path / "left.json").read_text())["models"]} == {"openclip:cliplab-test-tiny"}
    assert left.exit_code == 0
    everything = cli("cache", "clear", "--cache-dir", cache)
    assert "removed 2 model folder(s)" in everything.stdout
    assert "0 model folder(s)" in cli("cache", "info", "--cache-dir", cache).stdout


def test_doctor_reports_the_machine_and_autos_choice(cli, tmp_path):
    from cliplab.models.precision import cpu_info

    result = cli("doctor", "--out", tmp_path / "d.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "d.json").read_text())
    assert report["cores"] >= 1 and report["torch_threads"] >= 1
    assert report["cpu_flags"]["avx512_bf16"] == ("avx512_bf16" in cpu_info().flags)
    native = report["cpu_flags"]["avx512_bf16"] or report["cpu_flags"]["amx_bf16"]
    if report["default_device"] == "cpu":
        assert report["auto_precision"] == ("bf16" if native else "fp32")
    assert f"precision auto on {report['default_device']}: {report['auto_precision']}" in result.stdout


def _namespace(cache, identity: str, keys: list[bytes]) -> "Path":
    """A namespace as embed() makes it, holding one chunk of ``keys`` (random 4-dim rows)."""
    import numpy as np

    from cliplab.features.cache import ChunkCache, namespace_key

    ns, description = namespace_key(identity, "fp32")
    chunks = ChunkCache(cache, ns, description=description)
    chunks.put(keys, np.random.default_rng(0).normal(size=(len(keys), 4)).astype(np.float32))
    return chunks.dir


def test_cache_clear_removes_only_what_the_cache_made(cli, tmp_path):
    import hashlib

    cache = tmp_path / "d"
    (cache / "sub").mkdir(parents=True)
    (cache / "sub" / "b.txt").write_text("y")
    lookalike = cache / hashlib.sha256(b"mine").hexdigest()  # named like a namespace, but not one
    lookalike.mkdir()
    (lookalike / "model.txt").write_text("not the text its name hashes\n")
    ours = _namespace(cache, "cliplab:shapes-tiny", [bytes(32)])
    older = _namespace(cache, "openclip:ViT-B-32", [bytes(32)])
    (older / "CACHEDIR.TAG").unlink()  # made before the marker: recognised by its name = sha256(model.txt)
    with_note = _namespace(cache, "openclip:RN50", [bytes(32)])
    (with_note / "notes.txt").write_text("the user's")

    info = cli("cache", "info", "--cache-dir", cache)
    assert "3 model folder(s)" in info.stdout
    only = cli("cache", "clear", "--model", "tiny", "--cache-dir", cache)
    assert only.exit_code == 0 and "removed 1 model folder(s)" in only.stdout
    assert not ours.exists() and older.exists()
    result = cli("cache", "clear", "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    assert "removed 2 model folder(s)" in result.stdout
    assert (cache / "sub" / "b.txt").read_text() == "y" and (lookalike / "model.txt").exists()
    assert not older.exists() and [p.name for p in with_note.iterdir()] == ["notes.txt"]
    lines = result.stderr.splitlines()
    assert f"left alone {cache / 'sub'}: not a cliplab cache folder" in lines
    assert f"left alone {lookalike}: not a cliplab cache folder" in lines
    assert any(line.startswith(f"left alone {with_note}: it holds files the cache did not write (notes.txt)") for line in lines)


def test_cache_info_counts_an_image_cached_by_two_runs_once(cli, tmp_path):
    import json

    from cliplab.features.cache import ChunkCache

    folder = _namespace(tmp_path / "c", "cliplab:shapes-tiny", [bytes([1]) * 32, bytes([2]) * 32])
    _namespace(tmp_path / "c", "cliplab:shapes-tiny", [bytes([2]) * 32, bytes([3]) * 32])  # a concurrent run's chunk
    assert len(ChunkCache(tmp_path / "c", folder.name)) == 3
    assert cli("cache", "info", "--cache-dir", tmp_path / "c", "--out", tmp_path / "i.json").exit_code == 0
    [entry] = json.loads((tmp_path / "i.json").read_text())["models"]
    assert (entry["embeddings"], entry["chunks"]) == (3, 2)


def test_version(cli):
    from importlib.metadata import version

    result = cli("--version")
    assert result.exit_code == 0 and result.stdout == f"cliplab {version('cliplab')}\n" == "cliplab 0.1.0\n"
