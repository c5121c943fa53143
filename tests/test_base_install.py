"""The CPU default in the base install: `pip install posekit` (plus the eval extra for `eval`),
no torch. `.ci/run` runs this file in such an environment with POSEKIT_BASE_INSTALL=1; in the
full development environment (torch installed) it is skipped, since it would prove nothing there."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from paths import COCO_ANN, COCO_IMAGES, DEMO_VIDEO, MODELS, ROOT

pytestmark = pytest.mark.skipif(os.environ.get("POSEKIT_BASE_INSTALL") != "1",
                                reason="runs in the base-install environment that .ci/run makes (POSEKIT_BASE_INSTALL=1)")


def posekit(*args: str, cache: Path, python: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "POSEKIT_MODELS": str(MODELS), "POSEKIT_CACHE": str(cache)}
    return subprocess.run([*(python or [sys.executable, "-m", "posekit"]), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_torch_is_not_installed():
    assert importlib.util.find_spec("torch") is None
    assert importlib.util.find_spec("scipy") is None  # the base install stays light


def test_infer_track_eval_on_an_empty_cache(tmp_path):
    cache = tmp_path / "cache"
    images = [COCO_IMAGES / f"{n:012d}.jpg" for n in (785, 40083, 163746)]  # each shows people
    t0 = time.perf_counter()
    result = posekit("infer", *map(str, images), str(DEMO_VIDEO), "--out", str(tmp_path / "infer"), cache=cache)
    first = time.perf_counter() - t0
    assert result.returncode == 0, result.stderr
    print(f"first posekit infer on an empty cache (conversion included): {first:.1f} s")  # recorded, not asserted
    records = json.loads((tmp_path / "infer" / "results.json").read_text())
    assert {r["file_name"] for r in records} == {p.name for p in images} and len(records) >= 4
    assert all(len(r["keypoints"]) == 51 for r in records)
    converted = sorted(p.name for p in (cache / "onnx").glob("*.onnx"))
    assert any(n.startswith("tinypose-256x192") for n in converted) and any(n.startswith("picodet-s-320") for n in converted)

    result = posekit("track", str(DEMO_VIDEO), "--out", str(tmp_path / "track"), cache=cache)
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "track" / "demo.jsonl").read_text().splitlines()
    assert len(lines) == 5 and any(json.loads(line) for line in lines)

    report = tmp_path / "eval.json"
    result = posekit("eval", "--ann", str(COCO_ANN), "--images", str(COCO_IMAGES), "--json", str(report), cache=cache)
    assert result.returncode == 0, result.stderr
    assert json.loads(report.read_text())["AP"] >= 0.76  # the default models, detected boxes (0.770 measured)


def test_a_missing_extra_is_named_in_one_line(tmp_path):
    # as if the eval extra were not installed: pycocotools cannot be imported
    block = ("import sys; sys.modules['pycocotools'] = None; from posekit.cli import main; "
             "sys.exit(main(sys.argv[1:]))")
    result = posekit("eval", "--ann", str(COCO_ANN), "--images", str(COCO_IMAGES), cache=tmp_path / "cache",
                     python=[sys.executable, "-c", block])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "needs pycocotools" in lines[0] and "pip install 'posekit[eval]'" in lines[0]
    result = posekit("export", "movenet-lightning", "--via", "torch", "--out", str(tmp_path / "t.onnx"),
                     cache=tmp_path / "cache")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "pip install 'posekit[gpu]'" in lines[0], result.stderr
    assert not (tmp_path / "t.onnx").exists()


def test_serve_names_its_extra_in_one_line(tmp_path):
    assert importlib.util.find_spec("fastapi") is None  # the serve extra stays out of the base install
    result = posekit("serve", "--port", "0", cache=tmp_path / "cache")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "needs fastapi" in lines[0] and "pip install 'posekit[serve]'" in lines[0], result.stderr


def test_export_converts_without_torch(tmp_path):
    out = tmp_path / "lightning.onnx"
    result = posekit("export", "movenet-lightning", "--out", str(out), cache=tmp_path / "cache")
    assert result.returncode == 0, result.stderr
    assert "max |onnx - a numpy run of the source graph|" in result.stdout and out.is_file()


def test_ray_names_its_extra_in_one_line(tmp_path):
    assert importlib.util.find_spec("ray") is None  # the ray extra stays out of the base install
    result = posekit("infer", str(COCO_IMAGES), "--out", str(tmp_path / "out"), "--ray", cache=tmp_path / "cache")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "needs ray" in lines[0] and "pip install 'posekit[ray]'" in lines[0], result.stderr
    assert not (tmp_path / "out").exists()
