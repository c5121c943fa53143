"""YOLOX in torch against the official YOLOX-Nano ONNX export, on the shared COCO images.

Relative error of raw outputs is measured per image and per output group (4 box terms,
objectness, 80 class scores) as max |torch - onnx| / max |onnx| over that group: no floor is
needed, every group's max |onnx| is far from zero on every image (box terms ~1-4, scores ~0.1-1).
"""

import json

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from posekit import models, registry  # noqa: E402
from posekit.models.yolox import YOLOX, YOLOXWeightsError, decode_yolox_torch, load_checkpoint, load_onnx  # noqa: E402
from posekit.ops.boxes import box_iou  # noqa: E402
from posekit.ops.yolox import decode_yolox, postprocess_yolox  # noqa: E402
from paths import COCO_ANN, COCO_IMAGES, MODELS  # noqa: E402

NANO_ONNX = MODELS / "yolox-nano-416.onnx"
SIZE = 416
GROUPS = {"box": slice(0, 4), "objectness": slice(4, 5), "classes": slice(5, 85)}


def letterbox(image: np.ndarray, size: int = SIZE) -> tuple[np.ndarray, float]:
    """The official YOLOX preprocessing: resize to fit, top-left, pad 114; (3, size, size) float32 BGR."""
    r = min(size / image.shape[0], size / image.shape[1])
    h, w = int(image.shape[0] * r), int(image.shape[1] * r)
    out = np.full((size, size, 3), 114, np.uint8)
    out[:h, :w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    return out.transpose(2, 0, 1).astype(np.float32), r


@pytest.fixture(scope="module")
def coco():
    paths = sorted(COCO_IMAGES.glob("*.jpg"))
    assert len(paths) == 19
    batch, ratios = zip(*(letterbox(cv2.imread(str(p))) for p in paths))
    return [p.name for p in paths], np.stack(batch), np.array(ratios)


@pytest.fixture(scope="module")
def nano():
    return load_onnx(YOLOX(0.33, 0.25, depthwise=True), NANO_ONNX).eval()


@pytest.fixture(scope="module")
def onnx_raw(coco):
    session = ort.InferenceSession(str(NANO_ONNX), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"images": x[None]})[0] for x in coco[1]])  # the export is batch 1


@pytest.fixture(scope="module")
def torch_raw(nano, coco):
    with torch.no_grad():
        return nano(torch.from_numpy(coco[1])).numpy()


def relative_errors(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    return {g: float(np.abs(a[..., s] - b[..., s]).max() / np.abs(b[..., s]).max()) for g, s in GROUPS.items()}


# --- the architecture -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, params_m, tol_m",
    # parameter counts reported in the official YOLOX README (millions)
    [("nano", 0.91, 0.005), ("tiny", 5.06, 0.005), ("s", 9.0, 0.05), ("m", 25.3, 0.05), ("l", 54.2, 0.05),
     ("x", 99.1, 0.05)],
)
def test_parameter_count_matches_official(size, params_m, tol_m):
    depth, width, _, _ = registry.YOLOX_SIZES[size]
    model = YOLOX(depth, width, depthwise=size == "nano")
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(params_m, abs=tol_m)


def test_state_dict_uses_official_key_names():
    keys = set(YOLOX(0.33, 0.25, depthwise=True).state_dict())
    official = {  # from the official yolox_nano.pth layout
        "backbone.backbone.stem.conv.conv.weight",
        "backbone.backbone.stem.conv.bn.running_var",
        "backbone.backbone.dark2.0.dconv.conv.weight",
        "backbone.backbone.dark3.1.m.2.conv2.pconv.bn.weight",
        "backbone.backbone.dark5.1.conv2.conv.weight",
        "backbone.lateral_conv0.conv.weight",
        "backbone.C3_n4.conv3.bn.bias",
        "backbone.bu_conv1.dconv.bn.num_batches_tracked",
        "head.stems.2.conv.weight",
        "head.cls_convs.0.1.pconv.conv.weight",
        "head.reg_convs.1.0.dconv.bn.running_mean",
        "head.cls_preds.0.weight",
        "head.reg_preds.1.bias",
        "head.obj_preds.2.weight",
    }
    assert official <= keys
    assert not any(k.startswith("head.") and "preds" in k and k.endswith("bn.weight") for k in keys)


