"""Seeded step batches: the same batch for the same step, rank slices that make up the global batch."""

import pytest
import torch

from cliplab.data import synthetic
from cliplab.errors import InputError
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


def test_synthetic_hard_negatives_pair_each_scene_with_its_edited_twin():
    """Rows 2j+1 are the edited twins of rows 2j: the same scene with one edit, captioned alike."""
    pairs = SyntheticPairs(50, seed=1, image_size=32)
    b = batches(BatchPlan(8, seed=3, hard_negatives=True), stop=2).make_batch(1)
    assert len(b["ids"]) == 8 and len(set(b["ids"][::2])) == 4
    for j in range(0, 8, 2):
        scene_id, twin_id = b["ids"][j], b["ids"][j + 1]
        assert twin_id == f"{scene_id}-edit-1"
        index = int(scene_id.rsplit("-", 1)[1])
        spec = pairs.spec(index)
        kind = pairs.captions(index, spec).index(b["captions"][j])
        twin_caption = b["captions"][j + 1]  # may equal the scene's: a short caption names no size
        assert not torch.equal(b["pixels"][j], b["pixels"][j + 1])
        twins = [t for t in (synthetic.swap_colours(spec), *_one_edits(spec)) if t is not None]
        assert any(pairs.captions(index, t)[kind] == twin_caption for t in twins)


def _one_edits(spec):
    """Every scene that differs from ``spec`` in one object's shape or size."""
    from dataclasses import replace

    for k, obj in enumerate(spec.objects):
        for attr, values in (("shape", synthetic.SHAPES), ("size", tuple(synthetic.SIZES))):
            for v in values:
                if v != getattr(obj, attr):
                    objects = list(spec.objects)
                    objects[k] = replace(obj, **{attr: v})
                    yield replace(spec, objects=tuple(objects))


def test_twin_batches_need_an_even_batch_size():
    with pytest.raises(InputError, match="odd"):
        batches(BatchPlan(7, hard_negatives=True))
