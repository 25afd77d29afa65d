"""``cliplab index build|add``, ``cliplab search``, ``cliplab dedup``, ``cliplab serve``: search a collection."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cliplab.cli import app
from cliplab.cli.common import (
    DEFAULT_PRECISION,
    OutJsonOption,
    PrecisionOption,
    PretrainedOption,
    load_model_for,
    user_errors,
    warnings_as_lines,
)
from cliplab.files import write_json

index_app = typer.Typer(help="Build and grow a search index over embedded features.", no_args_is_help=True)
app.add_typer(index_app, name="index")

INDEX_ARG = typer.Argument(..., help="Index folder written by cliplab index build.")
IndexModelOption = Annotated[Optional[str], typer.Option("--model", "-m", help="Model spec; default: the one the index was built with (it must be the same model).")]
MmapOption = Annotated[bool, typer.Option("--mmap/--no-mmap", help="Map the index from disk instead of reading it into memory (IVF indexes; read-only).")]


@index_app.command("build")
def build_command(
    features: list[Path] = typer.Option(..., "--features", "-f", help="Features folder from cliplab embed; repeat for many shards."),
    out: Path = typer.Option(..., "--out", "-o", help="Index folder to write."),
    memory_budget: str = typer.Option("4GB", "--memory-budget", help="Memory the index may use, e.g. 4GB or 512MB; picks the index type."),
    target_recall: float = typer.Option(0.95, "--target-recall", min=0.01, max=1.0, help="recall@10 the search effort is tuned to, on held-out queries."),
    mmap: bool = typer.Option(False, "--mmap/--no-mmap", help="Pick an index type that can be memory-mapped when loaded (IVF)."),
    images: Optional[str] = typer.Option(None, "--images", "-i", help="The images the features came from (as given to cliplab embed), so the service can show them."),
    key: Optional[str] = typer.Option(None, "--key", help="A FAISS factory string to use instead of the automatic choice, e.g. IVF1024,Flat."),
    seed: int = typer.Option(0, "--seed", help="Seed of the training and tuning samples."),
) -> None:
    """Build a FAISS index (type chosen from size and memory budget, effort tuned to the target recall) with a metadata sidecar."""
    from cliplab.search import SearchIndex

    with user_errors(), warnings_as_lines():
        typer.echo(f"building an index over {len(features)} feature shard(s)...", err=True)
        index = SearchIndex.build(features, memory_budget=memory_budget, target_recall=target_recall, mmap=mmap, key=key, seed=seed, images=images)
        index.save(out)
    info = index.info
    effort = info.get("effort")
    tuned = f"; {effort['name']}={effort['value']}, recall@10 {info['recall_at_10']}" if effort else " (exact search)"
    typer.echo(f"indexed {len(index)} vectors ({index.dim} dims) as {info['key']} to {out}{tuned}")


@index_app.command("add")
def add_command(
    index_dir: Path = INDEX_ARG,
    features: list[Path] = typer.Option(..., "--features", "-f", help="Features folder(s) with new images, embedded by the same model."),
) -> None:
    """Add newly embedded features to an existing index (same model, new ids)."""
    from cliplab.search import SearchIndex

    with user_errors(), warnings_as_lines():
        index = SearchIndex.load(index_dir)
        added = sum(index.add(f) for f in features)
        index.save(index_dir)
    typer.echo(f"added {added} vectors; {index_dir} now holds {len(index)}")


@app.command("search")
def search_command(
    index_dir: Path = INDEX_ARG,
    text: Optional[str] = typer.Argument(None, help="What to look for, in words. With --image: the edit to apply to the image."),
    k: int = typer.Option(10, "-k", "--top-k", min=1, help="How many results."),
    image: Optional[Path] = typer.Option(None, "--image", help="A query image (with a text: a composed image + text query)."),
    source_text: Optional[str] = typer.Option(None, "--source-text", help="Composed queries: what the query image shows (default 'a photo')."),
    alpha: float = typer.Option(1.0, "--alpha", min=0.0, help="Composed queries: how far to move along the text edit."),
    where: Optional[str] = typer.Option(None, "--where", help="SQL filter over the metadata, e.g. \"label = 'cat'\"."),
    model: IndexModelOption = None,
    pretrained: PretrainedOption = None,
    precision: PrecisionOption = DEFAULT_PRECISION,
    mmap: MmapOption = False,
    out: OutJsonOption = None,
) -> None:
    """Search an index by text, by image, or by image + text; print the hits and write them as JSON."""
    from cliplab.search import SearchIndex, query_vector

    with user_errors(), warnings_as_lines():
        index = SearchIndex.load(index_dir, mmap=mmap, read_only=True)
        clip = index.load_model(model, pretrained, precision=precision.value)
        q = query_vector(clip, text=text, image=image, source_text=source_text, alpha=alpha)
        composed = image is not None and text is not None
        results = index.search(q, k, where, exclude=clip.encode_images([image]) if composed else None)[0]
        if out is not None:
            write_json({"results": results}, out)
    for rank, hit in enumerate(results, 1):
        typer.echo(f"{rank:3d}  {hit['score']:.4f}  {hit['id']}  {hit.get('caption') or hit.get('label') or ''}")
    if not results:
        typer.echo("no results" + (" pass the filter" if where else ""))


@app.command("dedup")
def dedup_command(
    features: Path = typer.Option(..., "--features", "-f", help="Features folder from cliplab embed."),
    out: Path = typer.Option(..., "--out", "-o", help="JSON to write: groups of linked ids, pairs with scores, and scores against ground truth."),
    threshold: float = typer.Option(0.95, "--threshold", min=-1.0, max=1.0, help="Cosine at or above which two records are linked."),
    method: str = typer.Option("components", "--method", help="components (every linked pair joins) or agglomerative (average linkage)."),
    text_weight: float = typer.Option(0.5, "--text-weight", min=0.0, max=1.0, help="Weight of the caption embedding in the pooled image+text embedding (0: images only)."),
    truth: Optional[str] = typer.Option(None, "--truth", help="Metadata column (or 'label') holding the true group of each record: adds precision/recall."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model for the captions; default: the one that embedded the features (it must be the same model)."),
    pretrained: PretrainedOption = None,
    precision: PrecisionOption = DEFAULT_PRECISION,
) -> None:
    """Find near-duplicates and link records over pooled image+text embeddings."""
    from cliplab.features import Features
    from cliplab.search.linking import link, pair_scores, pooled_embeddings
    from cliplab.search.queries import normalise

    with user_errors(), warnings_as_lines():
        feats = Features.load(features)
        text_vecs = None
        if text_weight > 0 and feats.captions is not None:
            clip = load_model_for(model or feats.model, pretrained, precision)
            _check_same_model(clip, feats)
            captions = [" ".join(c) if c else "" for c in feats.captions]
            text_vecs = normalise(clip.encode_texts(captions))
        linkage = link(pooled_embeddings(feats.X, text_vecs, text_weight), threshold, method)
        report = {
            "threshold": threshold, "method": method, "text_weight": text_weight if text_vecs is not None else 0.0,
            "records": len(feats), "groups": [[feats.ids[i] for i in g] for g in linkage.groups],
            "pairs": [{"a": feats.ids[i], "b": feats.ids[j], "score": float(s)} for (i, j), s in zip(linkage.pairs, linkage.scores)],
        }
        if truth is not None:
            report["scores"] = pair_scores(linkage.labels.tolist(), _truth_column(feats, truth))
        write_json(report, out)
    typer.echo(f"{len(linkage.groups)} groups of linked records ({sum(len(g) for g in linkage.groups)} records) among {len(feats)}; wrote {out}")
    if "scores" in report:
        s = report["scores"]
        typer.echo(f"pairwise precision {s['precision']:.4f}, recall {s['recall']:.4f}, F1 {s['f1']:.4f}")


def _check_same_model(clip, feats) -> None:
    """Captions embedded by another model than the images' would mix two embedding spaces."""
    from cliplab.errors import InputError
    from cliplab.search.index import model_difference

    differs = model_difference(clip.identity, feats.identity)
    if clip.embed_dim != feats.dim:
        differs = ", ".join(filter(None, [f"embedding dim {clip.embed_dim} vs {feats.dim}", differs]))
    if differs:
        raise InputError(f"--model {clip.name} is not the model that embedded the features ({feats.model}): {differs} differ; "
                         "leave --model out or embed the images with that model")


