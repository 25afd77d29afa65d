import json

import numpy as np

from cliplab.data import scene_text, synthetic


def test_synth_alt_text_long_captions_and_long_tail(cli, tmp_path):
    out = tmp_path / "scenes"
    result = cli("data", "synth", "--n", 40, "--seed", 2, "--out", out, "--alt-text", "--generic-rate", 0, "--long-captions",
                 "--tail-shapes", "star,heart", "--tail-ratio", 1000)  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    weights = synthetic.long_tail(["star", "heart"], 1000)
    recs = synthetic.generate(40, seed=2, split="test", shape_weights=weights)
    assert [r["caption"] for r in rows] == [r.caption for r in recs]
    assert [r["long_caption"] for r in rows] == [scene_text.long_caption(r.spec) for r in recs]
    assert [r["alt_text"] for r in rows] == [scene_text.alt_text(r.spec, np.random.default_rng([2, i, 2]), scene_text.AltTextRates(generic=0))
                                             for i, r in enumerate(recs)]  # fmt: skip
    assert not any(o["shape"] in ("star", "heart") for r in rows for o in r["objects"])  # 1000x rarer: none in 40


def test_synth_refuses_bad_rates_and_tail_shapes(cli, tmp_path):
    bad = cli("data", "synth", "--n", 2, "--out", tmp_path / "a", "--alt-text", "--missing-rate", 2)
    assert bad.exit_code == 2 and "missing" in bad.output
    bad = cli("data", "synth", "--n", 2, "--out", tmp_path / "b", "--tail-shapes", "hexagon")
    assert bad.exit_code == 2 and "hexagon" in bad.output
