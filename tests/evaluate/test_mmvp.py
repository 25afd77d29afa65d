"""MMVP-style pairs: twins differ in the one detail their kind names, and every figure equals a direct computation."""

from __future__ import annotations

import numpy as np
import pytest

from cliplab.data import synthetic
from cliplab.errors import InputError
from cliplab.evaluate.tasks import mmvp


def _differences(a: synthetic.SceneSpec, b: synthetic.SceneSpec) -> set[tuple[int, str]]:
    assert (a.background, a.bg_level, a.bg_variant, a.texture_seed) == (b.background, b.bg_level, b.bg_variant, b.texture_seed)
    assert len(a.objects) == len(b.objects)
    return {(k, f) for k, (x, y) in enumerate(zip(a.objects, b.objects)) for f in ("shape", "color", "size", "position") if getattr(x, f) != getattr(y, f)}


@pytest.mark.parametrize("kind", mmvp.KINDS)
def test_twins_differ_in_the_one_detail_of_their_kind(kind):
    pairs = mmvp.make_pairs(kind, 12, seed=4)
    assert len(pairs.first) == len(pairs.second) == 12
    for a, b in zip(pairs.first, pairs.second):
        diff = _differences(a, b)
        if kind == "color_swap":
            assert diff == {(0, "color"), (1, "color")}
            assert (a.objects[0].color, a.objects[1].color) == (b.objects[1].color, b.objects[0].color)
            assert sorted(synthetic.full_caption(a).split()) == sorted(synthetic.full_caption(b).split())  # the same words
        else:
            assert len(diff) == 1 and next(iter(diff))[1] == kind
        for spec in (a, b):
            assert all((o.shape, o.color) not in synthetic.HELDOUT_PAIRS for o in spec.objects)
    again = mmvp.make_pairs(kind, 12, seed=4)
    assert again.first == pairs.first and again.second == pairs.second


def test_pair_scores_and_separation_against_direct_computation():
    rng = np.random.default_rng(0)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    ia, ib, ta, tb = (unit(rng.normal(size=(6, 5))) for _ in range(4))
    s = mmvp.pair_scores(ia, ib, ta, tb)
    for i in range(6):
        a_ok = ia[i] @ ta[i] > ia[i] @ tb[i]
        b_ok = ib[i] @ tb[i] > ib[i] @ ta[i]
        assert s["a_right"][i] == a_ok and s["b_right"][i] == b_ok and s["pair"][i] == (a_ok and b_ok)
        assert s["cosine"][i] == pytest.approx(ia[i] @ ib[i])
    unrelated = [1 - ia[i] @ x for i in range(6) for j, x in enumerate(np.concatenate([ia, ib])) if j not in (i, 6 + i)]
    assert mmvp.separation(ia, ib, s["cosine"]) == pytest.approx(np.mean(1 - s["cosine"]) / np.mean(unrelated))
    # identical twins: never a pair (a tie is wrong), separation 0
    same = mmvp.pair_scores(ia, ia, ta, tb)
    assert not same["pair"].any() and mmvp.separation(ia, ia, same["cosine"]) == pytest.approx(0, abs=1e-6)


def test_run_mmvp_rows_equal_the_figures_of_the_model(tiny_model):
    res = mmvp.run_mmvp(tiny_model, n=6, seed=3, image_size=32, kinds=("color_swap", "size"))
    assert [(r.kind, r.captions) for r in res.rows] == [("color_swap", "full"), ("color_swap", "short"), ("size", "full")]  # no short caption names a size
    pairs = mmvp.make_pairs("color_swap", 6, seed=3)
    ia = tiny_model.encode_images([synthetic.render(s, 32).image for s in pairs.first])
    ib = tiny_model.encode_images([synthetic.render(s, 32).image for s in pairs.second])
    for row, which in zip(res.rows[:2], ("full", "short")):
        ca, cb = pairs.captions(which)
        s = mmvp.pair_scores(ia, ib, tiny_model.encode_texts(ca), tiny_model.encode_texts(cb))
        assert row.n == 6 and row.pair_accuracy == pytest.approx(s["pair"].mean())
        assert row.image_accuracy == pytest.approx((s["a_right"].mean() + s["b_right"].mean()) / 2)
        assert row.twin_cosine == pytest.approx(s["cosine"].mean(), abs=1e-6)
        assert row.blind_rate == pytest.approx(np.mean(s["cosine"] > mmvp.BLIND_COSINE))
    assert res.metrics["color_swap"]["pair_accuracy"] == res.rows[0].pair_accuracy and res.task == "mmvp"
    assert "rows" in res.to_json() and "blind rate" in mmvp.report(res).to_html()


def test_bad_kind_or_count_is_refused():
    with pytest.raises(InputError, match="kind"):
        mmvp.make_pairs("texture", 3)
    with pytest.raises(InputError, match="at least 2"):
        mmvp.run_mmvp(None, n=1)
