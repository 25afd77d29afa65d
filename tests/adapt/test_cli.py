"""``cliplab adapt`` end to end on a class-per-subfolder folder, then ``cliplab classify --head``."""

import csv
import json

import pytest


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from cliplab.cli.data import write_scenes

    out = tmp_path_factory.mktemp("scenes") / "sizes"
    write_scenes(out, 48, seed=3, split="test", image_size=32, max_objects=1, class_folders="size", masks=False, progress=False)
    return out / "images"  # good/defect-style layout: one subfolder per class


def test_adapt_table_results_report_export_and_classify(cli, folder, tiny_model_files, tmp_path):
    model = ["--model", tiny_model_files["spec"], "--pretrained", tiny_model_files["weights"]]
    out, head = tmp_path / "run", tmp_path / "best.cliplab"
    result = cli("adapt", "--train", folder, "--shots", "1,2", "--seeds", "1", "--methods", "zeroshot,gda,tip,linear,coop",
                 "--views", "1", "--epochs", "1", "--out", out, "--export", head, "--no-progress", *model)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "zeroshot" in result.stdout and "±" in result.stdout and "exported" in result.stdout
    results = json.loads((out / "results.json").read_text())
    records = results["runs"]
    assert len(records) == 2 * 1 * 5
    assert {"method", "shots", "seed", "accuracy", "hyperparameters"} <= set(records[0])
    gda = next(r for r in records if r["method"] == "gda")
    assert "alpha" in gda["hyperparameters"]
    html = (out / "report.html").read_text()
    assert "Accuracy vs shots" in html and "data:image/png;base64," in html
    csv_path = tmp_path / "pred.csv"
    result = cli("classify", "--images", folder, "--head", head, "--conformal-alpha", "0.2", "--out", csv_path, "--no-progress", *model)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(csv_path.open()))
    sizes = {"small", "medium", "large"}
    assert len(rows) == 48 and rows[0]["label_1"] in sizes
    assert all(set(filter(None, row["prediction_set"].split("|"))) <= sizes for row in rows)
    assert any(row["prediction_set"] for row in rows)


def test_adapt_errors_are_one_line(cli, folder, tiny_model_files, tmp_path):
    model = ["--model", tiny_model_files["spec"], "--pretrained", tiny_model_files["weights"]]
    result = cli("adapt", "--train", folder, "--methods", "gda,nope", "--out", tmp_path / "x", "--no-progress", *model)
    assert result.exit_code == 2 and "unknown method" in result.stderr
    result = cli("adapt", "--train", folder, "--shots", "0", "--out", tmp_path / "y", *model)
    assert result.exit_code == 2 and "--shots" in result.stderr
    result = cli("adapt", "--train", folder, "--methods", "gda,svd", "--export", tmp_path / "h.cliplab", "--export-method", "svd",
                 "--out", tmp_path / "z", "--no-progress", *model)  # fmt: skip
    assert result.exit_code == 2 and "--export-method 'svd' is not among the exportable methods compared: gda" in result.stderr
    result = cli("adapt", "--train", folder, "--export-method", "gda", "--out", tmp_path / "w", "--no-progress", *model)
    assert result.exit_code == 2 and "needs --export" in result.stderr


def test_export_method_exports_the_chosen_head(cli, folder, tiny_model_files, tmp_path):
    from cliplab.adapt import load

    model = ["--model", tiny_model_files["spec"], "--pretrained", tiny_model_files["weights"]]
    head = tmp_path / "tip.cliplab"
    result = cli("adapt", "--train", folder, "--shots", "2", "--seeds", "1", "--methods", "zeroshot,tip", "--views", "1",
                 "--out", tmp_path / "run", "--export", head, "--export-method", "tip", "--no-progress", *model)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "exported tip (2 shots)" in result.stdout
    assert type(load(head).head.head).__name__ == "TipAdapter"
