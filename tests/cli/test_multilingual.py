"""Languages on the command line: data synth --language, manifests' --lang-col, eval retrieval
--language (with cross-lingual recall), classify --language."""

import json

from cliplab.data import synthetic
from cliplab.data.sources import open_source


def test_synth_in_one_and_several_languages(cli, tmp_path):
    out = tmp_path / "zh"
    result = cli("data", "synth", "--n", 4, "--seed", 3, "--out", out, "--language", "zh", "--no-progress")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text(encoding="utf-8").splitlines()]
    recs = synthetic.generate(4, seed=3, split="test")
    assert [r["caption"] for r in rows] == [synthetic.full_caption(r.spec, "zh") for r in recs]
    assert all(r["language"] == "zh" for r in rows) and not any(c.isascii() for c in rows[0]["caption"])

    many = tmp_path / "many"
    assert cli("data", "synth", "--n", 3, "--out", many, "--language", "en,de,ar", "--no-progress").exit_code == 0
    source = open_source(many / "metadata.jsonl")  # rows of one image merge: its captions with their languages
    assert len(source) == 3 and all(it.meta["caption_languages"] == ["en", "de", "ar"] for it in source.items)
    german = open_source(many / "metadata.jsonl", language="de")
    assert all(len(it.captions) == 1 and it.meta["caption_languages"] == ["de"] for it in german.items)
    bad = cli("data", "synth", "--n", 2, "--out", tmp_path / "x", "--language", "de,tlh")
    assert bad.exit_code == 2 and "unknown tlh" in bad.output


def test_manifest_lang_col(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    rows = [{"file": "a.png", "text": "a red star", "lng": "en"}, {"file": "a.png", "text": "一个红色星形", "lng": "zh"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    source = open_source(tmp_path / "m.jsonl", lang_col="lng")
    assert source.items[0].captions == ["a red star", "一个红色星形"] and source.items[0].meta["caption_languages"] == ["en", "zh"]
    assert open_source(tmp_path / "m.jsonl", lang_col="lng", language="zh").items[0].captions == ["一个红色星形"]
    import pytest

    from cliplab.data.sources import SourceError

    with pytest.raises(SourceError, match="needs a language column"):
        open_source(tmp_path / "m.jsonl", language="zh")


def test_eval_retrieval_in_a_language(cli, tmp_path):
    out = tmp_path / "r.json"
    result = cli("eval", "--task", "retrieval", "--images", "synthetic:12:4", "--language", "de", "--out", out, "--no-progress", "--no-cache")
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())["metrics"]
    assert {"image_retrieval_recall@1", "crosslingual_recall@1"} <= set(metrics)
    same = cli("eval", "retrieval", "--images", "synthetic:12:4", "--language", "en", "--out", tmp_path / "en.json", "--no-progress", "--no-cache")
    assert same.exit_code == 0 and "crosslingual_recall@1" not in json.loads((tmp_path / "en.json").read_text())["metrics"]
    bad = cli("eval", "retrieval", "--images", "synthetic:4", "--language", "xx", "--out", tmp_path / "x.json")
    assert bad.exit_code == 2 and "--language 'xx' is unknown" in bad.output


def test_zero_shot_prompts_in_a_language(cli, tmp_path):
    out = tmp_path / "c.json"
    result = cli("eval", "zeroshot_classification", "--images", "synthetic:8:2", "--language", "ja", "--out", out, "--no-progress", "--no-cache")
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["templates"]["star"] == ["星の写真"]
    scenes = tmp_path / "scenes"
    assert cli("data", "synth", "--n", 4, "--out", scenes, "--no-progress").exit_code == 0
    csv = tmp_path / "p.csv"
    result = cli("classify", "--images", scenes / "images", "--classnames", "Stern,Kreis", "--language", "de", "--out", csv, "--no-progress", "--no-cache")
    assert result.exit_code == 0, result.output
    bad = cli("classify", "--images", scenes / "images", "--classnames", "a,b", "--language", "de", "--templates", "tip_adapter", "--out", csv)
    assert bad.exit_code == 2 and "--language picks the default template" in bad.output


def test_train_with_languages(cli, tmp_path):
    out = tmp_path / "run"
    result = cli("train", "--model", "tiny", "--data", "synthetic:16", "--objectives", "clip,textdistill", "--teacher", "cliplab:shapes-tiny",
                 "--languages", "en,zh,ar", "--distill-loss", "smoothl1", "--steps", 1, "--batch-size", 4, "--eval-n", 0, "--out", out, "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "languages: en,zh,ar" in (out / "config.yaml").read_text() and "distill_loss: smoothl1" in (out / "config.yaml").read_text()
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("loss/textdistill" in m for m in metrics)
    bad = cli("train", "--data", "synthetic:16", "--languages", "en,xx", "--steps", 1, "--out", tmp_path / "bad")
    assert bad.exit_code == 2 and "unknown xx" in bad.output
