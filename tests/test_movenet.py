"""MoveNet in torch against Google's graph (tf2onnx reference) on real person crops; loading errors."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch

from posekit import registry
from posekit.models import build
from posekit.models.movenet import ArchitectureMismatch, decode_movenet_torch, load_checked, tfjs_state_dict
from posekit.ops.movenet import decode_movenet
from tests import movenet_crops as mc
from paths import MODELS

KEYPOINT_ATOL_PX = 0.5
SCORE_ATOL = 1e-3
EDGE_KEYS = tuple((a, False) for a in mc.EDGE_IDS)


@pytest.fixture(scope="module", params=["thunder", "lightning"])
def torch_heads(request):
    variant = request.param
    model = build(f"movenet-{variant}", weights=MODELS / f"movenet-{variant}")  # module scope: no env fixture yet
    with torch.no_grad():
        heads = model(torch.from_numpy(mc.nchw(mc.crops(variant, EDGE_KEYS))))
    return variant, model, heads


def test_torch_matches_google_on_person_crops(torch_heads):
    variant, _, heads = torch_heads
    s = mc.SIZES[variant]
    assert [tuple(h.shape) for h in heads] == [(8, 1, s // 4, s // 4), (8, 17, s // 4, s // 4),
                                               (8, 34, s // 4, s // 4), (8, 34, s // 4, s // 4)]
    keypoints, scores = decode_movenet(*(h.numpy() for h in heads))
    ref_kp, ref_scores = mc.reference(variant, EDGE_KEYS)
    assert keypoints.shape == (8, 17, 2) and keypoints.dtype == np.float32
    np.testing.assert_allclose(keypoints, ref_kp, atol=KEYPOINT_ATOL_PX, rtol=0)
    np.testing.assert_allclose(scores, ref_scores, atol=SCORE_ATOL, rtol=0)
    # a real test set: confident people and a poor one (the 10x12 px crop)
    assert scores[0].mean() > 0.4 and scores[mc.EDGE_IDS.index(1690541)].mean() < scores[0].mean()


def test_torch_decode_equals_numpy_decode(torch_heads):
    variant, _, heads = torch_heads
    kp_np, sc_np = decode_movenet(*(h.numpy() for h in heads))
    kp_t, sc_t = decode_movenet_torch(*heads)
    np.testing.assert_allclose(kp_t.numpy(), kp_np, atol=1e-4, rtol=0)
    np.testing.assert_allclose(sc_t.numpy(), sc_np, atol=1e-6, rtol=0)


def test_batch_rows_equal_single_runs(torch_heads):
    variant, model, heads = torch_heads
    one = torch.from_numpy(mc.nchw(mc.crops(variant, EDGE_KEYS[2:3])))
    with torch.no_grad():
        single = model(one)
    for batched, alone in zip(heads, single):
        np.testing.assert_allclose(batched[2:3].numpy(), alone.numpy(), atol=1e-4, rtol=1e-5)


def test_decode_centre_prefers_the_middle():
    # two equal centre peaks: the one nearer (H/2, W/2) wins, as in Google's graph
    h = w = 8
    centre = np.zeros((1, 1, h, w), np.float32)
    centre[0, 0, 1, 1] = centre[0, 0, 4, 5] = 0.9
    heatmaps = np.zeros((1, 17, h, w), np.float32)
    heatmaps[0, :, 4, 5] = 0.7
    regression = np.zeros((1, 34, h, w), np.float32)
    offsets = np.full((1, 34, h, w), 0.25, np.float32)
    keypoints, scores = decode_movenet(centre, heatmaps, regression, offsets, input_size=(32, 32))
    np.testing.assert_allclose(keypoints[0, 0], [(5 + 0.25) * 4, (4 + 0.25) * 4], atol=1e-2)
    np.testing.assert_allclose(scores, 0.7, atol=1e-6)


@pytest.mark.parametrize(
    "shapes, message",
    [
        (((1, 1, 8, 8), (1, 17, 8), (1, 34, 8, 8), (1, 34, 8, 8)), r"expected \(B, K, H, W\) heatmaps"),
        (((1, 2, 8, 8), (1, 17, 8, 8), (1, 34, 8, 8), (1, 34, 8, 8)), r"expected centre of shape \(1, 1, 8, 8\), got \(1, 2, 8, 8\)"),
        (((1, 1, 8, 8), (1, 17, 8, 8), (1, 17, 8, 8), (1, 34, 8, 8)), r"expected regression of shape \(1, 34, 8, 8\)"),
        (((2, 1, 8, 8), (1, 17, 8, 8), (1, 34, 8, 8), (1, 34, 8, 8)), r"expected centre of shape \(1, 1, 8, 8\), got \(2"),
    ],
)
def test_decode_rejects_misshaped_heads(shapes, message):
    with pytest.raises(ValueError, match=message):
        decode_movenet(*(np.zeros(s, np.float32) for s in shapes))


def _copy(variant, tmp_path):
    folder = tmp_path / f"movenet-{variant}"
    shutil.copytree(MODELS / f"movenet-{variant}", folder)
    for p in folder.iterdir():
        p.chmod(0o644)
    return folder


def _reshape_block3_project(folder):
    # graph and manifest stay consistent with each other (same bytes), but block 3 now projects
    # to 240 channels, which block 4 (expecting 56 inputs) cannot take.
    doc = json.loads((folder / "model.json").read_text())
    name = "block_3_project/Conv2D_weights"
    for w in doc["weightsManifest"][0]["weights"]:
        if w["name"].endswith(name):
            w["shape"] = [1, 1, 56, 240]
    for node in doc["modelTopology"]["node"]:
        if node["name"].endswith(name):
            node["attr"]["value"]["tensor"]["tensorShape"]["dim"] = [{"size": s} for s in ("1", "1", "56", "240")]
    (folder / "model.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda t: _copy("lightning", t), r"model\.json declares a 192x192 input, movenet-thunder expects 256x256"),
        (lambda t: _reshape_block3_project(_copy("thunder", t)) or t / "movenet-thunder" / "model.json",
         r"model\.json does not fit MoveNet: 3 misshaped: blocks\.3\.project\.weight: expected \(240, 240, 1, 1\), found \(240, 56, 1, 1\)"),
    ],
    ids=["lightning-files-for-thunder", "misshaped-tensor"],
)
def test_wrong_architecture_names_file_and_shapes(tmp_path, make, message):
    folder = make(tmp_path)
    with pytest.raises(ArchitectureMismatch, match=message) as info:
        build("movenet-thunder", weights=folder)
    assert str(folder) in str(info.value)
    assert not any(registry.cache_dir().glob("**/*.pt")), "nothing may be cached from a failed load"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.pop("heads.offsets.out.bias"), r"missing 1 tensor\(s\): heads\.offsets\.out\.bias"),
        (lambda sd: sd.__setitem__("heads.extra.weight", torch.zeros(1)), r"unexpected 1 tensor\(s\): heads\.extra\.weight"),
        (lambda sd: sd.__setitem__("stem.bias", torch.zeros(57)), r"stem\.bias: expected \(56,\), found \(57,\)"),
    ],
)
def test_checkpoint_tensor_errors(edit, message):
    model = build("movenet-thunder")
    state, _ = tfjs_state_dict(MODELS / "movenet-thunder" / "model.json")
    edit(state)
    with pytest.raises(ArchitectureMismatch, match=message) as info:
        load_checked(model, state, "thunder.ckpt")
    assert "thunder.ckpt" in str(info.value)


@pytest.mark.parametrize("shape", [(3, 256, 256), (1, 256, 256, 3), (1, 4, 256, 256), (1, 3, 250, 256)])
def test_forward_rejects_other_layouts(torch_heads, shape):
    _, model, _ = torch_heads
    with pytest.raises(ValueError, match=r"expected \(B, 3, H, W\) RGB images .* got " + re.escape(str(shape))):
        model(torch.zeros(shape))


@pytest.mark.parametrize("variant, cells", [("thunder", 64), ("lightning", 48)])
def test_decode_constants_are_the_graphs(variant, cells):
    from posekit.ops.movenet import DISTANCE_BIAS, cell_scale, centre_weight
    from posekit.tfjs import load_graph_model

    weights = {k.removeprefix("StatefulPartitionedCall/"): v
               for k, v in load_graph_model(MODELS / f"movenet-{variant}").weights.items()}
    stored = weights["ConstantFolding/StatefulPartitionedCall/truediv_2_recip"][..., 0]
    computed = centre_weight(cells, cells)
    # TF folded 1 / (d + 1.8) in float32 a hair high: 8 of Thunder's 4096 cells, which lie within
    # 1e-9 of a float16 rounding midpoint, were stored one float16 step (2**-16) up.
    np.testing.assert_allclose(computed, stored, atol=2.0**-16, rtol=0)
    assert (computed != stored).sum() <= 8
    assert DISTANCE_BIAS == float(weights["add_5/y"])
    assert np.all(weights["Reshape_13"] == cell_scale(cells))
    grid_y, grid_x = np.mgrid[0:cells, 0:cells]
    np.testing.assert_array_equal(weights["strided_slice_3"][..., 0], grid_y)
    np.testing.assert_array_equal(weights["strided_slice_4"][..., 0], grid_x)
