"""Torch-free converters (TF.js and OpenVINO IR -> ONNX) against the torch exports and the references.

Every converted network is compared on real inputs (person crops of the shared COCO images, and
the shared photo) with: posekit's torch export (MoveNet: `posekit.export.ensure_onnx`), raw
outputs within 1e-4 of the output's largest magnitude and decoded keypoints within 0.1 px; and
the independent references in ../shared/models/reference (tf2onnx MoveNet: decoded keypoints
within 0.5 px, and its raw heads; ir2onnx TinyPose/PicoDet: outputs within 1e-3 relative, TinyPose's
decoded keypoints within 0.5 px), at
batch 1 and a batch of several. A subprocess where torch cannot be imported converts and runs.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from paths import MODELS, ROOT
from posekit import registry
from posekit.convert import ConversionCheckFailed, convert, convert_report, converted_path, ensure_converted
from posekit.convert.tfjs_onnx import MOVENET_HEADS, MULTIPOSE_HEADS, TfjsConversionError, tfjs_to_onnx
from posekit.engines.onnxruntime import OnnxRuntimeEngine
from posekit.ops.movenet import OUTPUT_NAMES, decode_movenet
from posekit.tfjs import load_graph_model
from tests import movenet_crops as mc

TORCH_REL = 1e-4  # converter vs torch export: max |diff| / max |torch|, per output
TORCH_KP_PX = 0.1
GOOGLE_KP_PX = 0.5
GOOGLE_SCORE = 1e-3
IR_REL = 1e-3  # converter vs ir2onnx reference: max |diff| / max |reference|, per output
REF_KP_PX = 0.5
IMAGENET = dict(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))  # RGB, 0..255 units

# name, files (relative to the models folder), input size, task: the IR entries, until the registry has them
_IR = {
    "tinypose-256x192": (("tinypose-256x192/model.xml", "tinypose-256x192/model.bin"), (256, 192), "pose"),
    "tinypose-128x96": (("tinypose-128x96/model.xml", "tinypose-128x96/model.bin"), (128, 96), "pose"),
    "picodet-s-320-pedestrian": (("picodet-s-320-pedestrian/picodet_s_320_lcnet_pedestrian.xml",
                                  "picodet-s-320-pedestrian/picodet_s_320_lcnet_pedestrian.bin"), (320, 320), "detector"),
    "picodet-s-192-pedestrian": (("picodet-s-192-pedestrian/picodet_s_192_lcnet_pedestrian.xml",
                                  "picodet-s-192-pedestrian/picodet_s_192_lcnet_pedestrian.bin"), (192, 192), "detector"),
}
IR_REFERENCE = {n: MODELS / "reference" / f"{n}.ir2onnx.onnx" for n in _IR}


def spec_of(name: str) -> registry.ModelSpec:
    """The registry entry, or (for entries other branches are adding) a spec for the shared files."""
    if name in registry.MODELS:
        return registry.MODELS[name]
    if name == "movenet-multipose":
        return registry.ModelSpec(
            name=name, family="movenet_multipose", task="pose", input_size=(256, 256), colour="RGB",
            mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
            files=(registry.WeightFile("movenet-multipose/model.json"), registry.WeightFile("movenet-multipose/movenet-multipose.bin")),
            source="", licence="Apache-2.0", accuracy="")
    files, size, task = _IR[name]
    return registry.ModelSpec(name=name, family=name.split("-")[0], task=task, input_size=size, colour="RGB",
                              files=tuple(registry.WeightFile(f) for f in files), source="", licence="Apache-2.0",
                              accuracy="", **IMAGENET)


# what each network converts with: spatial "dynamic" where the model takes any multiple of 32
CONVERSIONS = {"movenet-thunder": "dynamic", "movenet-lightning": "fixed", "movenet-multipose": "dynamic",
               **{n: "fixed" for n in _IR}}


@pytest.fixture(scope="session")
def converted(tmp_path_factory, shared_env):
    folder = tmp_path_factory.mktemp("converted")
    return {name: convert_report(spec_of(name), folder / f"{name}.onnx", spatial=spatial)
            for name, spatial in CONVERSIONS.items()}


@functools.lru_cache(maxsize=None)
def _engine(path) -> OnnxRuntimeEngine:
    return OnnxRuntimeEngine(path)


def _run(path, images) -> dict[str, np.ndarray]:
    engine = _engine(path)
    return dict(zip(engine.output_names, engine(images)))


def _assert_rel(got: dict, want: dict, names, rel: float, label: str) -> None:
    for name in names:
        g, w = got[name], want[name]
        assert g.shape == w.shape, f"{label} {name}: shape {g.shape}, expected {w.shape}"
        err = float(np.abs(g - w).max() / max(np.abs(w).max(), 1e-6))
        assert err <= rel, f"{label} {name}: max |diff| / max |ref| = {err:.2e}, allowed {rel:.0e}"


def test_movenet_head_names_are_the_products():
    assert tuple(h.name for h in MOVENET_HEADS) == OUTPUT_NAMES


@functools.lru_cache(maxsize=None)
def _torch_movenet(variant: str):
    from posekit.models.movenet import build_movenet

    return build_movenet(registry.get(f"movenet-{variant}"), weights=MODELS / f"movenet-{variant}")


def _torch_reference(variant: str, images: np.ndarray) -> dict[str, np.ndarray]:
    """Lightning: posekit's torch export (ONNX, shared with the export tests' cache); Thunder: the torch
    module itself, which that export reproduces (its export costs ~15 s more here)."""
    if variant == "lightning":
        from posekit.export import ensure_onnx

        return _run(ensure_onnx("movenet-lightning"), images)
    import torch

    with torch.no_grad():
        return {n: t.numpy() for n, t in zip(OUTPUT_NAMES, _torch_movenet(variant)(torch.from_numpy(images)))}


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("variant", ["thunder", "lightning"])
def test_movenet_matches_torch_and_google(converted, variant, batch, shared_env):
    keys = tuple((a, False) for a in mc.EDGE_IDS[:batch])
    images = mc.nchw(mc.crops(variant, keys))
    ours = _run(converted[f"movenet-{variant}"].path, images)
    torch_export = _torch_reference(variant, images)
    _assert_rel(ours, torch_export, OUTPUT_NAMES, TORCH_REL, f"{variant} vs torch export")
    kp, scores = decode_movenet(*(ours[n] for n in OUTPUT_NAMES))
    kp_t, scores_t = decode_movenet(*(torch_export[n] for n in OUTPUT_NAMES))
    np.testing.assert_allclose(kp, kp_t, atol=TORCH_KP_PX, rtol=0)
    np.testing.assert_allclose(scores, scores_t, atol=1e-4, rtol=0)
    ref_kp, ref_scores = mc.reference(variant, keys)  # Google's whole graph (tf2onnx), one crop at a time
    np.testing.assert_allclose(kp, ref_kp, atol=GOOGLE_KP_PX, rtol=0)
    np.testing.assert_allclose(scores, ref_scores, atol=GOOGLE_SCORE, rtol=0)


@functools.lru_cache(maxsize=None)
def _google_heads_session(variant: str):
    """The tf2onnx reference with its raw heads (NCHW tensors inside it) exposed as outputs."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    proto = onnx.load(str(MODELS / "reference" / f"movenet-{variant}.tf2onnx.onnx"))
    names = [o for n in proto.graph.node for o in n.output
             if o.startswith("StatefulPartitionedCall/Sigmoid") or ("_0/conv2d_" in o and "BiasAdd" in o)]
    del proto.graph.output[:]
    proto.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names)
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]), names


