"""Nothing lost: `posekit infer` and `track` keep finished work through signals, full disks, bad
and odd files; one output schema. Real subprocesses, real signals, real files."""

from __future__ import annotations

import json
import re
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from badinputs import GOOD_JPEG, make
from paths import COCO_IMAGES, DEMO_VIDEO, MODELS, ROOT, session_cache
from videos import read_frames, write_avi

FP32 = ("--precision", "fp32")  # the plain ONNX export: no INT8 build needed for these tests
SMALL = [COCO_IMAGES / f"{n:012d}.jpg" for n in (785, 40083)]  # one skier; three people


def _env(cache: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "POSEKIT_MODELS": str(MODELS), "POSEKIT_CACHE": str(cache),
            "PYTHONDONTWRITEBYTECODE": "1"}


def posekit(*args: str, cache: Path, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "posekit", *map(str, args)], cwd=ROOT, env=_env(cache),
                          capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """The session's model cache with the fp32 pose export in it (built once here)."""
    folder = session_cache(tmp_path_factory)
    r = posekit("infer", SMALL[0], "--out", tmp_path_factory.mktemp("warm"), "--no-vis", *FP32, cache=folder)
    assert r.returncode == 0, r.stderr[-2000:]
    return folder


def _no_hidden_files(folder: Path) -> None:
    leftovers = [p for p in folder.rglob("*") if p.name.startswith(".") or ".part" in p.name]
    assert leftovers == []


def _journal(out: Path) -> list[dict]:
    path = out / "results.journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _load_results(out: Path):
    """results.json through pycocotools, against the image list written beside it."""
    from pycocotools.coco import COCO

    images = COCO(str(out / "results.images.json"))
    records = json.loads((out / "results.json").read_text())
    return images, records, (images.loadRes(str(out / "results.json")) if records else None)


# -- signals: everything finished is kept, and --resume completes the run -------------------------


@pytest.fixture(scope="module")
def thirty_images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("thirty")
    sources = sorted(COCO_IMAGES.glob("*.jpg"))
    for n in range(30):
        shutil.copy(sources[n % len(sources)], folder / f"{n:02d}_{sources[n % len(sources)].name}")
    return folder


