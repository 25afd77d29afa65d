import json

from cliplab.data import synthetic
from cliplab.data.sources import open_source


def test_synth_writes_images_metadata_and_class_folders(cli, tmp_path):
    out = tmp_path / "scenes"
    result = cli("data", "synth", "--n", 12, "--seed", 3, "--out", out, "--class-folders", "shape", "--masks")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    recs = synthetic.generate(12, seed=3, split="test")
    assert [r["caption"] for r in rows] == [r.caption for r in recs]
    assert all((out / r["image"]).is_file() and (out / r["semantic_mask"]).is_file() for r in rows)
    assert [r["label"] for r in rows] == [r.objects[0]["shape"] for r in recs]
    source = open_source(out / "images")  # class-per-folder layout: labels from folder names
    assert len(source) == 12 and set(source.classes) == {r.objects[0]["shape"] for r in recs}
    assert not list(tmp_path.glob(".*partial"))


def test_synth_refuses_to_overwrite_and_bad_attribute(cli, tmp_path):
    out = tmp_path / "scenes"
    assert cli("data", "synth", "--n", 2, "--out", out).exit_code == 0
    again = cli("data", "synth", "--n", 2, "--out", out)
    assert again.exit_code == 2 and "not empty" in again.output
    bad = cli("data", "synth", "--n", 2, "--out", tmp_path / "x", "--class-folders", "colour")
    assert bad.exit_code == 2 and "not an attribute" in bad.output


def test_synth_masks_come_with_classes_txt_in_mask_value_order(cli, tmp_path):
    import numpy as np

    from cliplab.dense.datasets import folder_masks

    out = tmp_path / "seg"
    result = cli("data", "synth", "--n", 4, "--seed", 1, "--out", out, "--masks", "--no-progress")
    assert result.exit_code == 0, result.output
    assert (out / "classes.txt").read_text() == "background\n" + "".join(f"{s}\n" for s in synthetic.SHAPES)
    data = folder_masks(out)  # what eval --task segmentation --images OUT reads
    assert data.classes == ["background", *synthetic.SHAPES] and len(data) == 4
    for (_, _, mask), rec in zip(data, synthetic.generate(4, seed=1, split="test")):
        assert np.array_equal(mask, rec.semantic_mask)
        for shape in {o["shape"] for o in rec.objects}:
            assert data.classes.index(shape) in mask
