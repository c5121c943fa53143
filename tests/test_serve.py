"""`posekit serve`: a real server subprocess on 127.0.0.1 with the real models, driven with the
shared COCO images; and the `Batcher` it runs on, with a plain function."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from paths import COCO_IMAGES

pytest.importorskip("fastapi", reason="needs the serve extra")

from posekit.serve.batcher import Batcher, BatcherClosed, QueueFull  # noqa: E402
from posekit.serve.client import multipart, post_image, post_images, request, running_server  # noqa: E402
from posekit.serve.schema import SCHEMA, poses_from_record  # noqa: E402

# The module's server: small queue and limits so that bursts and refusals are cheap to provoke.
SERVER_ARGS = ["--max-batch", "4", "--max-wait-ms", "20", "--max-queue", "6", "--max-body-mb", "1",
               "--max-pixels", "2000000", "--max-images", "4", "--workers", "2"]


@pytest.fixture(scope="module")
def images() -> list[tuple[str, bytes]]:
    paths = sorted(COCO_IMAGES.glob("*.jpg"))
    assert len(paths) >= 8, f"{COCO_IMAGES}: expected at least 8 images, found {len(paths)}"
    return [(p.name, p.read_bytes()) for p in paths]


@pytest.fixture(scope="module")
def library(shared_env, images) -> dict:
    """What the library finds in each image, called directly in this process."""
    from posekit.estimators import make_estimator

    estimator = make_estimator()
    return {name: estimator(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)) for name, data in images[:14]}


@pytest.fixture(scope="module")
def server(shared_env, tmp_path_factory):
    with running_server(SERVER_ARGS, log_path=str(tmp_path_factory.mktemp("serve") / "server.log")) as s:
        yield s


def metric(port: int, name: str, labels: str = "") -> float:
    text = request(port, "GET", "/metrics").body.decode()
    found = re.search(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def assert_same_poses(record: dict, expected, where: str) -> None:
    got = poses_from_record(record)
    assert len(got) == len(expected), f"{where}: expected {len(expected)} people, found {len(got)}"
    np.testing.assert_allclose(got.keypoints, expected.keypoints, atol=1e-3, err_msg=f"{where}: keypoints")
    np.testing.assert_allclose(got.boxes, expected.boxes, atol=1e-3, err_msg=f"{where}: boxes")
    np.testing.assert_allclose(got.keypoint_scores, expected.keypoint_scores, atol=1e-5, err_msg=f"{where}: scores")
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-5, err_msg=f"{where}: person scores")


def run_concurrently(calls: list) -> list:
    """Run each call on its own thread, all released at once; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def go(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # reported by the test, with the call's index
            results[i] = exc

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_concurrent_requests_give_the_library_poses(server, images, library):
    singles = images[:10]
    batch = images[10:14]
    calls = [lambda d=data: post_image(server.port, d) for _, data in singles]
    calls.append(lambda: post_images(server.port, batch))
    before = metric(server.port, "posekit_batch_size_count")
    replies = run_concurrently(calls)
    for (name, _), reply in zip(singles, replies):
        assert not isinstance(reply, Exception), f"{name}: {reply!r}"
        if reply.status == 503:  # the queue holds 6: a few of 14 images at once may be turned away
            continue
        assert reply.status == 200, f"{name}: expected 200, found {reply.status} {reply.body[:200]!r}"
        body = reply.json()
        assert body["schema"] == SCHEMA and len(body["images"]) == 1
        assert_same_poses(body["images"][0], library[name], name)
    multi = replies[-1]
    assert not isinstance(multi, Exception) and multi.status in (200, 503), f"multipart: {multi!r}"
    if multi.status == 200:
        entries = multi.json()["images"]
        assert [e["name"] for e in entries] == [n for n, _ in batch]
        for (name, _), entry in zip(batch, entries):
            assert_same_poses(entry, library[name], f"multipart {name}")
    answered = [r for r in replies if r.status == 200]
    assert len(answered) >= 6, f"expected most of {len(replies)} requests answered, {len(answered)} were"
    # concurrent images were batched: fewer estimator calls than images
    images_done = sum(len(r.json()["images"]) for r in answered)
    calls_made = metric(server.port, "posekit_batch_size_count") - before
    assert calls_made < images_done, f"expected batches of several images: {calls_made} calls for {images_done} images"


def _png(width: int, height: int) -> bytes:
    return cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))[1].tobytes()