def _infer_until_journaled(images: Path, out: Path, cache: Path, done: int) -> subprocess.Popen:
    """`posekit infer IMAGES --out OUT` started, returned once its journal lists `done` images
    (or it ended, or 240 s passed)."""
    proc = subprocess.Popen([sys.executable, "-m", "posekit", "infer", str(images), "--out", str(out), *FP32],
                            cwd=ROOT, env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while len(_journal(out)) < done and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc


@pytest.mark.parametrize("signum, code, name", [(signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM")])
def test_signal_keeps_every_finished_image_and_resume_completes(signum, code, name, thirty_images, cache, tmp_path):
    out = tmp_path / "out"
    proc = _infer_until_journaled(thirty_images, out, cache, 5)
    proc.send_signal(signum)  # at a known point: 5 images reported in the journal
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr[-2000:]
    assert f"interrupted by {name}" in stdout and "Traceback" not in stderr
    done = {r["name"] for r in _journal(out) if r["status"] == "done"}
    assert 5 <= len(done) < 30, len(done)
    images, records, loaded = _load_results(out)  # a complete COCO results file, loadable
    assert {im["file_name"] for im in images.dataset["images"]} == done  # every image finished, no other
    assert {r["file_name"] for r in records} <= done and loaded is not None
    assert {p.name for p in (out / "vis").iterdir()} >= done - {None}
    _no_hidden_files(out)
    before = {r["file_name"]: r for r in records}

    r = posekit("infer", thirty_images, "--out", out, "--resume", *FP32, cache=cache)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resumed: {len(done)} inputs already done, skipped" in r.stdout
    assert f"({30 - len(done)} images, 0 videos): {30 - len(done)} frames" in r.stdout  # not redone
    images, records, loaded = _load_results(out)
    names = [im["file_name"] for im in images.dataset["images"]]
    assert sorted(names) == sorted(p.name for p in thirty_images.iterdir())  # all 30, each once
    assert len({im["id"] for im in images.dataset["images"]}) == 30
    keys = [(r["image_id"], tuple(r["keypoints"])) for r in records]
    assert len(keys) == len(set(keys))  # no person twice
    for record in records:  # the people found before the signal are kept as they were
        if record["file_name"] in before:
            assert before[record["file_name"]] in records
    assert not (out / "results.journal.jsonl").exists()  # complete: no journal left
    _no_hidden_files(out)


def test_sigkill_leaves_a_valid_journal_and_resume_cleans_up(thirty_images, cache, tmp_path):
    """No handler runs on SIGKILL: the journal is still valid up to its last whole line, and the
    next run removes the unfinished temporaries and completes the results."""
    out = tmp_path / "out"
    proc = _infer_until_journaled(thirty_images, out, cache, 3)
    proc.kill()
    proc.communicate(timeout=60)
    done = {r["name"] for r in _journal(out) if r["status"] == "done"}
    assert 3 <= len(done) < 30 and not (out / "results.json").exists()
    (out / "vis" / ".00_x.AbC_1234.part.jpg").write_bytes(b"half a render")  # as a kill mid-write leaves
    r = posekit("infer", thirty_images, "--out", out, "--resume", "--no-vis", *FP32, cache=cache)
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r"removed \d+ unfinished file\(s\) left by a killed run", r.stderr), r.stderr[-2000:]
    images, records, _ = _load_results(out)
    assert len(images.dataset["images"]) == 30 and f"resumed: {len(done)} inputs" in r.stdout
    _no_hidden_files(out)


def _sigterm_once_writing(command: str, video: Path, out: Path, cache: Path) -> subprocess.Popen:
    """`posekit COMMAND VIDEO --out OUT` started and sent SIGTERM a second after its JSON Lines
    temporary holds a frame."""
    proc = subprocess.Popen([sys.executable, "-m", "posekit", command, str(video), "--out", str(out), *FP32],
                            cwd=ROOT, env=_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.name.endswith(".jsonl") and p.stat().st_size > 0 for p in out.rglob(".*")):
            break
        time.sleep(0.01)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    return proc


@pytest.fixture
def long_video(tmp_path) -> Path:
    video = tmp_path / "long.avi"  # 60 frames of the demo video
    write_avi(video, [cv2.resize(f, (480, 270)) for f in read_frames(DEMO_VIDEO)] * 12)
    return video


def test_infer_video_sigterm_keeps_the_frames_done_in_both_outputs(cache, tmp_path, long_video):
    """The records and the render are written on a writer thread behind the poses: on SIGTERM the
    frames queued are written to both, and both hold the same frames."""
    out = tmp_path / "out"
    proc = _sigterm_once_writing("infer", long_video, out, cache)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    assert "interrupted by SIGTERM" in stdout and "Traceback" not in stderr
    from posekit.schema import read_frame_records

    records = read_frame_records(out / "long.jsonl")
    assert 1 <= len(records) < 60 and [r["frame"] for r in records] == list(range(len(records)))
    assert len(list(read_frames(out / "vis" / "long.mp4"))) == len(records)
    assert f"{len(records)} frames" in stdout
    _no_hidden_files(out)


def test_track_sigterm_keeps_the_frames_done(cache, tmp_path, long_video):
    out = tmp_path / "out"
    proc = _sigterm_once_writing("track", long_video, out, cache)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    assert "interrupted by SIGTERM" in stderr and "kept the frames done" in stdout
    from posekit.schema import read_frame_records

    records = read_frame_records(out / "long.jsonl")
    assert 1 <= len(records) < 60 and [r["frame"] for r in records] == list(range(len(records)))
    posetrack = json.loads((out / "long.posetrack.json").read_text())
    assert len(posetrack["images"]) == len(records)
    assert len(list(read_frames(out / "long.mp4"))) == len(records)
    _no_hidden_files(out)


# -- full disks ----------------------------------------------------------------------------------


def _file_size_limit(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), no kill
    return apply


def _tmpfs(mount: Path, options: str, what: str):
    """A tmpfs mounted at `mount` with `options` for the test's length (skipped where mounting is not allowed)."""
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount {what} here ({r.stderr.strip() or 'mount failed'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def small_tmpfs(tmp_path):
    yield from _tmpfs(tmp_path / "small", "size=300k", "a small tmpfs")


def test_file_size_limit_stops_cleanly_keeping_what_was_done(cache, tmp_path):
    out = tmp_path / "out"
    images = [COCO_IMAGES / f"{n:012d}.jpg" for n in (785, 40083, 163746)]
    r = posekit("infer", *images, "--out", out, *FP32, cache=cache, preexec_fn=_file_size_limit(60_000))
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert "stopped: " in r.stdout and "disk full" in r.stdout
    images_doc, records, _ = _load_results(out)
    done = {im["file_name"] for im in images_doc.dataset["images"]}
    assert len(done) >= 1 and done <= {p.name for p in images}  # the keypoints of the image whose render failed
    assert {r["name"] for r in _journal(out) if r["status"] == "done"} == done
    _no_hidden_files(out)


def test_full_tmpfs_stops_cleanly_and_resume_finishes_once_there_is_room(cache, small_tmpfs):
    out = small_tmpfs / "out"
    images = sorted(COCO_IMAGES.glob("*.jpg"))[:4]  # renders of 110-180 kB: the third does not fit
    r = posekit("infer", *images, "--out", out, *FP32, cache=cache)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "stopped: " in r.stdout and ": disk full" in r.stdout
    renders = sorted(p.name for p in (out / "vis").iterdir())
    done = {rec["name"] for rec in _journal(out) if rec["status"] == "done"}
    assert 1 <= len(renders) < 4 and set(renders) <= done and len(done) < 4
    if (out / "results.images.json").exists():  # written when there was room for it
        assert {im["file_name"] for im in json.loads((out / "results.images.json").read_text())["images"]} == done
    else:
        assert "not written (disk full); the journal keeps every finished image" in r.stdout
    _no_hidden_files(out)
    shutil.rmtree(out / "vis")  # make room, then finish without renders
    r = posekit("infer", *images, "--out", out, "--resume", "--no-vis", *FP32, cache=cache)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resumed: {len(done)} input" in r.stdout
    images_doc, records, loaded = _load_results(out)
    assert sorted(im["file_name"] for im in images_doc.dataset["images"]) == [p.name for p in images]
    assert not (out / "results.journal.jsonl").exists()
    _no_hidden_files(out)


# -- per-input failures: a named warning each, the batch goes on ----------------------------------


def _huge_tiff(path: Path) -> None:
    """A TIFF whose first page declares 20000 x 20000 (its pixel data need not be there)."""
    entries = [(256, 4, 1, 20000), (257, 4, 1, 20000), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, 20000), (279, 4, 1, 400_000_000)]
    ifd = len(entries).to_bytes(2, "little") + b"".join(
        tag.to_bytes(2, "little") + kind.to_bytes(2, "little") + count.to_bytes(4, "little") + value.to_bytes(4, "little")
        for tag, kind, count, value in entries) + b"\0\0\0\0"
    path.write_bytes(b"II*\0" + (8 + 0).to_bytes(4, "little") + ifd + b"\0" * 1024)


def _huge_webp(path: Path) -> None:
    body = b"VP8X" + (10).to_bytes(4, "little") + b"\0\0\0\0" + (19999).to_bytes(3, "little") + (19999).to_bytes(3, "little")
    path.write_bytes(b"RIFF" + (len(body) + 4).to_bytes(4, "little") + b"WEBP" + body)


def _huge_gif(path: Path) -> None:
    path.write_bytes(b"GIF89a" + (20000).to_bytes(2, "little") + (20000).to_bytes(2, "little") + b"\0\0\0" + b";")


def _with_trailer(path: Path) -> None:
    """A JPEG with bytes after its end marker, as phone motion photos carry a video there."""
    path.write_bytes(GOOD_JPEG.read_bytes() + b"\0\0\0\x18ftypmp42" + bytes(range(256)) * 400)


# file name -> (how to make it, the failure message or None when it must work, its render's name)
ODD_FILES = {
    "good.jpg": (lambda p: shutil.copy(GOOD_JPEG, p), None, "good.jpg"),
    "photo.jfif": (lambda p: shutil.copy(GOOD_JPEG, p), None, "photo.jfif.jpg"),
    "shot.jpg.bak": (lambda p: shutil.copy(GOOD_JPEG, p), None, "shot.jpg.bak.jpg"),
    "motion.jpg": (_with_trailer, None, "motion.jpg"),
    "cut.jpg": (lambda p: make("truncated_jpeg", p.parent), "cut.jpg: truncated JPEG", None),
    "huge.tif": (_huge_tiff, "huge.tif: image is 20000x20000 (400 megapixels), above the 100 megapixel limit", None),
    "huge.webp": (_huge_webp, "huge.webp: image is 20000x20000", None),
    "huge.gif": (_huge_gif, "huge.gif: image is 20000x20000", None),
    "notes.jpg": (lambda p: make("text", p.parent), "notes.jpg: not a decodable image", None),
}


def test_odd_and_bad_files_each_named_and_the_batch_goes_on(cache, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for name, (build, _, _) in ODD_FILES.items():
        build(folder / name)
        paths.append(folder / name)
    unreadable = None
    if os.geteuid() != 0:  # root reads any file: the permission case runs only as a normal user
        unreadable = folder / "locked.jpg"
        shutil.copy(GOOD_JPEG, unreadable)
        unreadable.chmod(0)
        paths.append(unreadable)
    out = tmp_path / "out"
    r = posekit("infer", *paths, "--out", out, *FP32, cache=cache)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    for name, (_, message, render) in ODD_FILES.items():
        if message is None:
            assert (out / "vis" / render).is_file(), name
        else:
            assert f"failed: {folder / message}" in r.stdout, (name, r.stdout)
            assert f"WARNING posekit.infer: {folder / message}" in r.stderr, name
    if unreadable is not None:
        assert f"failed: {unreadable}: cannot read (permission denied)" in r.stdout
    images, records, loaded = _load_results(out)
    good = {n for n, (_, message, _) in ODD_FILES.items() if message is None}
    assert {im["file_name"] for im in images.dataset["images"]} == good
    assert {rec["file_name"] for rec in records} == good  # the skier found in every good one
    assert len(list((out / "vis").iterdir())) == len(good)
    _no_hidden_files(out)


# -- one-line errors and range checks, before any work ----------------------------------------------


@pytest.fixture
def read_only_dir(tmp_path):
    yield from _tmpfs(tmp_path / "ro", "ro,size=64k", "a read-only tmpfs")


def _has_cuda() -> bool:
    from posekit.cli import _cuda_devices

    return _cuda_devices() > 0


# (arguments after the command, exit code, message on stderr); {img}, {out}, {file} are filled in
ERROR_CASES = [
    (["infer", "{img}", "--out", "{file}"], 1, "is a file, expected a folder"),
    (["infer", "{img}", "--out", "{file}/sub"], 1, "is a file, so no folder can be made there"),
    (["track", "{video}", "--out", "{file}"], 1, "is a file, expected a folder"),
    (["infer", "{img}", "--out", "{out}", "--det-threshold", "2"], 2, "expected a number from 0 to 1, got 2"),
    (["infer", "{img}", "--out", "{out}", "--det-threshold", "-1"], 2, "expected a number from 0 to 1, got -1"),
    (["infer", "{img}", "--out", "{out}", "--oks-threshold", "-1"], 2, "expected a number from 0 to 1, got -1"),
    (["infer", "{img}", "--out", "{out}", "--vis-threshold", "nan"], 2, "expected a number from 0 to 1, got 'nan'"),
    (["infer", "{img}", "--out", "{out}", "--max-frames", "0"], 2, "expected a whole number >= 1, got 0"),
    (["infer", "{img}", "--out", "{out}", "--workers", "0"], 2, "expected a whole number >= 1, got 0"),
    (["track", "{video}", "--out", "{out}", "--max-frames", "0"], 2, "expected a whole number >= 1, got 0"),
    (["track", "{video}", "--out", "{out}", "--det-threshold", "1.5"], 2, "expected a number from 0 to 1, got 1.5"),
    (["track", "{video}", "--out", "{out}", "--fps", "0"], 2, "expected a number > 0, got 0"),
    (["infer", "{img}", "--out", "{out}", "--resume", "--overwrite"], 1, "give one"),
]


@pytest.mark.parametrize("args, code, message", ERROR_CASES, ids=[" ".join(c[0][2:] if c[0][2:] else c[0]) for c in ERROR_CASES])
def test_errors_are_one_line(args, code, message, tmp_path):
    file = tmp_path / "a-file"
    file.write_text("not a folder")
    fill = {"img": str(SMALL[0]), "out": str(tmp_path / "out"), "file": str(file), "video": str(DEMO_VIDEO)}
    r = posekit(*[a.format(**fill) for a in args], cache=tmp_path / "cache")
    assert r.returncode == code, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert message in lines[-1] and sum("error" in line for line in lines) == 1  # argparse prints usage first
    assert len(lines) == 1 or code == 2
    assert not (tmp_path / "out").exists()


def test_cuda_without_cuda_is_one_line(tmp_path):
    if _has_cuda():
        pytest.skip("this machine has CUDA")
    r = posekit("infer", SMALL[0], "--out", tmp_path / "out", "--device", "cuda", cache=tmp_path / "cache")
    assert r.returncode == 1 and "no CUDA device here" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_read_only_out_is_one_line(read_only_dir, tmp_path):
    r = posekit("infer", SMALL[0], "--out", read_only_dir / "out", cache=tmp_path / "cache")
    assert r.returncode == 1 and "read-only file system" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_unwritable_cache_is_one_line(tmp_path):
    cache_file = tmp_path / "cache-is-a-file"
    cache_file.write_text("x")
    r = posekit("infer", SMALL[0], "--out", tmp_path / "out", *FP32, cache=cache_file / "sub")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "cache-is-a-file" in r.stderr.strip().splitlines()[-1]


def test_read_only_cache_works_when_nothing_needs_building(cache, read_only_dir, tmp_path):
    # copy the built cache onto a tmpfs, then make that read-only
    subprocess.run(["umount", "-l", str(read_only_dir)], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(read_only_dir)], check=True)
    shutil.copytree(cache, read_only_dir / "cache")
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_dir)], check=True)
    r = posekit("infer", SMALL[0], "--out", tmp_path / "out", "--no-vis", *FP32, cache=read_only_dir / "cache")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "results.json").read_text())


