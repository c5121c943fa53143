"""`posekit infer --ray` on a real local Ray cluster (two CPUs, started once for the module): the
same results as single-process `posekit infer` on the shared images and videos (a real H.264 video
split into frame ranges), a second run that does no work, a run in which the test kills an
actor's process mid-way and still gets complete, unduplicated outputs, SIGTERM to the command
and a re-run that continues, tracking after the merge, and the command joining the running
cluster by its address with file:// URI inputs. About a minute on 2 cores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")  # the `ray` extra; CI installs it (dev)

from posekit import distributed  # noqa: E402
from posekit.infer import infer  # noqa: E402
from posekit.io import iter_video  # noqa: E402
from posekit.tracking import PoseTracker  # noqa: E402

from paths import COCO_IMAGES, DEMO_VIDEO, MODELS, SHARED, session_cache  # noqa: E402

STREET = SHARED / "data" / "mot15" / "TUD-Campus" / "TUD-Campus.mp4"  # 71 frames, 640x480, H.264
FRAMES = 30  # of STREET: four frame ranges of 8 (the last one 6), so seeking into H.264 is exercised
RANGE = 8


@pytest.fixture(scope="module")
def cluster(shared_env, tmp_path_factory):
    """A local Ray cluster of two CPUs, for the whole module; its workers find the shared models."""
    env = {"POSEKIT_MODELS": str(MODELS), "POSEKIT_CACHE": str(session_cache(tmp_path_factory))}
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env}, logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs() -> list[str]:
    return [str(COCO_IMAGES), str(DEMO_VIDEO), str(STREET)]


@pytest.fixture(scope="module")
def single(inputs, tmp_path_factory, shared_env):
    """What single-process `posekit infer --no-vis --max-frames 30` writes."""
    out = tmp_path_factory.mktemp("single")
    summary = infer(inputs, out, vis=False, max_frames=FRAMES)
    assert not summary.failures, summary.failures
    return out


def read_outputs(out: Path) -> dict[str, list]:
    """results.json, its image list and each video's frames, by file name."""
    found = {"results.json": json.loads((out / "results.json").read_text()),
             "results.images.json": json.loads((out / "results.images.json").read_text())["images"]}
    for path in sorted(out.glob("*.jsonl")):
        found[path.name] = [json.loads(line) for line in path.read_text().splitlines()]
    return found


def assert_same_outputs(expected: Path, found: Path) -> None:
    """Same files, same people in the same order, boxes and keypoints within 1e-3 px, scores within 1e-4."""
    one, two = read_outputs(expected), read_outputs(found)
    assert sorted(one) == sorted(two), f"{found}: expected files {sorted(one)}, found {sorted(two)}"
    assert one["results.images.json"] == two["results.images.json"], f"{found}/results.images.json differs"
    people = {"results.json": (one["results.json"], two["results.json"])}
    for name in one:
        if name.endswith(".jsonl"):
            a, b = one[name], two[name]
            assert [(r["frame"], r["timestamp"], r["image_size"], r["source"]) for r in a] == \
                   [(r["frame"], r["timestamp"], r["image_size"], r["source"]) for r in b], f"{found}/{name}: frames differ"
            people[name] = ([p for r in a for p in r["poses"]], [p for r in b for p in r["poses"]])
            counts = ([len(r["poses"]) for r in a], [len(r["poses"]) for r in b])
            assert counts[0] == counts[1], f"{found}/{name}: people per frame {counts[0]} expected, found {counts[1]}"
    for name, (a, b) in people.items():
        assert len(a) == len(b), f"{found}/{name}: expected {len(a)} people, found {len(b)}"
        for i, (p, q) in enumerate(zip(a, b)):
            assert p.keys() == q.keys(), f"{found}/{name} person {i}: fields {sorted(p)} expected, found {sorted(q)}"
            for field in p:
                if isinstance(p[field], (list, float)):
                    diff = np.abs(np.asarray(p[field], float) - np.asarray(q[field], float)).max()
                    tol = 1e-4 if "score" in field else 1e-3
                    assert diff <= tol, f"{found}/{name} person {i}: {field} differs by {diff} (tolerance {tol})"
                else:
                    assert p[field] == q[field], f"{found}/{name} person {i}: {field} {p[field]!r} != {q[field]!r}"


def run(inputs, out, **kwargs):
    return distributed.infer(inputs, out, max_frames=FRAMES, frames_per_unit=RANGE, actors=2, **kwargs)