def google_heads(variant: str, image: np.ndarray) -> dict[str, np.ndarray]:
    """Google's raw heads for one (1, 3, H, W) 0..255 integer-valued image, by posekit's names."""
    session, names = _google_heads_session(variant)
    nhwc = image.transpose(0, 2, 3, 1).astype(np.int32)
    found = dict(zip(names, session.run(None, {"input:0": nhwc})))
    h, w = image.shape[2] // 4, image.shape[3] // 4
    heads = {}
    for head in MULTIPOSE_HEADS if variant == "multipose" else MOVENET_HEADS:
        candidates = {n: v for n, v in found.items() if v.ndim == 4 and v.shape[2:] == (h, w)}
        if head.sigmoid:
            channels = 1 if head.name == "centre" else 17
            (value,) = [v for n, v in candidates.items() if "/Sigmoid" in n and v.shape[1] == channels]
        else:
            (value,) = [v for n, v in candidates.items() if f"/{head.scope}/" in n]
        heads[head.name] = value
    return heads


@pytest.mark.parametrize("variant", ["thunder", "lightning"])
def test_movenet_raw_heads_match_google(converted, variant):
    images = mc.nchw(mc.crops(variant, ((mc.EDGE_IDS[0], False),)))
    _assert_rel(_run(converted[f"movenet-{variant}"].path, images), google_heads(variant, images), OUTPUT_NAMES,
                IR_REL, f"{variant} vs tf2onnx")


