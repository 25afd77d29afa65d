"""The optional SAM proposer: kind inference, clear errors, the wiring into the segmenter, Trident and the
CLI with a stand-in mask generator, and (slow) a random vit_b checkpoint in the official format."""

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cliplab.data import synthetic
from cliplab.dense.ovseg import OVSegmenter
from cliplab.dense.sam import SamProposer, load_sam, sam_kind
from cliplab.dense.segment import Segmenter
from cliplab.errors import InputError


def fake_state(width: int, depth: int) -> dict:
    state = {"image_encoder.patch_embed.proj.weight": torch.zeros(width, 3, 1, 1)}
    state.update({f"image_encoder.blocks.{i}.norm1.weight": torch.zeros(1) for i in range(depth)})
    return state


class StandIn:
    """A mask generator with segment-anything's output format: two boxes and a speck, scores given."""

    def generate(self, image: np.ndarray) -> list[dict]:
        h, w = image.shape[:2]
        left, right, speck = (np.zeros((h, w), bool) for _ in range(3))
        left[:, : w // 2] = True
        right[: h // 2, w // 2 :] = True
        speck[0, -1] = True
        return [{"segmentation": left, "predicted_iou": 0.7}, {"segmentation": right, "predicted_iou": 0.9},
                {"segmentation": speck, "predicted_iou": 0.99}]  # fmt: skip


def test_kind_is_inferred_from_the_encoder_shapes():
    assert sam_kind(fake_state(768, 12)) == "vit_b"
    assert sam_kind(fake_state(1024, 24)) == "vit_l"
    assert sam_kind(fake_state(1280, 32)) == "vit_h"
    for state, words in [({"x": torch.zeros(1)}, "no 'image_encoder"), (fake_state(512, 12), "width 512"),
                         (fake_state(768, 24), "24 encoder blocks")]:  # fmt: skip
        with pytest.raises(InputError, match=words):
            sam_kind(state)


def test_clear_errors_for_a_missing_file_a_wrong_format_and_a_missing_package(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="SAM weights not found"):
        load_sam(tmp_path / "nope.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(InputError, match="not a SAM checkpoint"):
        load_sam(text)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")  # a download cut short
    with pytest.raises(InputError, match="not a SAM checkpoint"):
        load_sam(empty)
    other = tmp_path / "other.pth"
    torch.save({"visual.proj": torch.zeros(2)}, other)
    with pytest.raises(InputError, match="not a SAM checkpoint"):
        load_sam(other)
    small = tmp_path / "small.pth"
    torch.save(fake_state(768, 12), small)
    with pytest.raises(InputError, match="holds SAM vit_b weights, not vit_h"):
        load_sam(small, kind="vit_h")
    with pytest.raises(InputError, match="does not fit SAM vit_b"):  # the right shapes but most tensors missing
        load_sam(small)
    monkeypatch.setitem(sys.modules, "segment_anything", None)
    with pytest.raises(InputError, match=r"pip install 'cliplab\[sam\]'"):
        load_sam(small)


def test_proposer_gives_binary_image_sized_masks_best_first():
    image = Image.new("RGB", (10, 6))
    masks, scores = SamProposer(StandIn()).propose(image)
    assert masks.dtype == bool and masks.shape == (2, 6, 10)  # the one-pixel speck is dropped
    assert scores.tolist() == pytest.approx([0.9, 0.7])
    assert masks[0, :3, 5:].all() and masks[0].sum() == 15 and masks[1, :, :5].all() and masks[1].sum() == 30


def test_sam_masks_feed_the_segmenter_and_trident(tiny_model):
    sam = SamProposer(StandIn())
    image = synthetic.scene(0, image_size=32, split="test").image
    seg = OVSegmenter(tiny_model, queries=2, dim=8)
    result = seg.segment(image, ["circle", "star"], proposals=sam)
    masks, _ = sam.propose(image)
    np.testing.assert_array_equal(result.labels > 0, masks.any(0))  # the masks are the segments, nothing else
    expected = seg.classify(image, masks, ["circle", "star"]).argmax(-1) + 1
    assert (result.labels[masks[0]] == expected[0]).all() and (result.labels[masks[1]] == expected[1]).all()
    trident = Segmenter(tiny_model, ["circle", "star"], trident=True, window=16, stride=8, proposals=sam)
    labels = trident(image).labels
    for m in masks:  # Trident averages the logits inside each mask: one label per mask
        assert len(np.unique(labels[m])) == 1


def test_cli_sam_weights(cli, tiny_model_files, tmp_path, monkeypatch):
    image = tmp_path / "in.png"
    synthetic.scene(0, image_size=32, split="test").image.save(image)
    model = ["--model", tiny_model_files["spec"], "--pretrained", str(tiny_model_files["weights"])]
    base = ["segment", "--image", image, "--classes", "circle,star", *model]
    result = cli(*base, "--sam-weights", tmp_path / "sam.pth", "--out", tmp_path / "a")
    assert result.exit_code == 2 and "--segmenter or --trident" in result.stderr
    result = cli(*base, "--trident", "--window", "16", "--sam-weights", tmp_path / "sam.pth", "--out", tmp_path / "a")
    assert result.exit_code == 2 and "SAM weights not found" in result.stderr and "Traceback" not in result.output
    weights = tmp_path / "sam.pth"
    weights.write_bytes(b"stand-in")
    seen = {}

    def stand_in(path, kind=None, device="cpu", **kw):
        seen.update(path=path, kind=kind)
        return SamProposer(StandIn())

    monkeypatch.setattr(SamProposer, "from_checkpoint", stand_in)
    result = cli(*base, "--trident", "--window", "16", "--sam-weights", weights, "--sam-kind", "vit_l", "--out", tmp_path / "t")
    assert result.exit_code == 0, result.output
    assert seen == {"path": weights, "kind": "vit_l"}
    labels = np.asarray(Image.open(tmp_path / "t" / "labels.png"))
    masks, _ = SamProposer(StandIn()).propose(Image.open(image))
    assert all(len(np.unique(labels[m])) == 1 for m in masks)
    assert json.loads((tmp_path / "t" / "areas.json").read_text())["classes"] == ["background", "circle", "star"]
    seg = tmp_path / "seg"
    result = cli("segmenter", "train", *model, "--images", "synthetic:6", "--classes", "circle,square,star", "--steps", "1", "--batch-size", "2",
                 "--out", seg, "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    result = cli("segment", "--image", image, "--classes", "heart,star", "--segmenter", seg, "--sam-weights", weights, "--out", tmp_path / "u")
    assert result.exit_code == 0, result.output
    labels = np.asarray(Image.open(tmp_path / "u" / "labels.png"))
    np.testing.assert_array_equal(labels > 0, masks.any(0))  # the SAM masks are the segments
    report = tmp_path / "r.json"
    result = cli("eval", "--task", "segmentation", "--images", "synthetic:2:1", "--segmenter", seg, "--sam-weights", weights,
                 "--out", report, "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "unseen_miou" in json.loads(report.read_text())["metrics"]
    result = cli("eval", "--task", "segmentation", "--images", "synthetic:2:1", *model, "--sam-weights", weights, "--out", report)
    assert result.exit_code == 2 and "--segmenter" in result.stderr


@pytest.mark.slow
def test_a_random_vit_b_checkpoint_in_the_official_format(tmp_path):
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    path = tmp_path / "sam_vit_b.pth"
    torch.save(sam_model_registry["vit_b"](checkpoint=None).state_dict(), path)  # ~360 MB, as the official file
    sam = load_sam(path)
    assert sum(p.numel() for p in sam.image_encoder.parameters()) == sum(
        v.numel() for k, v in torch.load(path, weights_only=True).items() if k.startswith("image_encoder.")
    )
    assert len(sam.image_encoder.blocks) == 12 and not sam.training
    # random weights predict low IoUs: keep every mask so there is something to check
    proposer = SamProposer.from_checkpoint(path, points_per_side=4, pred_iou_thresh=-1e9, stability_score_thresh=0.0, min_pixels=1)
    masks, scores = proposer.propose(synthetic.scene(0, image_size=64, split="test").image)
    assert masks.dtype == bool and masks.ndim == 3 and masks.shape[1:] == (64, 64) and len(masks) == len(scores) >= 1
    assert (np.diff(scores) <= 0).all()
