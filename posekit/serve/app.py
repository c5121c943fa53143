"""The HTTP API (FastAPI on uvicorn): `POST /v1/poses`, `/healthz`, `/metrics`.

    POST /v1/poses   an image as the raw body (Content-Type image/* or application/octet-stream),
                     or multipart/form-data with one or more image files; answers
                     `posekit.serve.schema` (one entry per image, in upload order)
    GET  /healthz    {"status": "ok", ...} once the models are loaded (the port opens only then)
    GET  /metrics    Prometheus text: requests by status, latency, batch sizes, queue depth

Images from concurrent requests are batched together (`Batcher`: --max-batch, --max-wait-ms).
Refusals, each ``{"error": "<one line>"}``: 413 body or image too large or too many images, 415
not an image, 400 empty/truncated/undecodable, 503 with Retry-After when the queue is full or the
server is shutting down. On SIGTERM uvicorn stops accepting, lets in-flight requests finish, and
the batcher drains before the process exits.
"""

# no `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request) at definition
import asyncio
import logging
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from posekit.extras import require
from posekit.serve.batcher import Batcher, BatcherClosed, QueueFull
from posekit.serve.images import RequestError, decode_image
from posekit.serve.schema import SCHEMA, image_record, response

log = logging.getLogger(__name__)

RAW_TYPES = ("application/octet-stream", "")


@dataclass
class ServeLimits:
    """What one server accepts and how it batches.

    max_batch:     most images per estimator call
    max_wait_ms:   how long a partial batch waits for more images
    max_queue:     most images admitted and waiting; beyond it, 503 with Retry-After
    max_requests:  most requests being read, decoded or waiting at once (bounds the memory that
                   request bodies hold); beyond it, 503 with Retry-After
    max_body_mb:   largest request body
    max_pixels:    largest image (width x height, from its header, checked before decoding)
    max_images:    most images in one multipart request
    workers:       threads running batches at once
    retry_after_s: the Retry-After of a 503
    """

    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_queue: int = 64
    max_requests: int = 128
    max_body_mb: float = 20.0
    max_pixels: int = 40_000_000
    max_images: int = 16
    workers: int = 1
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        counts = {"max_batch": self.max_batch, "max_queue": self.max_queue, "max_requests": self.max_requests,
                  "max_pixels": self.max_pixels, "max_images": self.max_images, "workers": self.workers}
        bad = {k: v for k, v in counts.items() if v < 1}
        if bad or self.max_body_mb <= 0 or self.max_wait_ms < 0:
            raise ValueError(f"serve limits: expected counts >= 1, max_body_mb > 0 and max_wait_ms >= 0, got "
                             f"{bad or {'max_body_mb': self.max_body_mb, 'max_wait_ms': self.max_wait_ms}}")
        if self.max_images > self.max_queue:  # such a request could never be admitted: 503 forever
            raise ValueError(f"serve limits: max_images ({self.max_images}) must not exceed max_queue ({self.max_queue})")

    @property
    def max_body(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)


class _Metrics:
    def __init__(self) -> None:
        prom = require("prometheus_client", "posekit serve's /metrics")
        self.prom = prom
        self.registry = prom.CollectorRegistry()
        self.requests = prom.Counter("posekit_requests", "POST /v1/poses requests by HTTP status", ["status"],
                                     registry=self.registry)
        self.images = prom.Counter("posekit_images", "images estimated", registry=self.registry)
        self.latency = prom.Histogram("posekit_request_seconds", "POST /v1/poses latency, arrival to answer",
                                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                      registry=self.registry)
        self.batch_size = prom.Histogram("posekit_batch_size", "images per estimator call",
                                         buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry)
        self.batch_seconds = prom.Histogram("posekit_batch_seconds", "seconds per estimator call",
                                            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                            registry=self.registry)
        self.queue_depth = prom.Gauge("posekit_queue_depth", "images admitted and waiting for a batch",
                                      registry=self.registry)
        self.in_flight = prom.Gauge("posekit_requests_in_flight", "requests being read, decoded or estimated",
                                    registry=self.registry)

    def on_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        self.images.inc(size)


