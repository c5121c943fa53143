"""TensorFlow.js graph model -> ONNX, with numpy and the `onnx` package alone (no TensorFlow, no torch).

Google's MoveNet graphs run from an int32 NHWC image to decoded keypoints. posekit keeps the
network and does the decoding itself (`posekit.ops.movenet`), so the converter cuts the graph:

- at the input, after the batch-1 plumbing that follows the placeholder (``Cast``, ``Unpack``,
  ``ExpandDims``, ``Squeeze``: identities at batch 1), which becomes one NCHW float32 0..255
  input ``images`` with a dynamic batch;
- at the heads: for each head, the last convolution of its TF name scope (``center_0``,
  ``kpt_heatmap_0``, ...), through the ``Sigmoid`` that follows it where the head is a heatmap.

Everything between is translated op by op to ONNX in NCHW layout (TF's NHWC constants are
transposed once): ``_FusedConv2D`` and the depthwise convolutions (TF 'SAME' padding: extra
pixel after, as ONNX ``SAME_UPPER``), element-wise arithmetic, ReLU/ReLU6/sigmoid, and
``ResizeBilinear`` (half-pixel centres) as ``Resize`` by a fixed scale, so that any input whose
sides are multiples of 32 runs. An op outside that set fails naming the node and the file.
ONNX nodes are named as posekit's torch export names them (``/stem/Conv``, ``/lateral.0/Conv``,
``/heatmaps/out/Conv``, ``/Resize``...), so name-based rules written for that export (which nodes
INT8 keeps in float) select the same nodes here.

`run_tfjs_numpy` evaluates the same TF nodes with numpy in TF's own NHWC layout and semantics:
the independent computation every conversion is checked against before it is written.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posekit.ops.movenet import OUTPUT_LAYOUT, tfjs_layer, tfjs_short_name
from posekit.ops.multipose import OUTPUT_LAYOUT as MULTIPOSE_LAYOUT
from posekit.tfjs import GraphModel, Node

log = logging.getLogger(__name__)


class TfjsConversionError(ValueError):
    """A TF.js graph holds something the converter does not translate."""


@dataclass(frozen=True)
class Head:
    """One raw output: `name` in the ONNX file, the TF name scope of its last convolution, and
    whether the graph applies a sigmoid to it."""

    name: str
    scope: str
    sigmoid: bool


MOVENET_HEADS = (
    Head("centre", "center_0", True),
    Head("heatmaps", "kpt_heatmap_0", True),
    Head("regression", "kpt_regress_0", False),
    Head("offsets", "kpt_offset_0", False),
)
# MultiPose adds the box heads (boxes are decoded from them in Google's graph).
MULTIPOSE_HEADS = MOVENET_HEADS + (
    Head("box_scale", "box_scale_0", False),
    Head("box_offset", "box_offset_0", False),
)

_HEAD_NAMES = {h.scope: h.name for h in MULTIPOSE_HEADS}
# registry family -> (heads, output layout recorded in the metadata)
HEADS_BY_FAMILY = {
    "movenet": (MOVENET_HEADS, OUTPUT_LAYOUT),
    "movenet_multipose": (MULTIPOSE_HEADS, MULTIPOSE_LAYOUT),
}

# ops that are identities on the batch-1 image between the placeholder and the network
_PLUMBING = ("Cast", "Unpack", "ExpandDims", "Squeeze", "Identity")
_BINARY = {"AddV2": "Add", "Add": "Add", "Sub": "Sub", "Mul": "Mul", "RealDiv": "Div", "Maximum": "Max", "Minimum": "Min"}
_FUSED = {(): None, ("BiasAdd",): None, ("BiasAdd", "Relu"): "Relu", ("BiasAdd", "Relu6"): "Relu6"}


# ONNX node names in the style of posekit's torch export (module path, then the op), so that name-based
# rules written for that export (families.movenet.FLOAT_PREFIXES: which nodes INT8 keeps in float) hold
# for the converted graph too: convolutions by `conv_path`, other ops by this table (TF name, scopes
# stripped -> node name).
_OP_NAMES = (
    (r"sub", lambda m: "Sub"),  # the input normalisation: (x - mean) * scale - 1
    (r"truediv_1", lambda m: "Mul"),
    (r"sub_1", lambda m: "Sub_1"),
    (r"model/block_(\d+)_add/add", lambda m: f"blocks.{m[1]}/Add"),
    (r"up_sampling2d(_\d)?/resize/ResizeBilinear", lambda m: f"Resize{m[1] or ''}"),
    (r"tf\.__operators__\.add(_\d)?/AddV2", lambda m: f"Add{m[1] or ''}"),
    (r"Sigmoid(_\d)?", lambda m: f"Sigmoid{m[1] or ''}"),
)


def conv_path(tf_name: str) -> str | None:
    """The torch export's module path for a TF convolution node, e.g. ``blocks.3/expand`` or
    ``centre/out``; None if unknown (then the TF name is kept). The layer comes from the family's
    table (`posekit.ops.movenet.tfjs_layer`), the names the torch loader uses."""
    layer = tfjs_layer(tf_name, _HEAD_NAMES)
    if layer is None:
        return None
    parts = layer.removeprefix("heads.").split(".")
    return parts[0] + "".join(("." if p.isdigit() else "/") + p for p in parts[1:])


def op_name(tf_name: str) -> str:
    """The ONNX name for a non-convolution TF node: the torch export's where known, else the TF name."""
    short = tfjs_short_name(tf_name)
    for pattern, name in _OP_NAMES:
        match = re.fullmatch(pattern, short)
        if match:
            return "/" + name(match)
    return tf_name