MULTIPOSE_NAMES = tuple(h.name for h in MULTIPOSE_HEADS)


@pytest.mark.parametrize("hw", [(256, 256), (192, 256)])
def test_multipose_matches_google_at_two_sizes(converted, hw):
    images = _multipose_images(hw)
    ours = _run(converted["movenet-multipose"].path, images)
    assert tuple(ours) == MULTIPOSE_NAMES
    for i in range(len(images)):  # the reference takes one image at a time
        one = {n: v[i:i + 1] for n, v in ours.items()}
        _assert_rel(one, google_heads("multipose", images[i:i + 1]), MULTIPOSE_NAMES, IR_REL, f"multipose {hw} image {i}")


def _multipose_images(hw) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(mc.COCO_IMAGES / "000000000785.jpg"))
    rgb = cv2.resize(bgr, hw[::-1])[:, :, ::-1]
    return mc.nchw(np.stack([rgb, rgb[:, ::-1]]))


@pytest.mark.parametrize("hw", [(256, 256), (192, 256)])
def test_multipose_people_match_google(converted, hw):
    import onnxruntime as ort

    multipose = pytest.importorskip("posekit.ops.multipose")  # branch multipose
    images = _multipose_images(hw)
    ours = multipose.decode_multipose(*_run(converted["movenet-multipose"].path, images).values())
    google = ort.InferenceSession(str(MODELS / "reference" / "movenet-multipose.tf2onnx.onnx"), providers=["CPUExecutionProvider"])
    packed = np.concatenate([google.run(None, {"input:0": images[i:i + 1].transpose(0, 2, 3, 1).astype(np.int32)})[0]
                             for i in range(len(images))])
    theirs = multipose.reference_output_to_multiposes(packed, hw)
    keep = theirs.scores >= 0.1  # the people Google's graph reports with some confidence
    assert keep.sum() >= 2 and (ours.scores >= 0.1).sum() == keep.sum()
    np.testing.assert_allclose(ours.scores, theirs.scores, atol=GOOGLE_SCORE, rtol=0)
    np.testing.assert_allclose(ours.keypoints[keep], theirs.keypoints[keep], atol=GOOGLE_KP_PX, rtol=0)
    np.testing.assert_allclose(ours.keypoint_scores[keep], theirs.keypoint_scores[keep], atol=GOOGLE_SCORE, rtol=0)
    np.testing.assert_allclose(ours.boxes[keep], theirs.boxes[keep], atol=GOOGLE_KP_PX, rtol=0)


def test_multipose_matches_its_torch_network(converted):
    torch = pytest.importorskip("torch")
    movenet_multipose = pytest.importorskip("posekit.models.movenet_multipose")  # branch multipose
    net = movenet_multipose.build_movenet_multipose(spec_of("movenet-multipose"), weights=MODELS / "movenet-multipose")
    images = mc.nchw(np.stack([mc.person_crop(a, 256) for a in mc.EDGE_IDS[:3]]))
    with torch.no_grad():
        want = dict(zip(net.output_names, (t.numpy() for t in net(torch.from_numpy(images)))))
    _assert_rel(_run(converted["movenet-multipose"].path, images), want, MULTIPOSE_NAMES, TORCH_REL, "multipose vs torch")


