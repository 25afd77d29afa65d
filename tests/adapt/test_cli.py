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


def test_support_set_adapter_is_compared_and_exported(cli, folder, tiny_model_files, tmp_path):
    from cliplab.adapt import load

    model = ["--model", tiny_model_files["spec"], "--pretrained", tiny_model_files["weights"]]
    head = tmp_path / "support.cliplab"
    result = cli("adapt", "--train", folder, "--shots", "2", "--seeds", "1,2", "--methods", "zeroshot,support", "--views", "1",
                 "--out", tmp_path / "run", "--export", head, "--export-method", "support", "--no-progress", *model)  # fmt: skip
    assert result.exit_code == 0, result.output
    runs = [r for r in json.loads((tmp_path / "run" / "results.json").read_text())["runs"] if r["method"] == "support"]
    assert len(runs) == 2 and {"alpha", "beta", "gamma"} <= set(runs[0]["hyperparameters"])
    assert "exported support (2 shots)" in result.stdout
    assert type(load(head).head.head).__name__ == "SupportSetAdapter"
    result = cli("classify", "--images", folder, "--head", head, "--out", tmp_path / "p.csv", "--no-progress", *model)
    assert result.exit_code == 0, result.output


def class_folder(root, counts):
    """A class-per-subfolder folder of small solid-colour PNGs: ``counts`` maps class -> images."""
    from PIL import Image

    for c, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(n):
            Image.new("RGB", (32, 32), (40 * c % 256, 8 * i % 256, 200)).save(root / name / f"{i}.png")
    return root


def no_embedding(monkeypatch):
    def refuse(*args, **kw):
        raise AssertionError("embedded before checking the options")

    monkeypatch.setattr("cliplab.features.embed", refuse)


@pytest.mark.parametrize("args, message", [
    (["--methods", "gda,nope"], "unknown method(s) nope"),
    (["--methods", " , "], "unknown method(s) (none given)"),
    (["--selection-fraction", "1.5"], "--selection-fraction must be in (0, 1)"),
    (["--no-cache", "--cache-dir", "somewhere"], "--no-cache and --cache-dir contradict"),
    (["--precision", "int4"], "'int4' is not one of"),
])  # fmt: skip
def test_bad_options_fail_before_any_embedding(cli, folder, tiny_model_files, tmp_path, monkeypatch, private_cache_home, args, message):
    no_embedding(monkeypatch)
    model = ["--model", tiny_model_files["spec"], "--pretrained", tiny_model_files["weights"]]
    result = cli("adapt", "--train", folder, *args, "--out", tmp_path / "x", "--no-progress", *model)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert not (private_cache_home / "cliplab").exists() and not (tmp_path / "x").exists()


def test_one_class_folder_is_refused(cli, tiny_model_files, tmp_path, monkeypatch):
    no_embedding(monkeypatch)
    train = class_folder(tmp_path / "good", {"ok": 12})
    result = cli("adapt", "--train", train, "--out", tmp_path / "x", "--no-progress",
                 "--model", tiny_model_files["spec"], "--pretrained", tiny_model_files["weights"])  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: --train has only class 'ok'; comparing classifiers needs at least 2 classes (one subfolder per class); "
                                     "to flag what differs from good images only, fit a one-class detector: cliplab inspect fit")


def test_too_many_shots_names_the_class_with_fewest_images(cli, tiny_model_files, tmp_path):
    train = class_folder(tmp_path / "parts", {"bent": 6, "good": 10})  # 30% held out as test: bent keeps 4, good 7
    result = cli("adapt", "--train", train, "--shots", "2,16", "--methods", "zeroshot", "--out", tmp_path / "x", "--no-progress",
                 "--model", tiny_model_files["spec"], "--pretrained", tiny_model_files["weights"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "16 shots need 17 labelled images of every class" in result.stderr and "class 'bent' has 4" in result.stderr
    assert "no labelled rows" not in result.stderr


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from cliplab.cli.data import write_scenes

    out = tmp_path_factory.mktemp("scenes") / "shapes"
    write_scenes(out, 90, seed=5, split="test", image_size=32, max_objects=1, class_folders="shape", masks=False, progress=False)
    return out / "images"


@pytest.mark.parametrize("precision, on_bf16_cpu", [("auto", False), ("bf16", False), ("auto", True)])
def test_adapt_export_classify_flow_at_each_precision(cli, shapes, tiny_model_files, tmp_path, request, private_cache_home, precision, on_bf16_cpu):
    """Default options but the few shots, one seed and cheap methods; ``on_bf16_cpu`` makes this CPU report
    native bf16, so auto picks bf16 as on such a CPU."""
    import torch

    from cliplab.models import precision as P

    if on_bf16_cpu:
        request.getfixturevalue("bf16_cpu")
    expected = precision if precision != "auto" else P.auto_precision(torch.device("cpu"))[0]
    assert expected == "bf16" or not on_bf16_cpu
    model = ["--model", tiny_model_files["spec"], "--pretrained", tiny_model_files["weights"], "--precision", precision]
    out, head = tmp_path / "run", tmp_path / "best.cliplab"
    result = cli("adapt", "--train", shapes, "--shots", "2", "--seeds", "1", "--methods", "zeroshot,linear,coop", "--epochs", "2",
                 "--out", out, "--export", head, "--no-progress", *model)  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["precision"] == expected
    exported = results["export"]
    assert 0.0 <= exported["selection_accuracy"] <= 1.0 and exported["selection_images"] >= 5
    assert f"selection accuracy {exported['selection_accuracy']:.3f} on {exported['selection_images']} images no search saw" in " ".join(result.stdout.split())
    assert all(isinstance(r["selection_accuracy"], float) for r in results["runs"])
    assert list(private_cache_home.glob("cliplab/embeddings/*/chunk-*.safetensors")), "adapt did not use the default cache"
    csv_path = tmp_path / "pred.csv"
    result = cli("classify", "--images", shapes, "--head", head, "--conformal-alpha", "0.2", "--out", csv_path, "--no-progress", *model)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(csv_path.open()))
    shapes_found = {p.name for p in shapes.iterdir()}
    assert len(rows) == 90 and {row["label_1"] for row in rows} <= shapes_found
    assert all(row["prediction_set"] and set(row["prediction_set"].split("|")) <= shapes_found for row in rows)


def test_no_cache_writes_no_cache(cli, folder, tiny_model_files, tmp_path, private_cache_home):
    result = cli("adapt", "--train", folder, "--shots", "1", "--seeds", "1", "--methods", "zeroshot", "--out", tmp_path / "run",
                 "--no-cache", "--no-progress", "--model", tiny_model_files["spec"], "--pretrained", tiny_model_files["weights"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not (private_cache_home / "cliplab").exists()


def test_a_stray_unlabelled_image_is_kept_aside_not_refused(cli, folder, tiny_model_files, tmp_path):
    """The README: images beside the class subfolders are kept unlabelled with a warning; adapt fits on the labelled ones."""
    import shutil

    train = tmp_path / "train"
    shutil.copytree(folder, train)
    stray = next((train / "small").iterdir())
    shutil.copy(stray, train / "stray.png")
    model = ["--model", tiny_model_files["spec"], "--pretrained", tiny_model_files["weights"]]
    result = cli("adapt", "--train", train, "--shots", "1", "--seeds", "1", "--methods", "zeroshot,gda",
                 "--out", tmp_path / "run", "--no-progress", "--no-cache", *model)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "stray.png" in result.stderr
    assert len(json.loads((tmp_path / "run" / "results.json").read_text())["runs"]) == 2
