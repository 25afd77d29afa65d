"""CLIP-MoE layers: top-k routing and the load-balancing loss against direct computations, identical
experts equal the dense model, and a "moe" model folder loads by its path and works with the commands."""

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch

from cliplab.errors import InputError, ModelLoadError
from cliplab.models import load_model
from cliplab.models.moe import (
    MoEMLP,
    balance_loss,
    copies,
    load_balancing_loss,
    moe_layers,
    parameter_counts,
    route,
    sparsify,
    tower_blocks,
)


def _mlp(width: int = 8, seed: int = 0) -> torch.nn.Sequential:
    """An open_clip-shaped feed-forward layer with weights drawn from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers = [("c_fc", torch.nn.Linear(width, 4 * width)), ("gelu", torch.nn.GELU()), ("c_proj", torch.nn.Linear(4 * width, width))]
        return torch.nn.Sequential(OrderedDict(layers))


def test_route_keeps_the_top_k_of_the_softmax_renormalised():
    logits = torch.randn(50, 5, generator=torch.Generator().manual_seed(1))
    weights, chosen = route(logits, 2)
    for t in range(50):
        p = np.exp(logits[t].numpy() - logits[t].numpy().max())
        p /= p.sum()
        top = np.argsort(-p)[:2]
        assert chosen[t].tolist() == top.tolist()
        np.testing.assert_allclose(weights[t].numpy(), p[top] / p[top].sum(), rtol=1e-5)


def test_the_moe_layer_sums_the_chosen_experts_outputs_with_their_weights():
    experts = [_mlp(seed=s) for s in range(4)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(9)
        layer = MoEMLP(experts, top_k=2)
    h = torch.randn(3, 7, 8, generator=torch.Generator().manual_seed(2))
    out = layer(h)
    flat = h.reshape(-1, 8)
    probs = torch.softmax(flat @ layer.router.weight.T, -1)
    expected = torch.zeros_like(flat)
    for t in range(len(flat)):
        top = torch.argsort(probs[t], descending=True)[:2]
        w = probs[t, top] / probs[t, top].sum()
        expected[t] = sum(w[j] * experts[int(e)](flat[t]) for j, e in enumerate(top))
    torch.testing.assert_close(out.reshape(-1, 8), expected, rtol=1e-5, atol=1e-6)
    assert layer.last_logits.shape == (21, 4)


def test_the_load_balancing_loss_is_switch_s_e_sum_f_p():
    logits = torch.randn(40, 4, generator=torch.Generator().manual_seed(3))
    probs = torch.softmax(logits, -1)
    top2 = torch.argsort(probs, -1, descending=True)[:, :2]
    direct = 0.0
    for slot in range(2):
        for e in range(4):
            f = float((top2[:, slot] == e).float().mean())
            direct += f * float(probs[:, e].mean())
    assert float(load_balancing_loss(logits, 2)) == pytest.approx(4 * direct, rel=1e-5)
    # a router that sends every token to the same experts scores more than a balanced one (k = 2 at balance)
    skewed = torch.tensor([[5.0, 4.0, 0.0, 0.0]]).repeat(40, 1)
    balanced = torch.tensor([[5.0, 4.0, 0.0, 0.0], [0.0, 0.0, 5.0, 4.0], [4.0, 0.0, 0.0, 5.0], [0.0, 5.0, 4.0, 0.0]]).repeat(10, 1)
    assert float(load_balancing_loss(skewed, 2)) > float(load_balancing_loss(balanced, 2))
    assert float(load_balancing_loss(torch.zeros(8, 4), 1)) == pytest.approx(1.0)


def test_a_bad_top_k_is_refused():
    with pytest.raises(InputError, match="top-k"):
        MoEMLP([_mlp(), _mlp()], top_k=3)


@pytest.fixture(scope="module")
def vit():
    return load_model("cliplab:shapes-vit", device="cpu")


def _embeddings(module, model, images, texts):
    with torch.no_grad():
        pixels = torch.stack([model.preprocess(im) for im in images])
        return module.encode_image(pixels), module.encode_text(model.tokenize(texts))


def test_identical_experts_give_the_dense_model(vit, scene_images):
    module = copy.deepcopy(vit.torch_module)
    towers = {"image": [0, 1, 2, 3], "text": [2, 3]}
    layers = sparsify(module, copies(module, towers, 4), top_k=2, generator=torch.Generator().manual_seed(0))
    assert len(layers) == 6 and all(isinstance(b.mlp, MoEMLP) for b in tower_blocks(module, "image"))
    texts = ["a red circle", "a small blue square at the top left on a striped background"]
    dense = _embeddings(vit.torch_module, vit, scene_images, texts)
    sparse = _embeddings(module, vit, scene_images, texts)
    for a, b in zip(dense, sparse):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert float(balance_loss(module)) > 0
    counts, dense_counts = parameter_counts(module), parameter_counts(vit.torch_module)
    per_expert = sum(p.numel() for p in tower_blocks(vit.torch_module, "image")[0].mlp.parameters())
    routers = sum(m.router.weight.numel() for layers in moe_layers(module).values() for m in layers)
    assert counts["parameters"] == dense_counts["parameters"] + 6 * 3 * per_expert + routers
    assert counts["active_parameters"] == dense_counts["parameters"] + 6 * per_expert + routers


@pytest.fixture(scope="module")
def scene_images():
    from cliplab.data import synthetic

    return [r.image for r in synthetic.generate(6, seed=5, split="test")]


@pytest.fixture(scope="module")
def moe_folder(vit, tmp_path_factory):
    """A "moe" folder of shapes-vit with four different experts in every image block."""
    from cliplab.train.upcycle import UpcycleConfig, UpcycleResult, write_moe_folder

    module = copy.deepcopy(vit.torch_module)
    experts = copies(module, {"image": [0, 1, 2, 3]}, 4)
    generator = torch.Generator().manual_seed(4)
    for mlps in experts["image"].values():
        for mlp in mlps[1:]:
            with torch.no_grad():
                for p in mlp.parameters():
                    p.add_(0.05 * torch.randn(p.shape, generator=generator))
    sparsify(module, experts, 2, generator)
    out = tmp_path_factory.mktemp("moe") / "model"
    write_moe_folder(out, "cliplab:shapes-vit", UpcycleResult(module.eval(), {"note": "test"}), UpcycleConfig())
    return out, module


def test_a_moe_folder_loads_by_its_path(vit, moe_folder, scene_images):
    out, module = moe_folder
    model = load_model(str(out), device="cpu")
    assert model.name == str(out.resolve()) and model.identity != vit.identity
    expected = _embeddings(module, vit, scene_images, ["a red circle"])[0]
    got = torch.from_numpy(model.encode_images(scene_images))
    torch.testing.assert_close(got, torch.nn.functional.normalize(expected, dim=-1), rtol=1e-4, atol=1e-5)
    assert not np.allclose(got.numpy(), vit.encode_images(scene_images), atol=1e-3)  # the experts changed it
    assert (out / "summary.json").is_file() and not list(out.parent.glob(".model.*"))


def test_a_moe_folder_with_a_wrong_layout_is_refused(moe_folder, tmp_path):
    import json
    import shutil

    out, _ = moe_folder
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    manifest = json.loads((bad / "cliplab_model.json").read_text())
    manifest["moe"]["blocks"] = {"image": [0, 1, 2, 9]}
    (bad / "cliplab_model.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="does not fit"):
        load_model(str(bad), device="cpu")


def test_the_commands_and_the_dense_path_work_on_a_moe_folder(cli, moe_folder, tmp_path):
    from cliplab.data import synthetic

    out, _ = moe_folder
    result = cli("classify", "--model", out, "--images", "synthetic:4", "--classnames", "circle,square", "--out", tmp_path / "l.csv", "--no-cache")
    assert result.exit_code == 0, result.output
    image = tmp_path / "scene.png"
    synthetic.generate(1, seed=3, split="test")[0].image.save(image)
    result = cli("segment", "--image", image, "--classes", "circle,square", "--model", out, "--out", tmp_path / "seg")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "seg" / "labels.png").is_file()


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_a_moe_folder_runs_at_lower_precision(moe_folder, scene_images, precision):
    out, _ = moe_folder
    fp32 = load_model(str(out), device="cpu").encode_images(scene_images)
    low = load_model(str(out), device="cpu", precision=precision)
    assert low.precision == precision
    assert (low.encode_images(scene_images) * fp32).sum(1).min() > 0.98
