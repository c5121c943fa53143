"""ONNX export: parity with Google's graph at several batch sizes, metadata, the CLI, atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest

from posekit import __version__, registry
from posekit import export as export_mod
from posekit.engines.onnxruntime import OnnxRuntimeEngine
from posekit.ops.movenet import decode_movenet
from posekit.skeleton import COCO_KEYPOINTS, COCO_SKELETON
from tests import movenet_crops as mc
from paths import MODELS, ROOT

KEYPOINT_ATOL_PX = 0.5
SCORE_ATOL = 1e-3
# 64 distinct crops: every annotation of the mini set (crowd, 8x14 px people, boxes on the edge)
# and the first 15 mirrored.
ALL_KEYS = tuple((a, False) for a in mc.all_ids()) + tuple((a, True) for a in mc.all_ids()[:15])
BATCHES = {1: mc.EDGE_IDS[:1], 7: mc.EDGE_IDS[:7], 64: None}


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """One dynamic-batch export per variant, shared by every test (Lightning through ensure_onnx)."""
    out = {}
    thunder = tmp_path_factory.mktemp("export") / "thunder.onnx"
    out["thunder"] = export_mod.export_onnx("movenet-thunder", thunder, weights=MODELS / "movenet-thunder").path
    out["cache"] = tmp_path_factory.mktemp("ensure-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POSEKIT_MODELS", str(MODELS))
        mp.setenv("POSEKIT_CACHE", str(out["cache"]))
        out["lightning"] = export_mod.ensure_onnx("movenet-lightning")
    return out


_ENGINES: dict = {}


def _engine(path):
    if path not in _ENGINES:
        _ENGINES[path] = OnnxRuntimeEngine(path)
    return _ENGINES[path]


def _keys(batch):
    ids = BATCHES[batch]
    return ALL_KEYS if ids is None else tuple((a, False) for a in ids)


@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("variant", ["thunder", "lightning"])
def test_exported_onnx_matches_google(exports, variant, batch):
    keys = _keys(batch)
    assert len(keys) == batch
    heads = _engine(exports[variant])(mc.nchw(mc.crops(variant, keys)))
    keypoints, scores = decode_movenet(*heads)
    ref_kp, ref_scores = mc.reference(variant, keys)
    assert keypoints.shape == (batch, 17, 2)
    np.testing.assert_allclose(keypoints, ref_kp, atol=KEYPOINT_ATOL_PX, rtol=0)
    np.testing.assert_allclose(scores, ref_scores, atol=SCORE_ATOL, rtol=0)


def test_metadata_travels_with_the_file(exports):
    path = exports["thunder"]
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    spec = registry.get("movenet-thunder")
    assert meta["posekit.model"] == "movenet-thunder"
    assert json.loads(meta["posekit.input_size"]) == [256, 256]
    assert meta["posekit.colour"] == "RGB"
    assert json.loads(meta["posekit.mean"]) == [0, 0, 0] and json.loads(meta["posekit.std"]) == [1, 1, 1]
    assert tuple(json.loads(meta["posekit.keypoints"])) == COCO_KEYPOINTS
    assert [tuple(p) for p in json.loads(meta["posekit.skeleton"])] == list(COCO_SKELETON)
    assert json.loads(meta["posekit.outputs"]) == ["centre", "heatmaps", "regression", "offsets"]
    assert "channel 2k=dy" in meta["posekit.output_layout"]
    assert json.loads(meta["posekit.source_sha256"]) == {
        "model.json": spec.files[0].sha256, "movenet-thunder.bin": spec.files[1].sha256}
    assert meta["posekit.version"] == __version__ and meta["posekit.batch"] == "dynamic"
    check = json.loads(meta["posekit.check"])
    assert set(check["max_abs_diff_vs_torch"]) == {"centre", "heatmaps", "regression", "offsets"}
    assert max(check["max_abs_diff_vs_torch"].values()) < 1e-2
    onnx.checker.check_model(model)
    (images,) = model.graph.input
    assert images.name == "images"
    assert [d.dim_param or d.dim_value for d in images.type.tensor_type.shape.dim] == ["batch", 3, 256, 256]
    # onnxslim folded TF's asymmetric 'SAME' padding into the convolutions
    assert not [n for n in model.graph.node if n.op_type == "Pad"]
    assert _engine(path).metadata["posekit.model"] == "movenet-thunder"


def _cli(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "posekit", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_cli_static_batch_export(tmp_path):
    out = tmp_path / "sub" / "x.onnx"
    result = _cli("export", "movenet-thunder", "--out", str(out), "--batch", "4")
    assert result.returncode == 0, result.stderr
    assert f"wrote {out} (batch 4)" in result.stdout
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.onnx"]  # no temporaries left
    engine = OnnxRuntimeEngine(out)
    assert engine.inputs[0].shape == (4, 3, 256, 256)
    assert engine.metadata["posekit.batch"] == "4" and engine.metadata["posekit.model"] == "movenet-thunder"
    keys = tuple((a, False) for a in mc.EDGE_IDS[:4])
    keypoints, scores = decode_movenet(*engine(mc.nchw(mc.crops("thunder", keys))))
    ref_kp, ref_scores = mc.reference("thunder", keys)
    np.testing.assert_allclose(keypoints, ref_kp, atol=KEYPOINT_ATOL_PX, rtol=0)
    np.testing.assert_allclose(scores, ref_scores, atol=SCORE_ATOL, rtol=0)
    with pytest.raises(ValueError, match=r"expected shape \(4, 3, 256, 256\), got \(2, 3, 256, 256\)"):
        engine(np.zeros((2, 3, 256, 256), np.float32))


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["export", "movenet-thundr", "--out", "x.onnx"], 1, "did you mean movenet-thunder"),
        (["export", "movenet-thunder", "--out", "x.onnx", "--batch", "0"], 2, "expected 'dynamic' or a positive integer"),
        (["export", "movenet-thunder", "--out", "x.onnx", "--batch", "many"], 2, "got 'many'"),
        (["export", "rtmdet-nano-person", "--out", "x.onnx"], 1, "has no PyTorch implementation"),
    ],
)
def test_cli_bad_arguments(tmp_path, args, code, message):
    result = _cli(*args, cwd=tmp_path)
    assert result.returncode == code
    assert message in result.stderr
    assert not list(tmp_path.iterdir()), "nothing may be written on a failed export"


def test_fp16_weights_halve_the_file_and_keep_parity(exports, tmp_path):
    report = export_mod.export_onnx("movenet-lightning", tmp_path / "l16.onnx", batch=7, fp16=True)
    assert report.path.stat().st_size < 0.55 * exports["lightning"].stat().st_size
    assert report.metadata["posekit.fp16_weights"] == "true"
    keys = _keys(7)
    keypoints, scores = decode_movenet(*OnnxRuntimeEngine(report.path)(mc.nchw(mc.crops("lightning", keys))))
    ref_kp, ref_scores = mc.reference("lightning", keys)
    # MoveNet's TF.js weights are float16 already: storing them as float16 loses nothing
    np.testing.assert_allclose(keypoints, ref_kp, atol=KEYPOINT_ATOL_PX, rtol=0)
    np.testing.assert_allclose(scores, ref_scores, atol=SCORE_ATOL, rtol=0)
    assert max(report.max_abs_diff.values()) < 1e-3
    # ... measured, not assumed: rounding them again changes nothing
    assert report.fp16_rounding == {"centre": 0.0, "heatmaps": 0.0, "regression": 0.0, "offsets": 0.0}
    check = json.loads(report.metadata["posekit.check"])
    assert check["fp16_weights_max_abs_change_vs_fp32"] == report.fp16_rounding


def test_failed_check_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(export_mod, "CHECK_ATOL", -1.0)  # no export can meet this
    out = tmp_path / "bad.onnx"
    with pytest.raises(export_mod.ExportCheckFailed, match=r"movenet-lightning: the ONNX export disagrees with torch on person\.jpg"):
        export_mod.export_onnx("movenet-lightning", out)
    assert list(tmp_path.iterdir()) == []


def test_ensure_onnx_reuses_its_cache_and_follows_the_weights(exports, tmp_path, monkeypatch):
    monkeypatch.setenv("POSEKIT_CACHE", str(exports["cache"]))
    path = exports["lightning"]
    assert path.parent == registry.cache_dir() / "onnx"
    before = path.stat().st_mtime_ns
    assert export_mod.ensure_onnx("movenet-lightning") == path and path.stat().st_mtime_ns == before
    # a changed weight file has another checksum, hence another cache name (it would re-export)
    models = tmp_path / "models"
    shutil.copytree(MODELS / "movenet-lightning", models / "movenet-lightning")
    changed = models / "movenet-lightning" / "model.json"
    changed.chmod(0o644)
    changed.write_text(changed.read_text() + "\n")
    monkeypatch.setenv("POSEKIT_MODELS", str(models))
    other = export_mod.onnx_cache_path("movenet-lightning")
    assert other != path and other.parent == path.parent
    assert export_mod.onnx_cache_path("movenet-lightning", batch=8, fp16=True).name.endswith("-b8-op17-fp16.onnx")


def test_yolox_exports_through_the_same_path(tmp_path):
    # The yolox engineer's module (merged from main): the export is generic over registered networks.
    import cv2

    from paths import COCO_IMAGES

    report = export_mod.export_onnx("yolox-nano", tmp_path / "yolox.onnx")
    meta = report.metadata
    assert meta["posekit.task"] == "detector" and meta["posekit.colour"] == "BGR"
    assert json.loads(meta["posekit.input_size"]) == [416, 416] and "posekit.keypoints" not in meta
    assert json.loads(meta["posekit.source_sha256"]) == {"yolox-nano-416.onnx": registry.get("yolox-nano").files[0].sha256}
    images = []
    for path in sorted(COCO_IMAGES.glob("*.jpg"))[:3]:  # letterboxed as YOLOX expects: top-left, pad 114
        image = cv2.imread(str(path))
        r = min(416 / image.shape[0], 416 / image.shape[1])
        h, w = int(image.shape[0] * r), int(image.shape[1] * r)
        canvas = np.full((416, 416, 3), 114, np.uint8)
        canvas[:h, :w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        images.append(canvas.transpose(2, 0, 1))
    batch = np.stack(images).astype(np.float32)
    (ours,) = OnnxRuntimeEngine(report.path)(batch)
    official = OnnxRuntimeEngine(MODELS / "yolox-nano-416.onnx")
    for row, image in zip(ours, batch):
        (expected,) = official(image[None])
        for group in (slice(0, 4), slice(4, 5), slice(5, 85)):  # box terms, objectness, classes
            err = np.abs(row[..., group] - expected[0][..., group]).max() / np.abs(expected[0][..., group]).max()
            assert err <= 1e-4, (group, err)


def test_dynamic_height_and_width(exports, tmp_path, monkeypatch):
    """spatial="dynamic": one graph for every height and width that are multiples of 32. At the
    model's own size it is still Google's MoveNet; at person-shaped sizes it is the torch module."""
    import torch

    from posekit.models import build

    monkeypatch.setenv("POSEKIT_CACHE", str(exports["cache"]))
    path = export_mod.ensure_onnx("movenet-lightning", spatial="dynamic")
    assert path.name.endswith("-bdynamic-op17-hwdynamic.onnx") and path != exports["lightning"]
    engine = OnnxRuntimeEngine(path)
    assert engine.inputs[0].shape == (None, 3, None, None)
    assert engine.metadata["posekit.spatial"] == "dynamic" and engine.metadata["posekit.input_multiple"] == "32"
    keys = tuple((a, False) for a in mc.EDGE_IDS)
    keypoints, scores = decode_movenet(*engine(mc.nchw(mc.crops("lightning", keys))))
    ref_kp, ref_scores = mc.reference("lightning", keys)
    np.testing.assert_allclose(keypoints, ref_kp, atol=KEYPOINT_ATOL_PX, rtol=0)
    np.testing.assert_allclose(scores, ref_scores, atol=SCORE_ATOL, rtol=0)
    module = build("movenet-lightning")
    crops = mc.nchw(mc.crops("lightning", keys[:3]))
    for h, w in [(192, 96), (96, 192), (160, 128)]:
        x = np.ascontiguousarray(crops[:, :, :h, :w])
        with torch.no_grad():
            want = [t.numpy() for t in module(torch.from_numpy(x))]
        got = engine(x)
        assert got[1].shape == (3, 17, h // 4, w // 4)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, atol=1e-3, rtol=1e-3)
    # a fixed export keeps its one size
    assert OnnxRuntimeEngine(exports["lightning"]).inputs[0].shape == (None, 3, 192, 192)


def test_dynamic_size_is_for_pose_models(tmp_path):
    with pytest.raises(ValueError, match="only pose models export with dynamic height and width"):
        export_mod.export_onnx("yolox-nano", tmp_path / "x.onnx", spatial="dynamic")
    with pytest.raises(ValueError, match="spatial must be one of fixed, dynamic"):
        export_mod.export_onnx("movenet-lightning", tmp_path / "x.onnx", spatial="any")
    assert list(tmp_path.iterdir()) == []


def test_cli_dynamic_size_export(tmp_path):
    out = tmp_path / "any.onnx"
    result = _cli("export", "movenet-lightning", "--out", str(out), "--spatial", "dynamic")
    assert result.returncode == 0, result.stderr
    assert "any height and width (multiples of 32)" in result.stdout
    assert OnnxRuntimeEngine(out).inputs[0].shape == (None, 3, None, None)