def test_existing_outputs_are_kept_without_overwrite(cache, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("[] ")
    r = posekit("infer", SMALL[0], "--out", out, *FP32, cache=cache)
    assert r.returncode == 1 and "results.json: already exists" in r.stderr and "--overwrite" in r.stderr
    assert (out / "results.json").read_text() == "[] "  # untouched
    r = posekit("infer", SMALL[0], "--out", out, "--overwrite", *FP32, cache=cache)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((out / "results.json").read_text())[0]["file_name"] == SMALL[0].name
    assert r.stdout.count("wrote ") == len(set(line for line in r.stdout.splitlines() if "wrote " in line)) == 3


# -- names, link loops ---------------------------------------------------------------------------


def test_names_are_unique_for_repeated_and_numbered_inputs(cache, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SMALL[0], folder / "a.jpg")
    shutil.copy(SMALL[1], folder / "a-2.jpg")
    out = tmp_path / "out"
    r = posekit("infer", folder / "a.jpg", folder / "a.jpg", folder / "a-2.jpg", "--out", out, *FP32, cache=cache)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in (out / "vis").iterdir()) == ["a-2.jpg", "a-3.jpg", "a.jpg"]
    images = json.loads((out / "results.images.json").read_text())["images"]
    assert [im["file_name"] for im in images] == ["a.jpg", "a-3.jpg", "a-2.jpg"]
    records = json.loads((out / "results.json").read_text())
    assert sum(r["file_name"] == "a-2.jpg" for r in records) >= 2  # a-2.jpg holds the three people, not the skier