def _ir_inputs(name: str, n: int) -> np.ndarray:
    """n real inputs at the model's size, normalised as the runner does from the metadata."""
    spec = spec_of(name)
    h, w = spec.input_size
    if spec.task == "pose":
        import cv2

        crops = [cv2.resize(mc.person_crop(a, 256), (w, h)) for a in mc.EDGE_IDS[:n]]
    else:
        import cv2

        files = sorted(mc.COCO_IMAGES.glob("*.jpg"))[:n]
        crops = [cv2.resize(cv2.imread(str(f))[:, :, ::-1], (w, h), interpolation=cv2.INTER_CUBIC) for f in files]
    x = mc.nchw(np.stack(crops))
    mean = np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(1, 3, 1, 1)
    return ((x - mean) / std).astype(np.float32)


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("name", list(_IR))
def test_ir_matches_reference(converted, name, batch):
    import onnxruntime as ort

    x = _ir_inputs(name, batch)
    ours = _run(converted[name].path, x)
    assert tuple(ours) == (("heatmaps",) if spec_of(name).task == "pose" else ("scores", "boxes"))
    ref = ort.InferenceSession(str(IR_REFERENCE[name]), providers=["CPUExecutionProvider"])
    by_shape = {}
    for i in range(batch):  # the reference has batch 1 baked in
        for out in ref.run(None, {ref.get_inputs()[0].name: x[i:i + 1]}):
            by_shape.setdefault(out.shape[1:], []).append(out)
    want = {n: np.concatenate(by_shape[v.shape[1:]]) for n, v in ours.items()}
    _assert_rel(ours, want, ours, IR_REL, f"{name} vs ir2onnx")
    if "heatmaps" in ours:  # TinyPose's decoding (argmax + DARK) lands on the same points
        _assert_same_keypoints(ours["heatmaps"], want["heatmaps"], spec_of(name).input_size, REF_KP_PX)


def _assert_same_keypoints(heatmaps: np.ndarray, reference: np.ndarray, size, atol_px: float) -> None:
    from posekit.ops.heatmaps import decode_heatmaps

    kp, scores = decode_heatmaps(heatmaps, input_size=size)
    kp_ref, scores_ref = decode_heatmaps(reference, input_size=size)
    np.testing.assert_allclose(kp, kp_ref, atol=atol_px, rtol=0)
    np.testing.assert_allclose(scores, scores_ref, atol=1e-3, rtol=0)


@pytest.mark.parametrize("name", list(_IR))
def test_ir_matches_torch_network(converted, name):
    torch = pytest.importorskip("torch")
    openvino_ir = pytest.importorskip("posekit.models.openvino_ir")  # branch ir
    spec = spec_of(name)
    net = openvino_ir.build_openvino_ir(spec, weights=MODELS / spec.files[0].path, download=False)
    x = _ir_inputs(name, 3)
    with torch.no_grad():
        out = net(torch.from_numpy(x))
    out = (out,) if isinstance(out, torch.Tensor) else out
    ours, want = _run(converted[name].path, x), dict(zip(net.output_names, (t.numpy() for t in out)))
    if "scores" in want:
        # PicoDet's score is the Sqrt of a product of sigmoids: near 0 it turns a 1e-8 difference of the
        # product into 2e-4 of the score (ONNX Runtime gives 0.0 where torch gives 1.9e-4, identically in
        # the ir2onnx reference). Compared before that Sqrt; the 1e-3 reference test covers the scores.
        ours["scores"], want["scores"] = ours["scores"] ** 2, want["scores"] ** 2
    _assert_rel(ours, want, net.output_names, TORCH_REL, f"{name} vs torch")
    if "heatmaps" in want:
        _assert_same_keypoints(ours["heatmaps"], want["heatmaps"], spec.input_size, TORCH_KP_PX)


