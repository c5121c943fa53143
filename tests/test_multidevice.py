"""Several devices: --device strings, and a two-worker split (two CPU workers here) that gives what
one device gives, in input order."""

from __future__ import annotations

import numpy as np
import pytest

from posekit.cli import build_parser
from posekit.commands import make_estimator as command_estimator
from posekit.estimators import make_estimator
from posekit.evaluate import evaluate, gt_boxes, load_annotations
from posekit.io import iter_video, read_image
from posekit.multidevice import MultiDeviceEstimator, split_devices

from paths import COCO_ANN, COCO_IMAGES, DEMO_VIDEO
from runner import run_posekit


@pytest.mark.parametrize("device, expected", [
    ("cpu", ["cpu"]),
    ("cuda", ["cuda"]),
    ("cuda:1", ["cuda:1"]),
    ("cuda:0,1", ["cuda:0", "cuda:1"]),
    ("cuda:0, cuda:2", ["cuda:0", "cuda:2"]),
    ("cpu,cpu", ["cpu", "cpu"]),
    ("cpu:0,1", ["cpu", "cpu"]),
])
def test_split_devices(device, expected):
    assert split_devices(device) == expected


@pytest.mark.parametrize("device", ["tpu:0,1", "cuda:x,1", "0,1", "gpu:all"])
def test_split_devices_refuses(device):
    with pytest.raises(ValueError, match="--device"):
        split_devices(device)


@pytest.fixture(scope="module")
def single(shared_env):
    return make_estimator()


@pytest.fixture(scope="module")
def double(shared_env):
    """Two CPU workers, made the way `posekit infer/eval/track --device cpu,cpu` makes them."""
    args = build_parser().parse_args(["eval", "--ann", "a.json", "--images", ".", "--device", "cpu,cpu"])
    estimator = command_estimator(args, det_score_threshold=args.det_threshold, oks_threshold=args.oks_threshold)
    assert isinstance(estimator, MultiDeviceEstimator) and estimator.devices == ["cpu", "cpu"], estimator
    yield estimator
    estimator.close()


def assert_same(one: list, two: list, what: str) -> None:
    assert len(one) == len(two), f"{what}: expected {len(one)} results, found {len(two)}"
    for i, (a, b) in enumerate(zip(one, two)):
        assert len(a) == len(b), f"{what} #{i}: expected {len(a)} people, found {len(b)}"
        for name in ("boxes", "keypoints", "keypoint_scores", "scores"):
            diff = np.abs(getattr(a, name) - getattr(b, name)).max(initial=0.0)
            assert diff <= 1e-4, f"{what} #{i}: {name} differ by {diff}"


def test_two_workers_images_and_video(single, double):
    paths = sorted(COCO_IMAGES.glob("*.jpg"))
    frames = [frame.image for frame in iter_video(DEMO_VIDEO)]
    assert len(paths) == 19 and len(frames) == 5
    one = list(single.stream(paths)) + list(single.stream(frames))
    two = list(double.stream(paths)) + list(double.stream(iter(frames)))
    assert_same(one, two, "two CPU workers vs one")
    assert sum(map(len, one)) > 50  # people were found, in different numbers per image: order matters
    assert len({len(p) for p in one}) > 3


def test_two_workers_eval(single, double):
    """evaluate through the workers (the detector pass with its detections, the ground-truth-boxes
    pass) gives exactly the one-device figures."""
    from test_eval_stream import BEFORE, check_report

    one = evaluate(COCO_ANN, COCO_IMAGES, single)
    expected = {k: ({m: v[m] for m in BEFORE[None][k]} if isinstance(v, dict) else v)
                for k, v in one.items() if k in BEFORE[None] or k in ("images", "people")}
    check_report(evaluate(COCO_ANN, COCO_IMAGES, double), expected, "evaluate on cpu,cpu")
    coco = load_annotations(COCO_ANN)
    ids = sorted(coco.getImgIds())[:4]
    people = [gt_boxes(coco, i) for i in ids]
    paths = [COCO_IMAGES / coco.imgs[i]["file_name"] for i in ids]
    assert_same([single.estimate_boxes([read_image(p)], [b])[0] for p, b in zip(paths, people)],
                double.estimate_boxes(paths, people), "estimate_boxes on cpu,cpu vs one device")