def test_track_two_containers_of_one_name_keep_their_outputs(cache, tmp_path):
    frames = read_frames(DEMO_VIDEO)[:2]
    write_avi(tmp_path / "clip.avi", frames)
    shutil.copy(DEMO_VIDEO, tmp_path / "clip.mp4")
    out = tmp_path / "out"
    r = posekit("track", tmp_path / "clip.mp4", tmp_path / "clip.avi", "--out", out, "--max-frames", "2",
                "--no-video", *FP32, cache=cache)
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["clip.avi.jsonl", "clip.avi.posetrack.json", "clip.mp4.jsonl",
                                                    "clip.mp4.posetrack.json"]
    from posekit.schema import read_frame_records

    for name in ("clip.avi", "clip.mp4"):
        records = read_frame_records(out / f"{name}.jsonl")
        assert [r["frame"] for r in records] == [0, 1] and records[0]["source"].endswith(name)


def test_link_loops_end_and_list_each_image_once(tmp_path):
    from posekit.io import expand_inputs

    root = tmp_path / "photos"
    (root / "a" / "b").mkdir(parents=True)
    shutil.copy(GOOD_JPEG, root / "a" / "one.jpg")
    shutil.copy(GOOD_JPEG, root / "a" / "b" / "two.jpg")
    (root / "a" / "b" / "up").symlink_to(root / "a")  # loop 1
    (root / "a" / "self").symlink_to(root)  # loop 2
    (root / "a" / "b" / "alias.jpg").symlink_to(root / "a" / "one.jpg")  # the same file twice
    signal.alarm(30)  # a hang fails the test instead of the suite
    try:
        for pattern in (str(root), str(root / "**" / "*.jpg"), str(root / "a" / "*.jpg")):
            sources, problems = expand_inputs([pattern])
            names = sorted(Path(s.path).name for s in sources)
            expected = ["one.jpg"] if pattern.endswith("a/*.jpg") else ["one.jpg", "two.jpg"]
            assert names == expected and not problems, (pattern, names)
    finally:
        signal.alarm(0)


