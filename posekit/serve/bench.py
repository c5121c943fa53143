"""`posekit bench --stage serve`: the HTTP server under load against the estimator in one process.

For each --serve-batches setting, a `posekit serve` subprocess on 127.0.0.1 (a free port) is
driven by `clients` threads, each posting the images one at a time (raw JPEG bodies) until
`requests` requests are answered or `max_seconds` pass. Reported per row: images/s, p50/p95/p99
latency (request sent -> answer read, so it includes upload, decode, queueing and JSON), the
mean batch the server ran, and how many requests were refused (503). The in-process rows time the
same estimator on the same decoded images: `estimator(image)` in a loop (one caller, one image at
a time, the latency floor) and `estimator.stream(images)` (the library's own threaded throughput).
All traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

log = logging.getLogger(__name__)


def _percentiles(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds, np.float64) * 1000
    if not len(ms):
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    return {f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 95, 99)}


def drive(port: int, bodies: Sequence[bytes], clients: int, requests: int, max_seconds: float) -> dict[str, Any]:
    """`clients` threads posting `bodies` in turn until `requests` are sent or `max_seconds` pass."""
    from posekit.serve.client import post_image

    lock = threading.Lock()
    sent = [0]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + max_seconds

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                if sent[0] >= requests:
                    return
                i = sent[0]
                sent[0] += 1
            t = time.perf_counter()
            try:
                status = post_image(port, bodies[i % len(bodies)], timeout=max_seconds).status
            except OSError as exc:
                log.warning("request %d: %s", i, exc)
                status = -1
            elapsed = time.perf_counter() - t
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append(elapsed)

    start = time.perf_counter()
    threads = [threading.Thread(target=client, name=f"client-{n}") for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"images_per_s": len(latencies) / wall, "answered": len(latencies), "seconds": wall,
            "statuses": {str(k): v for k, v in sorted(statuses.items())}, **_percentiles(latencies)}


def _metric_sum(port: int, name: str) -> float:
    import re

    from posekit.serve.client import request

    text = request(port, "GET", "/metrics").body.decode()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def bench_serve(images: str | os.PathLike, batches: Sequence[int] = (1, 4, 8), clients: int = 8, requests: int = 200,
                max_wait_ms: float = 10.0, workers: int | None = None, det: str | None = None, pose: str | None = None,
                max_seconds: float = 120.0, in_process: bool = True, device: str = "cpu", backend: str | None = None,
                precision: str | None = None) -> dict[str, Any]:
    """Rows of images/s and latency percentiles: one per server max-batch, then the in-process rows.
    device, backend, precision: the server's and the in-process estimator's (`posekit serve
    --device --backend --precision`; None: serve's defaults), e.g. "cuda", "inductor", "fp16"."""
    import json

    from posekit.serve.client import request, running_server

    paths = sorted(p for p in Path(images).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise ValueError(f"{images}: expected JPEG or PNG images, found none")
    bodies = [p.read_bytes() for p in paths]
    model_args = [*(["--det", det] if det else []), *(["--pose", pose] if pose else []), "--device", device,
                  *(["--backend", backend] if backend else []), *(["--precision", precision] if precision else [])]
    rows = []
    for batch in batches:
        args = [*model_args, "--max-batch", str(batch), "--max-wait-ms", str(max_wait_ms),
                "--max-queue", str(max(64, 4 * clients)), *(["--workers", str(workers)] if workers else [])]
        with running_server(args) as server:
            model = json.loads(request(server.port, "GET", "/healthz").body)["model"]
            drive(server.port, bodies, clients, min(clients, requests), max_seconds)  # warm-up, not counted
            calls0, images0 = _metric_sum(server.port, "posekit_batch_size_count"), _metric_sum(server.port, "posekit_batch_size_sum")
            result = drive(server.port, bodies, clients, requests, max_seconds)
            calls = _metric_sum(server.port, "posekit_batch_size_count") - calls0
            mean_batch = (_metric_sum(server.port, "posekit_batch_size_sum") - images0) / calls if calls else float("nan")
        rows.append({"name": f"serve max-batch {batch}", "clients": clients, "mean_batch": mean_batch, "model": model,
                     **result})
        log.info("%s", rows[-1])
    if in_process:
        rows += _in_process(paths, requests, det, pose, workers, max_seconds, device, backend, precision)
    return {"rows": rows, "images": len(paths), "requests": requests, "clients": clients, "device": device,
            "backend": backend or "onnxruntime", "precision": precision,
            "max_wait_ms": max_wait_ms, "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"}


def _in_process(paths: Sequence[Path], requests: int, det: str | None, pose: str | None, workers: int | None,
                max_seconds: float, device: str = "cpu", backend: str | None = None,
                precision: str | None = None) -> list[dict[str, Any]]:
    from posekit.estimators import make_estimator
    from posekit.io import read_image

    estimator = make_estimator(det=det, pose=pose, workers=workers or 3, device=device, backend=backend or "onnxruntime",
                               precision=precision)
    decoded = [read_image(p) for p in paths]
    estimator.estimate_batch(decoded[:2])  # warm-up
    frames = [decoded[i % len(decoded)] for i in range(requests)]
    latencies = []
    start = time.perf_counter()
    for image in frames:
        t = time.perf_counter()
        estimator(image)
        latencies.append(time.perf_counter() - t)
        if t - start > max_seconds:
            break
    wall = time.perf_counter() - start
    loop = {"name": "in-process loop", "clients": 1, "mean_batch": 1.0, "images_per_s": len(latencies) / wall,
            "answered": len(latencies), "seconds": wall, **_percentiles(latencies)}
    start = time.perf_counter()
    n = sum(1 for _ in estimator.stream(frames[: len(latencies)]))
    wall = time.perf_counter() - start
    threads = getattr(estimator, "workers", None)  # the CPU pipeline's threads; the GPU pipeline batches frames
    name = f"in-process stream ({threads} workers)" if threads else "in-process stream"
    stream = {"name": name, "clients": 1, "mean_batch": float("nan"),
              "images_per_s": n / wall, "answered": n, "seconds": wall, **_percentiles([])}
    return [loop, stream]


def format_rows(report: dict[str, Any]) -> str:
    header = ("", "clients", "images/s", "p50 ms", "p95 ms", "p99 ms", "mean batch", "answered", "refused")
    rows = [header]
    for r in report["rows"]:
        refused = str(sum(v for k, v in r.get("statuses", {}).items() if k != "200")) if "statuses" in r else "-"
        rows.append((r["name"], str(r["clients"]), f"{r['images_per_s']:.2f}", f"{r['p50_ms']:.0f}", f"{r['p95_ms']:.0f}",
                     f"{r['p99_ms']:.0f}", f"{r['mean_batch']:.2f}", str(r["answered"]), refused))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    served = next((r["model"] for r in report["rows"] if r.get("model")), None)
    lines.append(f"{report['images']} images, {report['requests']} requests per row, {report['clients']} clients, "
                 f"max wait {report['max_wait_ms']:g} ms; {report['machine']}" + (f"; served: {served}" if served else ""))
    return "\n".join(lines)
