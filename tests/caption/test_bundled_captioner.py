"""The bundled captioner of cliplab:shapes-tiny on unseen test scenes (issue #24's targets; slow: ~1 min)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_bundled_captioner_meets_the_quality_targets():
    from cliplab.caption import Captioner
    from cliplab.caption.metrics import caption_scores, tokenize
    from cliplab.data import synthetic

    cap = Captioner.load()
    scenes = synthetic.generate(400, seed=2026, split="test")
    captions = cap.caption([s.image for s in scenes])
    references = [[s.caption, synthetic.paraphrase(s.spec, np.random.default_rng([2026, 1, i]))] for i, s in enumerate(scenes)]
    scores = caption_scores(captions, references)
    assert scores["bleu_4"] >= 0.75 and scores["cider_d"] >= 4.5, scores
    singles = [(c, s) for c, s in zip(captions, scenes) if len(s.objects) == 1]
    right = np.mean([set(tokenize(c).split()) & set(synthetic.SHAPES) == {s.objects[0]["shape"]} for c, s in singles])
    assert right >= 0.95
    assert len(cap.caption_features(cap.features([s.image for s in scenes[:20]]).X, precision="int8")) == 20
