"""The Ray engine gives the local engine's ids and embeddings (a 2-CPU local runtime)."""

import numpy as np
import pytest

pytest.importorskip("ray")


@pytest.mark.slow
def test_ray_engine_matches_the_local_engine(tmp_path):
    import cliplab
    from cliplab.features import Features
    from cliplab.features.ray_engine import embed_ray

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # skipped by both, with the same reason
    model = cliplab.load_model("tiny", device="cpu")
    from cliplab.data.sources import open_source

    paths = []
    for i, item in enumerate(open_source("synthetic:20:5").items):
        p = tmp_path / f"img{i:02d}.png"
        p.write_bytes(item.read_bytes())
        paths.append(str(p))
    source = [*paths[:10], str(tmp_path / "broken.png"), *paths[10:]]
    with pytest.warns(UserWarning, match="1 not an image"):
        local = cliplab.embed(model, source, progress=False, num_workers=0)
    remote = embed_ray("cliplab:shapes-tiny", source, num_cpus=2, batch_size=8, timeout_s=300)
    assert remote.ids == local.ids == paths
    cosines = np.sum(remote.X * local.X, axis=1)
    assert cosines.min() >= 0.9999
    assert [(s.id, s.reason) for s in remote.skipped] == [(s.id, s.reason) for s in local.skipped]
    assert remote.identity == local.identity
    remote.save(tmp_path / "feats")  # the same feature-store format
    assert Features.load(tmp_path / "feats").ids == paths
