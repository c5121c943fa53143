"""The TF.js graph-model reader: real MoveNet files, every weight encoding, and broken copies."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from posekit.tfjs import TfjsFormatError, load_graph_model
from paths import MODELS


@pytest.mark.parametrize("variant, size, stem", [("thunder", 256, 56), ("lightning", 192, 32)])
def test_reads_the_real_movenet_files(variant, size, stem):
    model = load_graph_model(MODELS / f"movenet-{variant}")
    assert len(model.weights) == 180 and len(model.nodes) == 331
    (placeholder,) = model.by_op("Placeholder")
    assert placeholder.attrs["shape"] == (1, size, size, 3) and placeholder.attrs["dtype"] == "int32"
    conv = model.by_op("_FusedConv2D")[0]
    assert conv.attrs["padding"] == "SAME" and conv.attrs["strides"] == [1, 2, 2, 1]
    assert conv.attrs["fused_ops"] == ["BiasAdd", "Relu6"]
    kernel = model.weights[conv.inputs[1]]
    assert kernel.dtype == np.float32 and kernel.shape == (3, 3, 3, stem)
    # stored as float16: every value survives a round trip through float16 unchanged
    np.testing.assert_array_equal(kernel.astype(np.float16).astype(np.float32), kernel)
    assert model.by_op("ResizeBilinear")[0].attrs["half_pixel_centers"] is True
    indices = model.weights["StatefulPartitionedCall/stack_4"]
    assert indices.dtype == np.int32 and indices[:3].tolist() == [[0, 0], [1, 1], [2, 2]]


def _write_model(folder, weights, blobs, nodes=None):
    """A tiny graph model: one Const node per weight, the given manifest entries and shard bytes."""
    nodes = nodes if nodes is not None else [
        {"name": w["name"], "op": "Const",
         "attr": {"value": {"tensor": {"tensorShape": {"dim": [{"size": str(d)} for d in w["shape"]]}}}}}
        for w in weights
    ]
    doc = {"format": "graph-model", "modelTopology": {"node": nodes},
           "weightsManifest": [{"paths": ["w.bin"], "weights": weights}]}
    (folder / "model.json").write_text(json.dumps(doc))
    (folder / "w.bin").write_bytes(b"".join(blobs))
    return folder / "model.json"


_Q8 = np.array([0, 1, 128, 255], np.uint8)
_Q16 = np.array([0, 1, 40000, 65535], np.uint16)


@pytest.mark.parametrize(
    "entry, blob, expected",
    [
        ({"dtype": "float32", "shape": [2, 2]}, np.array([1.5, -2, 0, 3e5], np.float32).tobytes(),
         np.array([[1.5, -2], [0, 3e5]], np.float32)),
        ({"dtype": "float32", "shape": [3], "quantization": {"dtype": "float16", "original_dtype": "float32"}},
         np.array([0.1, -7.25, 65504], np.float16).tobytes(), np.array([0.1, -7.25, 65504], np.float16).astype(np.float32)),
        ({"dtype": "float32", "shape": [4], "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
         _Q8.tobytes(), _Q8.astype(np.float32) * 0.5 - 1.0),
        ({"dtype": "float32", "shape": [4], "quantization": {"dtype": "uint16", "scale": 0.001, "min": 2.0}},
         _Q16.tobytes(), _Q16.astype(np.float32) * np.float32(0.001) + np.float32(2.0)),
        ({"dtype": "int32", "shape": [4], "quantization": {"dtype": "uint8", "scale": 2.0, "min": -10.0,
                                                            "original_dtype": "int32"}},
         _Q8.tobytes(), np.array([-10, -8, 246, 500], np.int32)),
        ({"dtype": "int32", "shape": [2], "quantization": None}, np.array([7, -3], np.int32).tobytes(),
         np.array([7, -3], np.int32)),
        ({"dtype": "int32", "shape": []}, np.array([64], np.int32).tobytes(), np.array(64, np.int32)),
    ],
    ids=["float32", "float16", "uint8-affine", "uint16-affine", "uint8-int32", "int32", "scalar"],
)
def test_weight_encodings(tmp_path, entry, blob, expected):
    path = _write_model(tmp_path, [{"name": "w", **entry}], [blob])
    value = load_graph_model(path).weights["w"]
    assert value.dtype == expected.dtype and value.shape == expected.shape
    np.testing.assert_allclose(value, expected, rtol=1e-6)


def _copy_thunder(tmp_path):
    folder = tmp_path / "movenet-thunder"
    shutil.copytree(MODELS / "movenet-thunder", folder)
    for p in folder.iterdir():
        p.chmod(0o644)
    return folder


def _edit_json(folder, edit):
    doc = json.loads((folder / "model.json").read_text())
    edit(doc)
    (folder / "model.json").write_text(json.dumps(doc))


def _truncate(folder):
    data = (folder / "movenet-thunder.bin").read_bytes()
    (folder / "movenet-thunder.bin").write_bytes(data[:-8])


def _rename_manifest_weight(doc):
    doc["weightsManifest"][0]["weights"][5]["name"] += "_renamed"


def _swap_shape(doc):
    # Same byte count, so only the graph check can notice: the Const says (1, 1, 24, 96).
    for w in doc["weightsManifest"][0]["weights"]:
        if w["shape"] == [1, 1, 24, 96]:
            w["shape"] = [1, 1, 96, 24]
            return


def _dangling_input(doc):
    doc["modelTopology"]["node"][-1]["input"] = ["StatefulPartitionedCall/no_such_node"]


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (_truncate, r"movenet-thunder\.bin holds 12,477,104 bytes, the manifest needs 12,477,112"),
        (lambda f: (f / "movenet-thunder.bin").unlink(), r"model\.json: weight shard movenet-thunder\.bin is missing"),
        (lambda f: _edit_json(f, _rename_manifest_weight),
         r"model\.json: 1 graph constant\(s\) have no weight in the manifest"),
        (lambda f: _edit_json(f, _swap_shape), r"has shape \(1, 1, 24, 96\) in the graph, \(1, 1, 96, 24\) in the manifest"),
        (lambda f: _edit_json(f, _dangling_input), r"reads 'StatefulPartitionedCall/no_such_node', which is not in the graph"),
        (lambda f: (f / "model.json").write_text("{not json"), r"model\.json is not JSON"),
        (lambda f: (f / "model.json").write_text('{"format": "layers-model"}'), r"expected a TF.js graph model"),
    ],
    ids=["truncated-bin", "missing-shard", "manifest-vs-graph", "shape-vs-graph", "dangling-input", "not-json", "not-graph"],
)
def test_broken_files_fail_naming_file_and_expectation(tmp_path, corrupt, message):
    folder = _copy_thunder(tmp_path)
    corrupt(folder)
    with pytest.raises(TfjsFormatError, match=message) as info:
        load_graph_model(folder)
    assert "movenet-thunder" in str(info.value)


def test_missing_model_json(tmp_path):
    with pytest.raises(TfjsFormatError, match=f"no TF.js model at {tmp_path / 'model.json'}"):
        load_graph_model(tmp_path)


def test_weights_spanning_several_shards(tmp_path):
    # TF.js splits a group's bytes into 4 MB shards regardless of tensor boundaries.
    source = MODELS / "movenet-lightning"
    data = (source / "movenet-lightning.bin").read_bytes()
    cuts = [0, 1_000_003, 3_333_333, len(data)]
    names = [f"group1-shard{i + 1}of3.bin" for i in range(3)]
    for name, start, end in zip(names, cuts, cuts[1:]):
        (tmp_path / name).write_bytes(data[start:end])
    doc = json.loads((source / "model.json").read_text())
    doc["weightsManifest"][0]["paths"] = names
    (tmp_path / "model.json").write_text(json.dumps(doc))
    sharded = load_graph_model(tmp_path).weights
    original = load_graph_model(source).weights
    assert sharded.keys() == original.keys()
    for name in original:
        np.testing.assert_array_equal(sharded[name], original[name])
    (tmp_path / names[1]).write_bytes(data[cuts[1]:cuts[2] - 4])
    with pytest.raises(TfjsFormatError, match=r"group1-shard1of3\.bin, group1-shard2of3\.bin, group1-shard3of3\.bin "
                                              r"hold in all 4,650,212 bytes, the manifest needs 4,650,216"):
        load_graph_model(tmp_path)