def _refusals(images):
    jpeg = images[0][1]
    png = _png(64, 48)
    return [  # (what, body, content type, status, words in the message)
        ("text body", b"hello", "text/plain", 415, "Content-Type 'text/plain'"),
        ("not an image", b"hello, world", "image/jpeg", 415, "not a JPEG, PNG, BMP or WebP image"),
        ("empty", b"", "image/jpeg", 400, "empty body"),
        ("truncated JPEG", jpeg[: len(jpeg) // 2], "image/jpeg", 400, "truncated JPEG"),
        ("truncated PNG header", png[:20], "image/png", 400, "truncated PNG"),
        ("truncated PNG data", png[: len(png) - 30], "image/png", 400, "could not be decoded"),
        ("oversized body", jpeg * (2 * 1024 * 1024 // len(jpeg) + 1), "image/jpeg", 413, "above this server's limit"),
        ("too many pixels", _png(2000, 1500), "image/png", 413, "2000x1500"),
        ("multipart, no file", *multipart([]), 400, "no file"),
        ("multipart, 5 images", *multipart([("a.jpg", jpeg)] * 5), 413, "at most 4 images"),
        ("multipart, one bad", *multipart([("a.jpg", jpeg), ("b.txt", b"plain text")]), 415, "b.txt"),
    ]


@pytest.mark.parametrize("case", range(11), ids=[c[0] for c in _refusals([("x", b"\xff\xd8" * 8)])])
def test_bad_requests_get_4xx_with_a_message(server, images, case):
    what, body, content_type, status, words = _refusals(images)[case]
    before = metric(server.port, "posekit_requests_total", f'{{status="{status}"}}')
    reply = request(server.port, "POST", "/v1/poses", body, {"Content-Type": content_type})
    assert reply.status == status, f"{what}: expected {status}, found {reply.status} {reply.body[:200]!r}"
    message = reply.json()["error"]
    assert words in message, f"{what}: expected {words!r} in the message, found {message!r}"
    assert metric(server.port, "posekit_requests_total", f'{{status="{status}"}}') == before + 1


def test_burst_beyond_the_queue_gets_503_and_nothing_else(server, images, library):
    rss_before = server.rss_mb()
    name, data = images[0]  # 32 at once: 6 wait in the queue, 2 workers x 4 run, the rest are refused
    for burst in range(2):
        replies = run_concurrently([lambda: post_image(server.port, data) for _ in range(32)])
        statuses = sorted(r.status if not isinstance(r, Exception) else repr(r) for r in replies)
        assert set(statuses) <= {200, 503}, f"burst {burst}: expected only 200 and 503, found {statuses}"
        assert statuses.count(503) > 0 and statuses.count(200) > 0, f"burst {burst}: {statuses}"
        for r in replies:
            if r.status == 503:
                assert r.headers.get("retry-after", "").isdigit(), f"503 without Retry-After: {r.headers}"
                assert "retry after" in r.json()["error"]
            else:
                assert_same_poses(r.json()["images"][0], library[name], f"burst {name}")
    growth = server.rss_mb() - rss_before
    assert growth < 150, f"server memory grew by {growth:.0f} MiB over two bursts of 32 (expected < 150)"
    assert metric(server.port, "posekit_queue_depth") == 0


def test_metrics_reflect_the_traffic(server, images):
    ok = metric(server.port, "posekit_requests_total", '{status="200"}')
    refused = metric(server.port, "posekit_requests_total", '{status="415"}')
    latencies = metric(server.port, "posekit_request_seconds_count")
    done = metric(server.port, "posekit_images_total")
    for _, data in images[:3]:
        assert post_image(server.port, data).status == 200
    assert post_image(server.port, b"GIF89a....", "image/gif").status == 415
    assert metric(server.port, "posekit_requests_total", '{status="200"}') == ok + 3
    assert metric(server.port, "posekit_requests_total", '{status="415"}') == refused + 1
    assert metric(server.port, "posekit_request_seconds_count") == latencies + 4
    assert metric(server.port, "posekit_images_total") == done + 3
    text = request(server.port, "GET", "/metrics").body.decode()
    for family in ("posekit_batch_size_bucket", "posekit_queue_depth", "posekit_requests_in_flight"):
        assert family in text, f"/metrics: expected {family}"
    health = request(server.port, "GET", "/healthz").json()
    assert health["status"] == "ok" and health["schema"] == SCHEMA


def test_sigterm_finishes_requests_in_flight(shared_env, images, tmp_path):
    batch = images[8:11]  # 3 images each, 15 people: seconds of work on 2 cores
    with running_server(["--max-batch", "4", "--workers", "1"], log_path=str(tmp_path / "server.log")) as s:
        results: list = []
        threads = [threading.Thread(target=lambda: results.append(post_images(s.port, batch))) for _ in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while metric(s.port, "posekit_requests_in_flight") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert metric(s.port, "posekit_requests_in_flight") == 3, "the requests did not arrive"
        assert metric(s.port, "posekit_images_total") < 9, "the requests finished before SIGTERM: nothing tested"
        code = s.stop(timeout=120)
        for t in threads:
            t.join(60)
        assert [r.status for r in results] == [200, 200, 200], [r.body[:200] for r in results]
        assert all(len(r.json()["images"]) == 3 for r in results)
        # uvicorn drains, then re-raises the SIGTERM it caught: the process ends by that signal
        assert code in (0, -signal.SIGTERM), f"expected a clean exit after SIGTERM, found {code}; log:\n{s.log()[-2000:]}"
        log = s.log()
        assert "posekit serve: stopped" in log and "unfinished" not in log and "Traceback" not in log, log[-2000:]


@pytest.mark.parametrize("args, words", [
    (["--max-images", "10", "--max-queue", "5"], "max_images (10) must not exceed max_queue (5)"),
    (["--max-batch", "0"], "'max_batch': 0"),
    (["--max-body-mb", "0"], "max_body_mb"),
])
def test_bad_limits_are_refused_in_one_line(shared_env, args, words):
    proc = subprocess.run([sys.executable, "-m", "posekit", "serve", "--port", "0", *args], capture_output=True,
                          text=True, timeout=60)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and words in lines[0], proc.stderr


def test_missing_serve_extra_fails_in_one_line(shared_env):
    code = "import sys; sys.modules['fastapi'] = None; from posekit.cli import main; sys.exit(main(['serve']))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'posekit[serve]'" in lines[0], proc.stderr


# -- the batcher alone ------------------------------------------------------------------------


def test_batcher_batches_in_order_and_drains_on_close():
    sizes: list[int] = []
    gate = threading.Event()

    def run(items):
        gate.wait(10)
        return [x * 10 for x in items]

    batcher = Batcher(run, max_batch=4, max_wait_ms=50, max_queue=20, workers=1, on_batch=lambda n, s: sizes.append(n))
    futures = [f for i in range(5) for f in batcher.submit([3 * i, 3 * i + 1, 3 * i + 2])]  # 15 items
    with pytest.raises(QueueFull):
        batcher.submit(list(range(6)))  # 15 + 6 > 20: all or nothing
    gate.set()
    assert batcher.close(timeout=10)
    assert [f.result() for f in futures] == [10 * i for i in range(15)]
    assert sum(sizes) == 15 and max(sizes) <= 4, sizes
    with pytest.raises(BatcherClosed):
        batcher.submit([1])


@pytest.mark.parametrize("kwargs", [dict(max_batch=0), dict(max_queue=0), dict(workers=0), dict(max_wait_ms=-1)])
def test_batcher_refuses_bad_settings(kwargs):
    with pytest.raises(ValueError, match="expected max_batch"):
        Batcher(lambda items: items, **kwargs)


def test_batcher_gives_each_caller_its_batch_error():
    def run(items):
        if "bad" in items:
            raise RuntimeError("a bad item")
        return items

    batcher = Batcher(run, max_batch=8, max_wait_ms=0, workers=1)
    bad = batcher.submit(["bad"])[0]
    with pytest.raises(RuntimeError, match="a bad item"):
        bad.result(10)
    assert batcher.submit(["good"])[0].result(10) == "good"  # the worker survives a failed batch
    assert batcher.close(timeout=10)


def test_bench_serve_reports_throughput_and_latency(shared_env):
    from posekit.serve.bench import bench_serve, format_rows

    report = bench_serve(COCO_IMAGES, batches=(2,), clients=2, requests=6, in_process=False, max_seconds=60,
                         device="cpu", backend="onnxruntime", precision="fp32")
    (row,) = report["rows"]
    # the server ran the engine asked for, and says so
    assert row["model"] == "picodet-s-320-pedestrian + tinypose-256x192 on onnxruntime cpu", row
    assert (report["device"], report["backend"], report["precision"]) == ("cpu", "onnxruntime", "fp32")
    assert row["name"] == "serve max-batch 2" and row["answered"] == 6 and row["statuses"] == {"200": 6}, row
    assert row["images_per_s"] > 0 and 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"], row
    assert 1 <= row["mean_batch"] <= 2, row
    assert "serve max-batch 2" in format_rows(report)