# -- videos: decoded frame counts, container timestamps, --max-frames, H.264 ----------------------


VFR_PTS_MS = [0, 40, 80, 200, 240, 250, 260, 500, 540, 580, 1000, 1033, 1066, 1100, 1500, 1540, 1580, 1620, 1700, 2000]


@pytest.fixture(scope="module")
def vfr_mkv(tmp_path_factory) -> Path:
    """A variable-frame-rate Matroska file (irregular gaps from 10 ms to 420 ms) made with PyAV;
    its header's frame count (duration x nominal rate) is far from the 20 frames it holds."""
    av = pytest.importorskip("av", reason="PyAV makes the variable-frame-rate test video")
    from fractions import Fraction

    path = tmp_path_factory.mktemp("vfr") / "vfr.mkv"
    person = cv2.resize(cv2.imread(str(GOOD_JPEG)), (320, 212))
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=25)
    stream.width, stream.height, stream.pix_fmt = 320, 212, "yuv420p"
    stream.codec_context.time_base = Fraction(1, 1000)
    for n, pts in enumerate(VFR_PTS_MS):
        frame = av.VideoFrame.from_ndarray(np.roll(person, 2 * n, axis=1), format="bgr24")
        frame.pts, frame.time_base = pts, Fraction(1, 1000)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def test_vfr_mkv_decodes_every_frame_with_its_timestamp(vfr_mkv):
    from posekit.io import VideoReader

    with VideoReader(str(vfr_mkv)) as reader:
        assert reader.declared != len(VFR_PTS_MS)  # the header's estimate is wrong ...
        frames = list(reader)  # ... and no "truncated" error comes of it
    assert [f.index for f in frames] == list(range(len(VFR_PTS_MS)))
    np.testing.assert_allclose([f.timestamp for f in frames], np.array(VFR_PTS_MS) / 1000, atol=1e-3)