def test_plan_of_a_video():
    """STREET's 30 frames become four ranges; one range seeks into the H.264 stream and decodes what
    reading from the start decodes."""
    sources, problems = distributed.list_inputs([str(STREET)])
    items = [distributed.InferItem(s, "street.mp4") for s in sources]
    planned, trouble = distributed._plan(items, "settings", RANGE, FRAMES)
    assert not problems and not trouble and [p.ranges for p in planned] == [[(0, 8), (8, 16), (16, 24), (24, 30)]]
    ranged = list(distributed.read_frame_range(str(STREET), 16, 24))
    whole = [f for f in iter_video(str(STREET), 24)][16:]
    assert [(i, t) for i, t, _ in ranged] == [(f.index, f.timestamp) for f in whole]
    for (_, _, image), frame in zip(ranged, whole):
        assert np.array_equal(image, frame.image), "a sought frame differs from the one decoded from the start"
    assert list(distributed.read_frame_range(str(STREET), 200, 210)) == []  # past the end: empty


def test_units_of_images_given_twice():
    """Groups of 4 images; the same file under two names runs once; parts already written are not run."""
    paths = [str(p) for p in sorted(COCO_IMAGES.glob("*.jpg"))[:6]]
    sources, _ = distributed.list_inputs(paths + paths[:1])
    items = [distributed.InferItem(s, n) for s, n in zip(sources, distributed.output_names(sources))]
    planned, _ = distributed._plan(items, "settings", RANGE, None)
    assert [len(u["images"]) for u in distributed._units(planned, set(), 4)] == [4, 2]
    assert [len(u["images"]) for u in distributed._units(planned, {planned[0].parts[0]}, 4)] == [4, 1]


def test_same_as_single_process_and_second_run_does_nothing(cluster, inputs, single, tmp_path):
    summary = run(inputs, tmp_path)
    assert not summary.failures, summary.failures
    # 19 images in groups of 4, the demo video in one range, the street in four
    assert (summary.images, summary.videos, summary.units, summary.units_run) == (19, 2, 10, 10)
    assert len(summary.actors) == 2, f"expected results from 2 actors, found {summary.actors}"
    assert_same_outputs(single, tmp_path)
    visible = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert visible == ["TUD-Campus.jsonl", "demo.jsonl", "results.images.json", "results.json"], visible

    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    calls = []
    again = run(inputs, tmp_path, on_result=calls.append)
    assert (again.units, again.units_run, again.merged, calls) == (0, 0, False, []), again
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == stamps, "a second run rewrote files"
    assert "nothing to do" in again.text()


def test_actor_killed_mid_run(cluster, inputs, single, tmp_path):
    """SIGKILL to the process of the actor that returned the first result: Ray Data starts a new
    actor and runs that actor's units again; the outputs are complete, correct and unduplicated."""
    killed: list[int] = []
    seen: list[dict] = []

    def kill_first(result: dict) -> None:
        seen.append(result)
        if not killed:
            killed.append(result["pid"])
            os.kill(result["pid"], signal.SIGKILL)

    summary = run(inputs, tmp_path, on_result=kill_first)
    assert not summary.failures, summary.failures
    with pytest.raises(ProcessLookupError):  # the killed actor is gone
        os.kill(killed[0], 0)
    pids = {r["pid"] for r in seen}
    assert len(pids) >= 3, f"expected a replacement actor after killing {killed[0]}, results came from {pids}"
    assert_same_outputs(single, tmp_path)
    assert not [p for p in tmp_path.rglob("*") if ".part" in p.name], "a partial file was left"
    parts = list((tmp_path / distributed.STATE_NAME / "parts").glob("*.json"))
    assert len(parts) == 19 + 1 + 4, f"expected 24 parts, found {len(parts)}"


def test_sigterm_keeps_the_parts_and_a_rerun_continues(cluster, inputs, single, tmp_path):
    """SIGTERM to `posekit infer --ray` mid-run: exit 143, the parts finished stay (no partial file),
    and the same run again does only the rest and ends with single-process `infer`'s outputs."""
    import time

    env = {**os.environ, "POSEKIT_MODELS": str(MODELS)}
    command = [sys.executable, "-m", "posekit", "infer", *inputs, "--out", str(tmp_path), "--ray", cluster,
               "--ray-actors", "2", "--ray-frames", str(RANGE), "--max-frames", str(FRAMES), "--no-vis"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    parts = tmp_path / distributed.STATE_NAME / "parts"
    deadline = time.monotonic() + 120
    while len(list(parts.glob("*.json"))) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]
    kept = len(list(parts.glob("*.json")))
    assert 2 <= kept < 24, f"expected some of the 24 parts kept, found {kept}"
    assert not (tmp_path / "results.json").exists() and not [p for p in tmp_path.rglob("*") if ".part" in p.name]
    summary = run(inputs, tmp_path)
    assert not summary.failures and summary.parts_skipped == kept, summary.text()
    assert_same_outputs(single, tmp_path)


