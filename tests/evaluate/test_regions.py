"""Region accuracy and the dense figures of ``cliplab.evaluate.regions``, against a box-by-box and a
pixel-by-pixel computation; the trainer's ``regions`` and ``dense`` evaluations."""

import json

import numpy as np
import pytest

from cliplab.data import synthetic
from cliplab.dense.evaluate import SYNTHETIC_BACKGROUND_WORDS
from cliplab.dense.segment import Segmenter
from cliplab.errors import InputError
from cliplab.evaluate.regions import HELD_OUT_SHAPES, dense_figures, region_accuracy
from cliplab.models import load_model
from cliplab.train import TrainConfig, train
from cliplab.train.config import evaluation_names
from cliplab.zeroshot.templates import build_prompts

N, SEED = 6, 2026


@pytest.fixture(scope="module")
def model():
    return load_model("cliplab:shapes-vit", device="cpu")


def test_region_accuracy_is_the_share_of_boxes_nearest_their_shape(model):
    prompts = build_prompts(list(synthetic.SHAPES), "default")
    weights = np.stack([model.encode_texts(p).mean(0) for p in prompts])  # the ensemble: mean of unit prompt rows
    right = []
    for record in synthetic.generate(N, seed=SEED, split="test", max_objects=2):
        for obj, mask in zip(record.spec.objects, record.instance_masks):
            ys, xs = np.nonzero(mask)
            if len(xs):
                row = model.encode_regions([record.image], [[[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]])[0]
                right.append(synthetic.SHAPES[int(np.argmax(weights @ row))] == obj.shape)
    assert len(right) > N  # some scenes have two objects
    assert region_accuracy(model, N, SEED) == pytest.approx(np.mean(right))


def test_dense_figures_are_pixel_counts_of_plain_naclip(model):
    segmenter = Segmenter(model, list(synthetic.SHAPES), method="naclip", background=SYNTHETIC_BACKGROUND_WORDS)
    classes = ["background", *synthetic.SHAPES]
    inter, union = np.zeros(len(classes)), np.zeros(len(classes))
    fg = np.zeros(2)
    for i in range(N):
        record = synthetic.scene(i, seed=SEED, split="test", max_objects=2)
        truth, pred = record.semantic_mask, segmenter(record.image).labels
        keep = truth != 255
        for c in range(len(classes)):
            inter[c] += np.sum(keep & (truth == c) & (pred == c))
            union[c] += np.sum(keep & ((truth == c) | (pred == c)))
        fg += [np.sum(keep & (truth > 0) & (pred > 0)), np.sum(keep & ((truth > 0) | (pred > 0)))]
    iou = {c: inter[k] / union[k] for k, c in enumerate(classes) if union[k]}
    held_out = [iou[s] for s in HELD_OUT_SHAPES if s in iou]
    figures = dense_figures(model, N, SEED)
    assert figures["miou"] == pytest.approx(np.mean(list(iou.values())))
    assert figures["foreground_iou"] == pytest.approx(fg[0] / fg[1])
    assert figures["held_out_iou"] == (pytest.approx(np.mean(held_out)) if held_out else None)
    assert all(0 <= v <= 1 for v in figures.values() if v is not None)


def test_the_trainer_adds_region_and_dense_figures_to_its_records_and_summary(tmp_path, model):
    cfg = TrainConfig(model="cliplab:shapes-vit", data="synthetic:32:5", steps=1, batch_size=8, out=str(tmp_path / "run"), eval_n=N,
                      evaluate="regions,dense", ckpt_every=0, workers=0, progress=False, device="cpu")  # fmt: skip
    start = (region_accuracy(model, N, SEED), dense_figures(model, N, SEED))
    result = train(cfg)
    first = result.evals[0]["eval"]
    assert set(first) == {"region_accuracy", "dense"}  # no scene figures: they were not asked for
    assert (first["region_accuracy"], first["dense"]) == (pytest.approx(start[0]), pytest.approx(start[1]))  # step 0: the start model
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [e["step"] for e in summary["evals"]] == [0, 1]
    last = summary["evals"][-1]["eval"]
    assert 0 <= last["region_accuracy"] <= 1 and all(0 <= last["dense"][k] <= 1 for k in ("miou", "foreground_iou"))


@pytest.mark.parametrize(("spec", "names"), [("auto", ("auto",)), ("none", ("none",)), ("scenes", ("scenes",)),
                                             (" dense, regions ,dense", ("dense", "regions"))])  # fmt: skip
def test_evaluation_names(spec, names):
    assert evaluation_names(spec) == names
    TrainConfig(evaluate=spec).check()


@pytest.mark.parametrize(("spec", "message"), [("accuracy", "unknown evaluate 'accuracy'; use auto, none or a comma list of scenes, regions, dense"),
                                               ("scenes,boxes", "unknown evaluate 'boxes'"), (",", "unknown evaluate ','"),
                                               ("auto,regions", "auto and none stand alone")])  # fmt: skip
def test_bad_evaluation_names_are_refused(spec, message):
    with pytest.raises(InputError, match=message):
        TrainConfig(evaluate=spec).check()