def test_track_vfr_mkv_completely_with_container_timestamps(vfr_mkv, cache, tmp_path):
    from posekit.schema import read_frame_records

    r = posekit("track", vfr_mkv, "--out", tmp_path, *FP32, cache=cache)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{len(VFR_PTS_MS)} frames" in r.stdout and "truncated" not in r.stderr
    records = read_frame_records(tmp_path / "vfr.jsonl")
    assert len(records) == len(VFR_PTS_MS)
    np.testing.assert_allclose([rec["timestamp"] for rec in records], np.array(VFR_PTS_MS) / 1000, atol=1e-3)
    assert sum(len(rec["poses"]) for rec in records) >= len(VFR_PTS_MS) - 3  # the skier, once the track starts


def test_infer_and_track_write_one_schema_and_draw_the_same_people(cache, tmp_path):
    """The demo video through `infer --max-frames 3` and `track --max-frames 3`: both files pass
    the schema, and by default both draw the same people (box score >= --vis-threshold 0.5)."""
    from posekit.schema import SCHEMA, read_frame_records

    r = posekit("infer", DEMO_VIDEO, "--max-frames", "3", "--out", tmp_path / "i", *FP32, cache=cache)
    assert r.returncode == 0, r.stderr[-2000:]
    r = posekit("track", DEMO_VIDEO, "--max-frames", "3", "--out", tmp_path / "t", *FP32, cache=cache)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "--min-hits" in r.stdout and "--vis-threshold 0.5" in r.stdout  # the summary says who is drawn
    inferred, tracked = read_frame_records(tmp_path / "i" / "demo.jsonl"), read_frame_records(tmp_path / "t" / "demo.jsonl")
    assert len(inferred) == len(tracked) == 3 and {rec["schema"] for rec in inferred + tracked} == {SCHEMA}
    assert all("track_id" in p for rec in tracked for p in rec["poses"])
    assert not any("track_id" in p for rec in inferred for p in rec["poses"])
    for a, b in zip(inferred, tracked):
        assert (a["frame"], a["timestamp"], a["image_size"]) == (b["frame"], b["timestamp"], b["image_size"])
        drawn = [sorted(p["box"] for p in rec["poses"] if p["box_score"] >= 0.5) for rec in (a, b)]
        assert drawn[0] == drawn[1] and len(drawn[0]) >= 3, a["frame"]  # a crowded street, same people
    assert len(read_frames(tmp_path / "i" / "vis" / "demo.mp4")) == len(read_frames(tmp_path / "t" / "demo.mp4")) == 3


def test_render_codec_is_h264_where_pyav_can_write_it(tmp_path, caplog):
    from posekit.io import VideoSink, h264_available

    frames = read_frames(DEMO_VIDEO)[:3]
    with VideoSink(tmp_path / "r.mp4", fps=5) as sink:
        for frame in frames:
            sink.write(frame)
    assert len(read_frames(tmp_path / "r.mp4")) == 3
    if h264_available():
        import av

        assert sink.codec == "h264"
        with av.open(str(tmp_path / "r.mp4")) as container:
            assert container.streams.video[0].codec_context.name == "h264"
    else:
        assert sink.codec == "mp4v" and "H.264 needs PyAV" in caplog.text
    with VideoSink(tmp_path / "fallback.mp4", fps=5, h264=False) as sink:
        sink.write(frames[0])
    assert sink.codec == "mp4v" and len(read_frames(tmp_path / "fallback.mp4")) == 1


