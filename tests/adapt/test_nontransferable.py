"""IP-CLIP's non-transferable prompt (issue #23 §3): each loss term against a direct computation,
the prompt learner's token layout, a fit/predict round trip and the refusals."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from cliplab.adapt import NonTransferablePrompt
from cliplab.adapt.nontransferable import (
    CONTENT_COPIES,
    DomainFeatures,
    IPPromptLearner,
    StyleEnhancement,
    clamped,
    domain_features,
    ip_clip_loss,
    ip_clip_terms,
    layer_statistics,
    nontransfer_metrics,
    one_view,
    prediction_entropy,
    style_distance,
    text_feature_kl,
)
from cliplab.errors import InputError


def test_clamp_caps_the_value_and_stops_the_gradient():
    x = torch.tensor([1.0, 4.0, 7.0], requires_grad=True)
    y = clamped(x)
    assert y.tolist() == [1.0, 4.0, 5.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0]


def test_style_distance_is_the_mean_squared_difference():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, 5, generator=g)
    direct = sum(float((a[i, j, k] - b[i, j, k]) ** 2) for i in range(3) for j in range(4) for k in range(5)) / 60
    assert float(style_distance(a, b)) == pytest.approx(direct, rel=1e-5)


def test_text_kl_runs_over_feature_dimensions():
    g = torch.Generator().manual_seed(1)
    t, s = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    total = 0.0
    for b in range(2):
        for c in range(3):
            p = np.exp(t[b, c].numpy()) / np.exp(t[b, c].numpy()).sum()
            q = np.exp(s[b, c].numpy()) / np.exp(s[b, c].numpy()).sum()
            total += float((p * np.log(p / q)).sum())
    assert float(text_feature_kl(t, s)) == pytest.approx(total / 6, rel=1e-5)
    assert float(text_feature_kl(t, t)) == pytest.approx(0.0, abs=1e-6)


def test_entropy_of_the_predictions():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    expected = (math.log(2) + -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))) / 2
    assert float(prediction_entropy(logits)) == pytest.approx(expected, rel=1e-6)


def test_terms_and_their_combination():
    g = torch.Generator().manual_seed(2)
    B, C, L, D = 4, 3, 2, 5
    r = lambda *s: torch.randn(*s, generator=g)
    ls, lt, es, et = r(B, C), r(B, C), r(B, C), r(B, C)
    ys, yt = torch.tensor([0, 1, 2, 0]), torch.tensor([2, 2, 1, 0])
    ss, st, ts, tt = r(B, L, D), r(B, L, D), r(B, C, D), r(B, C, D)
    terms = ip_clip_terms(ls, ys, lt, yt, es, et, ss, st, ts, tt)

    def ce(logits, y):  # per image
        logp = logits - torch.logsumexp(logits, 1, keepdim=True)
        return -logp[torch.arange(len(y)), y]

    assert float(terms["ce_auth"]) == pytest.approx(float(ce(ls, ys).mean()), rel=1e-5)
    torch.testing.assert_close(terms["ce_unauth"], ce(lt, yt))  # the maximised terms stay per image
    assert float(terms["ce_auth_style"]) == pytest.approx(float(ce(es, ys).mean()), rel=1e-5)
    torch.testing.assert_close(terms["ce_unauth_style"], ce(et, ys))  # both enhanced views are authorised images
    values = {"ce_auth": 1.0, "ce_unauth": [2.0, 9.0], "ce_auth_style": 0.5, "ce_unauth_style": [9.0, 9.0], "style": 3.0, "entropy": 0.7, "kl": 6.0}
    fixed = {k: torch.tensor(v) for k, v in values.items()}
    # 1 - mean(min(2, 5), min(9, 5)) + 0.5 - min(9, 5) - 0.1 * 3 + 0.01 * 0.7 - 1 * min(6, 5): clamped per image, then
    # averaged (a batch-mean clamp would give min(5.5, 5) = 5 for the unauthorised CE and stop pulling the image at 2)
    assert float(ip_clip_loss(fixed)) == pytest.approx(1 - 3.5 + 0.5 - 5 - 0.3 + 0.007 - 5, rel=1e-6)
    assert float(ip_clip_loss(fixed, style_weight=0, entropy_weight=0, kl_weight=0)) == pytest.approx(1 - 3.5 + 0.5 - 5)
    x = torch.tensor([2.0, 9.0], requires_grad=True)
    ip_clip_loss({**fixed, "ce_unauth": x}).backward()
    assert x.grad.tolist() == [-0.5, 0.0]  # the image still below 5 keeps its pull


def test_layer_statistics_are_channel_mean_and_std_over_tokens():
    h = torch.randn(2, 7, 3, generator=torch.Generator().manual_seed(3))
    style, content = layer_statistics(h)
    a = h.numpy()
    np.testing.assert_allclose(content.numpy(), a.mean(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(style.numpy(), (a.mean(1) + a.std(1)) / 2, rtol=1e-5, atol=1e-6)


def test_prompt_learner_token_layout():
    L, W, T = 3, 6, 4
    learner = IPPromptLearner(L, W, T, 5, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(4)
    ctx, style = learner(torch.randn(2, L, W, generator=g), torch.randn(2, L, W, generator=g))
    assert ctx.shape == (2, 2 * L + CONTENT_COPIES, T) and style.shape == (2, L, T)
    torch.testing.assert_close(ctx[:, :L], style)
    torch.testing.assert_close(ctx[:, L : 2 * L], style)  # the style tokens twice
    assert all(torch.equal(ctx[:, 2 * L], ctx[:, 2 * L + i]) for i in range(CONTENT_COPIES))  # one content token, 4 copies


def test_style_enhancement_gives_unit_rows_and_trains():
    torch.manual_seed(0)
    module = StyleEnhancement(8)
    f = torch.nn.functional.normalize(torch.randn(1, 8), dim=-1)  # one image: BatchNorm still has the bank rows
    out = module(f, torch.nn.functional.normalize(torch.randn(3, 8), dim=-1))
    assert out.shape == (1, 8) and torch.allclose(out.norm(dim=-1), torch.ones(1))
    out.sum().backward()
    assert all(p.grad is not None for p in module.parameters())


def test_metrics_and_the_labelled_substitute_score():
    m = nontransfer_metrics(0.9, {"a": 0.2, "b": 0.1}, 8, 0.95, {"a": 0.9, "b": 0.8})
    assert m["chance"] == 0.125 and m["acc_unauth_mean"] == pytest.approx(0.15)
    assert m["drop_auth"] == pytest.approx(0.05) and m["drop_unauth"] == pytest.approx({"a": 0.7, "b": 0.7})
    assert m["cliplab_nt_score"] == pytest.approx(0.65)
    assert "cliplab_nt_score" not in nontransfer_metrics(0.9, {"a": 0.2}, 8)


# --- with the bundled ViT ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vit():
    from cliplab.models import load_model

    return load_model("shapes-vit", device="cpu")


@pytest.fixture(scope="module")
def domains(vit):
    """Two shapes, 6 scenes each, on a plain (authorised) and a striped (unauthorised) background."""
    from cliplab.data import synthetic

    out = {}
    for background in ("plain", "striped"):
        rng = np.random.default_rng(7)
        images, labels = [], []
        for shape in ("circle", "square"):
            for _ in range(6):
                spec = synthetic.sample_spec(rng, max_objects=1)
                spec = dataclasses.replace(spec, background=background, objects=(dataclasses.replace(spec.objects[0], shape=shape),))
                images.append(synthetic.render(spec).image)
                labels.append(shape)
        out[background] = (images, domain_features(vit, images), np.array(labels))
    return out


def test_domain_features_shapes(vit, domains):
    images, feats, _ = domains["plain"]
    assert feats.embeddings.shape == (12, vit.embed_dim) and feats.style.shape == feats.content.shape
    assert feats.style.shape[:2] == (12, 4)
    np.testing.assert_allclose(np.linalg.norm(feats.embeddings, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(feats.embeddings, vit.encode_images(images), atol=1e-5)


def test_augmented_views_are_seeded_kept_by_take_and_concat_and_drawn_whole(vit, domains):
    images = domains["plain"][0][:3]
    feats = domain_features(vit, images, n_views=2, seed=4)
    assert feats.views.embeddings.shape == (3, 2, vit.embed_dim) and feats.views.style.shape == (3, 2, *feats.style.shape[1:])
    np.testing.assert_allclose(feats.embeddings, domains["plain"][1].embeddings[:3], atol=1e-6)  # the images themselves (batched otherwise: round-off)
    assert not np.allclose(feats.views.embeddings[:, 0], feats.embeddings, atol=1e-3)  # a crop is another picture
    np.testing.assert_array_equal(domain_features(vit, images, n_views=2, seed=4).views.style, feats.views.style)
    both = DomainFeatures.concat([feats.take(np.array([2])), feats])
    assert len(both) == 4 and both.views.content.shape[:2] == (4, 2)
    np.testing.assert_array_equal(both.views.content[0], feats.views.content[2])
    assert DomainFeatures.concat([feats, domains["plain"][1]]).views is None  # views only when every part has them
    fields = feats.with_views()
    assert fields["style"].shape == (3, 3, *feats.style.shape[1:])
    picked = one_view(fields, torch.tensor([0, 1, 2, 1]), torch.Generator().manual_seed(0))
    for i, row in enumerate([0, 1, 2, 1]):  # each row's embedding, style and content come from the same view
        (view,) = [v for v in range(3) if torch.equal(fields["embeddings"][row, v], picked["embeddings"][i])]
        assert torch.equal(picked["style"][i], fields["style"][row, view]) and torch.equal(picked["content"][i], fields["content"][row, view])


def test_fit_predict_round_trip(vit, domains):
    _, Xa, ya = domains["plain"]
    images_u, Xu, yu = domains["striped"]
    head = NonTransferablePrompt(vit, epochs=2, batch_size=4, random_state=0).fit(Xa, ya, Xu, yu)
    assert list(head.classes_) == ["circle", "square"] and head.epochs_run_ == 2 and len(head.loss_history_) == 2
    assert set(head.loss_history_[0]) == {"ce_auth", "ce_unauth", "ce_auth_style", "ce_unauth_style", "style", "entropy", "kl", "loss"}
    proba = head.predict_proba(Xa)
    assert proba.shape == (12, 2) and np.allclose(proba.sum(1), 1.0)
    assert set(head.predict(Xu)) <= {"circle", "square"}
    np.testing.assert_allclose(head.class_scores(images_u), head.class_scores(Xu), rtol=1e-4, atol=1e-4)  # images or features
    again = NonTransferablePrompt(vit, epochs=2, batch_size=4, random_state=0).fit(Xa, ya, Xu, yu)
    np.testing.assert_array_equal(again.class_scores(Xa), head.class_scores(Xa))  # seeded: the same run twice


def test_refusals(vit, domains, bundled):
    _, Xa, ya = domains["plain"]
    _, Xu, yu = domains["striped"]
    with pytest.raises(InputError, match="X_unauth must be a list of images"):
        NonTransferablePrompt(vit).fit(Xa, ya, Xu.embeddings, yu)
    with pytest.raises(InputError, match="were not seen"):
        NonTransferablePrompt(vit, epochs=1).fit(Xa, ya, Xu, np.where(yu == "circle", "star", yu))
    with pytest.raises(InputError, match="one class"):
        NonTransferablePrompt(vit, epochs=1).fit(Xa, np.full(len(ya), "circle"), Xu, yu)
    with pytest.raises(InputError, match="epochs"):
        NonTransferablePrompt(vit, epochs=0).fit(Xa, ya, Xu, yu)
    narrow = DomainFeatures(Xu.embeddings, Xu.style[:, :2], Xu.content[:, :2])
    with pytest.raises(InputError, match="different image towers"):
        NonTransferablePrompt(vit, epochs=1).fit(Xa, ya, narrow, yu)
    with pytest.raises(InputError, match="ResNet"):
        domain_features(bundled, domains["plain"][0][:2])
    with pytest.raises(InputError, match="images is empty"):
        domain_features(vit, [])


def test_save_load_gives_the_same_predictions(vit, domains, tmp_path):
    from cliplab.adapt import load

    images, Xa, ya = domains["plain"]
    _, Xu, yu = domains["striped"]
    with_views = domain_features(vit, images, n_views=1)  # trained on drawn views too
    head = NonTransferablePrompt(vit, epochs=2, batch_size=4, random_state=0).fit(with_views, ya, Xu, yu)
    head.save(tmp_path / "prompt.cliplab")
    again = NonTransferablePrompt.load(tmp_path / "prompt.cliplab", model=vit)
    for X in (Xa, Xu):
        np.testing.assert_array_equal(again.class_scores(X), head.class_scores(X))  # exact: the weights are stored as they are
    assert list(again.classes_) == list(head.classes_) and again.best_epoch_ == head.best_epoch_
    assert type(load(tmp_path / "prompt.cliplab", model=vit)) is NonTransferablePrompt
    with pytest.raises(InputError, match="pass model="):
        load(tmp_path / "prompt.cliplab")


def write_domain(folder, background: str, seed: int, per_class: int = 5) -> None:
    """A class-per-subfolder folder of circles and squares on one background."""
    from cliplab.data import synthetic

    rng = np.random.default_rng(seed)
    for shape in ("circle", "square"):
        (folder / shape).mkdir(parents=True)
        for i in range(per_class):
            spec = synthetic.sample_spec(rng, max_objects=1)
            spec = dataclasses.replace(spec, background=background, objects=(dataclasses.replace(spec.objects[0], shape=shape),))
            synthetic.render(spec).image.save(folder / shape / f"{i}.png")


def test_cli_adapt_ipclip_writes_results_and_a_prompt_that_loads(cli, vit, tmp_path):
    import json

    from cliplab.adapt import load

    write_domain(tmp_path / "plain", "plain", 1)
    write_domain(tmp_path / "striped", "striped", 2)
    write_domain(tmp_path / "dotted", "dotted", 3)
    out, prompt = tmp_path / "run", tmp_path / "prompt.cliplab"
    result = cli("adapt", "--methods", "ipclip", "--train", tmp_path / "plain", "--unauthorised", tmp_path / "striped",
                 "--unauthorised", tmp_path / "dotted", "--epochs", "1", "--test-fraction", "0.4", "--seeds", "3",
                 "--model", "shapes-vit", "--out", out, "--export", prompt, "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == "ipclip" and results["classes"] == ["circle", "square"]
    assert results["unauthorised"] == {"unauthorised_1": str(tmp_path / "striped"), "unauthorised_2": str(tmp_path / "dotted")}
    assert results["n_train"] == {"authorised": 6, "unauthorised_1": 6, "unauthorised_2": 6}  # 2 of 5 per class held out
    assert results["n_test"] == {"authorised": 4, "unauthorised_1": 4, "unauthorised_2": 4}
    assert set(results["metrics"]["acc_unauth"]) == {"unauthorised_1", "unauthorised_2"} and results["metrics"]["chance"] == 0.5
    assert "authorised" in result.stdout and "zero-shot" in result.stdout
    # the saved prompt scores the held-out authorised images as the run did
    from PIL import Image

    from cliplab.adapt.nontransferable import domain_features
    from cliplab.data.few_shot import stratified_split

    files = sorted((tmp_path / "plain").glob("*/*.png"))
    y = np.array([f.parent.name for f in files])
    _, test_rows = stratified_split(y, 0.4, 3, "--test-fraction", keep_one=True)
    head = load(prompt, model=vit)
    feats = domain_features(vit, [Image.open(files[i]).convert("RGB") for i in test_rows])
    assert head.score(feats, y[test_rows]) == pytest.approx(results["accuracy"]["authorised"])


def test_cli_adapt_ipclip_refusals(cli, tmp_path):
    write_domain(tmp_path / "plain", "plain", 1, per_class=2)
    base = ["adapt", "--train", tmp_path / "plain", "--model", "shapes-vit", "--no-progress"]
    result = cli(*base, "--methods", "ipclip", "--out", tmp_path / "a")
    assert result.exit_code == 2 and "--unauthorised" in result.output
    result = cli(*base, "--methods", "ipclip,coop", "--unauthorised", tmp_path / "plain", "--out", tmp_path / "b")
    assert result.exit_code == 2 and "runs alone" in result.output
    result = cli(*base, "--methods", "coop", "--unauthorised", tmp_path / "plain", "--out", tmp_path / "c")
    assert result.exit_code == 2 and "--methods ipclip only" in result.output