def _source(ref: str) -> tuple[str, int]:
    name, _, index = ref.partition(":")
    return name, int(index or 0)


@dataclass
class CutGraph:
    """The part of a TF.js graph between the image and the heads."""

    graph: GraphModel
    image: str  # TF tensor that holds the (1, H, W, 3) float image
    heads: dict[str, str]  # ONNX output name -> TF tensor
    nodes: list[Node]  # topological order, the image's producers excluded
    input_hw: tuple[int, int]  # nominal input size (the declared one, or `default_hw` where dynamic)


def cut_graph(graph: GraphModel, heads: tuple[Head, ...], default_hw: tuple[int, int]) -> CutGraph:
    """Find the image tensor and the head tensors, and the nodes between them."""
    by_name = {n.name: n for n in graph.nodes}
    consumers: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for ref in n.inputs:
            if not ref.startswith("^"):  # control edges (constant folding leaves some) carry no data
                consumers.setdefault(_source(ref)[0], []).append(n)
    placeholders = graph.by_op("Placeholder")
    if len(placeholders) != 1:
        raise TfjsConversionError(f"{graph.path}: expected one input placeholder, found {len(placeholders)}")
    shape = placeholders[0].attrs.get("shape") or (1, -1, -1, 3)
    if len(shape) != 4 or shape[3] != 3:
        raise TfjsConversionError(f"{graph.path}: expected a (1, H, W, 3) image input, found shape {shape}")
    input_hw = tuple(int(s) if s and s > 0 else d for s, d in zip(shape[1:3], default_hw))

    # Follow the plumbing while each step has one consumer; the image is the last rank-4 tensor.
    image, current, rank = placeholders[0].name, placeholders[0].name, 4
    while len(consumers.get(current, [])) == 1:
        nxt = consumers[current][0]
        if nxt.op not in _PLUMBING:
            break
        if nxt.op == "Cast" and nxt.attrs.get("DstT") != "float32":
            break
        if nxt.op == "Unpack":
            if nxt.attrs.get("axis") != 0 or nxt.attrs.get("num") != 1:
                break
            rank -= 1
        elif nxt.op == "ExpandDims":
            dim = int(np.asarray(graph.weights.get(nxt.inputs[1], -1)).ravel()[0])
            if dim != 0:
                break
            rank += 1
        elif nxt.op == "Squeeze":
            if list(nxt.attrs.get("squeeze_dims", [])) != [0]:
                break
            rank -= 1
        current = nxt.name
        if rank == 4:
            image = current

    outputs: dict[str, str] = {}
    for head in heads:
        pattern = re.compile(rf"(?:.*/)?{re.escape(head.scope)}/conv2d_\d+/BiasAdd")
        convs = [n for n in graph.nodes if n.op == "_FusedConv2D" and pattern.fullmatch(n.name)]
        if len(convs) != 1:
            raise TfjsConversionError(
                f"{graph.path}: expected one output convolution in scope {head.scope!r} for head {head.name}, "
                f"found {len(convs)}"
            )
        tensor = convs[0].name
        if head.sigmoid:
            sig = [n for n in consumers.get(tensor, []) if n.op == "Sigmoid"]
            if len(sig) != 1:
                raise TfjsConversionError(f"{graph.path}: expected a Sigmoid after {tensor}, found {len(sig)}")
            tensor = sig[0].name
        outputs[head.name] = tensor

    # Depth-first from the heads back to the image: the nodes to translate, in order.
    order: list[Node] = []
    state: dict[str, int] = {}
    stack = [(t, False) for t in reversed(list(outputs.values()))]
    while stack:
        name, done = stack.pop()
        if done:
            state[name] = 2
            order.append(by_name[name])
            continue
        if state.get(name) or name == image:
            continue
        node = by_name[name]
        if node.op == "Placeholder":
            raise TfjsConversionError(f"{graph.path}: {name} reads the raw input, not the image at {image}")
        state[name] = 1
        stack.append((name, True))
        if node.op == "Const":
            continue
        # a resize's size is read by `resize_factor`, not translated
        for ref in node.inputs[:1] if node.op == "ResizeBilinear" else node.inputs:
            if ref.startswith("^"):
                continue
            src = _source(ref)[0]
            if not state.get(src) and src != image:
                stack.append((src, False))
    return CutGraph(graph=graph, image=image, heads=outputs, nodes=order, input_hw=input_hw)


