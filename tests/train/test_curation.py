"""MetaCLIP curation against the reference algorithm on hand-made examples, and the curate command."""

import json

import numpy as np
from typer.testing import CliRunner

from cliplab.train.curation import (
    balance,
    curate,
    entry_counts,
    match_entries,
    near_duplicates,
    spacing,
)

ENTRIES = ["cat", "dog", "red car", "New York"]
TEXTS = ["a cat.", "cat and dog", "Cat", "a red car!", "red cars", "I love New York,ok", "new york"]


def test_substring_matching_as_the_reference():
    assert spacing("a cat.\tx") == " a cat .  x "
    assert match_entries(TEXTS, ENTRIES) == [[0], [0, 1], [], [2], [], [3], []]  # case-sensitive, whole words


def test_balancing_by_hand():
    matches = match_entries(TEXTS, ENTRIES)
    counts = entry_counts(matches, len(ENTRIES))
    assert counts.tolist() == [2, 1, 1, 1]
    # t = 1: p = [1/2, 1, 1, 1]; the trials are drawn in text order, one per matched entry
    u = np.random.default_rng(7).random(5)  # texts 0 (cat), 1 (cat, dog), 3 (red car), 5 (New York)
    expected = [u[0] < 0.5, u[1] < 0.5 or u[2] < 1.0, False, u[3] < 1.0, False, u[4] < 1.0, False]
    assert balance(matches, counts, t=1, seed=7).tolist() == expected
    assert balance(matches, counts, t=1, seed=7).tolist() == balance(matches, counts, t=1, seed=7).tolist()


def test_head_entries_are_sampled_down_to_about_t():
    texts = ["a dog"] * 4000 + ["a cat"] * 50
    result = curate(texts, ["dog", "cat"], t=400, seed=0)
    assert result.counts_before.tolist() == [4000, 50]
    assert 330 < result.counts_after[0] < 470 and result.counts_after[1] == 50  # tail kept whole
    summary = result.summary(["dog", "cat"])
    assert summary["before"]["head_entries"] == 1 and summary["after"]["head_entries"] <= 1


def test_near_duplicates_greedy_in_order():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(5, 8)).astype(np.float32)
    X = np.concatenate([base, base[[1]], base[[3]] + 0.01 * rng.normal(size=(1, 8)).astype(np.float32)])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    assert near_duplicates(X, threshold=1.0).tolist() == [True] * 5 + [False, True]  # exact copy only
    assert near_duplicates(X, threshold=0.99).tolist() == [True] * 5 + [False, False]
    assert near_duplicates(X, threshold=0.99, block=2).tolist() == [True] * 5 + [False, False]


def test_curate_command(tmp_path):
    from cliplab.cli import _register, app

    _register()
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"image": f"{i}.png", "caption": t}) + "\n" for i, t in enumerate(TEXTS)))
    (tmp_path / "entries.txt").write_text("\n".join(ENTRIES) + "\n")
    out = tmp_path / "curated.jsonl"
    res = CliRunner().invoke(app, ["curate", "--metadata", str(tmp_path / "entries.txt"), "--t", "1", str(manifest), "--out", str(out)])
    assert res.exit_code == 0, res.output
    kept = [json.loads(x)["caption"] for x in out.read_text().splitlines()]
    assert set(kept) <= {"a cat.", "cat and dog", "a red car!", "I love New York,ok"} and "cat and dog" in kept
    report = json.loads((tmp_path / "curated.report.json").read_text())
    assert report["texts"] == 7 and report["kept"] == len(kept)
    assert (tmp_path / "curated.report.png").read_bytes()[:4] == b"\x89PNG"


def _curate(tmp_path, rows, out_name, *args):
    from cliplab.cli import _register, app

    _register()
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "entries.txt").write_text("\n".join(ENTRIES) + "\n")
    out = tmp_path / out_name
    res = CliRunner().invoke(app, ["curate", "--metadata", str(tmp_path / "entries.txt"), str(manifest), "--out", str(out), *args])
    return res, out


def test_jsonl_to_csv_writes_every_field(tmp_path):
    import csv

    rows = [{"image": "0.png", "caption": "a cat."}, {"image": "1.png", "caption": "a dog", "tags": ["pet", "dog"]}, {"image": "2.png", "caption": "x"}]
    res, out = _curate(tmp_path, rows, "curated.csv")
    assert res.exit_code == 0, res.output
    with open(out, newline="") as f:
        written = list(csv.DictReader(f))
    assert written == [{"image": "0.png", "caption": "a cat.", "tags": ""}, {"image": "1.png", "caption": "a dog", "tags": '["pet", "dog"]'}]


def test_caption_col_names_the_caption_column(tmp_path):
    rows = [{"image": f"{i}.png", "text": t} for i, t in enumerate(TEXTS)]
    res, out = _curate(tmp_path, rows, "curated.jsonl", "--caption-col", "text", "--t", "1")
    assert res.exit_code == 0, res.output
    assert "cat and dog" in [json.loads(x)["text"] for x in out.read_text().splitlines()]
    res, _ = _curate(tmp_path, rows, "curated.jsonl", "--caption-column", "text")
    assert res.exit_code == 2 and "No such option" in res.output


def test_report_kept_counts_the_rows_written_after_dedup(tmp_path):
    from cliplab.features import Features

    rows = [{"image": f"{i}.png", "caption": f"a cat number {i}"} for i in range(4)]
    X = np.eye(4, dtype=np.float32)
    X[1] = X[0]  # image 1 duplicates image 0
    Features(X, [str(tmp_path / r["image"]) for r in rows]).save(tmp_path / "feats")
    res, out = _curate(tmp_path, rows, "curated.jsonl", "--dedup-features", str(tmp_path / "feats"))
    assert res.exit_code == 0, res.output
    written = out.read_text().splitlines()
    report = json.loads((tmp_path / "curated.report.json").read_text())
    assert len(written) == 3 and report["kept"] == 3 and report["near_duplicates_dropped"] == 1
    assert "kept 3 of 4 rows" in res.output
