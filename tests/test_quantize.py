"""INT8 on the CPU: ONNX Runtime static quantisation calibrated on real crops and frames."""

from __future__ import annotations

import numpy as np
import pytest

from posekit import registry
from posekit.build import build, source_onnx
from posekit.compare import real_inputs, run_batched
from posekit.engines import load_engine
from posekit.ops.boxes import box_iou
from posekit.quantize import QuantOptions, output_errors, quantize_onnx
from paths import COCO_ANN, MODELS


@pytest.fixture(scope="module")
def frames(shared_env):
    return real_inputs("rtmdet-nano-person", COCO_ANN, limit=19)


def test_int8_detector_finds_the_same_people(frames):
    """RTMDet-nano INT8 (built through the cache, calibrated on the shared frames): the confident
    FP32 people are found again in the same place. Scores move a lot (median 0.36 here): the
    report says so, and INT8 is not the CPU default for the detector (it is also slower)."""
    fp32 = load_engine(MODELS / "rtmdet-nano-person.onnx")
    int8 = load_engine(build("rtmdet-nano-person", precision="int8"))
    ious = []
    for frame in frames:
        want, got = fp32(frame[None])[0][0], int8(frame[None])[0][0]
        want = want[want[:, 4] > 0.5]
        if len(want):
            ious += box_iou(want[:, :4], got[:, :4]).max(1).tolist()
    assert len(ious) >= 20
    assert np.median(ious) > 0.8 and (np.array(ious) >= 0.5).mean() >= 0.9


def test_int8_pose_model_stays_within_tolerance(shared_env):
    """MoveNet-Thunder INT8 (backbone QDQ per-channel with 7-bit weights, stem, FPN and heads float,
    calibrated on the 30 packaged crops from the demo video, none of these) against FP32 on 20 COCO
    person crops. Measured: median 0.87 px, 74% within 2 px, 93% within 8 px, scores 0.064 apart on
    average. 7-bit weights (reduce_range) cost this agreement (8-bit: 0.50 px, 88%, 99%, 0.046, on a
    CPU with VNNI only: without VNNI 8-bit sums saturate) but not AP (see the AP test); they compute
    the same on every x86 CPU, so these bounds hold with and without VNNI."""
    from posekit.ops.movenet import decode_movenet

    crops = real_inputs("movenet-thunder", COCO_ANN, limit=40)
    fp32 = load_engine(source_onnx("movenet-thunder"))
    int8 = load_engine(build("movenet-thunder", precision="int8"))
    want, got = run_batched(fp32, crops[20:], 10), run_batched(int8, crops[20:], 10)
    ka, sa = decode_movenet(*want)
    kb, sb = decode_movenet(*got)
    d = np.linalg.norm(ka - kb, axis=-1)[sa > 0.3]
    print(f"INT8 keypoints: median {np.median(d):.2f} px, within 2 px {(d <= 2).mean():.2f}, "
          f"within 8 px {(d <= 8).mean():.2f}, score mean abs {np.abs(sa - sb).mean():.3f}")
    assert np.median(d) < 1.0  # input pixels, of 256
    assert (d <= 2).mean() > 0.70
    assert (d <= 8).mean() > 0.90
    assert np.abs(sa - sb).mean() < 0.075


def test_int8_pose_model_keeps_fpn_and_heads_float(shared_env):
    """The built INT8 MoveNet: backbone convs read int8 weights, stem, FPN and head convs float ones."""
    import onnx

    graph = onnx.load(str(build("movenet-thunder", precision="int8"))).graph
    producer = {out: n for n in graph.node for out in n.output}
    int8_weights = {n.name: producer.get(n.input[1]) is not None and producer[n.input[1]].op_type == "DequantizeLinear"
                    for n in graph.node if n.op_type == "Conv"}
    heads = [k for k in int8_weights if k.startswith(("/stem/", "/heatmaps/", "/centre/", "/regression/", "/offsets/", "/smooth.", "/lateral."))]
    backbone = [k for k in int8_weights if k.startswith("/blocks.")]
    assert len(heads) == 1 + 4 * 3 + 3 * 2 + 4 and len(backbone) > 40
    assert not any(int8_weights[k] for k in heads)
    assert all(int8_weights[k] for k in backbone)