def _layout_const(value: np.ndarray, node: Node, path) -> np.ndarray:
    """An NHWC-broadcasting constant as the NCHW one."""
    value = np.asarray(value, dtype=np.float32)
    if value.ndim == 0 or value.size == 1:
        return value.reshape(())
    if value.ndim == 1:
        return value.reshape(-1, 1, 1)
    if value.ndim == 4:
        return value.transpose(0, 3, 1, 2)
    raise TfjsConversionError(f"{path}: {node.name} ({node.op}) has a constant of shape {value.shape}; expected scalar, (C,) or 4-D")


def _same_pads(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class _Converter:
    def __init__(self, cut: CutGraph) -> None:
        from posekit.convert._onnx_graph import GraphBuilder

        self.cut = cut
        self.path = cut.graph.path
        self.weights = cut.graph.weights
        self.by_name = {n.name: n for n in cut.graph.nodes}
        self.g = GraphBuilder()
        self.tensors: dict[str, str] = {}  # TF tensor -> ONNX tensor
        self.shapes: dict[str, tuple[int, ...]] = {}  # TF tensor -> nominal NCHW shape (batch 1)

    def fail(self, node: Node, why: str):
        raise TfjsConversionError(f"{self.path}: cannot convert {node.op} node {node.name!r}: {why}")

    def run(self) -> None:
        h, w = self.cut.input_hw
        self.tensors[self.cut.image] = "images"
        self.shapes[self.cut.image] = (1, 3, h, w)
        for node in self.cut.nodes:
            if node.op == "Const":
                continue
            handler = getattr(self, f"op_{node.op}", None)
            if handler is None:
                self.fail(node, "this op is not supported between the input and the heads")
            handler(node)

    def operand(self, ref: str, node: Node) -> str:
        name, index = _source(ref)
        if name in self.weights:
            return self.g.const(_layout_const(self.weights[name], node, self.path), name.rsplit("/", 1)[-1])
        key = name if index == 0 else ref
        if key not in self.tensors:
            self.fail(node, f"input {ref} was not converted")
        return self.tensors[key]

    def shape_of(self, ref: str) -> tuple[int, ...]:
        name, _ = _source(ref)
        if name in self.weights:
            return _layout_const(self.weights[name], self.by_name[name], self.path).shape
        return self.shapes[name]

    def emit(self, node: Node, out: str, shape: tuple[int, ...]) -> None:
        self.tensors[node.name] = out
        self.shapes[node.name] = tuple(shape)

    # --- ops -------------------------------------------------------------------------------------

    def _conv(self, node: Node, depthwise: bool) -> None:
        if node.attrs.get("data_format", "NHWC") != "NHWC":
            self.fail(node, f"data_format {node.attrs.get('data_format')}")
        fused = tuple(node.attrs.get("fused_ops", []))
        if fused not in _FUSED:
            self.fail(node, f"fused ops {list(fused)}")
        x = self.operand(node.inputs[0], node)
        n, c, h, w = self.shapes[_source(node.inputs[0])[0]]
        kernel = self.weights.get(node.inputs[1])
        if kernel is None:
            self.fail(node, "its kernel is not a constant")
        kh, kw = kernel.shape[:2]
        if depthwise:  # (kh, kw, C, multiplier) -> (C * multiplier, 1, kh, kw)
            cout = kernel.shape[2] * kernel.shape[3]
            weight = kernel.transpose(2, 3, 0, 1).reshape(cout, 1, kh, kw)
            group = kernel.shape[2]
        else:  # (kh, kw, in, out) -> (out, in, kh, kw)
            cout, weight, group = kernel.shape[3], kernel.transpose(3, 2, 0, 1), 1
        strides = node.attrs.get("strides", [1, 1, 1, 1])[1:3]
        dilations = node.attrs.get("dilations", [1, 1, 1, 1])[1:3]
        attrs = {"kernel_shape": [kh, kw], "strides": strides, "dilations": dilations, "group": group}
        padding = node.attrs.get("padding", "VALID")
        if padding == "SAME":
            (t, b), (l, r) = (_same_pads(s, k, st, d) for s, k, st, d in zip((h, w), (kh, kw), strides, dilations))
            if t == b and l == r:
                attrs["pads"] = [t, l, b, r]
            else:  # TF puts the odd pixel after, as SAME_UPPER does, at any input size
                attrs["auto_pad"] = "SAME_UPPER"
            oh, ow = math.ceil(h / strides[0]), math.ceil(w / strides[1])
        elif padding == "VALID":
            attrs["pads"] = [0, 0, 0, 0]
            oh = math.ceil((h - (kh - 1) * dilations[0]) / strides[0])
            ow = math.ceil((w - (kw - 1) * dilations[1]) / strides[1])
        else:
            self.fail(node, f"padding {padding}")
        inputs = [x, self.g.const(np.ascontiguousarray(weight, dtype=np.float32), f"{node.name}/weight")]
        if fused:
            inputs.append(self.g.const(self.weights[node.inputs[2]].astype(np.float32), f"{node.name}/bias"))
        path = conv_path(node.name)
        conv_name, parent = (f"/{path}/Conv", "/" + path.rsplit("/", 1)[0] + "/" if "/" in path else "/") if path else (
            node.name + ("/conv" if _FUSED[fused] else ""), node.name + "/")
        y = self.g.node("Conv", inputs, name=conv_name, **attrs)
        if _FUSED[fused] == "Relu":
            y = self.g.node("Relu", [y], name=parent + "Relu")
        elif _FUSED[fused] == "Relu6":
            y = self.g.node("Clip", [y, self.g.const(np.float32(0), "zero"), self.g.const(np.float32(6), "six")], name=parent + "Clip")
        self.emit(node, y, (n, cout, oh, ow))

    def op__FusedConv2D(self, node: Node) -> None:
        self._conv(node, depthwise=False)

    def op_FusedDepthwiseConv2dNative(self, node: Node) -> None:
        self._conv(node, depthwise=True)

    def op_DepthwiseConv2dNative(self, node: Node) -> None:
        self._conv(node, depthwise=True)

    def _binary(self, node: Node) -> None:
        a, b = (self.operand(r, node) for r in node.inputs[:2])
        shape = np.broadcast_shapes(*(self.shape_of(r) for r in node.inputs[:2]))
        self.emit(node, self.g.node(_BINARY[node.op], [a, b], name=op_name(node.name)), shape)

    op_AddV2 = op_Add = op_Sub = op_Mul = op_RealDiv = op_Maximum = op_Minimum = _binary

    def _unary(self, node: Node, op: str, **attrs) -> None:
        self.emit(node, self.g.node(op, [self.operand(node.inputs[0], node)], name=op_name(node.name), **attrs),
                  self.shape_of(node.inputs[0]))

    def op_Relu(self, node: Node) -> None:
        self._unary(node, "Relu")

    def op_Sigmoid(self, node: Node) -> None:
        self._unary(node, "Sigmoid")

    def op_Identity(self, node: Node) -> None:
        self._unary(node, "Identity")

    def op_Relu6(self, node: Node) -> None:
        x = self.operand(node.inputs[0], node)
        y = self.g.node("Clip", [x, self.g.const(np.float32(0), "zero"), self.g.const(np.float32(6), "six")], name=node.name)
        self.emit(node, y, self.shape_of(node.inputs[0]))

    def op_ResizeBilinear(self, node: Node) -> None:
        n, c, h, w = self.shapes[_source(node.inputs[0])[0]]
        factor = resize_factor(self.cut.graph, node, (h, w))
        if node.attrs.get("align_corners"):
            self.fail(node, "align_corners=True (a resize by a fixed scale cannot express it at every input size)")
        mode = "half_pixel" if node.attrs.get("half_pixel_centers") else "asymmetric"
        scales = self.g.const(np.array([1, 1, *factor], np.float32), "scales")
        y = self.g.node("Resize", [self.operand(node.inputs[0], node), "", scales], name=op_name(node.name), mode="linear",
                        coordinate_transformation_mode=mode)
        self.emit(node, y, (n, c, round(h * factor[0]), round(w * factor[1])))


def resize_factor(graph: GraphModel, node: Node, nominal_hw: tuple[int, int]) -> tuple[float, float]:
    """(fy, fx) by which a ResizeBilinear scales its input.

    Its size is either a constant (folded for the declared input size: divided by the input's
    size there) or ``Shape(x)[1:3] * c`` of its own input (MultiPose, any input size): then `c`.
    """
    by_name = {n.name: n for n in graph.nodes}
    src = _source(node.inputs[1])[0]
    if src in graph.weights:
        size = np.asarray(graph.weights[src], np.float64).ravel()
        return float(size[0] / nominal_hw[0]), float(size[1] / nominal_hw[1])
    mul = by_name[src]
    if mul.op == "Mul":
        consts = [_source(r)[0] for r in mul.inputs if _source(r)[0] in graph.weights]
        others = [by_name[_source(r)[0]] for r in mul.inputs if _source(r)[0] not in graph.weights]
        if len(consts) == 1 and len(others) == 1 and others[0].op == "StridedSlice":
            shape_node = by_name[_source(others[0].inputs[0])[0]]
            begin = np.asarray(graph.weights.get(others[0].inputs[1], [-1])).ravel()
            end = np.asarray(graph.weights.get(others[0].inputs[2], [-1])).ravel()
            if (shape_node.op == "Shape" and shape_node.inputs[0] == node.inputs[0]
                    and begin.tolist() == [1] and end.tolist() == [3]):
                c = np.asarray(graph.weights[consts[0]], np.float64).ravel()
                c = np.broadcast_to(c, (2,))
                return float(c[0]), float(c[1])
    raise TfjsConversionError(
        f"{graph.path}: cannot tell the scale of {node.name}: its size is neither a constant nor Shape(input)[1:3] * c"
    )


def tfjs_to_onnx(graph: GraphModel, heads: tuple[Head, ...], default_hw: tuple[int, int], batch: int | str = "dynamic",
                 spatial: str = "fixed"):
    """The ONNX ModelProto of `graph` cut at `heads`: input ``images`` (B, 3, H, W) float32 RGB 0..255.

    batch "dynamic" or an int; spatial "fixed" (the declared or `default_hw` size) or "dynamic"
    (any height and width, multiples of 32 for MoveNet).
    """
    cut = cut_graph(graph, heads, default_hw)
    conv = _Converter(cut)
    conv.run()
    h, w = cut.input_hw
    b = "batch" if batch == "dynamic" else int(batch)
    hh, ww = ("height", "width") if spatial == "dynamic" else (h, w)
    outputs, rename = [], {}
    for name, tensor in cut.heads.items():
        _, c, oh, ow = conv.shapes[tensor]
        rename[conv.tensors[tensor]] = name
        outputs.append((name, [b, c, *(("out_height", "out_width") if spatial == "dynamic" else (oh, ow))]))
    return conv.g.model([("images", [b, 3, hh, ww])], outputs, graph_name=Path(graph.path).parent.name, rename=rename), cut


# --- the independent check: the same TF nodes evaluated with numpy, NHWC, TF semantics -------------

def _tf_pad_same(x: np.ndarray, k: tuple[int, int], strides, dilations) -> np.ndarray:
    pads = [_same_pads(s, kk, st, d) for s, kk, st, d in zip(x.shape[1:3], k, strides, dilations)]
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def _np_conv(x: np.ndarray, kernel: np.ndarray, strides, dilations, padding: str, depthwise: bool) -> np.ndarray:
    """TF Conv2D / DepthwiseConv2dNative on NHWC float32 with HWIO / HWCM kernels."""
    kh, kw = kernel.shape[:2]
    if padding == "SAME":
        x = _tf_pad_same(x, (kh, kw), strides, dilations)
    n, h, w, c = x.shape
    oh = (h - (kh - 1) * dilations[0] - 1) // strides[0] + 1
    ow = (w - (kw - 1) * dilations[1] - 1) // strides[1] + 1
    out = None
    for i in range(kh):
        for j in range(kw):
            y0, x0 = i * dilations[0], j * dilations[1]
            tap = x[:, y0:y0 + (oh - 1) * strides[0] + 1:strides[0], x0:x0 + (ow - 1) * strides[1] + 1:strides[1], :]
            if depthwise:  # (kh, kw, C, M): output channel c*M + m
                term = (tap[..., :, None] * kernel[i, j][None, None, None]).reshape(n, oh, ow, -1)
            else:  # one (N*H*W, C) @ (C, O) product on a contiguous copy: BLAS's fast path
                term = (np.ascontiguousarray(tap).reshape(-1, c) @ kernel[i, j]).reshape(n, oh, ow, -1)
            out = term if out is None else out + term
    return out.astype(np.float32)


def _np_resize_bilinear(x: np.ndarray, size: tuple[int, int], half_pixel: bool) -> np.ndarray:
    """TF ResizeBilinear (align_corners False): half-pixel or asymmetric sampling, edges clamped."""
    def weights(out_n: int, in_n: int):
        scale = in_n / out_n
        pos = (np.arange(out_n) + 0.5) * scale - 0.5 if half_pixel else np.arange(out_n) * scale
        lo = np.floor(pos)
        frac = (pos - lo).astype(np.float32)
        lo_i = np.clip(lo.astype(int), 0, in_n - 1)
        hi_i = np.clip(lo.astype(int) + 1, 0, in_n - 1)
        return lo_i, hi_i, frac

    (ty, by, fy), (lx, rx, fx) = weights(size[0], x.shape[1]), weights(size[1], x.shape[2])
    top = x[:, ty][:, :, lx] * (1 - fx)[None, None, :, None] + x[:, ty][:, :, rx] * fx[None, None, :, None]
    bottom = x[:, by][:, :, lx] * (1 - fx)[None, None, :, None] + x[:, by][:, :, rx] * fx[None, None, :, None]
    return (top * (1 - fy)[None, :, None, None] + bottom * fy[None, :, None, None]).astype(np.float32)


def run_tfjs_numpy(cut: CutGraph, images: np.ndarray) -> dict[str, np.ndarray]:
    """The cut graph evaluated with numpy: images (B, 3, H, W) float32 RGB 0..255 -> {head: (B, C, h, w)}.

    Independent of the ONNX translation: TF's NHWC layout and kernels as stored, TF's own 'SAME'
    padding and resize arithmetic. Resizes by a folded constant size scale with the input.
    """
    graph, weights = cut.graph, cut.graph.weights
    ratio = (images.shape[2] / cut.input_hw[0], images.shape[3] / cut.input_hw[1])  # versus the nominal size
    values: dict[str, np.ndarray] = {cut.image: np.ascontiguousarray(images.transpose(0, 2, 3, 1), dtype=np.float32)}

    def get(ref: str) -> np.ndarray:
        name = _source(ref)[0]
        return weights[name].astype(np.float32) if name in weights else values[name]

    for node in cut.nodes:
        op, a = node.op, node.attrs
        if op == "Const":
            continue
        if op in ("_FusedConv2D", "FusedDepthwiseConv2dNative", "DepthwiseConv2dNative"):
            y = _np_conv(get(node.inputs[0]), weights[node.inputs[1]].astype(np.float32), a["strides"][1:3],
                         a.get("dilations", [1, 1, 1, 1])[1:3], a["padding"], depthwise=op != "_FusedConv2D")
            fused = a.get("fused_ops", [])
            if "BiasAdd" in fused:
                y = y + weights[node.inputs[2]].astype(np.float32)
            if "Relu" in fused:
                y = np.maximum(y, 0)
            if "Relu6" in fused:
                y = np.clip(y, 0, 6)
        elif op in ("AddV2", "Add"):
            y = get(node.inputs[0]) + get(node.inputs[1])
        elif op == "Sub":
            y = get(node.inputs[0]) - get(node.inputs[1])
        elif op == "Mul":
            y = get(node.inputs[0]) * get(node.inputs[1])
        elif op == "RealDiv":
            y = get(node.inputs[0]) / get(node.inputs[1])
        elif op == "Maximum":
            y = np.maximum(get(node.inputs[0]), get(node.inputs[1]))
        elif op == "Minimum":
            y = np.minimum(get(node.inputs[0]), get(node.inputs[1]))
        elif op == "Relu":
            y = np.maximum(get(node.inputs[0]), 0)
        elif op == "Relu6":
            y = np.clip(get(node.inputs[0]), 0, 6)
        elif op == "Sigmoid":
            with np.errstate(over="ignore"):  # exp overflow -> inf -> sigmoid 0, as intended
                y = 1 / (1 + np.exp(-get(node.inputs[0])))
        elif op == "Identity":
            y = get(node.inputs[0])
        elif op == "ResizeBilinear":
            x = get(node.inputs[0])
            fy, fx = resize_factor(graph, node, (x.shape[1] / ratio[0], x.shape[2] / ratio[1]))
            y = _np_resize_bilinear(x, (round(x.shape[1] * fy), round(x.shape[2] * fx)), bool(a.get("half_pixel_centers")))
        else:
            raise TfjsConversionError(f"{graph.path}: the numpy check does not evaluate {op} ({node.name})")
        values[node.name] = np.asarray(y, dtype=np.float32)
    return {name: values[t].transpose(0, 3, 1, 2) for name, t in cut.heads.items()}