def _truth_column(feats, column: str) -> list:
    from cliplab.errors import InputError

    if column == "label":
        if feats.labels is None:
            raise InputError("--truth label: these features have no labels")
        return list(feats.labels)
    if feats.meta is None or not any(column in (m or {}) for m in feats.meta):
        raise InputError(f"--truth {column}: no record has that metadata column")
    return [(m or {}).get(column) for m in feats.meta]


@app.command("serve")
def serve_command(
    index_dir: Path = INDEX_ARG,
    model: IndexModelOption = None,
    pretrained: PretrainedOption = None,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="CLIPLAB_API_KEY", help="Require this key (Authorization: Bearer KEY or X-API-Key: KEY) everywhere but /health and the page, the schema (/openapi.json) and /docs included."),
    max_body: str = typer.Option("10MB", "--max-body", help="Largest request body accepted (413 above it)."),
    header_timeout: float = typer.Option(10.0, "--header-timeout", min=0.1, help="Seconds a client has to send a request's line and headers; the connection is closed after."),
    body_timeout: float = typer.Option(30.0, "--body-timeout", min=0.1, help="Seconds a client has to send a request's body (408 after)."),
    keep_alive: int = typer.Option(5, "--keep-alive", min=1, help="Seconds an idle connection stays open between requests."),
    max_connections: int = typer.Option(256, "--max-connections", min=1, help="Open connections at most (lowered to fit the open-file limit); more are closed at once."),
    mmap: MmapOption = False,
    precision: PrecisionOption = DEFAULT_PRECISION,
) -> None:
    """Serve the index over HTTP: POST /search, /embed, /classify; GET /health, /metrics, /images/ID; the web page at /.

    Limits: a filter runs at most 1 s (400 beyond), one request's images hold at most 89 million pixels in all (413),
    a text at most 2000 characters (422); slow or idle clients are cut off by the timeouts below.
    """
    import faiss
    import uvicorn

    from cliplab.search import SearchIndex
    from cliplab.search.server import ServerLimits, server_config
    from cliplab.search.service import create_app
    from cliplab.search.sizing import parse_bytes

    limits = ServerLimits(header_timeout_s=header_timeout, body_timeout_s=body_timeout, keep_alive_s=keep_alive, max_connections=max_connections)
    with user_errors(), warnings_as_lines():
        index = SearchIndex.load(index_dir, mmap=mmap, read_only=True)
        clip = index.load_model(model, pretrained, precision=precision.value)
        service = create_app(index, clip, api_key=api_key, max_body_bytes=parse_bytes(max_body, "--max-body"), body_timeout_s=body_timeout)
    faiss.omp_set_num_threads(1)  # one thread per query: concurrency comes from the requests
    typer.echo(f"serving {len(index)} vectors at http://{host}:{port}/ (OpenAPI schema at /openapi.json)", err=True)
    uvicorn.Server(server_config(service, host, port, limits, log_level="warning")).run()