def create_app(estimator: Any, limits: ServeLimits | None = None, description: str = "",
               drain_timeout_s: float | None = None) -> Any:
    """The ASGI app serving `estimator` (anything with ``estimate_batch(images) -> list[Poses]``).

    The batcher starts with the app's lifespan and drains when it ends, so every request that was
    admitted gets its answer before the process exits (waiting at most `drain_timeout_s`; None: no limit).
    """
    fastapi = require("fastapi", "posekit serve")
    require("multipart", "posekit serve's multipart uploads")
    from starlette.formparsers import MultiPartException
    from starlette.requests import Request

    limits = limits or ServeLimits()
    metrics = _Metrics()
    state: dict[str, Any] = {"batcher": None, "requests": 0}
    lock = threading.Lock()

    @asynccontextmanager
    async def lifespan(app: Any):
        batcher = Batcher(estimator.estimate_batch, max_batch=limits.max_batch, max_wait_ms=limits.max_wait_ms,
                          max_queue=limits.max_queue, workers=limits.workers, on_batch=metrics.on_batch)
        metrics.queue_depth.set_function(lambda: batcher.depth)
        state["batcher"] = batcher
        log.info("serving %s: %s", description or estimator, limits)
        try:
            yield
        finally:
            log.info("draining %d images", batcher.in_flight)
            drained = await asyncio.get_running_loop().run_in_executor(None, batcher.close, drain_timeout_s)
            log.warning("posekit serve: stopped%s", "" if drained else " with images unfinished")

    app = fastapi.FastAPI(title="posekit", version=SCHEMA, lifespan=lifespan,
                          description="Multi-person 2D pose estimation. Answers follow " + SCHEMA)
    JSONResponse = fastapi.responses.JSONResponse

    def error(status: int, message: str) -> Any:
        headers = {"Retry-After": str(limits.retry_after_s)} if status == 503 else None
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    async def read_body(request: Any) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body:
            raise RequestError(413, f"body of {int(declared):,} bytes is above this server's limit of "
                                    f"{limits.max_body:,} bytes")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body:
                raise RequestError(413, f"body is above this server's limit of {limits.max_body:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def uploads(request: Any) -> list[tuple[str, bytes]]:
        """(name, bytes) of each image in the request."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type == "multipart/form-data":
            body = await read_body(request)

            async def replay() -> dict:
                return {"type": "http.request", "body": body, "more_body": False}

            scope = {k: v for k, v in request.scope.items() if k != "app"}  # parse errors raise, not answer
            try:
                form = await Request(scope, replay).form(max_files=limits.max_images, max_fields=limits.max_images)
            except MultiPartException as exc:
                raise RequestError(413 if "Too many" in exc.message else 400,
                                   f"multipart body: {exc.message} (at most {limits.max_images} images a request)")
            files = [(v.filename or k, await v.read()) for k, v in form.multi_items() if not isinstance(v, str)]
            await form.close()
            if not files:
                raise RequestError(400, "multipart body holds no file; send each image as a file part")
            return files
        if content_type.startswith("image/") or content_type in RAW_TYPES:
            return [("body", await read_body(request))]
        raise RequestError(415, f"Content-Type {content_type!r}: send an image (image/jpeg, image/png, ...) "
                                f"as the body, or multipart/form-data with image files")

    @app.post("/v1/poses")
    async def poses(request: Request) -> Any:
        start = time.perf_counter()
        batcher: Batcher = state["batcher"]
        with lock:
            admitted = state["requests"] < limits.max_requests
            if admitted:
                state["requests"] += 1
        status = 503
        try:
            if not admitted:
                return error(503, f"busy: {limits.max_requests} requests in progress; retry after "
                                  f"{limits.retry_after_s} s")
            metrics.in_flight.inc()
            try:
                if batcher.depth >= limits.max_queue:  # refuse before reading the body
                    raise QueueFull(f"queue full: {batcher.depth} of {limits.max_queue} images waiting")
                files = await uploads(request)
                loop = asyncio.get_running_loop()
                images = await loop.run_in_executor(
                    None, lambda: [decode_image(data, limits.max_pixels, name) for name, data in files])
                futures = batcher.submit(images)
                found = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
            except RequestError as exc:
                status = exc.status
                return error(status, str(exc))
            except QueueFull as exc:
                return error(503, f"{exc}; retry after {limits.retry_after_s} s")
            except BatcherClosed:
                return error(503, "shutting down")
            finally:
                metrics.in_flight.dec()
            status = 200
            body = response([image_record(name, (im.shape[1], im.shape[0]), p)
                             for (name, _), im, p in zip(files, images, found)])
            return JSONResponse(body)
        except Exception:
            status = 500
            log.exception("POST /v1/poses failed")
            return error(500, "internal error; see the server log")
        finally:
            if admitted:
                with lock:
                    state["requests"] -= 1
            metrics.requests.labels(str(status)).inc()
            metrics.latency.observe(time.perf_counter() - start)

    @app.get("/healthz")
    async def healthz() -> Any:
        batcher = state["batcher"]
        return {"status": "ok", "schema": SCHEMA, "model": description,
                "queue_depth": batcher.depth if batcher else 0, "max_batch": limits.max_batch}

    @app.get("/metrics")
    async def prometheus_metrics() -> Any:
        return fastapi.responses.Response(metrics.prom.generate_latest(metrics.registry),
                                          media_type=metrics.prom.CONTENT_TYPE_LATEST)

    return app


def serve(estimator: Any, host: str = "127.0.0.1", port: int = 8000, limits: ServeLimits | None = None,
          description: str = "", graceful_timeout_s: int = 30, access_log: bool = False) -> None:
    """Run the API until SIGINT/SIGTERM, then finish in-flight requests (up to `graceful_timeout_s`)."""
    uvicorn = require("uvicorn", "posekit serve")
    app = create_app(estimator, limits, description, drain_timeout_s=graceful_timeout_s)
    uvicorn.run(app, host=host, port=port, log_level="info" if access_log else "warning", access_log=access_log,
                timeout_graceful_shutdown=graceful_timeout_s, lifespan="on")