def test_int8_pose_ap_on_the_shared_images(shared_env):
    """Keypoint AP of the default pipeline with INT8 MoveNet-Thunder on the 19 shared COCO images
    (detector boxes), square crops. FP32: 0.7125; INT8 with every op quantised: 0.662; this INT8
    (calibrated on the packaged demo-video crops, 7-bit weights): 0.6998, the same on CPUs with and
    without VNNI (its outputs were bit-identical on an emulated EPYC Rome, scripts/int8_isa.py); with
    8-bit weights it was 0.7006 on this VNNI CPU and 0.676 on an AVX2 EPYC (full pipeline)."""
    from posekit.pose_models import TopDownModel
    from posekit.evaluate import evaluate
    from posekit.pipeline import PoseEstimator

    pose = TopDownModel(load_engine(build("movenet-thunder", precision="int8")))
    report = evaluate(COCO_ANN, COCO_ANN.parent / "images",
                      PoseEstimator(det="rtmdet-nano-person", pose=pose, workers=1, crop_shape="square"),
                      boxes=("detector",))
    print(f"INT8 AP {report['detector']['AP']:.4f}")
    assert report["detector"]["AP"] >= 0.6975  # FP32 0.7125 - 1.5 points


@pytest.mark.parametrize("model", ["movenet-thunder", "rtmdet-nano-person"])
def test_int8_weights_cannot_saturate_without_vnni(shared_env, model):
    """posekit's INT8 builds compute the same on every x86 CPU: ONNX Runtime's u8s8 kernels on
    CPUs without VNNI (AVX2, AVX-512F) add two uint8 x int8 products in 16 bits, which saturates
    unless |weight| <= 64 (2 * 255 * 64 = 32640 <= 32767). So every int8 weight is 7-bit
    (reduce_range). With 8-bit weights (BUILD_FORMAT 5) MoveNet-Thunder's outputs moved by up to
    46 and a keypoint by 81 px on an emulated EPYC Rome against this VNNI CPU (scripts/int8_isa.py)."""
    import onnx
    from onnx import numpy_helper

    model_proto = onnx.load(str(build(model, precision="int8")))
    graph = model_proto.graph
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    quantised = [weights[n.input[0]] for n in graph.node
                 if n.op_type == "DequantizeLinear" and n.input[0] in weights and weights[n.input[0]].dtype == np.int8]
    assert len(quantised) > 20, f"{model}: expected int8 weights in the INT8 build, found {len(quantised)}"
    widest = max(int(np.abs(w.astype(np.int32)).max()) for w in quantised)
    assert widest <= 64, f"{model} INT8: expected int8 weights within +-64 (7-bit), found |w| up to {widest}"
    activations = {n.input[2] for n in graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2}
    assert all(weights[a].dtype == np.uint8 for a in activations if a in weights), \
        f"{model} INT8: expected uint8 activations (u8s8)"


@pytest.mark.parametrize("model, backend, device, expected", [
    ("movenet-thunder", "onnxruntime", "cpu", "int8"),
    ("movenet-lightning", "onnxruntime", "cpu", "int8"),
    ("tinypose-256x192", "onnxruntime", "cpu", "fp32"),  # no INT8 build within a point of FP32
    ("tinypose-128x96", "onnxruntime", "cpu", "fp32"),
    ("movenet-multipose", "onnxruntime", "cpu", "fp32"),  # INT8 AP 0.325 vs 0.405 (BENCHMARKS.md)
    ("movenet-thunder", "onnxruntime", "cuda", "fp32"),
    ("movenet-thunder", "tensorrt", "cuda", "fp32"),
])
def test_default_precision_follows_the_family(model, backend, device, expected):
    from posekit.runtime import default_precision

    assert default_precision(backend, device, model) == expected


def test_missing_model_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no ONNX model at .*nope.onnx"):
        quantize_onnx(tmp_path / "nope.onnx", tmp_path / "out.onnx", np.zeros((1, 3, 8, 8), np.float32))


def test_empty_calibration_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least one calibration input"):
        quantize_onnx(MODELS / "rtmdet-nano-person.onnx", tmp_path / "out.onnx", np.zeros((0, 3, 320, 320), np.float32))


