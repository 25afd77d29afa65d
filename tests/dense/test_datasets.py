"""Segmentation datasets from a folder: classes.txt must match the masks' values."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cliplab.dense.datasets import open_mask_dataset
from cliplab.errors import SourceError


def mask_folder(root, names: list[str]):
    """Two 16x16 scenes: background 0, a 'cat' square (1) and a 'dog' square (2), ignore (255) in a corner."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(2):
        mask = np.zeros((16, 16), np.uint8)
        mask[2:7, 2:7], mask[9:14, 9:14], mask[0, 0] = 1, 2, 255
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / "images" / f"s{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"s{i}.png")
    (root / "classes.txt").write_text("".join(f"{n}\n" for n in names))
    return root


def test_a_matching_classes_txt_opens(tmp_path):
    data = open_mask_dataset(mask_folder(tmp_path / "d", ["background", "cat", "dog"]))
    assert data.classes == ["background", "cat", "dog"] and len(data) == 2
    assert set(np.unique(data.load(0)[1])) == {0, 1, 2, 255}


@pytest.mark.parametrize(
    "names, words",
    [
        (["cat", "dog"], ["value 2", "names 2 classes", "put 'background' on the first line"]),  # the missing first line
        (["cat", "background", "dog"], ["line 2", "must be the first line"]),
        ([], ["names no class"]),
    ],
)
def test_a_classes_txt_that_does_not_match_the_masks_is_refused(tmp_path, names, words):
    root = mask_folder(tmp_path / "d", names)
    with pytest.raises(SourceError) as err:
        open_mask_dataset(root)
    assert all(w in str(err.value) for w in words) and "\n" not in str(err.value)


def test_eval_refuses_in_one_line(cli, tiny_model_files, tmp_path):
    root = mask_folder(tmp_path / "d", ["cat", "dog"])
    result = cli("eval", "--task", "segmentation", "--images", root, "--model", tiny_model_files["spec"],
                 "--pretrained", tiny_model_files["weights"], "--out", tmp_path / "r.json")  # fmt: skip
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "classes.txt" in result.stderr and not (tmp_path / "r.json").exists()