def test_worker_failure_is_raised_and_workers_restart(double):
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 BGR image"):
        list(double.stream([np.zeros((4, 4), np.uint8)]))
    assert double._workers is None  # stopped after the failure
    assert len(double.estimate_batch([np.zeros((64, 64, 3), np.uint8)])) == 1  # fresh workers


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    """A 30-frame 960x540 video (the demo's frames looped; mp4v in .mp4, a container that indexes its frames)."""
    from posekit.product_bench import make_looped_video

    return make_looped_video(DEMO_VIDEO, 30, tmp_path_factory.mktemp("video") / "street.mp4")


def test_two_workers_decode_their_own_video_ranges(single, double, street):
    frames = list(iter_video(str(street)))
    one = list(single.stream(f.image for f in frames))
    got = list(double.stream_video(street, len(frames), range_frames=7))  # 5 ranges: 3 on one worker, 2 on the other
    assert [g[0] for g in got] == list(range(30))
    assert [g[1] for g in got] == [f.timestamp for f in frames]
    assert {(g[2], g[3]) for g in got} == {(960, 540)}
    assert_same(one, [g[4] for g in got], "video ranges on cpu,cpu vs one device")
    assert sum(map(len, one)) > 100  # 151: people in every frame


def test_a_video_shorter_than_its_ranges_is_a_truncated_input(double, street):
    from posekit.io import InputError

    # the 30-frame file read as if its header declared 40: whichever worker meets the end first says so
    with pytest.raises(InputError, match=r"street.mp4: truncated video, no frame 3[02] of the 40 frames its header declares"):
        list(double.stream_video(street, 40, range_frames=16))
    assert len(list(double.stream_video(street, 4, range_frames=2))) == 4  # fresh workers after the failure


def test_infer_on_two_workers_writes_what_one_device_writes(street, tmp_path, shared_env):
    """`posekit infer VIDEO --device cpu,cpu`: the workers decode their own ranges; the JSON Lines are
    byte for byte one device's, and the render (drawn from this process's own decoding) has every frame."""
    from posekit.io import VideoReader

    for out, device in (("one", "cpu"), ("two", "cpu,cpu")):
        result = run_posekit("infer", street, "--out", tmp_path / out, "--device", device,
                             env={"POSEKIT_VIDEO_RANGE_FRAMES": "8"}, timeout=300)
        assert result.returncode == 0, result.stderr
    one, two = (tmp_path / "one" / "street.jsonl").read_bytes(), (tmp_path / "two" / "street.jsonl").read_bytes()
    assert one == two and one.count(b"\n") == 30
    with VideoReader(str(tmp_path / "two" / "vis" / "street.mp4")) as render:
        assert sum(1 for _ in render) == 30


def test_track_on_two_workers_writes_what_one_device_writes(street, tmp_path, shared_env):
    """`posekit track VIDEO --device cpu,cpu`: the workers decode their own ranges, this process
    tracks; the JSON Lines and MOT text are byte for byte one device's."""
    for out, device in (("one", "cpu"), ("two", "cpu,cpu")):
        result = run_posekit("track", street, "--out", tmp_path / out, "--device", device, "--no-video",
                             "--format", "jsonl,mot", env={"POSEKIT_VIDEO_RANGE_FRAMES": "8"}, timeout=300)
        assert result.returncode == 0, result.stderr
    for name in ("street.jsonl", "street.txt"):
        one, two = (tmp_path / "one" / name).read_bytes(), (tmp_path / "two" / name).read_bytes()
        assert one == two and one, name
    assert (tmp_path / "one" / "street.jsonl").read_bytes().count(b"\n") == 30