def test_build_uses_the_registry_and_returns_a_fused_eval_module():
    model = models.build("yolox-nano", download=False)
    assert isinstance(model, YOLOX) and not model.training and model.is_fused
    assert (model.depth, model.width, model.depthwise) == (0.33, 0.25, True)


# --- torch versus the official ONNX, on the shared COCO images --------------------------------


def test_raw_outputs_match_onnx_on_coco(torch_raw, onnx_raw):
    assert torch_raw.shape == onnx_raw.shape == (19, 3549, 85)
    worst = {g: 0.0 for g in GROUPS}
    for a, b in zip(torch_raw, onnx_raw):
        for group, err in relative_errors(a, b).items():
            worst[group] = max(worst[group], err)
    assert all(err <= 1e-4 for err in worst.values()), worst


def test_person_boxes_match_onnx_on_coco(torch_raw, onnx_raw, coco):
    names = coco[0]
    from_torch = postprocess_yolox(torch_raw, (SIZE, SIZE))
    from_onnx = postprocess_yolox(onnx_raw, (SIZE, SIZE))
    for name, t, o in zip(names, from_torch, from_onnx):
        assert len(t.boxes) == len(o.boxes), name
        assert (t.labels == 0).all() and (o.labels == 0).all()
        if len(o.boxes):
            assert box_iou(o.boxes, t.boxes).max(1).min() > 0.99, name
            np.testing.assert_allclose(np.sort(t.scores), np.sort(o.scores), atol=1e-4)
    assert sum(len(o.boxes) for o in from_onnx) >= 30  # the set has 48 non-crowd persons, many tiny


def test_person_boxes_find_the_annotated_people(torch_raw, coco):
    """Decode is right, not merely the same twice: boxes mapped back to the image hit COCO's."""
    names, _, ratios = coco
    annotations = json.loads(COCO_ANN.read_text())
    image_id = {im["file_name"]: im["id"] for im in annotations["images"]}
    found = total = 0
    for name, ratio, det in zip(names, ratios, postprocess_yolox(torch_raw, (SIZE, SIZE))):
        truth = [a["bbox"] for a in annotations["annotations"]
                 if a["image_id"] == image_id[name] and not a["iscrowd"] and a["area"] > 96**2]
        if not truth:
            continue
        truth = np.array([[x, y, x + w, y + h] for x, y, w, h in truth])
        if len(det.boxes):
            found += int((box_iou(truth, det.boxes / ratio).max(1) > 0.5).sum())
        total += len(truth)
    assert total == 14 and found >= 12  # measured: 13 of 14 large persons


# --- decode: numpy versus torch ---------------------------------------------------------------


def test_decode_numpy_matches_torch_on_real_outputs(torch_raw):
    boxes_np, scores_np = decode_yolox(torch_raw, (SIZE, SIZE))
    boxes_t, scores_t = decode_yolox_torch(torch.from_numpy(torch_raw))  # square size inferred from N
    assert boxes_t.shape == (19, 3549, 4) and scores_t.shape == (19, 3549, 80)
    np.testing.assert_allclose(boxes_t.numpy(), boxes_np, rtol=1e-6, atol=1e-3)  # boxes up to ~1e3 px
    np.testing.assert_array_equal(scores_t.numpy(), scores_np)


