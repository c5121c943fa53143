"""Run an OpenVINO IR graph (read by `posekit.openvino`) as a torch module: PP-TinyPose and PicoDet.

The IR is interpreted layer by layer with torch ops. Everything that does not depend on the
input's values (Const layers, fp16 -> fp32 decompression, ShapeOf and the shape arithmetic
behind Reshape targets, Interpolate sizes and PicoDet's anchor-point grids) is evaluated once at
build time from the IR's static shapes and kept as buffers (float weights as float32) or as
Python ints; `forward` runs only the layers that depend on the image.

Batch: the IR was exported with batch 1 baked into its shapes. Here a leading dim 1 of a tensor
computed from the input is taken to be the batch: a Reshape whose IR output starts with that 1
gets -1 (or the live batch, when the target has a -1 elsewhere) in its place, so the module runs
any batch size, and `torch.onnx.export` (TorchScript, dynamo=False) with a dynamic batch axis
gives a graph that does too. Height and width stay the IR's (its grids and resize sizes are
folded).

Input: exactly the IR's ``image``: (B, 3, H, W) float32, RGB, pixels/255 then ImageNet mean
(0.485, 0.456, 0.406) / std (0.229, 0.224, 0.225), i.e. (pixel - 255*mean) / (255*std).
Normalisation is not in the graph (give `mean`/`std` in 0..255 units to fold it in).

Outputs (`output_names`, `output_layout`):
    PP-TinyPose: ("heatmaps",) (B, 17, H/4, W/4), COCO-17 order; the IR's argmax output is a
                 decoding step and is dropped (decode with `posekit.ops.heatmaps`).
    PicoDet:     ("scores", "boxes"): scores (B, 1, N) sigmoid person score per anchor point,
                 boxes (B, N, 4) x0, y0, x1, y1 in input pixels; the order of the reference ONNX
                 conversion. No NMS (`posekit.ops.picodet.postprocess_picodet`).

    net = IRNetwork.from_files("tinypose-256x192/model.xml")
    heatmaps = net(images)          # a tensor when there is one output, else a tuple
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from posekit import registry
from posekit.openvino import IRModel, Layer, ir_files, load_ir

log = logging.getLogger(__name__)

HEATMAP_LAYOUT = "heatmaps (B,17,H/4,W/4) keypoint heatmaps, COCO-17 order (decode: argmax + DARK)"
PICODET_LAYOUT = ("scores (B,1,N) sigmoid person score per anchor point; "
                  "boxes (B,N,4) x0,y0,x1,y1 in input pixels; no NMS")


class ArchitectureMismatch(ValueError):
    """An IR does not fit the network it was asked to be."""


class UnsupportedLayer(NotImplementedError):
    """The IR uses an operation (or an attribute value) this interpreter does not implement."""


_TORCH_DTYPES = {
    "f32": torch.float32, "f16": torch.float32,  # fp16 computed in float32 here
    "f64": torch.float64, "bf16": torch.float32,
    "i64": torch.int64, "i32": torch.int64, "i16": torch.int64, "i8": torch.int64,  # ints: int64 (shape maths)
    "u8": torch.int64, "u16": torch.int64, "u32": torch.int64, "u64": torch.int64,
    "boolean": torch.bool,
}


def _ints(text: str) -> list[int]:
    return [int(s) for s in text.replace(" ", "").split(",") if s != ""] if text else []


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    if arr.dtype == np.uint64:  # u64 axes such as 2**64-1 mean -1
        arr = arr.view(np.int64)
    if arr.dtype.kind == "f":
        arr = arr.astype(np.float32)
    elif arr.dtype.kind in "iu":
        arr = arr.astype(np.int64)
    return torch.from_numpy(np.ascontiguousarray(arr))


# --- ops: f(net, layer, ins, consts) -> list of outputs ----------------------------------------
# ins: torch tensors for every input port; consts: numpy arrays for inputs known at build time
# (None for inputs that depend on the image).

def _const_ints(layer: Layer, consts, i: int, what: str) -> list[int]:
    c = consts[i]
    if c is None:
        raise UnsupportedLayer(f"{layer.type} {layer.name!r}: its {what} depends on the input; only build-time {what}s are supported")
    return [int(v) for v in np.asarray(c).reshape(-1)]


def _conv(net, layer, ins, consts, groups_from_weight=False):
    x, w = ins
    d = layer.data
    strides, dil = _ints(d.get("strides", "")), _ints(d.get("dilations", ""))
    pb, pe = _ints(d.get("pads_begin", "")), _ints(d.get("pads_end", ""))
    groups = 1
    if groups_from_weight:
        groups = w.shape[0]
        w = w.reshape(w.shape[0] * w.shape[1], *w.shape[2:])
    auto = d.get("auto_pad", "explicit")
    if auto == "valid":
        pb = pe = [0] * (w.dim() - 2)
    elif auto in ("same_upper", "same_lower"):
        in_hw = layer.inputs[0].shape[2:]
        pb, pe = [], []
        for size, k, s, dl in zip(in_hw, w.shape[2:], strides, dil):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * dl + 1 - size, 0)
            small, big = total // 2, total - total // 2
            pb.append(small if auto == "same_upper" else big)
            pe.append(big if auto == "same_upper" else small)
    if w.dim() != 4:
        raise UnsupportedLayer(f"{layer.type} {layer.name!r}: only 2-D convolutions, got a {w.dim()}-D weight")
    if pb == pe:
        return [F.conv2d(x, w, None, strides, pb, dil, groups)]
    x = F.pad(x, (pb[1], pe[1], pb[0], pe[0]))
    return [F.conv2d(x, w, None, strides, 0, dil, groups)]


def _reshape(net, layer, ins, consts):
    x = ins[0]
    target = list(_const_ints(layer, consts, 1, "target shape"))
    if layer.data.get("special_zero", "false") == "true":
        target = [x.shape[i] if t == 0 else t for i, t in enumerate(target)]
    fix = net._batch_fix.get(layer.id)
    if fix == "minus1":
        target[0] = -1
    elif fix == "live":
        target[0] = x.shape[0]
    return [x.reshape(target)]


def _transpose(net, layer, ins, consts):
    perm = _const_ints(layer, consts, 1, "permutation") if len(ins) > 1 else []
    return [ins[0].permute(perm or list(range(ins[0].dim() - 1, -1, -1)))]


def _split(net, layer, ins, consts):
    x = ins[0]
    axis = _const_ints(layer, consts, 1, "axis")[0]
    n = int(layer.data["num_splits"])
    if x.shape[axis] % n:
        _fail(layer, f"axis {axis} of size {x.shape[axis]} does not split into {n}")
    return list(torch.chunk(x, n, dim=axis))


def _fail(layer, why):
    raise UnsupportedLayer(f"{layer.type} {layer.name!r}: {why}")


def _concat(net, layer, ins, consts):
    return [torch.cat(ins, dim=int(layer.data.get("axis", "0")))]


def _interpolate(net, layer, ins, consts):
    x = ins[0]
    d = layer.data
    if x.dim() != 4:
        _fail(layer, f"only 4-D inputs, got {x.dim()}-D")
    if len(ins) > 3:
        axes = _const_ints(layer, consts, 3, "axes")
        if sorted(a % 4 for a in axes) != [2, 3] and len(axes) != 4:
            _fail(layer, f"only height/width resizing, got axes {axes}")
    if any(_ints(d.get("pads_begin", "0"))) or any(_ints(d.get("pads_end", "0"))):
        _fail(layer, "padding")
    mode, ctm = d.get("mode"), d.get("coordinate_transformation_mode", "half_pixel")
    if d.get("shape_calculation_mode") == "scales":
        scales = [float(v) for v in np.asarray(consts[2]).reshape(-1)] if consts[2] is not None else _fail(layer, "input-dependent scales")
        resize = dict(scale_factor=tuple(scales[-2:]))
    else:
        sizes = _const_ints(layer, consts, 1, "sizes")
        resize = dict(size=tuple(sizes[-2:]))
    if mode == "nearest":
        if ctm != "asymmetric" or d.get("nearest_mode", "round_prefer_floor") not in ("floor", "simple"):
            _fail(layer, f"nearest with {ctm}/{d.get('nearest_mode')}")
        if d.get("nearest_mode") == "simple" and any(s < 1 for s in resize.get("scale_factor", (1, 1))):
            _fail(layer, "nearest 'simple' downsampling")
        return [F.interpolate(x, mode="nearest", **resize)]
    if mode in ("linear_onnx", "linear", "bilinear"):
        if ctm not in ("align_corners", "half_pixel", "pytorch_half_pixel"):
            _fail(layer, f"linear with {ctm}")
        return [F.interpolate(x, mode="bilinear", align_corners=ctm == "align_corners", **resize)]
    _fail(layer, f"mode {mode}")


def _shapeof(net, layer, ins, consts):
    # Always evaluated at build time, from the IR's static shape of its input.
    return [torch.tensor(layer.inputs[0].shape, dtype=torch.int64)]


def _strided_slice(net, layer, ins, consts):
    x = ins[0]
    begin = _const_ints(layer, consts, 1, "begin")
    end = _const_ints(layer, consts, 2, "end")
    stride = _const_ints(layer, consts, 3, "stride") if len(ins) > 3 else [1] * len(begin)
    d = layer.data
    bm, em = _ints(d.get("begin_mask", "")), _ints(d.get("end_mask", ""))
    for m in ("new_axis_mask", "shrink_axis_mask", "ellipsis_mask"):
        if any(_ints(d.get(m, ""))):
            _fail(layer, m)
    index = []
    for i, (b, e, s) in enumerate(zip(begin, end, stride)):
        # OpenVINO: a mask bit 1 ignores that begin/end and takes the whole range
        index.append(slice(None if i < len(bm) and bm[i] else b, None if i < len(em) and em[i] else e, s))
    if any(s.step is not None and s.step < 0 for s in index):
        _fail(layer, "negative strides")
    return [x[tuple(index)]]


def _gather(net, layer, ins, consts):
    x, idx = ins[0], ins[1]
    axis = _const_ints(layer, consts, 2, "axis")[0] % x.dim()
    if int(layer.data.get("batch_dims", "0")):
        _fail(layer, "batch_dims")
    idx = torch.where(idx < 0, idx + x.shape[axis], idx)
    out = torch.index_select(x, axis, idx.reshape(-1))
    return [out.reshape(*x.shape[:axis], *idx.shape, *x.shape[axis + 1:])]


def _range(net, layer, ins, consts):
    start, stop, step = (c.item() if c is not None else _fail(layer, "input-dependent bounds") for c in consts[:3])
    dtype = _TORCH_DTYPES[layer.data.get("output_type", "f32")]
    return [torch.arange(start, stop, step, dtype=dtype)]


def _broadcast(net, layer, ins, consts):
    x = ins[0]
    target = _const_ints(layer, consts, 1, "target shape")
    mode = layer.data.get("mode", "numpy")
    if mode not in ("numpy", "bidirectional"):
        _fail(layer, f"mode {mode}")
    return [x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(target)))]


def _reduce_mean(net, layer, ins, consts):
    axes = _const_ints(layer, consts, 1, "axes")
    return [ins[0].mean(dim=axes, keepdim=layer.data.get("keep_dims", "false") == "true")]


def _matmul(net, layer, ins, consts):
    a, b = ins
    if layer.data.get("transpose_a", "false") == "true" and a.dim() > 1:
        a = a.transpose(-1, -2)
    if layer.data.get("transpose_b", "false") == "true" and b.dim() > 1:
        b = b.transpose(-1, -2)
    return [torch.matmul(a, b)]


def _squeeze(net, layer, ins, consts):
    x = ins[0]
    if len(ins) < 2:
        return [x.squeeze()]
    axes = sorted({a % x.dim() for a in _const_ints(layer, consts, 1, "axes")}, reverse=True)
    for a in axes:
        x = x.squeeze(a)
    return [x]


def _unsqueeze(net, layer, ins, consts):
    x = ins[0]
    axes = _const_ints(layer, consts, 1, "axes")
    rank = x.dim() + len(axes)
    for a in sorted(a % rank for a in axes):
        x = x.unsqueeze(a)
    return [x]


def _topk(net, layer, ins, consts):
    k = _const_ints(layer, consts, 1, "k")[0]
    d = layer.data
    values, indices = torch.topk(ins[0], k, dim=int(d.get("axis", "-1")), largest=d.get("mode", "max") == "max", sorted=True)
    if d.get("sort") == "index":
        indices, order = torch.sort(indices, dim=int(d.get("axis", "-1")))
        values = torch.gather(values, int(d.get("axis", "-1")), order)
    return [values, indices]


def _convert(net, layer, ins, consts):
    return [ins[0].to(_TORCH_DTYPES[layer.data["destination_type"]])]


def _divide(net, layer, ins, consts):
    a, b = ins
    if not a.is_floating_point() and not b.is_floating_point() and layer.data.get("m_pythondiv", "true") == "true":
        return [torch.div(a, b, rounding_mode="floor")]
    if not a.is_floating_point():
        return [torch.div(a, b, rounding_mode="trunc")]
    return [a / b]


def _hard_sigmoid(net, layer, ins, consts):
    x, alpha, beta = ins
    return [torch.clamp(x * alpha + beta, 0.0, 1.0)]


def _softmax(net, layer, ins, consts):
    return [torch.softmax(ins[0], dim=int(layer.data.get("axis", "1")))]


OPS = {
    "Convolution": _conv,
    "GroupConvolution": lambda n, l, i, c: _conv(n, l, i, c, groups_from_weight=True),
    "Add": lambda n, l, i, c: [i[0] + i[1]],
    "Subtract": lambda n, l, i, c: [i[0] - i[1]],
    "Multiply": lambda n, l, i, c: [i[0] * i[1]],
    "Divide": _divide,
    "Maximum": lambda n, l, i, c: [torch.maximum(i[0], i[1])],
    "Minimum": lambda n, l, i, c: [torch.minimum(i[0], i[1])],
    "Power": lambda n, l, i, c: [torch.pow(i[0], i[1])],
    "ReLU": lambda n, l, i, c: [F.relu(i[0])],
    "Sigmoid": lambda n, l, i, c: [torch.sigmoid(i[0])],
    "HSwish": lambda n, l, i, c: [F.hardswish(i[0])],
    "HardSigmoid": _hard_sigmoid,
    "Sqrt": lambda n, l, i, c: [torch.sqrt(i[0])],
    "Exp": lambda n, l, i, c: [torch.exp(i[0])],
    "Clamp": lambda n, l, i, c: [torch.clamp(i[0], float(l.data["min"]), float(l.data["max"]))],
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Split": _split,
    "Concat": _concat,
    "Interpolate": _interpolate,
    "ShapeOf": _shapeof,
    "StridedSlice": _strided_slice,
    "Gather": _gather,
    "Range": _range,
    "Broadcast": _broadcast,
    "ReduceMean": _reduce_mean,
    "SoftMax": _softmax,
    "MatMul": _matmul,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "TopK": _topk,
    "Convert": _convert,
}


class IRNetwork(nn.Module):
    """An OpenVINO IR graph as a torch module (see the module docstring).

    output_names: names for the kept outputs in the order `forward` returns them; by default
    ("heatmaps",) for one 4-D output and ("scores", "boxes") for PicoDet's pair.
    """

    def __init__(self, ir: IRModel, output_names: tuple[str, ...] | None = None,
                 mean: tuple[float, float, float] | None = None, std: tuple[float, float, float] | None = None):
        super().__init__()
        self.source = ir.xml_path
        params = ir.parameters
        if len(params) != 1:
            raise ArchitectureMismatch(f"{ir.xml_path}: expected one input (Parameter), found {len(params)}")
        self._input = (params[0].id, 0)
        self.input_shape = params[0].outputs[0].shape
        self.input_size = tuple(self.input_shape[2:])  # (height, width)

        kept, names, layout = self._choose_outputs(ir, output_names)
        self.output_names = names
        self.output_layout = layout
        self._outputs = kept  # (layer id, port) per output

        needed = self._needed(ir, [k[0] for k in kept])
        layers = [l for l in ir.layers if l.id in needed]
        for l in layers:
            if l.type not in OPS and l.type not in ("Const", "Parameter", "Result"):
                raise UnsupportedLayer(f"{ir.xml_path}: layer {l.name!r} has type {l.type} ({l.version}), "
                                       f"which posekit's IR interpreter does not implement; it runs {', '.join(sorted(OPS))}")

        # Which layers depend on the image (dynamic) and which can be evaluated now (static).
        dynamic: set[int] = {self._input[0]}
        for l in layers:
            if l.type in ("ShapeOf", "Const", "Parameter"):
                continue
            if any(src in dynamic for src, _ in ir.sources(l)):
                dynamic.add(l.id)

        self._batch_fix: dict[int, str] = {}  # filled below, for the dynamic Reshapes only
        static: dict[tuple[int, int], np.ndarray] = {}
        static_t: dict[tuple[int, int], torch.Tensor] = {}
        with torch.no_grad():
            for l in layers:
                if l.id in dynamic or l.type == "Result":
                    continue
                if l.type == "Const":
                    t = _to_tensor(ir.constants[l.id])
                    outs = [t]
                elif l.type == "ShapeOf":
                    outs = _shapeof(self, l, [], [])
                else:
                    srcs = ir.sources(l)
                    ins = [static_t[s] for s in srcs]
                    outs = OPS[l.type](self, l, ins, [static[s] for s in srcs])
                for port, t in zip(l.outputs, outs):
                    static_t[(l.id, port.id)] = t
                    static[(l.id, port.id)] = t.numpy()

        # The run plan: dynamic layers in order, each input a live value or a buffer.
        self._plan = []
        buffers: dict[tuple[int, int], str] = {}
        for l in layers:
            if l.id not in dynamic or l.type == "Parameter":
                continue
            refs, consts = [], []
            for s in ir.sources(l):
                if s in static_t:
                    if s not in buffers:
                        buffers[s] = f"c{s[0]}_{s[1]}"
                        self.register_buffer(buffers[s], static_t[s].clone())
                    refs.append(("buf", buffers[s]))
                    consts.append(static[s] if static[s].size <= 64 else None)
                else:
                    refs.append(("val", s))
                    consts.append(None)
            if l.type == "Reshape":
                self._batch_fix[l.id] = self._reshape_rule(ir, l, static.get(ir.sources(l)[1]))
            if l.type != "Result":
                self._plan.append((l, refs, consts, [(l.id, p.id) for p in l.outputs]))
        # free each live value after its last use
        last_use: dict[tuple[int, int], int] = {}
        for i, (_, refs, _, _) in enumerate(self._plan):
            for kind, ref in refs:
                if kind == "val":
                    last_use[ref] = i
        for k in self._outputs:
            last_use[k] = len(self._plan)
        self._free_after = [[ref for ref, i in last_use.items() if i == j] for j in range(len(self._plan))]
        self._static_outputs = {k: buffers.get(k) for k in self._outputs if k in static_t}
        if self._static_outputs:
            raise ArchitectureMismatch(f"{ir.xml_path}: output(s) {list(self._static_outputs)} do not depend on the input")

        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.normalise = mean is not None
        if self.normalise:
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1))
            self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1))
        log.debug("IR %s: %d layers run per call, %d folded at build time", ir.xml_path, len(self._plan), len(static))

    @staticmethod
    def _needed(ir: IRModel, roots: list[int]) -> set[int]:
        seen, stack = set(), list(roots)
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            stack.extend(src for src, _ in ir.sources(i))
        return seen

    @staticmethod
    def _reshape_rule(ir: IRModel, layer: Layer, target) -> str | None:
        """How a Reshape of an image-dependent tensor keeps the batch dynamic."""
        out_shape, in_shape = layer.outputs[0].shape, layer.inputs[0].shape
        if target is None:
            raise UnsupportedLayer(f"{ir.xml_path}: Reshape {layer.name!r} has an input-dependent target shape")
        target = [int(t) for t in np.asarray(target).reshape(-1)]
        if not out_shape or out_shape[0] != 1:
            return None  # batch merged into another dim (a -1 there carries it) or no batch
        if target and target[0] == 0 and layer.data.get("special_zero") == "true":
            return None  # copied from the input
        if -1 not in target:
            return "minus1"
        if in_shape and in_shape[0] == 1:
            return "live"
        raise UnsupportedLayer(f"{ir.xml_path}: Reshape {layer.name!r} {list(in_shape)} -> {target}: cannot tell where the batch goes")

    @staticmethod
    def _choose_outputs(ir: IRModel, names):
        results = []
        for r in ir.results:
            (src,) = ir.sources(r)
            shape = r.inputs[0].shape
            if r.inputs[0].precision.upper().startswith(("I", "U", "BOOL")):
                continue  # an argmax/TopK index output: decoding, done in posekit.ops
            results.append((src, shape))
        if names is not None:
            if len(names) != len(results):
                raise ArchitectureMismatch(f"{ir.xml_path}: {len(names)} output names given, the IR has {len(results)} float outputs")
            return [s for s, _ in results], tuple(names), ""
        shapes = [s for _, s in results]
        if len(results) == 1 and len(shapes[0]) == 4:
            return [results[0][0]], ("heatmaps",), HEATMAP_LAYOUT
        if len(results) == 2:
            boxes = [r for r in results if len(r[1]) == 3 and r[1][-1] == 4]
            scores = [r for r in results if len(r[1]) == 3 and r[1][1] == 1 and r[1][-1] != 4]
            if len(boxes) == 1 and len(scores) == 1 and boxes[0][1][1] == scores[0][1][2]:
                return [scores[0][0], boxes[0][0]], ("scores", "boxes"), PICODET_LAYOUT
        raise ArchitectureMismatch(f"{ir.xml_path}: expected heatmaps (1,K,h,w) or PicoDet's boxes (1,N,4) and scores (1,1,N), "
                                   f"found outputs {shapes}")

    @classmethod
    def from_files(cls, xml_path: str | os.PathLike, bin_path: str | os.PathLike | None = None, **kwargs) -> "IRNetwork":
        ir = load_ir(xml_path, bin_path)
        net = cls(ir, **kwargs)
        net.source_files = [ir.xml_path] + ([ir.bin_path] if ir.bin_path else [])
        return net.eval()

    def forward(self, images: torch.Tensor):
        if self.normalise:
            images = (images - self.mean) * self.inv_std
        values = {self._input: images}
        for (layer, refs, consts, out_keys), free in zip(self._plan, self._free_after):
            ins = [getattr(self, ref) if kind == "buf" else values[ref] for kind, ref in refs]
            for key, out in zip(out_keys, OPS[layer.type](self, layer, ins, consts)):
                values[key] = out
            for ref in free:
                values.pop(ref, None)
        outs = tuple(values[k] for k in self._outputs)
        return outs[0] if len(outs) == 1 else outs


def build_openvino_ir(spec: registry.ModelSpec, weights: str | os.PathLike | None = None, download: bool = True) -> IRNetwork:
    """The IR network for registry entry `spec` (PP-TinyPose, PicoDet), in eval mode.

    weights: an IR .xml (its .bin beside it) or a folder holding one; otherwise the registry's
    search order (POSEKIT_MODELS, cache, download) applies. The module takes the IR's
    normalised input unless spec.options["normalise_inside"] is true, when it takes 0..255 pixels
    and applies spec.mean/spec.std itself.
    """
    local = ir_files(weights) if weights is not None else None
    if local is None:
        paths = [Path(p) for p in registry.find_weights(spec.name, path=weights, download=download)]
        xml = next((p for p in paths if p.suffix == ".xml"), None)
        binf = next((p for p in paths if p.suffix == ".bin"), None)
        if xml is None:
            raise ArchitectureMismatch(f"{spec.name}: expected an OpenVINO .xml among its files, found {[p.name for p in paths]}")
    else:
        xml, binf = local
    kwargs = {}
    if spec.options.get("normalise_inside"):
        kwargs = dict(mean=spec.mean, std=spec.std)
    net = IRNetwork.from_files(xml, binf, **kwargs)
    if tuple(net.input_size) != tuple(spec.input_size):
        raise ArchitectureMismatch(f"{xml} declares a {net.input_size[0]}x{net.input_size[1]} input, "
                                   f"{spec.name} expects {spec.input_size[0]}x{spec.input_size[1]}: these are another model's files")
    want = ("heatmaps",) if spec.task == "pose" else ("scores", "boxes")
    if net.output_names != want:
        raise ArchitectureMismatch(f"{xml} gives outputs {net.output_names}, {spec.name} ({spec.task}) expects {want}: "
                                   "these are another model's files")
    log.debug("built %s from %s", spec.name, xml)
    return net
