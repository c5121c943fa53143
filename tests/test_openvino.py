"""The OpenVINO IR reader on the real IRs in ../shared, and on broken copies of them."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from paths import MODELS
from posekit.openvino import IRFormatError, ir_files, load_ir

TINYPOSE = MODELS / "tinypose-256x192" / "model.xml"
PICODET = MODELS / "picodet-s-320-pedestrian" / "picodet_s_320_lcnet_pedestrian.xml"

# xml, input shape, output shapes (in Result order), layers, constants
REAL = [
    (TINYPOSE, (1, 3, 256, 192), [(1, 17, 64, 48), (1, 17)], 2482, 778),
    (MODELS / "tinypose-128x96" / "model.xml", (1, 3, 128, 96), [(1, 17, 32, 24), (1, 17)], 2482, 778),
    (PICODET, (1, 3, 320, 320), [(1, 2125, 4), (1, 1, 2125)], 1199, 377),
    (MODELS / "picodet-s-192-pedestrian" / "picodet_s_192_lcnet_pedestrian.xml", (1, 3, 192, 192), [(1, 765, 4), (1, 1, 765)], 1199, 377),
]


@pytest.mark.parametrize("xml, in_shape, out_shapes, n_layers, n_consts", REAL, ids=lambda v: getattr(v, "parent", None) and v.parent.name)
def test_real_ir(xml, in_shape, out_shapes, n_layers, n_consts):
    m = load_ir(xml)
    assert m.version == 11
    assert len(m.layers) == n_layers and len(m.constants) == n_consts
    assert [p.outputs[0].shape for p in m.parameters] == [in_shape]
    assert [r.inputs[0].shape for r in m.results] == out_shapes
    # topological: every layer's sources come before it
    seen = set()
    for layer in m.layers:
        assert all(src in seen for src, _ in m.sources(layer)), layer.name
        assert len(m.sources(layer)) == len(layer.inputs)
        seen.add(layer.id)
    # every Const array has the shape and dtype its output port declares
    prec = {"FP16": np.float16, "FP32": np.float32, "I64": np.int64, "I32": np.int32, "U64": np.uint64}
    for layer in m.by_type("Const"):
        arr = m.constants[layer.id]
        assert arr.shape == layer.outputs[0].shape
        assert arr.dtype == prec[layer.outputs[0].precision]
    # fp16 weights come as stored; upcast gives the same values in float32
    conv = m.by_type("Convolution")[0]
    (w_id, _), = [s for s in m.sources(conv)[1:]]
    w_const = m.sources(w_id)[0][0] if m.layer(w_id).type == "Convert" else w_id
    w = m.constants[w_const]
    assert w.dtype == np.float16 and w.ndim == 4 and w.shape[1] == 3
    w32 = m.constant(w_const, upcast=True)
    assert w32.dtype == np.float32 and np.array_equal(w32, w.astype(np.float32)) and np.abs(w32).max() > 0


def test_ir_files(tmp_path):
    assert ir_files(TINYPOSE.parent) == (TINYPOSE, TINYPOSE.with_suffix(".bin"))
    assert ir_files(TINYPOSE) == (TINYPOSE, TINYPOSE.with_suffix(".bin"))
    assert ir_files(MODELS / "movenet-thunder") is None


def _copy(src_xml, tmp_path, name="model"):
    xml = tmp_path / f"{name}.xml"
    shutil.copy(src_xml, xml)
    shutil.copy(src_xml.with_suffix(".bin"), tmp_path / f"{name}.bin")
    return xml


def _truncate(xml):
    b = xml.with_suffix(".bin")
    b.write_bytes(b.read_bytes()[:1_000_000])
    return xml, None


def _grow_shape(xml):
    # the first Const (32,3,3,3 f16, 1728 bytes) claims 64 output channels
    text = xml.read_text()
    xml.write_text(text.replace('shape="32, 3, 3, 3" offset="0" size="1728"', 'shape="64, 3, 3, 3" offset="0" size="1728"', 1))
    return xml, None


def _big_const(xml):
    # a Const whose declared shape and size both overrun the .bin
    text = xml.read_text()
    xml.write_text(text.replace('shape="32, 3, 3, 3" offset="0" size="1728"', 'shape="320000, 3, 3, 3" offset="0" size="17280000"', 1))
    return xml, None


def _bad_xml(xml):
    xml.write_text(xml.read_text()[:5000])
    return xml, None


def _no_bin(xml):
    xml.with_suffix(".bin").unlink()
    return xml, None


def _unknown_type(xml):
    xml.write_text(xml.read_text().replace('element_type="f16" shape="32, 3, 3, 3"', 'element_type="q7" shape="32, 3, 3, 3"', 1))
    return xml, None


def _wrong_bin(xml):
    # the TinyPose weights handed to the PicoDet graph
    return xml, TINYPOSE.with_suffix(".bin")


BROKEN = [
    # source, breaker, the file the error must name, fragments of expected-vs-found
    (TINYPOSE, _truncate, "model.bin", ["1,000,000 bytes", "needs bytes"]),
    (TINYPOSE, _grow_shape, "model.xml", ["[64, 3, 3, 3]", "3,456 bytes", "1,728"]),
    (TINYPOSE, _big_const, "model.bin", ["bytes", "needs bytes 0..17,280,000"]),
    (TINYPOSE, _bad_xml, "model.xml", ["not parseable XML"]),
    (TINYPOSE, _no_bin, "model.bin", ["missing", "778 constants"]),
    (TINYPOSE, _unknown_type, "model.xml", ["'q7'", "expected one of"]),
    (PICODET, _wrong_bin, str(TINYPOSE.with_suffix(".bin")), ["2,600,722 bytes", "end at byte 2,292,314"]),
]


@pytest.mark.parametrize("src, breaker, names, fragments", BROKEN, ids=[b[1].__name__ for b in BROKEN])
def test_broken_ir(tmp_path, src, breaker, names, fragments):
    xml, bin_path = breaker(_copy(src, tmp_path))
    with pytest.raises(IRFormatError) as info:
        load_ir(xml, bin_path)
    msg = str(info.value)
    assert "\n" not in msg
    assert (str(tmp_path / names) if "/" not in names else names) in msg, msg
    for frag in fragments:
        assert frag in msg, msg