# -- the schema itself ---------------------------------------------------------------------------


def _valid_record() -> dict:
    return {"schema": "posekit.frame/1", "source": "a.mp4", "frame": 0, "timestamp": 0.04, "image_size": [64, 48],
            "poses": [{"track_id": 1, "box": [1, 2, 30, 40], "score": 0.5, "box_score": 0.7,
                       "keypoints": [[5.0, 6.0]] * 17, "keypoint_scores": [0.4] * 17}]}


@pytest.mark.parametrize("change, message", [
    (lambda r: r, None),
    (lambda r: r.update(timestamp=None), None),
    (lambda r: r["poses"][0].pop("track_id"), None),
    (lambda r: r.pop("schema"), "schema: expected posekit.frame/1"),
    (lambda r: r.update(schema="posekit.frame/2"), "schema: expected posekit.frame/1, found 'posekit.frame/2'"),
    (lambda r: r.update(frame=-1), "frame: expected an integer >= 0"),
    (lambda r: r.update(image_size=[64]), "image_size: expected [width, height]"),
    (lambda r: r["poses"][0].update(box=[30, 2, 1, 40]), "poses[0].box: expected [x0, y0, x1, y1]"),
    (lambda r: r["poses"][0].update(box=[1, 2, float("nan"), 40]), "poses[0].box"),
    (lambda r: r["poses"][0].update(score=1.5), "poses[0].score: expected a number in [0, 1]"),
    (lambda r: r["poses"][0].update(keypoints=[[1, 2, 0.5]] * 17), "poses[0].keypoints"),
    (lambda r: r["poses"][0].update(keypoint_scores=[0.4] * 16), "poses[0].keypoint_scores: expected 17 numbers"),
    (lambda r: r["poses"][0].update(track_id="3"), "poses[0].track_id: expected an integer"),
])
def test_schema_validation(change, message):
    from posekit.schema import validate_frame_record

    record = _valid_record()
    change(record)
    if message is None:
        validate_frame_record(record)
    else:
        with pytest.raises(ValueError, match=re.escape(message)):
            validate_frame_record(record, "f.jsonl:1")


# -- header sizes before decoding ----------------------------------------------------------------


@pytest.mark.parametrize("suffix, params", [
    (".tif", []), (".tiff", [cv2.IMWRITE_TIFF_COMPRESSION, 1]), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]), (".ppm", []), (".pgm", []), (".png", []), (".bmp", []), (".jpg", []),
])
def test_image_size_reads_each_format_header(suffix, params, tmp_path):
    from posekit.io import image_size

    image = cv2.imread(str(GOOD_JPEG))[:301, :403]
    if suffix == ".pgm":
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    path = tmp_path / f"x{suffix}"
    assert cv2.imwrite(str(path), image, params)
    assert image_size(path) == (403, 301)


@pytest.mark.parametrize("build, name", [(_huge_tiff, "huge.tif"), (_huge_webp, "huge.webp"), (_huge_gif, "huge.gif")])
def test_huge_headers_are_refused_before_decoding(build, name, tmp_path):
    from posekit.io import InputError, image_size, read_image

    path = tmp_path / name
    build(path)
    assert image_size(path) == (20000, 20000)
    with pytest.raises(InputError, match=r"20000x20000 \(400 megapixels\), above the 100 megapixel limit"):
        read_image(path)


def test_jpeg_trailers_are_accepted_and_cut_jpegs_refused(tmp_path):
    from posekit.io import InputError, read_image

    _with_trailer(tmp_path / "motion.jpg")
    assert read_image(tmp_path / "motion.jpg").shape == cv2.imread(str(GOOD_JPEG)).shape
    data = GOOD_JPEG.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2] + b"\0" * 5000)  # cut, then padded
    with pytest.raises(InputError, match="truncated JPEG"):
        read_image(tmp_path / "cut.jpg")


def test_cache_entries_are_readable_by_other_users(tmp_path, monkeypatch):
    """An engine built by one user is usable by the others: its folder is not mkdtemp's 0700."""
    from posekit import build

    monkeypatch.setenv("POSEKIT_CACHE", str(tmp_path / "cache"))
    old = os.umask(0o022)
    try:
        artefact = build.cached_artefact(build.BuildRequest("movenet-thunder", "onnxruntime", "fp32"), [], "engine.bin",
                                         lambda path: path.write_bytes(b"engine"))
    finally:
        os.umask(old)
    for path in (artefact.parent, artefact, artefact.parent / build.ENTRY):
        assert path.stat().st_mode & 0o044 == 0o044, (path, oct(path.stat().st_mode))
    assert artefact.parent.stat().st_mode & 0o011 == 0o011  # others may enter the folder


