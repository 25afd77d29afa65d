"""Seeded step batches: the same batch for the same step, rank slices that make up the global batch."""

import torch

from cliplab.train.batches import BatchPlan, StepBatches, caption_id, short_caption
from cliplab.train.pairs import SyntheticPairs, open_pairs

from .conftest import micro_model


def batches(plan, start=0, stop=3):
    model = micro_model()
    return StepBatches(SyntheticPairs(50, seed=1, image_size=32), model.preprocess, model.tokenize, plan, start, stop)


def test_same_step_same_batch_and_resume_sees_the_rest():
    plan = BatchPlan(8, seed=3, hard_negatives=True)
    full = list(batches(plan))
    resumed = list(batches(plan, start=1))
    assert len(full) == 3 and len(resumed) == 2
    for a, b in zip(full[1:], resumed):
        assert a["ids"] == b["ids"] and torch.equal(a["pixels"], b["pixels"]) and torch.equal(a["negatives"], b["negatives"])


def test_rank_slices_concatenate_to_the_one_process_batch():
    whole = batches(BatchPlan(8, seed=3, hard_negatives=True, short_captions=True)).make_batch(2)
    parts = [batches(BatchPlan(8, seed=3, rank=r, world_size=2, hard_negatives=True, short_captions=True)).make_batch(2) for r in (0, 1)]
    assert parts[0]["ids"] + parts[1]["ids"] == whole["ids"]
    for key in ("pixels", "tokens", "caption_ids", "negatives", "negatives_valid", "short_tokens"):
        assert torch.equal(torch.cat([p[key] for p in parts]), whole[key])


def test_epochs_cover_every_pair_once():
    plan = BatchPlan(10, seed=0)
    b = batches(plan, stop=5)
    seen = [i for step in range(5) for i in b.make_batch(step)["ids"]]
    assert len(set(seen)) == 50


def test_caption_ids_and_short_captions():
    assert caption_id("a red star") == caption_id("a red star") != caption_id("a blue star")
    assert short_caption("A dog. It runs on grass. Sunny.") == "A dog"


def test_manifest_pairs_read_rewrites_and_negatives(tmp_path):
    import json

    from PIL import Image

    Image.new("RGB", (8, 8), (200, 0, 0)).save(tmp_path / "a.png")
    row = {"image": "a.png", "caption": "a red square", "rewrites": ["a square in red"], "hard_negatives": ["a blue square"]}
    (tmp_path / "m.jsonl").write_text(json.dumps(row) + "\n")
    pairs = open_pairs(str(tmp_path / "m.jsonl"))
    pair = pairs[0]
    assert pair.captions == ["a red square", "a square in red"] and pair.negatives == ["a blue square"]
    assert pair.image.size == (8, 8)
