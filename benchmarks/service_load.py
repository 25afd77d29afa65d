"""The search service on loopback, plain and under abuse: latency, errors and server memory.

    PYTHONPATH=src nice -n 10 python benchmarks/service_load.py [--scenes 64] [--clients 8] [--requests 200] [--json FILE]

Serves an index of synthetic scenes (the bundled tiny model, saved to a temporary folder and loaded
back) in this process, exactly as ``cliplab serve`` does (``search/server.py`` limits), and prints one line per phase:
``<phase>: C clients, R requests: E errors, Q queries/s, p50 .. ms, p99 .. ms; server RSS A -> B MB``.
Phase "plain" sends text searches only; phase "abused" sends the same searches while other clients
send filters that would run for minutes (a 6-way self-join, as in #19.6), /embed bodies of three
36-megapixel PNGs (#19.9) and connections that never finish their headers (#19.10). Every count is
bounded; the abusive requests are expected to fail (400/413, closed), the plain ones not.
"""

from __future__ import annotations

import argparse
import base64
import io
import socket
import tempfile
import threading
from pathlib import Path

import httpx
from PIL import Image

import cliplab
from cliplab.search import SearchIndex
from cliplab.search.loadtest import LoadReport, load_test, running_server
from cliplab.search.server import ServerLimits
from cliplab.search.service import create_app

from _machine import add_json_option, print_machine, write_json

CROSS_JOIN = "(SELECT count(*) FROM items a, items b, items c, items d, items e, items f) > 0"  # minutes of work
TEXTS = ("a red star", "a blue circle", "a green heart", "a pink cross")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def big_png_b64() -> str:
    buf = io.BytesIO()
    Image.new("1", (6000, 6000)).save(buf, format="PNG")  # 36 million pixels in a few kB
    return base64.b64encode(buf.getvalue()).decode()


def abuse(url: str, rounds: int, slow_sockets: int) -> dict[int, int]:
    """Hostile requests, ``rounds`` of each kind, plus connections that never finish their headers."""
    port = int(url.rsplit(":", 1)[1])
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(slow_sockets)]
    for s in sockets:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    statuses: dict[int, int] = {}
    big = big_png_b64()
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(rounds):
            for path, body in (("/search", {"text": "a", "where": CROSS_JOIN}), ("/embed", {"images": [big] * 3})):
                status = client.post(path, json=body).status_code
                statuses[status] = statuses.get(status, 0) + 1
    for s in sockets:
        s.close()
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=64)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--abuse-rounds", type=int, default=4)
    parser.add_argument("--slow-sockets", type=int, default=50)
    add_json_option(parser)
    args = parser.parse_args()
    machine = print_machine()
    clip = cliplab.load_model("tiny", device="cpu")
    with tempfile.TemporaryDirectory(prefix="cliplab-service-load-") as tmp:
        folder = Path(tmp) / "scenes.index"
        SearchIndex.build(cliplab.embed(clip, f"synthetic:{args.scenes}", progress=False, num_workers=0)).save(folder)
        index = SearchIndex.load(folder, read_only=True)  # as cliplab serve loads it
        try:
            phases = run_phases(index, clip, args)
        finally:
            index.close()
    if args.json:
        write_json(args.json, {"scenes": args.scenes, "clients": args.clients, "phases": phases}, machine)


def phase_figures(report: LoadReport, before_mb: float, after_mb: float) -> dict:
    """One phase's figures for ``--json``."""
    return {"requests": report.requests, "errors": report.errors, "qps": report.qps, "p50_ms": report.p50_ms,
            "p99_ms": report.p99_ms, "rss_before_mb": before_mb, "rss_after_mb": after_mb}  # fmt: skip


def run_phases(index: SearchIndex, clip, args: argparse.Namespace) -> dict[str, dict]:
    payloads = [{"text": t, "k": 5} for t in TEXTS]
    with running_server(create_app(index, clip), limits=ServerLimits(header_timeout_s=5.0)) as url:
        load_test(url, payloads, clients=2, requests=8)  # warm-up
        before = rss_mb()
        report = load_test(url, payloads, clients=args.clients, requests=args.requests)
        after = rss_mb()
        phases = {"plain": phase_figures(report, before, after)}
        print(f"plain: {report.line(args.clients)}; server RSS {before:.0f} -> {after:.0f} MB", flush=True)
        before = rss_mb()
        hostile: dict[int, int] = {}
        attacker = threading.Thread(target=lambda: hostile.update(abuse(url, args.abuse_rounds, args.slow_sockets)))
        attacker.start()
        report = load_test(url, payloads, clients=args.clients, requests=args.requests)
        attacker.join()
        after = rss_mb()
        phases["abused"] = phase_figures(report, before, after)
        print(f"abused: {report.line(args.clients)}; server RSS {before:.0f} -> {after:.0f} MB; "
              f"hostile requests by status {dict(sorted(hostile.items()))}", flush=True)
    return phases


if __name__ == "__main__":
    main()
