"""CLIP-MoE upcycling at toy size: within-cluster batches, every stage from the base, the folder it writes."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from cliplab.errors import InputError
from cliplab.models import load_model
from cliplab.models.moe import MoEMLP, tower_blocks
from cliplab.train import UpcycleConfig, upcycle_model
from cliplab.train import upcycle as up

TOY = UpcycleConfig(experts=3, top_k=2, stage_steps=2, router_steps=2, batch_size=16, min_batch=4, warmup=1)


def test_cluster_batches_hold_one_cluster_each_and_skip_small_clusters():
    labels = np.array([0] * 40 + [1] * 3 + [2] * 20)
    batches = up.cluster_batches(labels, 16, 4, np.random.default_rng(0))
    assert all(len(np.unique(labels[b])) == 1 for b in batches)
    assert all(4 <= len(b) <= 16 for b in batches)
    covered = np.concatenate(batches)
    assert len(np.unique(covered)) == len(covered) == 60  # cluster 1 (3 rows) left out, the rest once each
    assert 1 not in set(labels[covered])


def test_cluster_hardness_is_the_infonce_among_each_clusters_own_pairs():
    rng = np.random.default_rng(0)
    image, text = rng.normal(size=(7, 3)).astype(np.float32), rng.normal(size=(7, 3)).astype(np.float32)
    labels = np.array([4, 4, 4, 9, 9, 2, 7])
    hard = up.hard_clusters(labels, image, text, 5.0)
    assert set(hard) == {4, 9}  # clusters of one pair have no negatives
    for c, value in hard.items():
        rows = np.flatnonzero(labels == c)
        logits = 5.0 * image[rows] @ text[rows].T
        expected = np.mean([np.log(np.exp(row).sum()) - row[i] for i, row in enumerate(logits)])
        assert value == pytest.approx(expected, rel=1e-5)


def test_emphasised_batches_follow_the_hardness_of_their_clusters():
    labels = np.array([0] * 32 + [1] * 32 + [2] * 32)
    batches = up.cluster_batches(labels, 8, 4, np.random.default_rng(0))  # 4 batches per cluster
    rng = np.random.default_rng(1)
    drawn = [labels[b[0]] for _ in range(500) for b in up.emphasised_batches(batches, labels, {0: 1.0, 1: 3.0, 2: 0.0}, rng)]
    shares = np.bincount(drawn, minlength=3) / len(drawn)
    np.testing.assert_allclose(shares, [0.25, 0.75, 0.0], atol=0.02)
    assert all(len(np.unique(labels[b])) == 1 for b in up.emphasised_batches(batches, labels, {0: 1.0, 1: 1.0}, rng))


def test_the_smoothed_loss_is_cross_entropy_against_smoothed_targets():
    g = torch.Generator().manual_seed(0)
    image, text = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    ids = torch.arange(5)
    loss = up.smoothed_clip_loss(image, text, torch.tensor(10.0), ids, 0.1)
    logits = 10 * torch.nn.functional.normalize(image, dim=-1) @ torch.nn.functional.normalize(text, dim=-1).T
    expected = (torch.nn.functional.cross_entropy(logits, ids, label_smoothing=0.1) +
                torch.nn.functional.cross_entropy(logits.T, ids, label_smoothing=0.1)) / 2  # fmt: skip
    torch.testing.assert_close(loss, expected)


@pytest.fixture(scope="module")
def upcycled(tmp_path_factory):
    """A toy run, with the FFN weights each stage started from and each phase's label smoothing recorded."""
    starts, smoothing = [], {}
    fit = up.fit

    def recording(module, *args, **kwargs):
        if kwargs.get("phase", "").startswith("stage"):
            starts.append([b.mlp.c_fc.weight.detach().clone() for b in tower_blocks(module, "image")])
        smoothing[kwargs["phase"].split()[0]] = args[7]
        return fit(module, *args, **kwargs)

    up.fit = recording
    try:
        out = tmp_path_factory.mktemp("moe") / "model"
        upcycle_model("cliplab:shapes-vit", "synthetic:80", out, TOY)
    finally:
        up.fit = fit
    return out, starts, smoothing


def test_every_stage_starts_from_the_base_and_the_experts_are_the_stages_ffns(upcycled):
    out, starts, _ = upcycled
    base = load_model("cliplab:shapes-vit", device="cpu").torch_module
    base_fc = [b.mlp.c_fc.weight for b in tower_blocks(base, "image")]
    assert len(starts) == TOY.experts - 1
    for start in starts:
        for got, want in zip(start, base_fc):
            torch.testing.assert_close(got, want)
    moe = load_model(str(out), device="cpu").torch_module
    for block, dense in zip(tower_blocks(moe, "image"), tower_blocks(base, "image")):
        assert isinstance(block.mlp, MoEMLP) and block.mlp.n_experts == 3
        torch.testing.assert_close(block.mlp.experts[0].c_fc.weight, dense.mlp.c_fc.weight)
        assert not torch.equal(block.mlp.experts[1].c_fc.weight, dense.mlp.c_fc.weight)
        torch.testing.assert_close(block.attn.in_proj_weight, dense.attn.in_proj_weight)  # only FFNs trained
    for b in tower_blocks(moe, "text"):  # the text tower was left as it is
        assert not isinstance(b.mlp, MoEMLP)
    torch.testing.assert_close(moe.token_embedding.weight, base.token_embedding.weight)


