"""The HTTP service: answers like the Python API, clear errors, batching, the schema, a load test."""

import asyncio
import base64

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from cliplab.search import query_vector
from cliplab.search.loadtest import load_test, running_server
from cliplab.search.service import create_app


@pytest.fixture(scope="module")
def app(scene_index, clip):
    return create_app(scene_index, clip, max_body_bytes=200_000)


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)


@pytest.fixture(scope="module")
def image_b64(client, scenes):
    return base64.b64encode(client.get(f"/images/{scenes.ids[5]}").content).decode()


def test_search_answers_like_the_python_api(client, clip, scene_index):
    r = client.post("/search", json={"text": "a green circle", "k": 4, "where": "background = 'plain'"})
    assert r.status_code == 200
    want = scene_index.search(query_vector(clip, text="a green circle"), 4, "background = 'plain'")[0]
    got = r.json()["results"]
    assert [h["id"] for h in got] == [h["id"] for h in want]
    assert np.allclose([h["score"] for h in got], [h["score"] for h in want], atol=1e-5)
    assert all(h["background"] == "plain" for h in got)


def test_image_and_composed_queries(client, scenes, image_b64):
    hits = client.post("/search", json={"image": image_b64, "k": 2}).json()["results"]
    assert hits[0]["id"] == scenes.ids[5]
    composed = client.post("/search", json={"image": image_b64, "text": "a blue star", "k": 2})
    assert composed.status_code == 200 and len(composed.json()["results"]) == 2
    assert scenes.ids[5] not in [h["id"] for h in composed.json()["results"]]  # the query image is what it asks to change
    vector = client.post("/search", json={"embedding": scenes.X[9].tolist(), "k": 1}).json()["results"]
    assert vector[0]["id"] == scenes.ids[9]


@pytest.mark.parametrize("body", [b"{not json", b'{"k": 3}', b'{"text": "x", "k": 0}', b'{"text": "x", "embedding": [1.0]}'])
def test_malformed_or_missing_fields_are_422(client, body):
    assert client.post("/search", content=body, headers={"content-type": "application/json"}).status_code == 422


def test_bad_inputs_are_400_with_the_reason_and_the_service_keeps_serving(client):
    r = client.post("/search", json={"image": base64.b64encode(b"GIF89a but not really").decode()})
    assert r.status_code == 400 and r.json()["detail"] == "image: not an image"
    assert client.post("/search", json={"image": "!!!"}).json()["detail"] == "image: not valid base64"
    r = client.post("/search", json={"text": "x", "where": "no_such_column = 1"})
    assert r.status_code == 400 and "filter" in r.json()["detail"]
    assert client.post("/search", json={"embedding": [1.0, 0.0]}).status_code == 400  # wrong dims
    assert client.post("/search", json={"text": "a red star"}).status_code == 200


def test_bodies_over_the_limit_are_413(client):
    big = {"text": "x", "image": "A" * 300_000}
    assert client.post("/search", json=big).status_code == 413
    chunked = client.post("/search", content=iter([b'{"text": "', b"x" * 250_000, b'"}']))
    assert chunked.status_code == 413
    assert client.get("/health").status_code == 200


def test_api_key_by_either_header_and_health_needs_none(scene_index, clip):
    keyed = TestClient(create_app(scene_index, clip, api_key="s3cret"))
    body = {"text": "a star", "k": 1}
    assert keyed.post("/search", json=body).status_code == 401
    assert keyed.post("/search", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert keyed.post("/search", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert keyed.post("/search", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert keyed.get("/metrics").status_code == 401
    assert keyed.get("/health").status_code == 200 and keyed.get("/").status_code == 200


def test_embed_classify_images_metrics(client, clip, scenes, image_b64):
    r = client.post("/embed", json={"texts": ["a red star"], "images": [image_b64]}).json()
    np.testing.assert_allclose(r["text_embeddings"][0], clip.encode_texts(["a red star"])[0], atol=1e-5)
    np.testing.assert_allclose(r["image_embeddings"][0], scenes.X[5], atol=1e-4)
    first = scenes.meta[5]["objects"][0]
    labels = [f"{c} {first['shape']}" for c in ("red", "green", "blue", "yellow", "purple") if c != first["color"]]
    ranked = client.post("/classify", json={"image": image_b64, "labels": [f"{first['color']} {first['shape']}", *labels]}).json()["labels"]
    assert pytest.approx(sum(x["score"] for x in ranked)) == 1.0
    image = client.get(f"/images/{scenes.ids[5]}")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert client.get("/images/not-indexed").status_code == 404
    assert client.get("/images/../../etc/passwd").status_code == 404
    metrics = client.get("/metrics").text
    assert 'cliplab_requests_total{path="/search",status="200"}' in metrics and "cliplab_forward_passes_total" in metrics


def test_concurrent_requests_share_forward_passes(scene_index, clip):
    app = create_app(scene_index, clip, max_wait_s=0.05)
    texts = [f"a {c} {s}" for c in ("red", "blue", "green", "pink") for s in ("star", "circle", "heart", "cross")]

    async def many():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await asyncio.gather(*(c.post("/search", json={"text": t, "k": 3}) for t in texts))

    responses = asyncio.run(many())
    batcher = app.state.batchers["text"]
    assert all(r.status_code == 200 for r in responses)
    assert batcher.items == len(texts) and batcher.batches < len(texts) // 2
    for t, r in zip(texts, responses):  # batched answers equal one-at-a-time answers
        assert [h["id"] for h in r.json()["results"]] == [h["id"] for h in scene_index.search(query_vector(clip, text=t), 3)[0]]


def test_openapi_schema_holds_for_generated_requests(app):
    import schemathesis
    from schemathesis import checks

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/search", "/embed", "/classify", "/health", "/metrics", "/images/{image_id}"}
    for op in operations:
        strategy = op.as_strategy()

        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @__import__("hypothesis").given(case=strategy)
        def run(case):
            response = case.call()
            assert response.status_code < 500, (op.path, response.status_code, response.text[:200])
            if response.status_code == 200 and op.path in ("/search", "/embed", "/classify"):
                case.validate_response(response, checks=[checks.response_schema_conformance, checks.status_code_conformance])

        run()


def test_bounded_load_on_loopback_has_no_errors(app, capsys):
    payloads = [{"text": t, "k": 5} for t in ("a red star", "a blue circle", "a green heart", "a pink cross")]
    with running_server(app) as url:
        report = load_test(url, payloads, clients=4, requests=60, time_limit_s=120)
    with capsys.disabled():
        print(f"\nload test (loopback): {report.line(4)}")
    assert report.requests == 60 and report.errors == 0


def test_load_tests_refuse_other_hosts():
    from cliplab.errors import InputError

    with pytest.raises(InputError, match="only run against this machine"):
        load_test("http://10.0.0.1:8000", [{"text": "x"}], requests=1)
