"""The trained segmenter: proposer masks, each MAFT+ term against a direct computation, region-noun
crops, seen/unseen figures, save/load, and resuming training from a checkpoint."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cliplab.data import synthetic
from cliplab.dense.evaluate import seen_unseen
from cliplab.dense.maft import (
    ContentDependentTransfer,
    mask_aware_loss,
    mask_pool,
    pod,
    representation_compensation,
    sine_position_encoding,
)
from cliplab.dense.ovseg import CHECKPOINT, OVSegmenter, region_nouns, training_scenes
from cliplab.dense.proposer import MaskProposer, proposer_loss, select_masks
from cliplab.dense.regions import masked_crops
from cliplab.errors import InputError

SEEN = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def trained(tiny_model):
    return OVSegmenter(tiny_model, queries=4, dim=8, min_score=0.0).fit("synthetic:12", classes=SEEN, steps=2, batch_size=4)


def test_proposer_masks_are_binary_and_image_sized(trained):
    image = synthetic.scene(0, image_size=48, split="test").image
    masks, scores = trained.propose(image)
    assert masks.dtype == bool and masks.shape[1:] == (48, 48) and len(masks) == len(scores) >= 1
    assert ((scores >= 0) & (scores <= 1)).all()


def test_select_masks_keeps_confident_distinct_masks():
    logits = torch.full((3, 4, 4), -5.0)
    logits[0, :2] = logits[1, :2] = logits[2, 2:] = 5.0  # query 1 repeats query 0
    masks, _ = select_masks(logits, torch.tensor([2.0, 1.0, -3.0]), min_score=0.5)
    assert len(masks) == 1 and masks[0, :2].all() and not masks[0, 2:].any()
    assert len(select_masks(logits, torch.tensor([2.0, 1.0, 3.0]))[0]) == 2


def test_proposer_loss_ignores_pixels_and_matches_the_best_query():
    proposer = MaskProposer(token_dim=6, dim=4, queries=2)
    logits, obj = proposer(torch.randn(1, 6, 2, 2), torch.randn(1, 3, 4, 4))
    assert logits.shape == (1, 2, 4, 4) and obj.shape == (1, 2)
    target = torch.zeros(1, 4, 4)
    target[0, :2] = 1
    perfect = torch.where(target.bool(), 20.0, -20.0)
    both = torch.stack([perfect[0], -perfect[0]])[None]
    ignore = torch.zeros(1, 4, 4, dtype=torch.bool)
    low = proposer_loss(both, torch.tensor([[20.0, -20.0]]), [target], ignore)
    assert float(low) < 0.01  # query 0 is matched, query 1 is no-object
    wrong_in_ignored = both.clone()
    wrong_in_ignored[0, 0, 3] = -20.0  # wrong on the last row ...
    ignore[0, 3] = True  # ... which no loss sees
    torch.testing.assert_close(proposer_loss(wrong_in_ignored, torch.tensor([[20.0, -20.0]]), [target], ignore), low)


def _attention(mha, q, kv_k, kv_v):
    """Multi-head attention written out with the module's weights."""
    d = q.shape[-1]
    wq, wk, wv = mha.in_proj_weight.split(d)
    bq, bk, bv = mha.in_proj_bias.split(d)
    h = mha.num_heads
    heads = lambda x: x.view(x.shape[0], h, d // h).transpose(0, 1)
    qh, kh, vh = heads(q @ wq.T + bq), heads(kv_k @ wk.T + bk), heads(kv_v @ wv.T + bv)
    att = torch.softmax(qh @ kh.transpose(1, 2) / (d // h) ** 0.5, -1) @ vh
    return att.transpose(0, 1).reshape(q.shape[0], d) @ mha.out_proj.weight.T + mha.out_proj.bias


@torch.no_grad()
def test_content_dependent_transfer_against_a_direct_computation():
    torch.manual_seed(0)
    cdt = ContentDependentTransfer(8, heads=2)
    text, image = F.normalize(torch.randn(1, 3, 8), dim=-1), torch.randn(1, 8, 2, 3)
    torch.testing.assert_close(cdt(text, image), text)  # zero-initialised: the identity
    torch.nn.init.normal_(cdt.out.weight)
    tokens = image[0].flatten(1).T
    keys = tokens + sine_position_encoding(8, (2, 3))
    attended = _attention(cdt.attend, text[0], keys, tokens)
    expected = text[0] + cdt.out(F.layer_norm(attended, (8,), cdt.norm.weight, cdt.norm.bias))
    torch.testing.assert_close(cdt(text, image)[0], F.normalize(expected, dim=-1))


def test_sine_position_encoding_values():
    enc = sine_position_encoding(4, (2, 2)).view(2, 2, 4)
    y = torch.tensor([1.0, 2.0]) / 2 * 2 * torch.pi  # normalised positions (i + 1) / h · 2π
    # channels: y sin (freq 1), y cos (freq 1), x sin, x cos
    torch.testing.assert_close(enc[:, 0, 0], y.sin())
    torch.testing.assert_close(enc[:, 0, 1], y.cos())
    torch.testing.assert_close(enc[0, :, 2], y.sin())


def test_pod_and_representation_compensation_against_loops():
    x = torch.randn(2, 3, 4, 4)
    expected = []
    for s in (1, 2, 4):
        k = 4 // s
        pooled = torch.stack([torch.stack([x[..., i * k : (i + 1) * k, j * k : (j + 1) * k].mean((-2, -1)) for j in range(s)], -1)
                              for i in range(s)], -2)  # fmt: skip
        expected += [pooled.sum(-1).flatten(1), pooled.sum(-2).flatten(1)]
    torch.testing.assert_close(pod(x), torch.cat(expected, 1))
    y = torch.randn(2, 3, 4, 4)
    direct = 0.1 * F.smooth_l1_loss(pod(x.clamp_min(0)), pod(y.clamp_min(0)))
    torch.testing.assert_close(representation_compensation(x, y), direct)
    assert float(representation_compensation(x, x)) == 0.0


def test_mask_pool_and_mask_aware_loss_against_direct_computations():
    feats, masks = torch.randn(1, 5, 2, 2), torch.zeros(1, 1, 2, 2)
    masks[0, 0, 0] = 1.0
    torch.testing.assert_close(mask_pool(feats, masks)[0, 0], F.normalize(feats[0, :, 0].mean(1), dim=0))
    logits, mask_logits = torch.randn(3, 4), torch.randn(3, 6)
    target, label = (torch.rand(6) > 0.5).float(), 2
    p = torch.sigmoid(mask_logits)
    iou = (p * target).sum(1) / (p.sum(1) + target.sum() - (p * target).sum(1))
    iou = (iou - iou.min()) / (iou.max() - iou.min())
    expected = F.smooth_l1_loss(torch.softmax(logits, 1)[:, label], iou)
    torch.testing.assert_close(mask_aware_loss(logits, mask_logits, target[None], torch.tensor([label])), expected)


def test_region_nouns_and_training_crops(tiny_model):
    assert region_nouns("a small red star at the top and a big blue heart", synthetic.SHAPES) == ["star", "heart"]
    data = training_scenes(tiny_model, "synthetic:12", SEEN)
    for i in range(12):
        record = synthetic.scene(i, image_size=32, split="train", max_objects=2)
        shapes = [o["shape"] for o, m in zip(record.objects, record.instance_masks) if m.any()]
        assert [SEEN[k] for k in data.labels[i]] == [s for s in shapes if s in SEEN]
        assert int((data.crop_scene == i).sum()) == sum(s in SEEN for s in shapes)  # unseen objects give no pair
        unseen = [m for o, m in zip(record.objects, record.instance_masks) if o["shape"] not in SEEN]
        np.testing.assert_array_equal(data.ignore[i].numpy(), np.any(unseen, 0) if unseen else False)
        paired = [k for k, o in enumerate(record.objects) if o["shape"] in SEEN and record.instance_masks[k].any()]
        if paired:  # each crop is its own object's masked crop (outside the mask: the mean colour; tests/dense/test_regions.py)
            crops, _ = masked_crops(tiny_model, record.image, record.instance_masks[paired])
            torch.testing.assert_close(data.crops[data.crop_scene == i], crops)
    with pytest.raises(InputError, match="synthetic"):
        training_scenes(tiny_model, "photos/", SEEN)
    with pytest.raises(InputError, match="no object of heart"):
        training_scenes(tiny_model, "synthetic:2", ["heart"])


def test_segment_with_user_and_dense_proposals(trained):
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 36, 3), dtype=np.uint8))
    masks = np.zeros((2, 40, 36), dtype=bool)
    masks[0, :10] = masks[1, 20:] = True
    seg = trained.segment(image, ["heart", "star"], proposals=masks)
    assert seg.classes == ["background", "heart", "star"] and seg.labels.shape == (40, 36)
    np.testing.assert_allclose(seg.probs.sum(0), 1.0, atol=1e-5)
    assert (seg.labels[10:20] == 0).all() and (seg.labels[:10] > 0).all()
    assert trained.segment(image, ["heart"], proposals="dense").probs.shape == (2, 40, 36)
    with pytest.raises(InputError, match="proposal masks"):
        trained.segment(image, ["heart"], proposals=masks[:, :5])


