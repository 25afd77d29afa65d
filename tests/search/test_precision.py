"""Precision is arithmetic, not another model: the search flows run at the default precision (auto),
at forced bf16, and as on a CPU where auto picks bf16; features of one model at any precision mix."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image


def embed(cli, tmp_path, images: str, name: str, precision: str):
    result = cli("embed", "--images", images, "--out", tmp_path / name, "--precision", precision, "--workers", "0", "--no-progress")
    assert result.exit_code == 0, result.output
    return tmp_path / name, result


@pytest.mark.parametrize("mode", ["auto", "bf16", "auto on a bf16 CPU"])
def test_embed_index_search_add_and_dedup_at_the_default_and_bf16_precision(cli, tmp_path, request, mode):
    from cliplab.models.precision import auto_precision

    if mode == "auto on a bf16 CPU":
        request.getfixturevalue("bf16_cpu")
    import torch

    precision = "bf16" if mode == "bf16" else "auto"
    feats, result = embed(cli, tmp_path, "synthetic:16", "f", precision)
    effective = "bf16" if mode == "bf16" else auto_precision(torch.device("cpu"))[0]
    assert f"precision {effective}" in result.stdout
    assert effective == "bf16" or mode == "auto"

    built = cli("index", "build", "--features", feats, "--out", tmp_path / "ix")
    assert built.exit_code == 0, built.output
    found = cli("search", tmp_path / "ix", "a red star", "-k", "3", "--out", tmp_path / "hits.json")  # default --precision
    assert found.exit_code == 0, found.output
    assert len(json.loads((tmp_path / "hits.json").read_text())["results"]) == 3
    at_bf16 = cli("search", tmp_path / "ix", "a red star", "-k", "3", "--precision", "bf16")
    assert at_bf16.exit_code == 0, at_bf16.output

    more, _ = embed(cli, tmp_path, "synthetic:4:7", "more", precision)
    added = cli("index", "add", tmp_path / "ix", "--features", more)
    assert added.exit_code == 0 and "now holds 20" in added.stdout, added.output

    dedup = cli("dedup", "--features", feats, "--out", tmp_path / "d.json", "--precision", precision)
    assert dedup.exit_code == 0, dedup.output
    assert json.loads((tmp_path / "d.json").read_text())["records"] == 16

    served = serve(cli, request.getfixturevalue("monkeypatch"), tmp_path / "ix", precision)
    assert served.post("/search", json={"text": "a red star", "k": 3}).status_code == 200


def serve(cli, monkeypatch, index_dir, precision: str):
    """``cliplab serve INDEX --precision P`` up to the point where uvicorn would start: a client of the app it built."""
    import uvicorn
    from fastapi.testclient import TestClient

    built = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: built.setdefault("app", self.config.app))
    result = cli("serve", index_dir, "--precision", precision)
    assert result.exit_code == 0, result.output
    return TestClient(built["app"])


def test_features_of_one_model_at_fp32_bf16_and_int8_are_one_embedding_space(clip):
    from cliplab.data.sources import open_source
    from cliplab.models import load_model
    from cliplab.models.precision import int8_supported
    from cliplab.search.index import model_difference

    images = [Image.open(io.BytesIO(item.read_bytes())) for item in open_source("synthetic:8:5").items]
    reference = clip.encode_images(images)
    for precision in ["bf16", *(["int8"] if int8_supported() else [])]:
        other = load_model("tiny", device="cpu", precision=precision)
        assert other.identity != clip.identity  # the cache keeps them apart ...
        assert model_difference(other.identity, clip.identity) == ""  # ... but they are one model
        cosines = np.sum(other.encode_images(images) * reference, axis=1)
        assert cosines.min() > 0.99, (precision, cosines.min())


def test_another_model_is_refused_naming_what_differs(cli, tmp_path, clip, tiny_model, tiny_model_files):
    from cliplab.search.index import model_difference

    assert model_difference(tiny_model.identity, clip.identity) == "model name, weights, architecture, preprocessing"
    feats, _ = embed(cli, tmp_path, "synthetic:6", "f", "auto")
    assert cli("index", "build", "--features", feats, "--out", tmp_path / "ix").exit_code == 0
    result = cli("search", tmp_path / "ix", "x", "--model", tiny_model_files["spec"], "--pretrained", tiny_model_files["weights"])
    assert result.exit_code == 2
    assert "embedding dim 32 vs 128, model name, weights" in result.stderr and len(result.stderr.strip().splitlines()) == 1
