"""MoveNet MultiPose (bottom-up) in torch and in posekit's ONNX export against Google's whole graph
(the tf2onnx reference, decoding included) on real COCO images at two input sizes; posekit's own
decoding against the graph's on the graph's own heads; loading errors."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from posekit import registry
from posekit import export as export_mod
from posekit.engines.onnxruntime import OnnxRuntimeEngine
from posekit.models.movenet import ArchitectureMismatch, build_movenet
from posekit.models.movenet_multipose import OUTPUT_NAMES, MoveNetMultiPose, build_movenet_multipose
from posekit.ops.crop import letterbox
from posekit.ops.multipose import MultiPoses, decode_multipose, reference_output_to_multiposes
from paths import COCO_IMAGES, MODELS

NAME = "movenet-multipose"
REFERENCE = MODELS / "reference" / "movenet-multipose.tf2onnx.onnx"
WEIGHTS = MODELS / NAME
SIZES = {"256x256": (256, 256), "192x256": (192, 256)}  # (height, width), letterboxed
# a crowd, a group, a pair, one person
IMAGES = ("000000163746.jpg", "000000197388.jpg", "000000040083.jpg", "000000000785.jpg")
KEYPOINT_ATOL_PX = 0.5
SCORE_ATOL = 1e-3
MIN_SCORE = 0.1  # people compared: Google's person score at least this (none lies within 0.01 of it)
_P = "StatefulPartitionedCall/"
# the reference graph's tensors that are posekit's raw heads (NCHW after tf2onnx's transposes)
REFERENCE_HEADS = {
    "centre": _P + "Sigmoid:0",
    "heatmaps": _P + "Sigmoid_1:0",
    "regression": _P + "kpt_regress_0/conv2d_8/BiasAdd_BiasAdd__116:0",
    "offsets": _P + "kpt_offset_0/conv2d_9/BiasAdd_BiasAdd__115:0",
    "box_scale": _P + "box_scale_0/conv2d_5/BiasAdd_BiasAdd__119:0",
    "box_offset": _P + "box_offset_0/conv2d_6/BiasAdd_BiasAdd__118:0",
}


def _spec() -> registry.ModelSpec:
    return registry.get(NAME)


def _letterboxed(names, size) -> np.ndarray:
    """(B, H, W, 3) uint8 RGB, each image letterboxed into `size` with black padding."""
    out = []
    for name in names:
        bgr = cv2.imread(str(COCO_IMAGES / name), cv2.IMREAD_COLOR)
        assert bgr is not None, COCO_IMAGES / name
        out.append(letterbox(np.ascontiguousarray(bgr[:, :, ::-1]), size, pad_value=0)[0])
    return np.stack(out)


def _nchw(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), dtype=np.float32)


@pytest.fixture(scope="module")
def google():
    """image batch (B, H, W, 3) uint8 -> (Google's people as MultiPoses, its six raw heads, batched)."""
    proto = onnx.load(str(REFERENCE))
    for name in REFERENCE_HEADS.values():
        proto.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def run(images: np.ndarray) -> tuple[MultiPoses, list[np.ndarray]]:
        rows = [session.run(None, {"input:0": image[None].astype(np.int32)}) for image in images]  # batch 1 only
        packed = np.concatenate([r[0] for r in rows])
        heads = [np.concatenate([r[1 + i] for r in rows]) for i in range(len(REFERENCE_HEADS))]
        return reference_output_to_multiposes(packed, images.shape[1:3]), heads

    return run


@pytest.fixture(scope="module")
def cases(google):
    """per size: the letterboxed images, and Google's people and heads for them."""
    out = {}
    for key, size in SIZES.items():
        images = _letterboxed(IMAGES, size)
        out[key] = (images, *google(images))
    return out


@pytest.fixture(scope="module")
def model():
    return build_movenet_multipose(_spec(), weights=WEIGHTS)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One export with a dynamic batch and dynamic height and width, through posekit's export path."""
    out = tmp_path_factory.mktemp("multipose") / "multipose.onnx"
    report = export_mod.export_onnx(NAME, out, batch="dynamic", spatial="dynamic", weights=WEIGHTS)
    return report, OnnxRuntimeEngine(report.path)


def assert_same_people(got: MultiPoses, want: MultiPoses, label: str = "") -> int:
    """Every person of `want` scoring >= MIN_SCORE is one of `got`'s candidates (matched by keypoints)
    with keypoints and box within KEYPOINT_ATOL_PX and scores within SCORE_ATOL, and `got` has no
    extra person above the threshold. Per image of the batch. Returns the number of people compared."""
    compared = 0
    for i in range(want.scores.shape[0]):
        matched = set()
        for p in np.flatnonzero(want.scores[i] >= MIN_SCORE):
            distance = np.abs(got.keypoints[i] - want.keypoints[i, p]).max(axis=(1, 2))  # (P,)
            q = int(distance.argmin())
            where = f"{label} image {i} person {p}"
            assert q not in matched, f"{where}: two people matched to candidate {q}"
            matched.add(q)
            assert distance[q] <= KEYPOINT_ATOL_PX, f"{where}: keypoints {distance[q]:.3f} px off"
            box = np.abs(got.boxes[i, q] - want.boxes[i, p]).max()
            assert box <= KEYPOINT_ATOL_PX, f"{where}: box {box:.3f} px off"
            np.testing.assert_allclose(got.keypoint_scores[i, q], want.keypoint_scores[i, p], atol=SCORE_ATOL, rtol=0,
                                       err_msg=where)
            np.testing.assert_allclose(got.scores[i, q], want.scores[i, p], atol=SCORE_ATOL, rtol=0, err_msg=where)
            compared += 1
        extra = [q for q in np.flatnonzero(got.scores[i] >= MIN_SCORE + SCORE_ATOL) if q not in matched]
        assert not extra, f"{label} image {i}: candidates {extra} score above {MIN_SCORE}, Google's do not"
    return compared


@pytest.mark.parametrize("size", SIZES)
def test_torch_matches_google(model, cases, size):
    images, people, heads = cases[size]
    h, w = SIZES[size]
    with torch.no_grad():
        ours = [t.numpy() for t in model(torch.from_numpy(_nchw(images)))]  # one batch of 4
    for name, got, want in zip(OUTPUT_NAMES, ours, heads):
        assert got.shape == want.shape and got.shape[2:] == (h // 4, w // 4), name
        np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-3, err_msg=name)
    decoded = decode_multipose(*ours)
    assert decoded.keypoints.shape == (len(IMAGES), 6, 17, 2) and decoded.boxes.shape == (len(IMAGES), 6, 4)
    # a real test set: a crowd, a group, a pair and one person, each found
    found = [int((people.scores[i] >= MIN_SCORE).sum()) for i in range(len(IMAGES))]
    assert all(n >= least for n, least in zip(found, (4, 4, 2, 1))), found
    assert assert_same_people(decoded, people, size) >= 12


@pytest.mark.parametrize("size", SIZES)
def test_decoding_reproduces_googles_on_its_own_heads(google, cases, size):
    """Google's raw heads through posekit's decoding give Google's output: all 6 candidates, in order."""
    _, people, heads = cases[size]
    if size == "192x256":  # and every image of the mini set (empty scenes, tiny people, crowds)
        every = sorted(p.name for p in COCO_IMAGES.glob("*.jpg"))
        people, heads = google(_letterboxed(every, SIZES[size]))
        assert len(every) == 19
    ours = decode_multipose(*heads)
    for field in ("keypoints", "boxes"):
        np.testing.assert_allclose(getattr(ours, field), getattr(people, field), atol=1e-3, rtol=0, err_msg=field)
    for field in ("keypoint_scores", "scores"):
        np.testing.assert_allclose(getattr(ours, field), getattr(people, field), atol=1e-6, rtol=0, err_msg=field)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("batch", [1, 4])
def test_exported_onnx_matches_google(exported, cases, size, batch):
    report, engine = exported
    images, people, _ = cases[size]
    assert engine.inputs[0].shape == (None, 3, None, None)
    assert json.loads(report.metadata["posekit.outputs"]) == list(OUTPUT_NAMES)
    assert report.metadata["posekit.spatial"] == "dynamic" and "box_scale" in report.metadata["posekit.output_layout"]
    heads = engine(_nchw(images[:batch]))
    assert heads[0].shape == (batch, 1, SIZES[size][0] // 4, SIZES[size][1] // 4)
    want = MultiPoses(*(a[:batch] for a in people))
    assert assert_same_people(decode_multipose(*heads), want, f"{size} batch {batch}") >= (1 if batch == 1 else 12)


def _copy_model(source: str, tmp_path, edit=None):
    folder = tmp_path / source
    shutil.copytree(MODELS / source, folder)
    for p in folder.iterdir():
        p.chmod(0o644)
    if edit is not None:
        doc = json.loads((folder / "model.json").read_text())
        edit(doc)
        (folder / "model.json").write_text(json.dumps(doc))
    return folder


def _free_input_size(doc):
    for node in doc["modelTopology"]["node"]:
        if node["op"] == "Placeholder":
            node["attr"]["shape"]["shape"]["dim"] = [{"size": s} for s in ("1", "-1", "-1", "3")]


@pytest.mark.parametrize(
    "source, edit, build, message",
    [
        ("movenet-thunder", None, "multipose", r"movenet-thunder/model\.json declares a fixed 256x256 input, movenet-multipose"),
        ("movenet-lightning", None, "multipose", r"movenet-lightning/model\.json declares a fixed 192x192 input"),
        # a single-pose graph whose input was freed: caught by its missing box heads
        ("movenet-lightning", _free_input_size, "multipose",
         r"movenet-lightning/model\.json does not fit MoveNetMultiPose: missing 10 tensor\(s\): heads\.box_offset"),
        ("movenet-multipose", None, "thunder", r"movenet-multipose/model\.json: convolution '.*box_offset_0/.*' is not part of MoveNet"),
    ],
    ids=["thunder-files", "lightning-files", "lightning-free-input", "multipose-files-for-thunder"],
)
def test_wrong_weights_fail_naming_the_file(tmp_path, source, edit, build, message):
    folder = _copy_model(source, tmp_path, edit)
    with pytest.raises(ArchitectureMismatch, match=message):
        if build == "multipose":
            build_movenet_multipose(_spec(), weights=folder)
        else:
            build_movenet(registry.get("movenet-thunder"), weights=folder)


def test_decoding_one_synthetic_person():
    """A person built by hand: centre peak, box, regressed keypoints, heatmap peaks, offsets."""
    h, w, k = 12, 16, 17
    centre = np.zeros((1, 1, h, w), np.float32)
    centre[0, 0, 5, 6] = 0.8
    centre[0, 0, 5, 7] = 0.7  # inside the peak's 5x5 window: not a candidate
    heatmaps = np.zeros((1, k, h, w), np.float32)
    regression = np.zeros((1, 2 * k, h, w), np.float32)
    offsets = np.zeros((1, 2 * k, h, w), np.float32)
    box_scale = np.zeros((1, 2, h, w), np.float32)
    box_offset = np.zeros((1, 2, h, w), np.float32)
    box_scale[0, :, 5, 6] = (8.0, 4.0)  # 8 cells high, 4 wide
    box_offset[0, :, 5, 6] = (0.5, 0.25)
    cells = [(2 + j % 6, 5 + j % 3) for j in range(k)]  # inside the box rows 1.5..9.5, cols 4.25..8.25
    for j, (y, x) in enumerate(cells):
        regression[0, 2 * j:2 * j + 2, 5, 6] = (y - 5 + 0.4, x - 6 - 0.3)  # near, not on, the peak
        heatmaps[0, j, y, x] = 0.9 if j < 10 else 0.1  # 7 keypoints below the visibility threshold
        heatmaps[0, j, y, 15] = 1.0  # brighter, but outside the box: ignored
        offsets[0, 2 * j:2 * j + 2, y, x] = (0.25, -0.5)
    got = decode_multipose(centre, heatmaps, regression, offsets, box_scale, box_offset).people(min_score=0.01)
    assert got.scores.shape == (1,)
    expected_kp = np.array([[(x - 0.5) * 4, (y + 0.25) * 4] for y, x in cells], np.float32)
    np.testing.assert_allclose(got.keypoints[0], expected_kp, atol=1e-4)
    np.testing.assert_allclose(got.boxes[0], [(6.25 - 2) * 4, (5.5 - 4) * 4, (6.25 + 2) * 4, (5.5 + 4) * 4], atol=1e-4)
    d2 = 0.4**2 + 0.3**2
    weight = np.exp(-d2 / (min(h, w) * 0.30004883))
    np.testing.assert_allclose(got.keypoint_scores[0], np.where(np.arange(k) < 10, 0.9, 0.1) * weight, rtol=1e-5)
    np.testing.assert_allclose(got.scores[0], 0.8 * 0.9 * weight, rtol=1e-5)  # the mean of the 10 visible


def test_no_person_gives_empty_people():
    heads = [np.zeros((2, c, 8, 8), np.float32) for c in (1, 17, 34, 34, 2, 2)]
    decoded = decode_multipose(*heads)
    assert decoded.scores.shape == (2, 6) and not decoded.scores.any()
    people = decoded.people(1)
    assert people.keypoints.shape == (0, 17, 2) and people.boxes.shape == (0, 4) and people.scores.shape == (0,)


@pytest.mark.parametrize(
    "channels, message",
    [
        ((1, 17, 34, 34, 2), "missing"),
        ((2, 17, 34, 34, 2, 2), r"expected centre of shape \(1, 1, 8, 8\), got \(1, 2, 8, 8\)"),
        ((1, 17, 17, 34, 2, 2), r"expected regression of shape \(1, 34, 8, 8\)"),
        ((1, 17, 34, 34, 4, 2), r"expected box_scale of shape \(1, 2, 8, 8\), got \(1, 4, 8, 8\)"),
    ],
)
def test_decode_rejects_misshaped_heads(channels, message):
    heads = [np.zeros((1, c, 8, 8), np.float32) for c in channels]
    with pytest.raises((ValueError, TypeError), match=message):
        decode_multipose(*heads)


@pytest.mark.parametrize("shape", [(1, 3, 250, 256), (1, 3, 256, 200), (1, 4, 256, 256), (3, 256, 256)])
def test_forward_rejects_sizes_not_multiples_of_32(model, shape):
    assert isinstance(model, MoveNetMultiPose)
    with pytest.raises(ValueError, match=r"H and W multiples of 32, got"):
        model(torch.zeros(shape))


@pytest.mark.parametrize("size", SIZES)
def test_torch_decoding_equals_numpy_decoding(cases, size):
    from posekit.models.movenet_multipose import decode_multipose_torch

    _, _, heads = cases[size]
    want = decode_multipose(*heads)
    got = decode_multipose_torch(*(torch.from_numpy(h) for h in heads))
    for field, value in zip(MultiPoses._fields, got):
        np.testing.assert_allclose(value.numpy(), getattr(want, field), atol=1e-4, rtol=0, err_msg=field)


@pytest.mark.parametrize(
    "image, long_side, expected",
    [
        ((480, 640), 256, (192, 256)),
        ((640, 427), 256, (256, 192)),  # 170.8 rounds up to 192
        ((1080, 1920), 320, (192, 320)),
        ((500, 500), 256, (256, 256)),
        ((10, 2000), 256, (32, 256)),  # a sliver still gets one row of cells per stride 32
        ((0, 640), 256, ValueError),
        ((480, 640), 250, ValueError),
    ],
)
def test_input_size_for(image, long_side, expected):
    from posekit.ops.multipose import input_size_for

    if expected is ValueError:
        with pytest.raises(ValueError, match="expected a positive image size|long_side must be"):
            input_size_for(*image, long_side=long_side)
    else:
        assert input_size_for(*image, long_side=long_side) == expected