def test_save_load_round_trip(trained, tiny_model, tmp_path):
    trained.save(tmp_path / "seg")
    again = OVSegmenter.load(tmp_path / "seg", model=tiny_model)
    assert again.classes_ == SEEN and again.steps_done_ == 2
    image = synthetic.scene(1, image_size=32, split="test").image
    masks = np.ones((1, 32, 32), dtype=bool)
    np.testing.assert_allclose(again.classify(image, masks, SEEN), trained.classify(image, masks, SEEN), atol=1e-6)
    with pytest.raises(InputError, match="not a trained segmenter"):
        OVSegmenter.load(tmp_path)


def test_resumed_training_equals_an_uninterrupted_run(tiny_model, tmp_path):
    before = {k: v.clone() for k, v in tiny_model.torch_module.state_dict().items()}
    flags = [p.requires_grad for p in tiny_model.torch_module.parameters()]

    def fresh():
        return OVSegmenter(tiny_model, queries=4, dim=8)

    whole = fresh().fit("synthetic:6", classes=SEEN, steps=2, batch_size=2)

    def crash(step, total, loss):
        raise KeyboardInterrupt  # killed right after the first step's checkpoint

    with pytest.raises(KeyboardInterrupt):
        fresh().fit("synthetic:6", classes=SEEN, steps=2, batch_size=2, out=tmp_path, checkpoint_every=1, on_step=crash)
    assert (tmp_path / CHECKPOINT).exists()
    resumed = fresh().fit("synthetic:6", classes=SEEN, steps=2, batch_size=2, out=tmp_path, checkpoint_every=1)
    assert resumed.steps_done_ == 2 and not (tmp_path / CHECKPOINT).exists() and (tmp_path / "ovsegmenter.json").exists()
    for name, module in whole.modules().items():
        for (k, a), b in zip(module.state_dict().items(), resumed.modules()[name].state_dict().values()):
            torch.testing.assert_close(a, b, msg=f"{name}.{k}")
    assert all(torch.equal(v, tiny_model.torch_module.state_dict()[k]) for k, v in before.items())  # the base model is not trained
    assert [p.requires_grad for p in tiny_model.torch_module.parameters()] == flags


