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
