"""``cliplab classify``."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from cliplab.evaluate.runner import open_dataset
from cliplab.zeroshot import ZeroShotClassifier

FAST = ["--batch-size", "16", "--workers", "0", "--no-progress"]
LABELS = "circle,square,triangle,star,cross"


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_help(cli):
    result = cli("classify", "--help")
    assert result.exit_code == 0
    for option in ("--images", "--classnames", "--templates", "--top-k", "--out"):
        assert option in result.stdout


def test_predictions_csv(cli, model_args, tiny_model, tmp_path):
    out = tmp_path / "preds.csv"
    # fp32 pinned (auto would pick bf16 on bf16 hardware); the CLI runs on CUDA where there is one, this
    # reference on the CPU, so scores are compared at a tolerance fp32 meets on both (they differ ~1e-5)
    args = ["--images", "synthetic:12:4", "--classnames", LABELS, "--precision", "fp32", "--out", out]
    result = cli("classify", *model_args, *args, *FAST)
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    assert rows[0] == ["id", "label_1", "score_1", "label_2", "score_2", "label_3", "score_3"]
    assert len(rows) == 13
    source = open_dataset("synthetic:12:4")
    assert [r[0] for r in rows[1:]] == [it.id for it in source.items]
    # scores: softmax probabilities of the classifier, best first
    from cliplab.data.images import decode_image

    X = tiny_model.encode_images([decode_image(it.read_bytes()) for it in source.items])
    probs = ZeroShotClassifier(tiny_model, LABELS.split(","), "default").fit().predict_proba(X)
    for row, p in zip(rows[1:], probs):
        scores = np.array([float(s) for s in row[2::2]])
        assert list(scores) == sorted(scores, reverse=True)
        assert row[1] == LABELS.split(",")[int(np.argmax(p))]
        np.testing.assert_allclose(scores, np.sort(p)[::-1][:3], atol=1e-4)
    assert "images classified" in result.stdout


def test_labels_file_and_top_k_clamped(cli, model_args, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n\n")
    out = tmp_path / "p.csv"
    result = cli("classify", *model_args, "--images", "synthetic:3", "--classnames", labels, "--top-k", "5", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    assert rows[0] == ["id", "label_1", "score_1", "label_2", "score_2"]
    for row in rows[1:]:
        assert {row[1], row[3]} == {"cat", "dog"}
        assert float(row[2]) + float(row[4]) == pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--images", "nowhere/", "--classnames", "a,b"], "no such file or folder"),
        (["--images", "synthetic:2", "--classnames", "a,a"], "unique"),
        (["--images", "synthetic:2", "--classnames", " , "], "names no classes"),
        (["--images", "synthetic:2", "--classnames", "star"], "names one class (star); classifying needs at least two"),
    ],
)
def test_bad_input_exits_2(cli, model_args, tmp_path, args, message):
    result = cli("classify", *model_args, *args, "--out", tmp_path / "p.csv", *FAST)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_comment_lines_and_no_old_labels_flag(cli, model_args, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("# shapes to look for\ncircle\nsquare\n")
    result = cli("classify", *model_args, "--images", "synthetic:3", "--classnames", names, "--out", tmp_path / "p.csv", *FAST)
    assert result.exit_code == 0, result.output
    rows = _rows(tmp_path / "p.csv")
    assert {rows[1][1], rows[1][3]} == {"circle", "square"}  # the comment is not a class
    old = cli("classify", *model_args, "--images", "synthetic:3", "--labels", names, "--out", tmp_path / "q.csv", *FAST)
    assert old.exit_code == 2 and "--labels" in old.stderr and not (tmp_path / "q.csv").exists()


def test_near_duplicate_names_warn(cli, model_args, tmp_path):
    result = cli("classify", *model_args, "--images", "synthetic:2", "--classnames", "circle, Circle", "--out", tmp_path / "p.csv", *FAST)
    assert result.exit_code == 0, result.output
    assert "differ only in case or spacing" in result.stderr