def test_seen_unseen_split():
    ious = {"background": 0.9, "a": 0.5, "b": 0.7, "c": 0.1, "d": None}
    assert seen_unseen(ious, ["a", "b"]) == pytest.approx({"seen_miou": 0.6, "unseen_miou": 0.1})
    with pytest.raises(InputError, match="not among"):
        seen_unseen(ious, ["z"])


def test_frozen_classifier_ensemble_weights_seen_and_unseen_classes_apart(trained):
    """p ∝ p_in^(1-w_c) · p_out^(w_c): w = 1 is the frozen context-crop classifier alone, w = 0 the fine-tuned
    pair alone, and (1, 0) gives training classes p_out's ratios and the others p_in's."""
    from cliplab.dense.regions import region_probabilities

    image = synthetic.scene(2, image_size=32, split="test").image
    masks = np.zeros((2, 32, 32), dtype=bool)
    masks[0, 2:14, 3:20] = masks[1, 16:30, 10:28] = True
    names = ["circle", "heart", "square", "crescent"]  # circle, square seen; heart, crescent unseen
    weights = trained.frozen_weights
    try:
        trained.frozen_weights = (1.0, 1.0)
        p_out = region_probabilities(trained.model, image, list(masks), trained.text(names))
        np.testing.assert_allclose(trained.classify(image, masks, names), p_out, atol=1e-5)
        trained.frozen_weights = (0.0, 0.0)
        p_in = trained.classify(image, masks, names)
        trained.frozen_weights = (1.0, 0.0)
        mixed = np.log(trained.classify(image, masks, names))
    finally:
        trained.frozen_weights = weights
    np.testing.assert_allclose(mixed[:, 0] - mixed[:, 2], np.log(p_out[:, 0] / p_out[:, 2]), atol=1e-4)
    np.testing.assert_allclose(mixed[:, 1] - mixed[:, 3], np.log(p_in[:, 1] / p_in[:, 3]), atol=1e-4)
    with pytest.raises(InputError, match="frozen_weights"):
        OVSegmenter(trained.model, frozen_weights=(0.2, 1.5))