def test_json_lines_cut_by_a_full_disk_keep_their_whole_lines(small_tmpfs):
    from posekit.io import JsonLinesWriter, is_disk_full

    with pytest.raises(OSError) as raised:
        with JsonLinesWriter(small_tmpfs / "v.jsonl") as lines:
            for n in range(100_000):  # ~1 kB a line: the 300 kB disk fills
                lines.write({"frame": n, "pad": "x" * 1000})
    assert is_disk_full(raised.value)
    records = [json.loads(line) for line in (small_tmpfs / "v.jsonl").read_text().splitlines()]
    assert len(records) == lines.lines > 100 and [r["frame"] for r in records] == list(range(len(records)))
    assert [p.name for p in small_tmpfs.iterdir()] == ["v.jsonl"]


@pytest.mark.parametrize("tail, kept", [
    (b"", ["a", "b"]),
    (b'{"name": "c", "status": "do', ["a", "b"]),  # cut mid-record by a kill or a full disk
    (b"\x00\x00\x00\x00", ["a", "b"]),  # a page of zeros after a crash
    (b'{"name": "c", "status": "done"}', ["a", "b"]),  # no newline: not known to be whole
    (b'{"name": "c", "status": "done"}\n', ["a", "b", "c"]),
])
def test_journal_is_valid_up_to_its_last_complete_record(tail, kept, tmp_path):
    from posekit.journal import ResultsJournal

    path = tmp_path / "results.journal.jsonl"
    path.write_bytes(b'{"name": "a", "status": "done"}\n{"name": "b", "status": "failed"}\n' + tail)
    journal = ResultsJournal(path)
    assert list(journal.open(fresh=False)) == kept
    journal.append({"name": "d", "status": "done"})
    journal.close()
    lines = path.read_bytes().splitlines()
    assert [json.loads(line)["name"] for line in lines] == [*kept, "d"]  # the cut part is gone, d follows whole


def test_a_signal_during_the_journal_write_is_raised_once_the_image_is_kept_in_both(tmp_path):
    """infer keeps each finished image in the journal and in what results.json is written from;
    a real SIGINT arriving between the two (CI caught one) waits until both hold it."""
    from posekit.infer import _keep
    from posekit.journal import ResultsJournal

    class SignalledMidAppend(ResultsJournal):
        def append(self, record):
            super().append(record)
            os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler at the next bytecode

    journal, done = SignalledMidAppend(tmp_path / "results.journal.jsonl"), {}
    journal.open(fresh=True)
    with pytest.raises(KeyboardInterrupt):
        _keep({"name": "a.jpg", "status": "done"}, journal, done)
    journal.close()
    assert list(done) == ["a.jpg"] and [r["name"] for r in _journal(tmp_path)] == ["a.jpg"]


class _FailsAfter:
    """The real estimator, with a fault injected after `n` frames (an engine crash): the stand-in
    for a fatal error, which no real input triggers on demand."""

    def __init__(self, estimator, n: int) -> None:
        self.estimator, self.n = estimator, n

    def stream(self, frames):
        for count, poses in enumerate(self.estimator.stream(frames)):
            if count == self.n:
                raise RuntimeError("the engine crashed")
            yield poses


def test_fatal_error_keeps_every_finished_image(tmp_path, shared_env):
    from posekit.estimators import make_estimator
    from posekit.infer import infer

    images = sorted(COCO_IMAGES.glob("*.jpg"))[:5]
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="the engine crashed"):
        infer([str(p) for p in images], out, estimator=_FailsAfter(make_estimator(precision="fp32", workers=1), 2))
    images_doc, records, _ = _load_results(out)
    assert [im["file_name"] for im in images_doc.dataset["images"]] == [p.name for p in images[:2]]
    assert {r["name"] for r in _journal(out)} == {p.name for p in images[:2]}  # kept for --resume
    _no_hidden_files(out)


def test_vis_threshold_default_is_the_score_a_new_track_needs():
    """infer and track draw the same people by default: both renders use the tracker's birth score."""
    from posekit.cli import build_parser
    from posekit.infer import VIS_THRESHOLD
    from posekit.tracking import PoseTracker

    parser = build_parser()
    infer_args = parser.parse_args(["infer", "x.jpg", "--out", "o"])
    track_args = parser.parse_args(["track", "x.mp4", "--out", "o"])
    assert infer_args.vis_threshold == track_args.vis_threshold == VIS_THRESHOLD == PoseTracker().new_track_score