@pytest.mark.parametrize(
    "size, given, error",
    [
        ((320, 416), True, None),  # not square: the size must be given
        ((320, 416), False, "do not come from a square input"),
        ((640, 640), False, None),
        ((416, 416), (416, 448), "expected 3822 predictions for a 416x448 input"),
    ],
)
def test_decode_torch_sizes(size, given, error):
    n = sum((size[0] // s) * (size[1] // s) for s in (8, 16, 32))
    raw = np.random.default_rng(0).normal(size=(2, n, 85)).astype(np.float32)
    input_size = given if isinstance(given, tuple) else (size if given else None)
    if error:
        with pytest.raises(ValueError, match=error):
            decode_yolox_torch(torch.from_numpy(raw), input_size=input_size)
        return
    boxes_t, scores_t = decode_yolox_torch(torch.from_numpy(raw), input_size=input_size)
    boxes_np, scores_np = decode_yolox(raw, size)
    np.testing.assert_allclose(boxes_t.numpy(), boxes_np, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(scores_t.numpy(), scores_np, rtol=1e-6)


# --- the .pth path ----------------------------------------------------------------------------


def official_checkpoint(fused: YOLOX, rng: np.random.Generator) -> dict:
    """An official-format checkpoint whose unfused BN, once folded, gives back `fused`'s weights.

    Each folded conv (W', b') is split with real-looking statistics (gamma, beta, mean, var) so
    that W' = W * gamma / sqrt(var + eps) and b' = beta - mean * gamma / sqrt(var + eps).
    """
    template = YOLOX(fused.depth, fused.width, fused.depthwise)
    folded = fused.state_dict()
    state = {}
    for key, value in template.state_dict().items():
        if ".bn." in key or not key.endswith(".conv.weight") or key.replace(".conv.weight", ".bn.weight") not in \
                template.state_dict():
            continue
        prefix = key.removesuffix(".conv.weight")
        w, b = folded[f"{prefix}.conv.weight"], folded[f"{prefix}.conv.bias"]
        c = b.shape[0]
        gamma = torch.from_numpy(rng.uniform(0.5, 2.0, c).astype(np.float32))
        var = torch.from_numpy(rng.uniform(0.2, 3.0, c).astype(np.float32))
        mean = torch.from_numpy(rng.normal(0, 2.0, c).astype(np.float32))
        scale = gamma / torch.sqrt(var + 1e-3)
        state[f"{prefix}.conv.weight"] = w / scale.view(-1, 1, 1, 1)
        state.update({f"{prefix}.bn.weight": gamma, f"{prefix}.bn.bias": b + mean * scale,
                      f"{prefix}.bn.running_mean": mean, f"{prefix}.bn.running_var": var,
                      f"{prefix}.bn.num_batches_tracked": torch.tensor(300, dtype=torch.long)})
    for key in template.state_dict():  # the three 1x1 prediction convs have no BN
        if "_preds." in key:
            state[key] = folded[key].clone()
    assert set(state) == set(template.state_dict())
    return {"start_epoch": 300, "model": state}


@pytest.fixture(scope="module")
def nano_pth(nano, tmp_path_factory):
    path = tmp_path_factory.mktemp("pth") / "yolox_nano.pth"
    torch.save(official_checkpoint(nano, np.random.default_rng(0)), path)
    return path


def test_pth_checkpoint_matches_onnx_weights(nano, nano_pth, coco, onnx_raw):
    images = torch.from_numpy(coco[1][[0, 11]])  # one person; a crowd
    unfused = load_checkpoint(YOLOX(0.33, 0.25, True), nano_pth).eval()
    assert not unfused.is_fused
    built = models.build("yolox-nano", weights=nano_pth)
    assert built.is_fused
    with torch.no_grad():
        expected, from_bn, from_built = nano(images).numpy(), unfused(images).numpy(), built(images).numpy()
    # float32 convolutions sum in an order that depends on the CPU's kernels: the box error was
    # 8.1e-5 on an AVX2 machine and 1.6e-4 on an AVX-512 one, so the bound has room for both
    for a in (from_bn, from_built):
        for image in range(2):
            errors = relative_errors(a[image], expected[image])
            assert max(errors.values()) <= 3e-4, errors
    # and against the ONNX in ONNX Runtime itself
    assert max(relative_errors(from_built[1], onnx_raw[11]).values()) <= 3e-4


def test_models_folder_lookup_prefers_onnx_then_pth(nano_pth, monkeypatch, tmp_path):
    monkeypatch.setenv("POSEKIT_MODELS", str(tmp_path))
    (tmp_path / "yolox_nano.pth").write_bytes(b"not a checkpoint")
    (tmp_path / "yolox-nano-416.onnx").symlink_to(NANO_ONNX)
    assert models.build("yolox-nano", download=False).is_fused  # the ONNX wins; the bad .pth is not read
    (tmp_path / "yolox-nano-416.onnx").unlink()
    with pytest.raises(YOLOXWeightsError, match="yolox_nano.pth is not a readable torch checkpoint"):
        models.build("yolox-nano", download=False)  # no ONNX: the checkpoint is used
    (tmp_path / "yolox_nano.pth").write_bytes(nano_pth.read_bytes())
    assert models.build("yolox-nano", download=False).is_fused
    assert models.build("yolox-nano", weights=tmp_path, download=False).is_fused  # an explicit folder
    (tmp_path / "yolox_nano.pth").unlink()
    with pytest.raises(registry.WeightsNotFound, match="yolox-nano-416.onnx"):
        models.build("yolox-nano", download=False)


# --- weights that do not fit ------------------------------------------------------------------


def _edit(checkpoint: dict, how: str) -> dict:
    state = dict(checkpoint["model"])
    if how == "missing":
        del state["head.obj_preds.1.bias"]
    elif how == "extra":
        state["head.iou_preds.0.weight"] = torch.zeros(1)
    elif how == "misshaped":
        state["head.cls_preds.0.weight"] = torch.zeros(20, 64, 1, 1)
    return {"model": state}


@pytest.mark.parametrize(
    "make, target, message",
    [
        ("nano-onnx", "yolox-tiny", r"yolox-nano-416\.onnx: Conv node 0 .*expected weight \(24, 12, 3, 3\).*"
                                    r"found \(16, 12, 3, 3\)"),
        ("nano-pth", "yolox-tiny", r"yolox_nano\.pth does not fit YOLOX\(depth=0.33, width=0.375.*wrong shape "
                                   r"\(backbone\.backbone\.stem\.conv\.conv\.weight: expected \(24, 12, 3, 3\), "
                                   r"found \(16, 12, 3, 3\)"),
        ("nano-pth", "yolox-s", r"yolox_nano\.pth does not fit .*missing \(backbone\.backbone\.dark2\.0\.conv\.weight"),
        ("missing", "yolox-nano", r"broken\.pth does not fit .*1 missing \(head\.obj_preds\.1\.bias\)"),
        ("extra", "yolox-nano", r"broken\.pth does not fit .*1 unexpected \(head\.iou_preds\.0\.weight\)"),
        ("misshaped", "yolox-nano", r"broken\.pth .*head\.cls_preds\.0\.weight: expected \(80, 64, 1, 1\), "
                                    r"found \(20, 64, 1, 1\)"),
        ("garbage-pth", "yolox-nano", r"broken\.pth is not a readable torch checkpoint"),
        ("not-a-checkpoint", "yolox-nano", r"broken\.pth: expected an official YOLOX checkpoint"),
        ("garbage-onnx", "yolox-nano", r"broken\.onnx is not a readable ONNX model"),
        ("bin", "yolox-nano", r"broken\.bin: expected an official YOLOX \.onnx export or \.pth checkpoint"),
    ],
)
def test_wrong_weights_fail_naming_file_and_shapes(make, target, message, nano_pth, tmp_path):
    if make == "nano-onnx":
        path = NANO_ONNX
    elif make == "nano-pth":
        path = nano_pth
    elif make in ("missing", "extra", "misshaped"):
        path = tmp_path / "broken.pth"
        torch.save(_edit(torch.load(nano_pth, weights_only=True), make), path)
    elif make == "not-a-checkpoint":
        path = tmp_path / "broken.pth"
        torch.save({"epoch": 3, "optimizer": {"lr": 0.1}}, path)
    else:
        suffix = {"garbage-pth": ".pth", "garbage-onnx": ".onnx", "bin": ".bin"}[make]
        path = tmp_path / f"broken{suffix}"
        path.write_bytes(b"\x00not a model" * 100)
    with pytest.raises(YOLOXWeightsError, match=message):
        models.build(target, weights=path, download=False)


# --- export -----------------------------------------------------------------------------------


def test_exports_to_onnx_with_dynamic_batch_matching_torch(nano, coco, tmp_path):
    path = tmp_path / "yolox-nano.onnx"
    example = torch.from_numpy(coco[1][:1])
    # TorchScript exporter: the dynamo exporter needs onnxscript, which posekit does not install.
    torch.onnx.export(nano, (example,), str(path), input_names=["images"], output_names=["output"],
                      opset_version=17, dynamo=False,
                      dynamic_axes={"images": {0: "batch"}, "output": {0: "batch"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"
    batch = coco[1][[0, 7, 11]]
    exported = session.run(None, {"images": batch})[0]
    with torch.no_grad():
        eager = nano(torch.from_numpy(batch)).numpy()
    assert exported.shape == (3, 3549, 85)
    for a, b in zip(exported, eager):
        errors = relative_errors(a, b)
        assert max(errors.values()) <= 1e-4, errors