def test_tracking_after_merge(cluster, tmp_path, shared_env):
    """--track: each video is tracked in the driver over its merged frames: the track IDs of
    single-process `posekit infer --track`."""
    tracker = partial(_tracker)
    infer([str(STREET)], tmp_path / "single", vis=False, max_frames=FRAMES, tracker=tracker)
    summary = run([str(STREET)], tmp_path / "ray", tracker=tracker)
    assert not summary.failures and summary.units_run == 4, summary
    assert_same_outputs_tracked(tmp_path / "single" / "TUD-Campus.jsonl", tmp_path / "ray" / "TUD-Campus.jsonl")


def _tracker(fps: float) -> PoseTracker:
    return PoseTracker(frame_rate=fps)


def assert_same_outputs_tracked(one: Path, two: Path) -> None:
    a = [[p.get("track_id") for p in json.loads(line)["poses"]] for line in one.read_text().splitlines()]
    b = [[p.get("track_id") for p in json.loads(line)["poses"]] for line in two.read_text().splitlines()]
    assert a == b, f"{two}: track IDs differ from {one}"
    assert len({i for ids in a for i in ids}) >= 4 and None not in {i for ids in a for i in ids}


def test_cli_on_an_existing_cluster_with_uri_inputs(cluster, single, tmp_path):
    """`posekit infer --ray ADDRESS` joins the running cluster; a file:// URI folder is listed and
    read through pyarrow.fs; a truncated image among them is named, the others are written, exit 1."""
    folder = tmp_path / "images"
    folder.mkdir()
    chosen = sorted(COCO_IMAGES.glob("*.jpg"))[:3]
    for path in chosen:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "cut.jpg").write_bytes(chosen[0].read_bytes()[:5000])
    cut_video = tmp_path / "cut.mp4"  # a local video OpenCV cannot open: refused by the driver, as infer words it
    cut_video.write_bytes(DEMO_VIDEO.read_bytes()[:20000])
    env = {**os.environ, "POSEKIT_MODELS": str(MODELS)}
    done = subprocess.run([sys.executable, "-m", "posekit", "infer", folder.as_uri(), str(cut_video), "--out",
                           str(tmp_path / "out"), "--ray", cluster, "--no-vis"], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "5 inputs (4 images, 1 video)" in done.stdout, done.stdout
    assert f"failed: {(folder / 'cut.jpg').as_uri()}: truncated JPEG" in done.stdout, done.stdout
    assert f"failed: {cut_video}: cannot open as a video" in done.stdout, done.stdout
    assert "wrote" in done.stdout and "1 unit run on 1 actor process" in done.stdout, done.stdout
    found = json.loads((tmp_path / "out" / "results.json").read_text())
    names = {p.name for p in chosen}
    expected = [r for r in json.loads((single / "results.json").read_text()) if r["file_name"] in names]
    assert [(r["file_name"], r["keypoints"]) for r in found] == [(r["file_name"], r["keypoints"]) for r in expected]
    assert found, "no people found in the three images"


@pytest.mark.parametrize("given, same", [
    ({}, True),  # the Python API's omitted defaults
    (dict(det=None, pose=None, backend="onnxruntime", precision=None, batch=None, det_score_threshold=None,
          oks_threshold=0.8, min_score=0.0, workers=3, threads=1), True),  # the command line's explicit ones
    (dict(det="picodet-s-320-pedestrian", pose="tinypose-256x192"), True),
    (dict(pose="tinypose-128x96"), False),
    (dict(min_score=0.2), False),
    (dict(flip=True), False),
])
def test_parts_are_named_by_the_settings_that_change_results(given, same):
    reference = distributed.estimator_settings({"device": "cpu"})
    assert (distributed.estimator_settings({"device": "cpu", **given}) == reference) is same


def test_refuses_outputs_of_a_plain_run(tmp_path):
    """A folder holding `posekit infer` outputs but no Ray parts is not overwritten without --overwrite."""
    (tmp_path / "results.json").write_text("[]")
    with pytest.raises(distributed.OutputError, match="results.json: already exists"):
        distributed.infer([str(COCO_IMAGES)], tmp_path)


def test_missing_ray_names_the_extra_in_one_line(tmp_path):
    # as if ray were not installed (a separate process: this one has a cluster running)
    block = "import sys; sys.modules['ray'] = None; from posekit.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", block, "infer", str(COCO_IMAGES), "--out", str(tmp_path / "out"),
                           "--ray"], capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert "needs ray" in lines[0] and "pip install 'posekit[ray]'" in lines[0], lines[0]
    assert not (tmp_path / "out").exists()  # refused before anything was written