def test_failed_quantisation_leaves_no_file(tmp_path):
    wrong = np.zeros((1, 3, 7, 5, 2), np.float32)  # not what the network takes
    with pytest.raises(Exception):
        quantize_onnx(MODELS / "rtmdet-nano-person.onnx", tmp_path / "out.onnx", wrong, QuantOptions())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ref, out, expected", [
    ([np.array([1.0, -2.0])], [np.array([1.0, -2.0])], {"max_abs": 0.0, "max_rel": 0.0}),
    ([np.array([1.0, -4.0])], [np.array([1.5, -4.0])], {"max_abs": 0.5, "max_rel": 0.125}),
])
def test_output_errors(ref, out, expected):
    row = output_errors(ref, out)[0]
    for key, value in expected.items():
        assert row[key] == pytest.approx(value)


def test_float_outputs_drops_only_the_pairs_in_front_of_outputs():
    """y = Sigmoid(x) quantised: Q/DQ on x (Sigmoid's input) stays, the pair on y goes."""
    import onnx
    from onnx import TensorProto, helper

    from posekit.quantize import float_outputs

    scale = helper.make_tensor("s", TensorProto.FLOAT, [], [0.01])
    zero = helper.make_tensor("z", TensorProto.UINT8, [], [0])
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("Sigmoid", ["xd"], ["y_float"], name="sig"),
             helper.make_node("QuantizeLinear", ["y_float", "s", "z"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "s", "z"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [scale, zero])
    model = float_outputs(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["QuantizeLinear", "DequantizeLinear", "Sigmoid"]
    assert model.graph.node[-1].output[0] == "y"


def test_output_errors_shape_mismatch():
    with pytest.raises(ValueError, match="reference shape \\(2,\\), candidate \\(3,\\)"):
        output_errors([np.zeros(2)], [np.zeros(3)])


# --- what INT8 pose models are calibrated on -----------------------------------------------------

def test_packaged_calibration_crops_are_people_from_the_demo_video():
    """The crops shipped in posekit/assets (cut from MMPose's demo video by
    scripts/make_calibration_crops.py): 30 square person crops, none of them the evaluation images."""
    from posekit.calibration import CALIBRATION_CROPS, packaged_crops

    crops = packaged_crops((256, 256))
    assert crops.shape == (30, 256, 256, 3) and crops.dtype == np.uint8
    assert (crops.reshape(30, -1).std(1) > 20).all()  # real pictures, not the mosaic's empty cells
    assert packaged_crops((192, 192)).shape == (30, 192, 192, 3)
    assert CALIBRATION_CROPS.stat().st_size < 700_000


def test_int8_calibration_source_and_its_checksum_key_the_build(monkeypatch, shared_env):
    """By default a pose model calibrates on the packaged crops, a detector on the annotated
    images; POSEKIT_CALIBRATION overrides both, and the calibration data is part of the cache key."""
    from posekit import build as build_mod
    from posekit.build import BuildRequest, cache_key, calibration_source, entry_dir
    from posekit.calibration import CALIBRATION_CROPS

    monkeypatch.delenv("POSEKIT_CALIBRATION", raising=False)
    assert calibration_source("movenet-thunder") == CALIBRATION_CROPS
    assert calibration_source("rtmdet-nano-person") == COCO_ANN
    request = BuildRequest("movenet-thunder", "onnxruntime", "int8")
    packaged = cache_key(request, ("onnxruntime",))
    assert packaged["calibration_sha256"] == registry.sha256sum(CALIBRATION_CROPS)
    assert "calibration_sha256" not in cache_key(BuildRequest("movenet-thunder", "onnxruntime", "fp32"), ())
    monkeypatch.setenv("POSEKIT_CALIBRATION", str(COCO_ANN))
    assert calibration_source("movenet-thunder") == COCO_ANN
    coco = cache_key(request, ("onnxruntime",))
    assert coco["calibration_sha256"] == registry.sha256sum(COCO_ANN)
    assert entry_dir(request, coco) != entry_dir(request, packaged)
    assert build_mod.calibration_set("movenet-thunder", build_mod.onnxruntime_source("movenet-thunder"), 8).shape == (8, 3, 256, 256)
