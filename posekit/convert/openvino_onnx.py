"""OpenVINO IR (read by `posekit.openvino`) -> ONNX, with numpy and the `onnx` package alone.

Every layer that does not depend on the image's values (Const, fp16 -> fp32 Convert, ShapeOf and
the shape arithmetic behind Reshape targets and Interpolate sizes, PicoDet's anchor-point grids)
is evaluated once with numpy from the IR's static shapes and stored as an initializer; the layers
that do depend on it become ONNX nodes, one or a few per layer (NCHW stays NCHW).

Batch: the IR bakes batch 1 into its shapes. A leading dim 1 of an image-dependent tensor is
taken to be the batch: a Reshape whose IR output starts with that 1 gets -1 there (or 0, "copy
the input's", when its target already has a -1), and a Reshape that merges the batch into its
first dim gets -1 there; so the graph runs any batch. Height and width stay the IR's.

Outputs, as `posekit.models.openvino_ir` names them: one 4-D float result -> ``heatmaps``
(PP-TinyPose; the IR's integer argmax output is decoding and is dropped); PicoDet's pair ->
``scores`` (B, 1, N) and ``boxes`` (B, N, 4).

Input ``images``: the IR's input, (B, 3, H, W) float32; the IR expects ImageNet-normalised RGB,
which the runner applies from the ``posekit.mean``/``posekit.std`` metadata (0..255 units).

`run_ir_numpy` evaluates the whole IR with numpy, image by image at the IR's own batch 1, in
OpenVINO's semantics: the reference every conversion is checked against.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from posekit.convert._onnx_graph import Conversion
from posekit.openvino import IRModel, Layer, load_ir

log = logging.getLogger(__name__)

HEATMAP_LAYOUT = "heatmaps (B,17,H/4,W/4) keypoint heatmaps, COCO-17 order (decode: argmax + DARK)"
PICODET_LAYOUT = ("scores (B,1,N) sigmoid person score per anchor point; "
                  "boxes (B,N,4) x0,y0,x1,y1 in input pixels; no NMS")

_NP_TYPES = {"f32": np.float32, "f16": np.float16, "f64": np.float64, "i64": np.int64, "i32": np.int32,
             "i8": np.int8, "u8": np.uint8, "boolean": np.bool_}


class IRConversionError(ValueError):
    """An IR holds something the converter does not translate."""


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.replace(" ", "").split(",") if v != ""]


def _fail(ir: IRModel, layer: Layer, why: str):
    raise IRConversionError(f"{ir.xml_path}: cannot convert {layer.type} layer {layer.name!r}: {why}")


# --- numpy semantics of each IR op (NCHW, OpenVINO's definitions) --------------------------------

def _np_conv(x: np.ndarray, w: np.ndarray, d: dict, groups: int) -> np.ndarray:
    """OpenVINO Convolution on NCHW with OIHW weights (grouped: groups * (O/G) outputs)."""
    if d.get("auto_pad", "explicit") not in ("explicit", "notset", "valid"):
        raise ValueError(f"auto_pad {d.get('auto_pad')}")
    pb, pe = (_ints(d.get("pads_begin", "0,0")), _ints(d.get("pads_end", "0,0"))) if d.get("auto_pad") != "valid" else ([0, 0], [0, 0])
    strides, dil = _ints(d.get("strides", "1,1")), _ints(d.get("dilations", "1,1"))
    if any(pb) or any(pe):
        x = np.pad(x, ((0, 0), (0, 0), (pb[0], pe[0]), (pb[1], pe[1])))
    n, c, h, wd = x.shape
    o, ig, kh, kw = w.shape
    oh = (h - (kh - 1) * dil[0] - 1) // strides[0] + 1
    ow = (wd - (kw - 1) * dil[1] - 1) // strides[1] + 1
    og = o // groups
    out = np.zeros((n, o, oh, ow), np.float32)
    for i in range(kh):
        for j in range(kw):
            tap = x[:, :, i * dil[0]: i * dil[0] + (oh - 1) * strides[0] + 1: strides[0],
                    j * dil[1]: j * dil[1] + (ow - 1) * strides[1] + 1: strides[1]]
            if groups == 1:
                # 2-D products of contiguous operands keep numpy on BLAS's fast path
                wij = np.ascontiguousarray(w[:, :, i, j])
                for b in range(n):
                    out[b] += (wij @ np.ascontiguousarray(tap[b]).reshape(c, oh * ow)).reshape(o, oh, ow)
            elif ig == 1 and og == 1:  # depthwise
                out += tap * w[None, :, 0, i, j, None, None]
            else:
                t = tap.reshape(n, groups, ig, oh, ow)
                out += np.einsum("ngchw,goc->ngohw", t, w[:, :, i, j].reshape(groups, og, ig), optimize=True).reshape(n, o, oh, ow)
    return out


def _np_resize(x: np.ndarray, out_hw: tuple[int, int], d: dict) -> np.ndarray:
    mode, ctm = d.get("mode"), d.get("coordinate_transformation_mode", "half_pixel")

    def coords(n_out: int, n_in: int):
        i = np.arange(n_out, dtype=np.float64)
        if ctm == "align_corners":
            return i * (n_in - 1) / (n_out - 1) if n_out > 1 else np.zeros(1)
        if ctm == "asymmetric":
            return i * n_in / n_out
        if ctm in ("half_pixel", "pytorch_half_pixel"):
            return (i + 0.5) * n_in / n_out - 0.5
        raise ValueError(f"coordinate_transformation_mode {ctm}")

    ys, xs = coords(out_hw[0], x.shape[2]), coords(out_hw[1], x.shape[3])
    if mode == "nearest":
        if d.get("nearest_mode", "round_prefer_floor") not in ("floor", "simple") or ctm != "asymmetric":
            raise ValueError(f"nearest {d.get('nearest_mode')} with {ctm}")
        yi = np.clip(np.floor(ys).astype(int), 0, x.shape[2] - 1)
        xi = np.clip(np.floor(xs).astype(int), 0, x.shape[3] - 1)
        return x[:, :, yi][:, :, :, xi]
    if mode in ("linear", "linear_onnx", "bilinear"):
        ys, xs = np.clip(ys, 0, x.shape[2] - 1), np.clip(xs, 0, x.shape[3] - 1)
        y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
        y1, x1 = np.minimum(y0 + 1, x.shape[2] - 1), np.minimum(x0 + 1, x.shape[3] - 1)
        fy, fx = (ys - y0).astype(np.float32)[:, None], (xs - x0).astype(np.float32)[None, :]
        top = x[:, :, y0][:, :, :, x0] * (1 - fx) + x[:, :, y0][:, :, :, x1] * fx
        bottom = x[:, :, y1][:, :, :, x0] * (1 - fx) + x[:, :, y1][:, :, :, x1] * fx
        return (top * (1 - fy) + bottom * fy).astype(np.float32)
    raise ValueError(f"mode {mode}")


def _np_strided_slice(x: np.ndarray, begin, end, stride, d: dict) -> np.ndarray:
    for key in ("new_axis_mask", "shrink_axis_mask", "ellipsis_mask"):
        if any(_ints(d.get(key, ""))):
            raise ValueError(f"{key} {d[key]}")
    bm, em = _ints(d.get("begin_mask", "")), _ints(d.get("end_mask", ""))
    index = []
    for axis, (b, e, s) in enumerate(zip(begin, end, stride)):
        b = None if axis < len(bm) and bm[axis] == 1 else int(b)
        e = None if axis < len(em) and em[axis] == 1 else int(e)
        index.append(slice(b, e, int(s)))
    return x[tuple(index)]


def _reshape_target(x_shape, target, special_zero: bool) -> list[int]:
    t = [int(v) for v in np.asarray(target).reshape(-1)]
    if special_zero:
        t = [x_shape[i] if v == 0 else v for i, v in enumerate(t)]
    return t


def eval_layer(ir: IRModel, layer: Layer, ins: list[np.ndarray]) -> list[np.ndarray]:
    """One IR layer in numpy; `ins` in port order. ShapeOf reads the IR's static shape."""
    t, d = layer.type, layer.data
    try:
        if t == "Const":
            return [ir.constants[layer.id]]
        if t == "ShapeOf":
            return [np.array(layer.inputs[0].shape, dtype=_NP_TYPES[d.get("output_type", "i64")])]
        if t == "Convert":
            return [ins[0].astype(_NP_TYPES[d["destination_type"]])]
        if t == "Add":
            return [ins[0] + ins[1]]
        if t == "Subtract":
            return [ins[0] - ins[1]]
        if t == "Multiply":
            return [ins[0] * ins[1]]
        if t == "Divide":
            a, b = ins
            if a.dtype.kind in "iu" and b.dtype.kind in "iu":
                return [a // b if d.get("m_pythondiv", "true") == "true" else np.trunc(a / b).astype(a.dtype)]
            return [a / b]
        if t == "Convolution":
            return [_np_conv(ins[0], ins[1].astype(np.float32), d, 1)]
        if t == "GroupConvolution":
            g, og, ig, kh, kw = ins[1].shape
            return [_np_conv(ins[0], ins[1].astype(np.float32).reshape(g * og, ig, kh, kw), d, g)]
        if t == "ReLU":
            return [np.maximum(ins[0], 0)]
        if t == "Sigmoid":
            with np.errstate(over="ignore"):
                return [(1 / (1 + np.exp(-ins[0]))).astype(ins[0].dtype)]
        if t == "Sqrt":
            return [np.sqrt(ins[0])]
        if t == "HSwish":
            return [ins[0] * np.clip(ins[0] + 3, 0, 6) / 6]
        if t == "HardSigmoid":
            return [np.clip(ins[1] * ins[0] + ins[2], 0, 1).astype(ins[0].dtype)]
        if t == "Reshape":
            return [ins[0].reshape(_reshape_target(ins[0].shape, ins[1], d.get("special_zero") == "true"))]
        if t == "Concat":
            return [np.concatenate(ins, axis=int(d["axis"]))]
        if t == "Split":
            return list(np.split(ins[0], int(d["num_splits"]), axis=int(np.asarray(ins[1]).reshape(()))))
        if t == "VariadicSplit":
            axis = int(np.asarray(ins[1]).reshape(()))
            sizes = [int(v) for v in ins[2]]
            if -1 in sizes:
                sizes[sizes.index(-1)] = ins[0].shape[axis] - (sum(sizes) + 1)
            return list(np.split(ins[0], np.cumsum(sizes)[:-1], axis=axis))
        if t == "Transpose":
            return [ins[0].transpose([int(v) for v in ins[1]])]
        if t == "Interpolate":
            out = layer.outputs[0].shape
            return [_np_resize(ins[0], (out[2], out[3]), d)]
        if t == "StridedSlice":
            stride = ins[3] if len(ins) > 3 else [1] * len(ins[1])
            return [_np_strided_slice(ins[0], ins[1], ins[2], stride, d)]
        if t == "ReduceMean":
            return [ins[0].mean(axis=tuple(int(a) for a in np.asarray(ins[1]).reshape(-1)),
                                keepdims=d.get("keep_dims", "false") == "true").astype(ins[0].dtype)]
        if t == "SoftMax":
            x = ins[0] - ins[0].max(axis=int(d["axis"]), keepdims=True)
            e = np.exp(x)
            return [e / e.sum(axis=int(d["axis"]), keepdims=True)]
        if t == "MatMul":
            a, b = ins
            if d.get("transpose_a") == "true" and a.ndim > 1:
                a = np.swapaxes(a, -1, -2)
            if d.get("transpose_b") == "true" and b.ndim > 1:
                b = np.swapaxes(b, -1, -2)
            return [np.matmul(a, b)]
        if t == "Squeeze":
            if len(ins) == 1:
                return [np.squeeze(ins[0])]
            return [np.squeeze(ins[0], axis=tuple(int(a) for a in np.asarray(ins[1]).reshape(-1)))]
        if t == "Unsqueeze":
            x = ins[0]
            for a in sorted(int(v) % (x.ndim + np.asarray(ins[1]).size) for v in np.asarray(ins[1]).reshape(-1)):
                x = np.expand_dims(x, a)
            return [x]
        if t == "Range":
            start, stop, step = (np.asarray(v).reshape(()) for v in ins)
            return [np.arange(start, stop, step).astype(_NP_TYPES[d.get("output_type", "f32")])]
        if t == "Broadcast":
            target = tuple(int(v) for v in ins[1])
            if d.get("mode", "numpy") == "bidirectional":
                target = np.broadcast_shapes(ins[0].shape, target)
            return [np.broadcast_to(ins[0], target).copy()]
        if t == "Gather":
            if int(d.get("batch_dims", "0")) != 0:
                raise ValueError(f"batch_dims {d['batch_dims']}")
            return [np.take(ins[0], ins[1].astype(np.int64), axis=int(np.asarray(ins[2]).reshape(())))]
    except (ValueError, KeyError, IndexError) as exc:
        _fail(ir, layer, str(exc))
    _fail(ir, layer, "the op is not supported")


# --- which layers to keep, what is static ------------------------------------------------------

def choose_outputs(ir: IRModel) -> tuple[list[tuple[int, int]], tuple[str, ...], str]:
    """The float results: (source per output, names, layout), as posekit.models.openvino_ir names them."""
    results = []
    for r in ir.results:
        (src,) = ir.sources(r)
        if r.inputs[0].precision.upper().startswith(("I", "U", "BOOL")):
            continue  # an argmax/TopK index output: decoding, done in posekit.ops
        results.append((src, r.inputs[0].shape))
    if len(results) == 1 and len(results[0][1]) == 4:
        return [results[0][0]], ("heatmaps",), HEATMAP_LAYOUT
    if len(results) == 2:
        boxes = [r for r in results if len(r[1]) == 3 and r[1][-1] == 4]
        scores = [r for r in results if len(r[1]) == 3 and r[1][1] == 1]
        if len(boxes) == 1 and len(scores) == 1:
            return [scores[0][0], boxes[0][0]], ("scores", "boxes"), PICODET_LAYOUT
    raise IRConversionError(f"{ir.xml_path}: expected one heatmap output or PicoDet's boxes and scores, "
                            f"found float outputs of shapes {[s for _, s in results]}")


def _needed(ir: IRModel, roots: list[int]) -> set[int]:
    seen, stack = set(), list(roots)
    while stack:
        i = stack.pop()
        if i not in seen:
            seen.add(i)
            stack.extend(src for src, _ in ir.sources(i))
    return seen


def run_ir_numpy(ir: IRModel, images: np.ndarray) -> dict[str, np.ndarray]:
    """The IR evaluated with numpy, image by image at its own batch 1: images (B, 3, H, W) -> {output: array}."""
    kept, names, _ = choose_outputs(ir)
    needed = _needed(ir, [k[0] for k in kept])
    layers = [l for l in ir.layers if l.id in needed and l.type != "Result"]
    param = ir.parameters[0].id
    results: list[list[np.ndarray]] = []
    static: dict[tuple[int, int], np.ndarray] = {}
    for image in images:
        values: dict[tuple[int, int], np.ndarray] = {(param, ir.parameters[0].outputs[0].id): image[None].astype(np.float32)}
        for layer in layers:
            if layer.type == "Parameter":
                continue
            srcs = ir.sources(layer)
            if layer.type == "Const" and (layer.id, layer.outputs[0].id) in static:
                continue
            outs = eval_layer(ir, layer, [values[s] if s in values else static[s] for s in srcs])
            target = static if layer.type == "Const" else values
            for port, out in zip(layer.outputs, outs):
                target[(layer.id, port.id)] = out
        results.append([np.asarray(values[k], np.float32) for k in kept])
    return {n: np.concatenate([r[i] for r in results]) for i, n in enumerate(names)}


# --- ONNX emission ------------------------------------------------------------------------------

_BINARY = {"Add": "Add", "Subtract": "Sub", "Multiply": "Mul", "Divide": "Div"}
_UNARY = {"ReLU": "Relu", "Sigmoid": "Sigmoid", "Sqrt": "Sqrt", "HSwish": "HardSwish"}


def _batch_reshape(ir: IRModel, layer: Layer, target: np.ndarray) -> np.ndarray:
    """A constant Reshape target made batch-agnostic (see the module docstring)."""
    out_shape, in_shape = layer.outputs[0].shape, layer.inputs[0].shape
    t = [int(v) for v in np.asarray(target).reshape(-1)]
    special_zero = layer.data.get("special_zero") == "true"
    if 0 in t and not special_zero:
        _fail(ir, layer, f"a literal 0 in the target {t}")
    if not t:
        return np.array(t, np.int64)
    if out_shape and out_shape[0] == 1:
        if t[0] == 0 and special_zero:
            pass
        elif -1 not in t:
            t[0] = -1
        elif in_shape and in_shape[0] == 1:
            t[0] = 0  # copy the input's batch
        else:
            _fail(ir, layer, f"{list(in_shape)} -> {t}: cannot tell where the batch goes")
    elif -1 not in t and in_shape and in_shape[0] == 1:
        t[0] = -1  # the batch merges into the first dim
    return np.array(t, np.int64)


def ir_to_onnx(ir: IRModel, batch: int | str = "dynamic", mean=None, std=None):
    """The ONNX ModelProto of `ir`: input ``images`` (B, 3, H, W) float32, outputs as `choose_outputs`.

    mean, std (0..255 units): when given, the graph normalises its 0..255 input itself.
    """
    from posekit.convert._onnx_graph import GraphBuilder

    kept, names, layout = choose_outputs(ir)
    params = ir.parameters
    if len(params) != 1 or len(params[0].outputs[0].shape) != 4:
        raise IRConversionError(f"{ir.xml_path}: expected one (1, 3, H, W) input, found {[p.outputs[0].shape for p in params]}")
    needed = _needed(ir, [k[0] for k in kept])
    layers = [l for l in ir.layers if l.id in needed]
    g = GraphBuilder()
    pkey = (params[0].id, params[0].outputs[0].id)
    x = "images"
    if mean is not None:
        x = g.node("Sub", [x, g.const(np.asarray(mean, np.float32).reshape(1, 3, 1, 1), "mean")], name="normalise_sub")
        x = g.node("Div", [x, g.const(np.asarray(std, np.float32).reshape(1, 3, 1, 1), "std")], name="normalise_div")
    live: dict[tuple[int, int], str] = {pkey: x}
    static: dict[tuple[int, int], np.ndarray] = {}

    def operand(key: tuple[int, int], layer: Layer) -> str:
        if key in live:
            return live[key]
        value = static[key]
        if value.dtype == np.float16:
            value = value.astype(np.float32)
        return g.const(value, f"{layer.name}/in")

    for layer in layers:
        if layer.type in ("Parameter", "Result"):
            continue
        srcs = ir.sources(layer)
        if layer.type == "ShapeOf" or not any(s in live for s in srcs):
            ins = [] if layer.type == "ShapeOf" else [static[s] for s in srcs]  # ShapeOf reads the IR's shape
            for port, out in zip(layer.outputs, eval_layer(ir, layer, ins)):
                static[(layer.id, port.id)] = out
            continue
        outs = _emit(g, ir, layer, srcs, static, operand)
        for port, out in zip(layer.outputs, outs):
            live[(layer.id, port.id)] = out

    missing = [k for k in kept if k not in live]
    if missing:
        raise IRConversionError(f"{ir.xml_path}: output(s) {missing} do not depend on the input")
    _, c, h, w = params[0].outputs[0].shape
    b = "batch" if batch == "dynamic" else int(batch)
    outputs = []
    for key, name in zip(kept, names):
        shape = list(ir.layer(key[0]).output(key[1]).shape)
        outputs.append((name, [b, *shape[1:]]))
    rename = {live[k]: n for k, n in zip(kept, names)}
    proto = g.model([("images", [b, c, h, w])], outputs, graph_name=Path(ir.xml_path).stem, rename=rename)
    return proto, layout


def _emit(g, ir: IRModel, layer: Layer, srcs, static, operand) -> list[str]:
    t, d, name = layer.type, layer.data, layer.name

    def inp(i: int) -> str:  # made on use, so constants only read at build time never become initializers
        return operand(srcs[i], layer)

    def const_in(i: int) -> np.ndarray:
        if srcs[i] not in static:
            _fail(ir, layer, f"input {i} depends on the image; the converter needs it constant")
        return static[srcs[i]]

    if t in _BINARY:
        return [g.node(_BINARY[t], [inp(0), inp(1)], name=name)]
    if t in _UNARY:
        return [g.node(_UNARY[t], [inp(0)], name=name)]
    if t == "Convert":
        if d["destination_type"] not in ("f32", "f16"):
            _fail(ir, layer, f"an image-dependent Convert to {d['destination_type']}")
        return [g.node("Identity", [inp(0)], name=name)]  # the graph computes in float32 throughout
    if t in ("Convolution", "GroupConvolution"):
        w = const_in(1).astype(np.float32)
        group = 1
        if t == "GroupConvolution":
            group, og, ig, kh, kw = w.shape
            w = w.reshape(group * og, ig, kh, kw)
        if d.get("auto_pad", "explicit") not in ("explicit", "notset", "valid"):
            _fail(ir, layer, f"auto_pad {d.get('auto_pad')}")
        pb, pe = _ints(d.get("pads_begin", "0,0")), _ints(d.get("pads_end", "0,0"))
        if d.get("auto_pad") == "valid":
            pb, pe = [0, 0], [0, 0]
        return [g.node("Conv", [inp(0), g.const(w, f"{name}/weight")], name=name, kernel_shape=list(w.shape[2:]),
                       strides=_ints(d.get("strides", "1,1")), dilations=_ints(d.get("dilations", "1,1")),
                       pads=[*pb, *pe], group=group)]
    if t == "HardSigmoid":
        alpha, beta = (float(np.asarray(const_in(i)).reshape(())) for i in (1, 2))
        return [g.node("HardSigmoid", [inp(0)], name=name, alpha=alpha, beta=beta)]
    if t == "Reshape":
        return [g.node("Reshape", [inp(0), g.const(_batch_reshape(ir, layer, const_in(1)), f"{name}/shape")], name=name)]
    if t == "Concat":
        return [g.node("Concat", [inp(i) for i in range(len(srcs))], name=name, axis=int(d["axis"]))]
    if t == "Split":
        axis = int(np.asarray(const_in(1)).reshape(()))
        n = int(d["num_splits"])
        size = layer.inputs[0].shape[axis] // n
        return g.node("Split", [inp(0), g.const(np.full(n, size, np.int64), f"{name}/sizes")], name=name, outputs=n, axis=axis)
    if t == "Transpose":
        return [g.node("Transpose", [inp(0)], name=name, perm=[int(v) for v in const_in(1)])]
    if t == "Interpolate":
        in_shape, out_shape = layer.inputs[0].shape, layer.outputs[0].shape
        if len(in_shape) != 4 or in_shape[:2] != out_shape[:2]:
            _fail(ir, layer, f"only height/width resizing, {in_shape} -> {out_shape}")
        if any(_ints(d.get("pads_begin", "0"))) or any(_ints(d.get("pads_end", "0"))):
            _fail(ir, layer, "padding")
        scales = np.array([1, 1, out_shape[2] / in_shape[2], out_shape[3] / in_shape[3]], np.float32)
        mode, ctm = d.get("mode"), d.get("coordinate_transformation_mode", "half_pixel")
        attrs = {"coordinate_transformation_mode": ctm}
        if mode == "nearest":
            if ctm != "asymmetric" or d.get("nearest_mode") not in ("floor", "simple") or (scales < 1).any():
                _fail(ir, layer, f"nearest {d.get('nearest_mode')} with {ctm}")
            attrs.update(mode="nearest", nearest_mode="floor")
        elif mode in ("linear", "linear_onnx", "bilinear"):
            attrs.update(mode="linear")
        else:
            _fail(ir, layer, f"mode {mode}")
        return [g.node("Resize", [inp(0), "", g.const(scales, f"{name}/scales")], name=name, **attrs)]
    if t == "ReduceMean":
        axes = [int(a) for a in np.asarray(const_in(1)).reshape(-1)]
        return [g.node("ReduceMean", [inp(0)], name=name, axes=axes, keepdims=int(d.get("keep_dims", "false") == "true"))]
    if t == "SoftMax":
        return [g.node("Softmax", [inp(0)], name=name, axis=int(d["axis"]))]
    if t == "MatMul":
        a, b = inp(0), inp(1)
        for flag, idx in (("transpose_a", 0), ("transpose_b", 1)):
            if d.get(flag) == "true":
                rank = len(layer.inputs[idx].shape)
                if rank > 1:
                    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
                    moved = g.node("Transpose", [(a, b)[idx]], name=f"{name}/{flag}", perm=perm)
                    a, b = (moved, b) if idx == 0 else (a, moved)
        return [g.node("MatMul", [a, b], name=name)]
    if t in ("Squeeze", "Unsqueeze"):
        if len(srcs) == 1:
            return [g.node(t, [inp(0)], name=name)]
        axes = np.asarray(const_in(1), np.int64).reshape(-1)
        return [g.node(t, [inp(0), g.const(axes, f"{name}/axes")], name=name)]
    if t == "Gather":
        if int(d.get("batch_dims", "0")) != 0:
            _fail(ir, layer, f"batch_dims {d['batch_dims']}")
        indices = g.const(np.asarray(const_in(1), np.int64), f"{name}/indices") if srcs[1] in static else inp(1)
        return [g.node("Gather", [inp(0), indices], name=name, axis=int(np.asarray(const_in(2)).reshape(())))]
    _fail(ir, layer, "the op is not supported on image-dependent tensors")


def convert_ir(spec, paths, batch: int | str = "dynamic", spatial: str = "fixed"):
    """posekit.convert's entry for the ``openvino`` format: a checked-ready `Conversion`."""
    if spatial != "fixed":
        raise ValueError(f"{spec.name}: an OpenVINO IR converts at its own input size only (spatial='fixed'); "
                         f"its resize sizes and anchor grids are folded for {spec.input_size[0]}x{spec.input_size[1]}")
    xml = next((Path(p) for p in paths if Path(p).suffix == ".xml"), None)
    binf = next((Path(p) for p in paths if Path(p).suffix == ".bin"), None)
    if xml is None:
        raise IRConversionError(f"{spec.name}: expected an OpenVINO .xml among its files, found {[Path(p).name for p in paths]}")
    ir = load_ir(xml, binf)
    h, w = ir.parameters[0].outputs[0].shape[2:] if ir.parameters else (None, None)
    if (h, w) != tuple(spec.input_size):
        raise IRConversionError(f"{xml} declares a {h}x{w} input, {spec.name} expects "
                                f"{spec.input_size[0]}x{spec.input_size[1]}: these are another model's files")
    inside = bool(spec.options.get("normalise_inside"))
    proto, layout = ir_to_onnx(ir, batch=batch, mean=spec.mean if inside else None, std=spec.std if inside else None)
    names = tuple(o.name for o in proto.graph.output)
    want = ("heatmaps",) if spec.task == "pose" else ("scores", "boxes")
    if names != want:
        raise IRConversionError(f"{xml} gives outputs {names}, {spec.name} ({spec.task}) expects {want}: "
                                "these are another model's files")
    mean = np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(1, 3, 1, 1)

    def reference(images: np.ndarray) -> dict[str, np.ndarray]:
        # the numpy run takes what the IR takes: normalised pixels (the runner's job, or the graph's)
        return run_ir_numpy(ir, ((images - mean) / std).astype(np.float32) if inside else images)

    return Conversion(proto, reference, "numpy evaluation of the OpenVINO IR (its own batch 1, OpenVINO semantics)",
                      layout, "posekit.convert.openvino_onnx", normalises_inside=inside)