def test_metadata_is_exports(converted):
    meta = converted["movenet-thunder"].metadata
    model = onnx.load(str(converted["movenet-thunder"].path))
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert json.loads(meta["posekit.outputs"]) == list(OUTPUT_NAMES)
    assert meta["posekit.spatial"] == "dynamic" and meta["posekit.batch"] == "dynamic"
    assert json.loads(meta["posekit.input_size"]) == [256, 256] and meta["posekit.colour"] == "RGB"
    assert meta["posekit.converter"] == "posekit.convert.tfjs_onnx"
    check = json.loads(meta["posekit.check"])
    assert max(check["max_abs_diff"].values()) < 1e-3 and "max_abs_diff_narrow" in check
    assert set(check["max_abs_diff_batch_vs_single"]) == set(OUTPUT_NAMES)
    ir, spec = converted["tinypose-256x192"].metadata, spec_of("tinypose-256x192")
    assert json.loads(ir["posekit.mean"]) == list(spec.mean) and json.loads(ir["posekit.std"]) == list(spec.std)
    assert np.allclose(spec.mean, IMAGENET["mean"]) and np.allclose(spec.std, IMAGENET["std"])  # applied by the runner
    assert json.loads(ir["posekit.input_size"]) == [256, 192] and ir["posekit.converter"] == "posekit.convert.openvino_onnx"


def test_same_metadata_keys_as_the_torch_export(converted, shared_env):
    from posekit.export import ensure_onnx

    theirs = _engine(ensure_onnx("movenet-lightning")).metadata
    ours = converted["movenet-lightning"].metadata
    assert set(theirs) <= set(ours), f"missing {set(theirs) - set(ours)}"
    for key in ("posekit.model", "posekit.input_size", "posekit.colour", "posekit.mean", "posekit.std",
                "posekit.outputs", "posekit.output_layout", "posekit.source_checksum", "posekit.keypoints"):
        assert ours[key] == theirs[key], key


def test_failed_check_leaves_no_file(tmp_path, monkeypatch):
    from posekit.convert import tfjs_onnx

    real = tfjs_onnx.run_tfjs_numpy
    monkeypatch.setattr(tfjs_onnx, "run_tfjs_numpy", lambda cut, images: {k: v + 0.01 for k, v in real(cut, images).items()})
    with pytest.raises(ConversionCheckFailed, match="movenet-lightning.*numpy evaluation of the TF.js graph"):
        convert("movenet-lightning", tmp_path / "x.onnx")
    assert list(tmp_path.iterdir()) == []


def test_unsupported_op_names_node_and_file():
    graph = load_graph_model(MODELS / "movenet-lightning")
    node = next(n for n in graph.nodes if n.op == "AddV2")
    node.op = "Erf"
    with pytest.raises(TfjsConversionError, match=rf"model.json: cannot convert Erf node '{node.name}'"):
        tfjs_to_onnx(graph, MOVENET_HEADS, (192, 192))


