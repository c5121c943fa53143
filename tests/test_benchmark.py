"""Benchmark library and the compare command, on real crops with real engines."""

from __future__ import annotations

import csv
import json

import pytest

from posekit.benchmark import PlotUnavailable, format_table, run_stage_benchmark, write_csv, write_json, write_plot
from runner import run_posekit
from paths import COCO_ANN, COCO_IMAGES


@pytest.fixture(scope="module")
def rows(shared_env):
    return run_stage_benchmark("pose", "movenet-thunder", ["onnxruntime", "torch", "tensorrt"], ["fp32"], [1, 2],
                               annotations=COCO_ANN, warmup=1, repeat=2)


def test_rows_have_latency_throughput_and_speedup(rows):
    ok = [r for r in rows if "error" not in r]
    assert [(r["backend"], r["batch"]) for r in ok] == [("onnxruntime", 1), ("onnxruntime", 2), ("torch", 1), ("torch", 2)]
    for r in ok:
        assert r["latency_ms"] > 0
        assert r["throughput"] == pytest.approx(r["batch"] / (r["latency_ms"] / 1e3))
        assert r["gpu_util"] is None  # CPU: no NVML
    for r in ok[:2]:  # the reference
        assert r["speedup_latency"] == pytest.approx(1.0) and r["speedup_throughput"] == pytest.approx(1.0)
    torch_b2 = ok[3]
    assert torch_b2["speedup_throughput"] == pytest.approx(torch_b2["throughput"] / ok[1]["throughput"])


def test_missing_backend_becomes_error_rows(rows):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    failed = [r for r in rows if r["backend"] == "tensorrt"]
    assert len(failed) == 2 and all("pip install tensorrt" in r["error"] for r in failed)


def test_writers(rows, tmp_path):
    table = format_table(rows)
    assert table.splitlines()[0].split()[:5] == ["stage", "model", "backend", "precision", "batch"]
    assert "onnxruntime" in table and "1.00x" in table
    data = json.loads(write_json(rows, tmp_path / "b.json").read_text())
    assert data == json.loads(json.dumps(rows))
    with open(write_csv(rows, tmp_path / "b.csv")) as f:
        read = list(csv.DictReader(f))
    assert len(read) == len(rows) and float(read[0]["latency_ms"]) == pytest.approx(rows[0]["latency_ms"])


def test_plot_needs_matplotlib_and_says_so(rows, tmp_path):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        with pytest.raises(PlotUnavailable, match="pip install matplotlib"):
            write_plot(rows, tmp_path / "p.png")
        assert not (tmp_path / "p.png").exists()
    else:
        assert write_plot(rows, tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_stage():
    with pytest.raises(ValueError, match="unknown stage 'track'"):
        run_stage_benchmark("track")


def test_cli_compare_reports_errors_per_output(tmp_path):
    done = run_posekit("compare", "movenet-thunder", "--backends", "torch,onnxruntime", "--limit", "4", "--json",
                "--annotations", str(COCO_ANN), cache=tmp_path)
    assert done.returncode == 0, done.stderr
    errors = json.loads(done.stdout)["errors"]
    ort = [r for r in errors if r["backend"] == "onnxruntime"]
    assert [r["output"] for r in ort] == ["centre", "heatmaps", "regression", "offsets"]
    assert all(r["inputs"] == 4 and r["max_rel"] < 1e-4 for r in ort)
    assert all(r["max_abs"] == 0 for r in errors if r["backend"] == "torch")


def test_cli_bench_pose_stage_writes_csv(tmp_path):
    done = run_posekit("bench", "--stage", "pose", "--images", str(COCO_IMAGES), "--backends", "onnxruntime",
                "--batches", "1", "--repeat-calls", "2", "--csv", str(tmp_path / "rows.csv"), cache=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "onnxruntime" in done.stdout
    with open(tmp_path / "rows.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["stage"] == "pose" and float(rows[0]["latency_ms"]) > 0