def test_the_stages_and_the_router_take_their_own_smoothing(upcycled):
    _, _, smoothing = upcycled
    assert smoothing == {"stage": TOY.label_smoothing, "router": TOY.router_label_smoothing}
    assert TOY.label_smoothing != TOY.router_label_smoothing  # the test tells them apart


def test_the_folder_says_what_was_run(upcycled):
    out, _, _ = upcycled
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "cliplab:shapes-vit" and summary["pairs"] == 80
    assert [s["stage"] for s in summary["stages"]] == [0, 1, 2]
    assert summary["active_parameters"] < summary["parameters"]
    assert summary["wall_s"] > 0 and summary["cpu_s"] > 0
    manifest = json.loads((out / "cliplab_model.json").read_text())
    assert manifest["kind"] == "moe" and manifest["moe"] == {"experts": 3, "top_k": 2, "blocks": {"image": [0, 1, 2, 3]}}


def test_a_full_folder_or_a_moe_base_is_refused(upcycled, tmp_path):
    out, _, _ = upcycled
    with pytest.raises(InputError, match="not empty"):
        upcycle_model("cliplab:shapes-vit", "synthetic:80", out, TOY)
    with pytest.raises(InputError, match="already a mixture of experts"):
        upcycle_model(str(out), "synthetic:80", tmp_path / "again", TOY)
    with pytest.raises(InputError, match="top-k"):
        UpcycleConfig(experts=2, top_k=3).check()
    with pytest.raises(InputError, match="clusters"):
        UpcycleConfig(clusters=1).check()
    with pytest.raises(InputError, match="emphasis"):
        UpcycleConfig(emphasis="soft").check()
    with pytest.raises(InputError, match="--label-smoothing must be in"):
        UpcycleConfig(label_smoothing=1.0).check()
    with pytest.raises(InputError, match="--router-label-smoothing must be in"):
        UpcycleConfig(router_label_smoothing=-0.1).check()


def test_the_command_writes_a_folder_that_embed_reads(cli, tmp_path):
    out = tmp_path / "moe"
    result = cli("moe", "upcycle", "--data", "synthetic:160", "--out", out, "--experts", "2", "--top-k", "1", "--stage-steps", "1",
                 "--router-steps", "1", "--batch-size", "16", "--clusters", "2", "--emphasis", "none", "--label-smoothing", "0.02",
                 "--router-label-smoothing", "0.03", "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "active" in result.stdout and (out / "cliplab_model.json").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["clusters"] == 2 and summary["stages"][0]["clusters"] <= 4  # 2 x 2 joint clusters
    assert summary["settings"]["emphasis"] == "none" and summary["settings"]["label_smoothing"] == 0.02
    assert summary["settings"]["router_label_smoothing"] == 0.03  # the flags reach the run
    result = cli("embed", "--model", out, "--images", "synthetic:3", "--out", tmp_path / "feats", "--no-cache")
    assert result.exit_code == 0, result.output
    again = cli("moe", "upcycle", "--data", "synthetic:48", "--out", out, "--no-progress")
    assert again.exit_code == 2 and "not empty" in again.stderr


def test_moe_blocks_makes_only_the_last_blocks_sparse_and_trains_only_their_ffns(tmp_path):
    out = upcycle_model("cliplab:shapes-vit", "synthetic:80", tmp_path / "last2", dataclasses.replace(TOY, moe_blocks=2))
    base = load_model("cliplab:shapes-vit", device="cpu").torch_module
    moe = load_model(str(out), device="cpu").torch_module
    blocks, dense = tower_blocks(moe, "image"), tower_blocks(base, "image")
    for i in (0, 1):  # the first blocks are the base's, bit for bit
        assert not isinstance(blocks[i].mlp, MoEMLP)
        for (name, got), want in zip(blocks[i].state_dict().items(), dense[i].state_dict().values()):
            assert torch.equal(got, want), name
    for i in (2, 3):
        assert isinstance(blocks[i].mlp, MoEMLP)
        assert not torch.equal(blocks[i].mlp.experts[1].c_fc.weight, dense[i].mlp.c_fc.weight)
    manifest = json.loads((out / "cliplab_model.json").read_text())
    assert manifest["moe"]["blocks"] == {"image": [2, 3]}
    assert up.ffn_names({"image": [2]})("visual.transformer.resblocks.2.mlp.experts.1.c_fc.weight")
    assert not up.ffn_names({"image": [2]})("visual.transformer.resblocks.2.mlp.router.weight")
    assert not up.ffn_names({"image": [2]})("transformer.resblocks.2.mlp.c_fc.weight")  # the text tower's block 2
    with pytest.raises(InputError, match="--moe-blocks 5 is more than the 4 blocks"):
        upcycle_model("cliplab:shapes-vit", "synthetic:80", tmp_path / "five", dataclasses.replace(TOY, moe_blocks=5))