@pytest.mark.parametrize("name, kwargs, error, message", [
    ("movenet-lightning", {"batch": 0}, ValueError, "batch must be"),
    ("movenet-lightning", {"spatial": "any"}, ValueError, "spatial must be one of"),
    ("rtmdet-nano-person", {}, ValueError, "no converter for its 'onnx' weights"),
    ("tinypose-128x96", {"spatial": "dynamic"}, ValueError, "converts at its own input size only"),
    ("movenet-lightning", {"weights": MODELS / "movenet-thunder"}, ValueError, "declares a 256x256 input"),
    ("tinypose-128x96", {"weights": MODELS / "tinypose-256x192"}, ValueError, "declares a 256x192 input"),
])
def test_bad_requests(tmp_path, name, kwargs, error, message):
    with pytest.raises(error, match=message):
        convert(spec_of(name), tmp_path / "x.onnx", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_ensure_converted_reuses_its_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POSEKIT_CACHE", str(tmp_path))
    spec = spec_of("movenet-lightning")
    path = ensure_converted(spec)
    assert path == converted_path(spec) and path.parent == tmp_path / "onnx"
    stamp = path.stat().st_mtime_ns
    assert ensure_converted(spec) == path and path.stat().st_mtime_ns == stamp
    from posekit.convert import ensure_onnx  # the drop-in for posekit.export.ensure_onnx

    assert ensure_onnx("movenet-lightning") == path and path.stat().st_mtime_ns == stamp


_TORCH_FREE = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import json
import numpy as np
from posekit import registry
from posekit.convert import convert
from posekit.engines.onnxruntime import OnnxRuntimeEngine
from posekit.ops.movenet import decode_movenet
out = sys.argv[1]
spec = registry.ModelSpec("picodet-s-192-pedestrian", "picodet", "detector", (192, 192), "RGB",
    (123.675, 116.28, 103.53), (58.395, 57.12, 57.375),
    (registry.WeightFile("picodet-s-192-pedestrian/picodet_s_192_lcnet_pedestrian.xml"),
     registry.WeightFile("picodet-s-192-pedestrian/picodet_s_192_lcnet_pedestrian.bin")), "", "", "")
result = {}
for name, target in (("movenet-lightning", "movenet-lightning"), ("picodet", spec)):
    engine = OnnxRuntimeEngine(convert(target, f"{out}/{name}.onnx"))
    size = (192, 192)
    outs = engine(np.full((3, 3, *size), 100.0, np.float32))
    result[name] = [list(o.shape) for o in outs]
kp, _ = decode_movenet(*OnnxRuntimeEngine(f"{out}/movenet-lightning.onnx")(np.zeros((1, 3, 192, 192), np.float32)))
result["decoded"] = list(kp.shape)
from posekit.convert import ensure_onnx  # the drop-in the CPU path calls: no torch export behind it
result["ensure_onnx"] = ensure_onnx("movenet-thunder", spatial="dynamic").name.endswith("-cv-hwdynamic.onnx")
try:
    import torch  # noqa: F401
    result["torch"] = "importable"
except ImportError:
    result["torch"] = "blocked"
print(json.dumps(result))
"""


def test_converts_and_runs_without_torch(tmp_path):
    done = subprocess.run([sys.executable, "-c", _TORCH_FREE, str(tmp_path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"movenet-lightning": [[3, 1, 48, 48], [3, 17, 48, 48], [3, 34, 48, 48], [3, 34, 48, 48]],
                      "picodet": [[3, 1, 765], [3, 765, 4]], "decoded": [1, 17, 2], "ensure_onnx": True, "torch": "blocked"}


def test_unsupported_ir_layer_names_layer_and_file():
    from posekit.convert.openvino_onnx import IRConversionError, ir_to_onnx
    from posekit.openvino import load_ir

    ir = load_ir(MODELS / "tinypose-128x96" / "model.xml")
    layer = next(l for l in ir.layers if l.type == "ReLU")
    layer.type = "Elu"
    with pytest.raises(IRConversionError, match=rf"model.xml: cannot convert Elu layer '{layer.name}'"):
        ir_to_onnx(ir)


def test_int8_keeps_the_same_nodes_float(converted, shared_env):
    """build.py picks the nodes INT8 leaves in float by the torch export's node names; the converted
    graph is named the same way, so the same stem, FPN and heads stay float."""
    import re

    from posekit.families.movenet import FLOAT_PREFIXES as POSE_FLOAT_PREFIXES
    from posekit.export import ensure_onnx

    def kept(path) -> set[str]:
        return {re.sub(r"_output_0$", "", n.name) for n in onnx.load(str(path)).graph.node
                if n.name.startswith(POSE_FLOAT_PREFIXES)}

    ours, theirs = kept(converted["movenet-lightning"].path), kept(ensure_onnx("movenet-lightning"))
    assert len(theirs) >= 30
    # the export's slimmer folds away `x - 0` (MoveNet's zero mean); the converter keeps that Sub
    assert ours - {"/Sub"} == theirs
