"""The service under abuse: slow or hostile filters, image paths that lead outside the collection,
oversized inputs and echoes, slow clients, and the schema behind the key."""

import asyncio
import base64
import io
import os
import socket
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cliplab.search import SearchIndex
from cliplab.search.loadtest import running_server
from cliplab.search.server import ServerLimits
from cliplab.search.service import ECHO_CHARS, create_app

from .conftest import unit_rows

CROSS_JOIN = "(SELECT count(*) FROM items a, items b, items c, items d, items e) > 0"  # 96^5 rows: minutes of work on any machine


@pytest.fixture(scope="module")
def client(scene_index, clip):
    return TestClient(create_app(scene_index, clip, max_body_bytes=200_000))


def _png(path=None, size=(8, 8), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, format="PNG")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buf.getvalue())
    return buf.getvalue()


@pytest.fixture
def photos(tmp_path, monkeypatch):
    """An index built in ``tmp_path`` with ``--images photos`` (relative), saved and loaded again;
    photos/link.png points to a PNG outside the folder, photos/passwd.png to a text file."""
    from cliplab.features import Features

    _png(tmp_path / "photos" / "a.png")
    _png(tmp_path / "outside" / "secret.png")
    (tmp_path / "passwd.txt").write_text("root:x:0:0:root:/root:/bin/bash\n")
    os.symlink(tmp_path / "outside" / "secret.png", tmp_path / "photos" / "link.png")
    os.symlink(tmp_path / "passwd.txt", tmp_path / "photos" / "passwd.png")
    ids = ["photos/a.png", "photos/link.png", "photos/passwd.png"]
    monkeypatch.chdir(tmp_path)
    feats = Features(X=unit_rows(3, 8), ids=ids, labels=None, model="m", identity="m-1")
    SearchIndex.build(feats, images="photos").save(tmp_path / "photos.index")
    return tmp_path


def test_a_relative_images_folder_is_found_from_another_folder(photos, monkeypatch):
    (photos / "elsewhere").mkdir()
    monkeypatch.chdir(photos / "elsewhere")
    client = TestClient(create_app(SearchIndex.load(photos / "photos.index", read_only=True), model=None))
    r = client.get("/images/photos/a.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"


def test_only_image_files_inside_the_image_folder_are_served(photos, tmp_path_factory):
    from cliplab.features import Features

    client = TestClient(create_app(SearchIndex.load(photos / "photos.index", read_only=True), model=None))
    assert client.get("/images/photos/a.png").status_code == 200
    assert client.get("/images/photos/link.png").status_code == 404  # a PNG, but outside the folder
    assert client.get("/images/photos/passwd.png").status_code == 404  # inside by name, a text file in truth
    # no recorded image source: an id that is a file path is not served as that file
    secret = str(photos / "outside" / "secret.png")
    feats = Features(X=unit_rows(1, 8), ids=[secret], labels=None, model="m", identity="m-1")
    bare = TestClient(create_app(SearchIndex.build(feats), model=None))
    assert bare.get(f"/images/{secret}").status_code == 404


def test_a_slow_filter_is_stopped_and_never_holds_up_other_searches(scene_index, clip, tmp_path, monkeypatch):
    index = SearchIndex.load(scene_index.save(tmp_path / "scenes.index"), read_only=True)
    monkeypatch.setattr(index.metadata, "filter_budget_s", 2.0, raising=False)
    app = create_app(index, clip)

    async def run():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            slow = asyncio.create_task(c.post("/search", json={"text": "a", "where": CROSS_JOIN}))
            await asyncio.sleep(0.2)  # the filter is running
            plain = await asyncio.gather(*(c.post("/search", json={"text": t, "k": 3}) for t in ("a red star", "a blue circle")))
            slow_done_first = slow.done()
            return await slow, plain, slow_done_first

    slow, plain, slow_done_first = asyncio.run(run())
    assert [r.status_code for r in plain] == [200, 200] and not slow_done_first
    assert slow.status_code == 400 and "2 s budget" in slow.json()["detail"]


@pytest.mark.parametrize("where", ["1=0 UNION SELECT name FROM sqlite_master", "1=0 UNION SELECT NULL", "1=0 UNION SELECT 100000",
                                   "label = 'a'; DROP TABLE items"])
def test_filters_that_are_not_one_expression_are_400(client, where):
    r = client.post("/search", json={"text": "a star", "where": where})
    assert r.status_code == 400 and r.json()["detail"].startswith("filter")


def test_a_semicolon_inside_a_quoted_string_is_just_text(client, scenes):
    r = client.post("/search", json={"text": "a star", "k": 5, "where": "caption <> 'a;b' AND background = 'plain'"})
    assert r.status_code == 200 and len(r.json()["results"]) == 5


def test_text_that_is_not_utf8_gets_a_4xx(client):
    body = b'{"text": "\\ud800", "embedding": [1.0]}'  # a lone surrogate, echoed by the 422
    r = client.post("/search", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["input"] == "\ud800"
    r = client.post("/search", content=b'{"text": "a", "where": "\\ud800"}', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "where"]


def test_embed_bounds_decoded_pixels_and_text_length(client):
    big = base64.b64encode(_png(size=(6000, 6000), mode="1")).decode()  # 36 million pixels in a few kB
    assert len(big) < 60_000
    r = client.post("/embed", json={"images": [big, big, big]})
    assert r.status_code == 413 and "3 image(s) hold 108000000 pixels" in r.json()["detail"]
    r = client.post("/embed", json={"texts": ["a red star", "x" * 2001]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "texts", 1]
    assert client.post("/embed", json={"texts": ["a red star"]}).status_code == 200


def test_a_422_echoes_a_long_input_shortened(client):
    r = client.post("/search", json={"text": "x" * 150_000})
    assert r.status_code == 422 and len(r.content) < 2 * ECHO_CHARS + 500
    assert r.json()["detail"][0]["input"].endswith("... (150000 characters)")


def test_schema_and_docs_need_the_key_when_one_is_set(scene_index, clip):
    keyed = TestClient(create_app(scene_index, clip, api_key="s3cret"))
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert keyed.get(path).status_code == 401
        assert keyed.get(path, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert "/search" in keyed.get("/openapi.json", headers={"X-API-Key": "s3cret"}).json()["paths"]
    assert TestClient(create_app(scene_index, clip)).get("/openapi.json").status_code == 200


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(4096)
    except ConnectionResetError:
        return b""


def test_slow_clients_are_cut_off_and_connections_are_capped(scene_index, clip):
    limits = ServerLimits(header_timeout_s=0.5, body_timeout_s=0.5, max_connections=3)
    with running_server(create_app(scene_index, clip, body_timeout_s=0.5), limits=limits) as url:
        port = int(url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        extra = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert _recv(extra) == b""  # over the cap: closed at once
        idle[0].sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        start = time.monotonic()
        assert all(_recv(s) == b"" for s in idle) and time.monotonic() - start < 4
        with socket.create_connection(("127.0.0.1", port), timeout=5) as slow_body:
            slow_body.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"te")
            assert _recv(slow_body).startswith(b"HTTP/1.1 408")
        assert httpx.get(f"{url}/health").status_code == 200
        for s in (*idle, extra):
            s.close()
