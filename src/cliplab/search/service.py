"""The search service: a FastAPI app over a ``SearchIndex`` and its model.

    POST /search    {"text" | "image" (base64) | "embedding", "k", "where", "source_text", "alpha"}
                    -> {"results": [{"id", "score", ...metadata}]}, the same as ``cliplab search``
    POST /embed     {"texts": [...], "images": [base64, ...]} -> {"text_embeddings", "image_embeddings"}
    POST /classify  {"image": base64, "labels": [...]} -> {"labels": [{"label", "score"}]}
    GET  /health, GET /metrics (Prometheus text), GET /images/{id}, GET / (the web page)

Concurrent requests are encoded together (``MicroBatcher``: one forward pass per modality per
batch). Bad requests get one clear status and the service keeps serving: 422 malformed or
missing fields or a text over ``MAX_TEXT`` characters (the input echoed at most ``ECHO_CHARS``
characters long), 413 a body over ``max_body_bytes`` or images over ``max_pixels`` decoded pixels
in all, 400 an image that is not an image (with the reason) or a bad filter (one over its time
budget too), 401 a missing or wrong key when ``api_key`` is set (``Authorization: Bearer KEY`` or
``X-API-Key: KEY``; only /health and the page need none: with a key, the schema and the docs
pages need it too). Filtered searches run in a thread of their own, so a slow filter never holds
up other searches.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import lru_cache, partial
from importlib import resources
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from PIL import Image
from pydantic import BaseModel, Field, model_validator

from cliplab.data.images import DEFAULT_MAX_PIXELS, decode_image
from cliplab.errors import BadImage, CliplabError
from cliplab.search.batching import MicroBatcher
from cliplab.search.images import ImageLookup
from cliplab.search.index import SearchIndex
from cliplab.search.queries import (
    DEFAULT_ALPHA,
    DEFAULT_SOURCE_TEXT,
    compose,
    normalise,
)
from cliplab.validation import check_embeddings

DEFAULT_MAX_BODY = 10_000_000
MAX_K = 1000
MAX_ITEMS = 64
MAX_TEXT = 2000  # characters of one text (a query, a text to embed, a label)
ECHO_CHARS = 200  # characters of a bad input a 422 echoes
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]


# --- request and response bodies --------------------------------------------------------------------
class SearchRequest(BaseModel):
    text: str | None = Field(None, min_length=1, max_length=MAX_TEXT, description="What to look for, in words.")
    image: str | None = Field(None, min_length=1, description="A query image, base64-encoded (with text: a composed query).")
    embedding: list[float] | None = Field(None, min_length=1, description="A query vector (the index's model's dims).")
    k: int = Field(10, ge=1, le=MAX_K, description="How many results.")
    where: str | None = Field(None, min_length=1, max_length=MAX_TEXT, description="SQL filter over the metadata, e.g. label = 'cat'.")
    source_text: str | None = Field(None, min_length=1, max_length=MAX_TEXT, description="Composed queries: what the query image shows.")
    alpha: float = Field(DEFAULT_ALPHA, ge=0, le=10, description="Composed queries: how far to move along the text edit.")

    @model_validator(mode="after")
    def _one_query(self) -> SearchRequest:
        if self.embedding is not None and (self.text is not None or self.image is not None):
            raise ValueError("pass an embedding alone, not with a text or an image")
        if self.text is None and self.image is None and self.embedding is None:
            raise ValueError("pass one of text, image or embedding")
        return self


class SearchResponse(BaseModel):
    results: list[dict[str, Any]] = Field(description="Best first: id, score and the item's metadata.")


class EmbedRequest(BaseModel):
    texts: list[Text] = Field(default_factory=list, max_length=MAX_ITEMS)
    images: list[str] = Field(default_factory=list, max_length=MAX_ITEMS, description="base64-encoded images")

    @model_validator(mode="after")
    def _something(self) -> EmbedRequest:
        if not self.texts and not self.images:
            raise ValueError("pass texts, images or both")
        return self


class EmbedResponse(BaseModel):
    text_embeddings: list[list[float]]
    image_embeddings: list[list[float]]


class ClassifyRequest(BaseModel):
    image: str = Field(min_length=1, description="base64-encoded image")
    labels: list[Text] = Field(min_length=1, max_length=1000)


class ClassifyResponse(BaseModel):
    labels: list[dict[str, Any]] = Field(description="label and score (softmax probability), best first")


ERRORS = {
    400: {"description": "An input that cannot be used (not an image, a bad filter, wrong dims)."},
    401: {"description": "Missing or wrong API key."},
    413: {"description": "Body over the size limit, or images over the decoded-pixel limit."},
}


# --- the app ------------------------------------------------------------------------------------------
def create_app(
    index: SearchIndex,
    model: Any,
    *,
    api_key: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    max_batch: int = 32,
    max_wait_s: float = 0.002,
    images: ImageLookup | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    body_timeout_s: float = 30.0,
) -> FastAPI:
    """The service for ``index`` (vectors from ``model``); ``max_pixels`` bounds the decoded pixels of
    one request's images together, ``body_timeout_s`` the time to receive a body (408 beyond)."""
    # filtered searches queue for one thread of their own (its thread ends with the app), so slow
    # filters never take the threads plain searches and encoders run on
    filters = ThreadPoolExecutor(1, thread_name_prefix="cliplab-filter")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for batcher in app.state.batchers.values():
            await batcher.close()

    public_docs = {} if api_key is None else {"openapi_url": None, "docs_url": None, "redoc_url": None}
    app = FastAPI(title="cliplab search", version="1", description="Search a collection by text, image or both.",
                  lifespan=lifespan, default_response_class=AsciiJSONResponse, **public_docs)
    registry = CollectorRegistry()
    requests_total = Counter("cliplab_requests", "Requests served", ["path", "status"], registry=registry)
    latency = Histogram("cliplab_request_seconds", "Request latency", ["path"], registry=registry,
                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
    passes = Counter("cliplab_forward_passes", "Model forward passes", ["modality"], registry=registry)
    encoded = Counter("cliplab_encoded_inputs", "Inputs encoded", ["modality"], registry=registry)
    Gauge("cliplab_index_vectors", "Vectors in the index", registry=registry).set_function(lambda: len(index))

    def counted(modality: str, fn):
        def run(batch):
            out = fn(batch)
            passes.labels(modality).inc()
            encoded.labels(modality).inc(len(batch))
            return out
        return run

    text_batcher = MicroBatcher(counted("text", lambda texts: model.encode_texts(list(texts))), max_batch, max_wait_s)
    image_batcher = MicroBatcher(counted("image", lambda ims: model.encode_images(list(ims))), max_batch, max_wait_s)
    app.state.batchers = {"text": text_batcher, "image": image_batcher}
    lookup = images or ImageLookup.for_index(index.info)
    page = resources.files("cliplab.search").joinpath("static/index.html").read_text(encoding="utf-8")

    # authentication: either header; documented in the OpenAPI schema
    bearer = HTTPBearer(auto_error=False)
    header_key = APIKeyHeader(name="X-API-Key", auto_error=False)

    def check_key(creds: HTTPAuthorizationCredentials | None = Security(bearer), key: str | None = Security(header_key)) -> None:
        if api_key is None:
            return
        given = key if key is not None else (creds.credentials if creds is not None else None)
        if given is None or not hmac.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key; send Authorization: Bearer KEY or X-API-Key: KEY",
                                headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(check_key)]

    @app.middleware("http")
    async def limits_and_metrics(request: Request, call_next):
        start = time.perf_counter()
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            response = _too_large(max_body_bytes)
        else:
            body = b""
            try:
                async with asyncio.timeout(body_timeout_s):  # a client that sends slowly gives up its connection
                    async for chunk in request.stream():
                        body += chunk
                        if len(body) > max_body_bytes:
                            break
            except TimeoutError:
                response = AsciiJSONResponse({"detail": f"the request body did not arrive within {body_timeout_s:g} s"},
                                             status_code=408, headers={"Connection": "close"})
            else:
                if len(body) > max_body_bytes:
                    response = _too_large(max_body_bytes)
                else:
                    request._body = body  # the route reads the buffered body
                    response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "other")
        requests_total.labels(path, str(response.status_code)).inc()
        latency.labels(path).observe(time.perf_counter() - start)
        return response

    @app.exception_handler(CliplabError)
    async def _user_error(request: Request, exc: CliplabError):
        return AsciiJSONResponse({"detail": " ".join(str(exc).split())}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = [{**e, "input": _echo(e["input"])} if "input" in e else e for e in exc.errors()]
        return AsciiJSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

    async def decode(fields: dict[str, str]) -> list[Image.Image]:
        """Decode base64 images (field name -> text), refusing them unless their pixels fit ``max_pixels``."""
        data = {field: _b64(b64, field) for field, b64 in fields.items()}
        pixels = sum(map(_pixels, data.values()))
        if pixels > max_pixels:
            raise HTTPException(413, f"the request's {len(data)} image(s) hold {pixels} pixels in all, over the limit "
                                     f"of {max_pixels}; send fewer or smaller images")
        try:
            return [await asyncio.to_thread(decode_image, d, field) for field, d in data.items()]
        except BadImage as exc:
            raise HTTPException(400, f"{exc.source_id}: {exc.reason}") from exc

    async def query_vector(req: SearchRequest) -> tuple[np.ndarray, np.ndarray | None]:
        """The (1, d) query and, for a composed query, its image's vector (whose copies are left out of the hits)."""
        if req.embedding is not None:
            return check_embeddings(normalise(req.embedding), index.dim, name="embedding", warn_norm=False), None
        if req.image is not None:
            image_vec = await image_batcher((await decode({"image": req.image}))[0])
            if req.text is None:
                return image_vec[None], None
            target, source = await asyncio.gather(text_batcher(req.text), text_batcher(req.source_text or DEFAULT_SOURCE_TEXT))
            return compose(image_vec, target, source, req.alpha), image_vec[None]
        return (await text_batcher(req.text))[None], None

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "vectors": len(index), "model": index.model_name, "index": index.info.get("key")}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home() -> HTMLResponse:
        return HTMLResponse(page)

    @app.post("/search", response_model=SearchResponse, dependencies=guarded, responses=ERRORS)
    async def search(req: SearchRequest) -> dict[str, Any]:
        q, exclude = await query_vector(req)
        run = partial(index.search, q, req.k, req.where, exclude=exclude)
        if req.where:
            hits = await asyncio.get_running_loop().run_in_executor(filters, run)
        else:
            hits = await asyncio.to_thread(run)
        return {"results": hits[0]}

    @app.post("/embed", response_model=EmbedResponse, dependencies=guarded, responses=ERRORS)
    async def embed(req: EmbedRequest) -> dict[str, Any]:
        pictures = await decode({f"images[{i}]": b for i, b in enumerate(req.images)})
        texts = await asyncio.gather(*(text_batcher(t) for t in req.texts))
        vecs = await asyncio.gather(*(image_batcher(p) for p in pictures))
        return {"text_embeddings": [v.tolist() for v in texts], "image_embeddings": [v.tolist() for v in vecs]}

    @lru_cache(maxsize=64)
    def classifier(labels: tuple[str, ...]):
        from cliplab.zeroshot import ZeroShotClassifier

        return ZeroShotClassifier(model, list(labels)).fit()

    @app.post("/classify", response_model=ClassifyResponse, dependencies=guarded, responses=ERRORS)
    async def classify(req: ClassifyRequest) -> dict[str, Any]:
        from cliplab.validation import check_classnames

        names = tuple(check_classnames(req.labels, name="labels"))
        image_vec = await image_batcher((await decode({"image": req.image}))[0])
        clf = await asyncio.to_thread(classifier, names)
        probs = clf.predict_proba(image_vec[None])[0]
        order = np.argsort(-probs, kind="stable")
        return {"labels": [{"label": names[i], "score": float(probs[i])} for i in order]}

    @app.get("/images/{image_id:path}", dependencies=guarded, responses={404: {"description": "No such image."}, 401: ERRORS[401]})
    async def image(image_id: str) -> Response:
        if not index.metadata.rows_for_ids([image_id]):  # only indexed images, never any file
            raise HTTPException(404, f"no indexed image has id {image_id!r}")
        found = await asyncio.to_thread(lookup, image_id)
        if found is None:
            raise HTTPException(404, f"the image of {image_id!r} cannot be read any more")
        data, mime = found
        return Response(data, media_type=mime)

    @app.get("/metrics", dependencies=guarded, response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    if api_key is not None:
        _guarded_docs(app, guarded)
    return app


def _guarded_docs(app: FastAPI, guarded: list) -> None:
    """/openapi.json, /docs and /redoc behind the API key (FastAPI's own routes are open to anyone)."""
    @app.get("/openapi.json", dependencies=guarded, include_in_schema=False)
    async def schema() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", dependencies=guarded, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    @app.get("/redoc", dependencies=guarded, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII characters escaped, so text that is not valid UTF-8 (a lone surrogate
    such as "\\ud800", which JSON allows) still makes a response."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _echo(value: Any) -> Any:
    """A bad input as a 422 shows it: numbers as they are, anything else as text of at most ``ECHO_CHARS``."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= ECHO_CHARS else f"{text[:ECHO_CHARS]}... ({len(text)} characters)"


def _pixels(data: bytes) -> int:
    """Width x height from an image's header (0 when unreadable: decoding then says why)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.width * im.height
    except Exception:  # noqa: BLE001 - decode_image classifies the failure
        return 0


def _too_large(limit: int) -> JSONResponse:
    return AsciiJSONResponse({"detail": f"request body is over the {limit} byte limit; send a smaller image"}, status_code=413)


def _b64(text: str, field: str) -> bytes:
    if text.startswith("data:") and "," in text:  # a data: URL, as a browser's FileReader gives
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HTTPException(400, f"{field}: not valid base64") from exc
