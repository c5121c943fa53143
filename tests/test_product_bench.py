"""`posekit bench --stage product` as a user runs it: the commands timed against the engine-only
pipeline on the CPU default backend, checking the JSON it writes (structure and consistency, never a
speed figure), and the pure figures it derives."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from posekit.cli import main
from posekit.product_bench import compile_seconds, split_startup

from paths import COCO_IMAGES, DEMO_VIDEO, MODELS, ROOT, session_cache

FRAMES = 24
REPEAT = 2
VIDEO_ROWS = ("engine", "library", "infer", "track")
IMAGE_ROWS = ("images_library", "images_infer")


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    """One run of the stage on a 24-frame video (the demo's 5 frames looped) and 3 photos."""
    root = tmp_path_factory.mktemp("product")
    images = root / "images"
    images.mkdir()
    for n in (785, 40083, 163746):  # one skier, three people, a crowd
        shutil.copy(COCO_IMAGES / f"{n:012d}.jpg", images)
    out = root / "out" / "product.json"
    # a module fixture is set up before the autouse environment: give the subprocess the same one
    env = {**{k: v for k, v in os.environ.items() if k != "POSEKIT_MIRROR"}, "PYTHONPATH": str(ROOT),
           "POSEKIT_MODELS": str(MODELS), "POSEKIT_CACHE": str(session_cache(tmp_path_factory))}
    result = subprocess.run([sys.executable, "-m", "posekit", "bench", "--stage", "product", "--video", str(DEMO_VIDEO),
                             "--frames", str(FRAMES), "--images", str(images), "--json", str(out), "--repeat",
                             str(REPEAT), "--track-args=--no-video", "--work", str(root / "work")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text()), result.stdout, out.parent


def test_every_row_counts_what_was_asked(product):
    report, _, _ = product
    rows = report["rows"]
    assert sorted(rows) == sorted(VIDEO_ROWS + IMAGE_ROWS), f"product.json rows: expected {VIDEO_ROWS + IMAGE_ROWS}, found {sorted(rows)}"
    assert report["errors"] == []
    assert (report["frames"], report["short_frames"], report["image_count"], report["short_images"]) == (FRAMES, 2, 3, 1)
    for name in VIDEO_ROWS:
        assert rows[name]["frames"] == FRAMES, f"product.json {name}: expected {FRAMES} frames, found {rows[name]['frames']}"
    for name in IMAGE_ROWS:
        assert rows[name]["images"] == 3, f"product.json {name}: expected 3 images, found {rows[name]['images']}"
    # the commands write what the estimator finds in this process: same people
    assert rows["infer"]["people"] == rows["library"]["people"] == rows["engine"]["people"] > 0
    assert rows["infer"]["people_match_library"] is True
    assert rows["images_infer"]["people"] == rows["images_library"]["people"] > 0
    assert 0 < rows["track"]["people"] <= rows["infer"]["people"]  # a track is reported after --min-hits matches
    assert report["in_process"]["estimator"] == "PoseEstimator"
    assert "estimator.stream on frames already decoded in memory" in rows["engine"]["what"]


def test_figures_are_consistent(product):
    report, _, _ = product
    rows = report["rows"]
    engine = rows["engine"]["per_s"]
    assert engine > 0 and rows["library"]["per_s"] > 0 and rows["images_library"]["per_s"] > 0
    for name, reference, key in [("infer", engine, "ratio_to_engine"), ("track", engine, "ratio_to_engine"),
                                 ("images_infer", rows["images_library"]["per_s"], "ratio_to_library")]:
        row = rows[name]
        short, long = row["runs"]["short"], row["runs"]["long"]
        assert len(short["all_s"]) == len(long["all_s"]) == REPEAT
        assert short["seconds"] == min(short["all_s"]) and long["seconds"] == min(long["all_s"])
        n, n_short = (FRAMES, 2) if name != "images_infer" else (3, 1)
        key_s = {"the commands' own work seconds": "work_s", "wall times": "seconds"}[row["steady_from"]]
        assert key_s == "work_s", f"{name}: the command printed no seconds of its own ({row['runs']})"
        steady = (n - n_short) / (long[key_s] - short[key_s])
        assert row["steady_per_s"] > 0, f"{name}: steady rate {row['steady_per_s']} ({row.get('note')})"
        assert row["steady_per_s"] == pytest.approx(steady, abs=0.01)
        assert row["startup_s"] == pytest.approx(short["seconds"] - n_short / steady, abs=0.01)
        assert row[key] == pytest.approx(row["steady_per_s"] / reference, abs=1e-3)
        assert row["compile_s"] is None and row["build_s"] is None  # onnxruntime: nothing compiles, no device pipeline
    assert rows["library"]["ratio_to_engine"] == pytest.approx(rows["library"]["per_s"] / engine, abs=1e-3)


def test_table_and_commands_log(product):
    report, stdout, folder = product
    for label in ("engine-only", "library stream", "infer steady", "track steady", "images: in-process",
                  "images: infer steady"):
        assert label in stdout, f"bench --stage product table: no {label!r} row in\n{stdout}"
    text = (folder / "commands.log").read_text()
    assert report["commands_log"] == str(folder / "commands.log")
    runs = [line for line in text.splitlines() if line.startswith("===== ") and " -m posekit -v " in line]
    # infer and track on the video, infer on the images: short and long, REPEAT times each
    assert len(runs) == 3 * 2 * REPEAT, f"{folder / 'commands.log'}: expected {3 * 2 * REPEAT} runs, found {len(runs)}"
    assert sum(" track " in r and "--no-video" in r for r in runs) == 2 * REPEAT
    assert sum(" infer " in r and "--no-vis" in r for r in runs) == 4 * REPEAT
    assert text.count("===== exit 0,") == len(runs)


@pytest.mark.parametrize("n_long, t_long, n_short, t_short, steady, startup", [
    (3000, 10.0, 300, 4.0, 450.0, 3.33),   # 2700 frames in 6 s; 300 of the short run's 4 s were frames
    (24, 2.2, 2, 0.6, 13.75, 0.45),
    (24, 0.6, 2, 0.6, None, None),          # not slower: start-up cannot be told apart
    (24, 0.5, 2, 0.6, None, None),
])
def test_split_startup(n_long, t_long, n_short, t_short, steady, startup):
    found = split_startup(n_long, t_long, n_short, t_short)
    assert found["steady_per_s"] == (pytest.approx(steady, abs=0.01) if steady else None)
    assert found["startup_s"] == (pytest.approx(startup, abs=0.01) if startup else None)
    assert ("note" in found) == (steady is None)


@pytest.mark.parametrize("text, seconds", [
    ("INFO posekit.engines.inductor: compiled YoloxNano for batch 8,64 (reduce-overhead, fp16) in 12.5 s; "
     "kernels cached in /c\nINFO posekit.engines.inductor: compiled MoveNet for batch 128 (reduce-overhead, fp16) "
     "in 3 s; kernels cached in /c", 15.5),
    ("INFO posekit.convert: converted tinypose-256x192 -> x.onnx\n1 input: 24 frames, 12.0 s", None),
    ("", None),
])
def test_compile_seconds(text, seconds):
    assert compile_seconds(text) == seconds


@pytest.mark.parametrize("argv, message", [
    (["--stage", "product"], "pass --video FILE and/or --images DIR"),
    (["--stage", "product", "--video", "missing.mp4"], "--video missing.mp4: no such file"),
    (["--stage", "product", "--video", str(DEMO_VIDEO), "--frames", "10"], "--frames: expected at least 20"),
    (["--stage", "product", "--video", str(DEMO_VIDEO), "--commands", "infer,eval"], "--commands: expected some of infer,track, got eval"),
    (["--stage", "product", "--images", str(MODELS)], "expected a folder of images"),
    (["--stage", "det", "--images", str(COCO_IMAGES), "--backend", "onnxruntime"], "takes --backends and --precisions"),
])
def test_refused_before_anything_runs(argv, message, capsys, tmp_path):
    assert main(["bench", *argv, "--work", str(tmp_path / "work")]) == 1
    err = capsys.readouterr().err
    assert message in err, f"posekit bench {' '.join(argv)}: expected {message!r} in stderr, found {err!r}"
    assert not (tmp_path / "work").exists()
