"""YOLOX (Megvii, Apache-2.0) as a torch module: CSPDarknet backbone, PAFPN neck, decoupled head.

The module reproduces the official architecture and state_dict key names
(``backbone.backbone.stem.conv.conv.weight``, ``head.cls_preds.0.weight``, ...) so that the
official ``.pth`` checkpoints load unchanged, and it returns exactly what the official ONNX
export returns, so that torch and that ONNX can be compared output for output:

    input:  (B, 3, H, W) float32, BGR 0..255, letterboxed with pad 114, not normalised;
            H and W multiples of 32
    output: (B, N, 85) float32 raw grid predictions, N = sum over strides 8, 16, 32 of
            (H / s) * (W / s), anchors in stride order then row-major; per anchor:
            4 raw box terms (dx, dy, log w, log h, in grid cells), objectness after sigmoid,
            80 COCO class scores after sigmoid (person = 0)

Decode with :func:`posekit.ops.yolox.decode_yolox` (numpy) or :func:`decode_yolox_torch`.

Two weight formats load:

- the official ``.pth`` checkpoint, ``{"model": state_dict}`` with batch-norm unfused, onto the
  unfused module (the module is fused afterwards, which changes nothing but the speed);
- the official ONNX export, where the exporter folded every batch-norm into its convolution:
  its initialisers load onto the fused module, matched conv by conv in execution order and
  checked for kernel shape, stride, padding and groups.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from posekit import registry

log = logging.getLogger(__name__)

STRIDES = (8, 16, 32)
NUM_CLASSES = 80
# The official training code sets these on every BatchNorm2d (yolox/exp/yolox_base.py init_yolo).
BN_EPS = 1e-3
BN_MOMENTUM = 0.03


class YOLOXWeightsError(ValueError):
    """A weight file that does not fit the YOLOX architecture it is loaded into."""


# --- building blocks (official names: yolox/models/network_blocks.py) ------------------------


class BaseConv(nn.Module):
    """Conv2d -> BatchNorm2d -> SiLU; after :meth:`fuse`, Conv2d with bias -> SiLU."""

    def __init__(self, in_channels: int, out_channels: int, ksize: int, stride: int, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, ksize, stride, padding=(ksize - 1) // 2,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        """Fold the batch-norm into the convolution (the same arithmetic as the ONNX export)."""
        if isinstance(self.bn, nn.Identity):
            return
        bn, conv = self.bn, self.conv
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                          conv.padding, groups=conv.groups, bias=True)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        self.conv = fused.to(conv.weight.device)
        self.bn = nn.Identity()


class DWConv(nn.Module):
    """Depthwise KxK BaseConv followed by a pointwise 1x1 BaseConv."""

    def __init__(self, in_channels: int, out_channels: int, ksize: int, stride: int = 1):
        super().__init__()
        self.dconv = BaseConv(in_channels, in_channels, ksize, stride, groups=in_channels)
        self.pconv = BaseConv(in_channels, out_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pconv(self.dconv(x))


def _conv(depthwise: bool):
    return DWConv if depthwise else BaseConv


class Bottleneck(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, shortcut: bool = True, expansion: float = 0.5,
                 depthwise: bool = False):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = BaseConv(in_channels, hidden, 1, 1)
        self.conv2 = _conv(depthwise)(hidden, out_channels, 3, 1)
        self.use_add = shortcut and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.use_add else y


class SPPBottleneck(nn.Module):
    """Spatial pyramid pooling: max-pools of 5, 9 and 13 concatenated with their input."""

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes=(5, 9, 13)):
        super().__init__()
        hidden = in_channels // 2
        self.conv1 = BaseConv(in_channels, hidden, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernel_sizes)
        self.conv2 = BaseConv(hidden * (len(kernel_sizes) + 1), out_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x, *(pool(x) for pool in self.m)], dim=1))


class CSPLayer(nn.Module):
    """CSP block: two 1x1 branches, n bottlenecks on the first, concatenated, then a 1x1."""

    def __init__(self, in_channels: int, out_channels: int, n: int = 1, shortcut: bool = True,
                 expansion: float = 0.5, depthwise: bool = False):
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = BaseConv(in_channels, hidden, 1, 1)
        self.conv2 = BaseConv(in_channels, hidden, 1, 1)
        self.conv3 = BaseConv(2 * hidden, out_channels, 1, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, 1.0, depthwise) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The official order (conv1, conv2, then the bottlenecks): ONNX weights load in this order.
        x1 = self.conv1(x)
        x2 = self.conv2(x)
        x1 = self.m(x1)
        return self.conv3(torch.cat((x1, x2), dim=1))


class Focus(nn.Module):
    """Space-to-depth (pixel pairs to channels), then a BaseConv."""

    def __init__(self, in_channels: int, out_channels: int, ksize: int = 1, stride: int = 1):
        super().__init__()
        self.conv = BaseConv(in_channels * 4, out_channels, ksize, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channel order as in the official code: top-left, bottom-left, top-right, bottom-right.
        x = torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), dim=1)
        return self.conv(x)


# --- backbone, neck, head --------------------------------------------------------------------


class CSPDarknet(nn.Module):
    def __init__(self, depth: float, width: float, depthwise: bool = False):
        super().__init__()
        Conv = _conv(depthwise)
        c = int(width * 64)
        d = max(round(depth * 3), 1)
        self.stem = Focus(3, c, ksize=3)
        self.dark2 = nn.Sequential(Conv(c, c * 2, 3, 2), CSPLayer(c * 2, c * 2, n=d, depthwise=depthwise))
        self.dark3 = nn.Sequential(Conv(c * 2, c * 4, 3, 2), CSPLayer(c * 4, c * 4, n=d * 3, depthwise=depthwise))
        self.dark4 = nn.Sequential(Conv(c * 4, c * 8, 3, 2), CSPLayer(c * 8, c * 8, n=d * 3, depthwise=depthwise))
        self.dark5 = nn.Sequential(
            Conv(c * 8, c * 16, 3, 2),
            SPPBottleneck(c * 16, c * 16),
            CSPLayer(c * 16, c * 16, n=d, shortcut=False, depthwise=depthwise),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.dark2(self.stem(x))
        dark3 = self.dark3(x)
        dark4 = self.dark4(dark3)
        dark5 = self.dark5(dark4)
        return dark3, dark4, dark5


class YOLOPAFPN(nn.Module):
    def __init__(self, depth: float, width: float, depthwise: bool = False, in_channels=(256, 512, 1024)):
        super().__init__()
        Conv = _conv(depthwise)
        c0, c1, c2 = (int(ch * width) for ch in in_channels)
        n = round(3 * depth)
        self.backbone = CSPDarknet(depth, width, depthwise)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.lateral_conv0 = BaseConv(c2, c1, 1, 1)
        self.C3_p4 = CSPLayer(2 * c1, c1, n, False, depthwise=depthwise)
        self.reduce_conv1 = BaseConv(c1, c0, 1, 1)
        self.C3_p3 = CSPLayer(2 * c0, c0, n, False, depthwise=depthwise)
        self.bu_conv2 = Conv(c0, c0, 3, 2)
        self.C3_n3 = CSPLayer(2 * c0, c1, n, False, depthwise=depthwise)
        self.bu_conv1 = Conv(c1, c1, 3, 2)
        self.C3_n4 = CSPLayer(2 * c1, c2, n, False, depthwise=depthwise)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x2, x1, x0 = self.backbone(x)
        fpn_out0 = self.lateral_conv0(x0)  # stride 32
        f_out0 = self.C3_p4(torch.cat([self.upsample(fpn_out0), x1], 1))  # stride 16
        fpn_out1 = self.reduce_conv1(f_out0)
        pan_out2 = self.C3_p3(torch.cat([self.upsample(fpn_out1), x2], 1))  # stride 8
        pan_out1 = self.C3_n3(torch.cat([self.bu_conv2(pan_out2), fpn_out1], 1))  # stride 16
        pan_out0 = self.C3_n4(torch.cat([self.bu_conv1(pan_out1), fpn_out0], 1))  # stride 32
        return pan_out2, pan_out1, pan_out0


class YOLOXHead(nn.Module):
    """Decoupled head: per level a 1x1 stem, then a class branch and a box/objectness branch."""

    def __init__(self, num_classes: int, width: float, depthwise: bool = False, in_channels=(256, 512, 1024)):
        super().__init__()
        Conv = _conv(depthwise)
        hidden = int(256 * width)
        self.num_classes = num_classes
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        self.cls_preds = nn.ModuleList()
        self.reg_preds = nn.ModuleList()
        self.obj_preds = nn.ModuleList()
        self.stems = nn.ModuleList()
        for ch in in_channels:
            self.stems.append(BaseConv(int(ch * width), hidden, 1, 1))
            self.cls_convs.append(nn.Sequential(Conv(hidden, hidden, 3, 1), Conv(hidden, hidden, 3, 1)))
            self.reg_convs.append(nn.Sequential(Conv(hidden, hidden, 3, 1), Conv(hidden, hidden, 3, 1)))
            self.cls_preds.append(nn.Conv2d(hidden, num_classes, 1))
            self.reg_preds.append(nn.Conv2d(hidden, 4, 1))
            self.obj_preds.append(nn.Conv2d(hidden, 1, 1))

    def forward(self, features) -> torch.Tensor:
        outputs = []
        for k, x in enumerate(features):
            x = self.stems[k](x)
            cls_out = self.cls_preds[k](self.cls_convs[k](x))
            reg_feat = self.reg_convs[k](x)
            reg_out = self.reg_preds[k](reg_feat)
            obj_out = self.obj_preds[k](reg_feat)
            outputs.append(torch.cat([reg_out, obj_out.sigmoid(), cls_out.sigmoid()], 1).flatten(start_dim=2))
        return torch.cat(outputs, dim=2).permute(0, 2, 1)


class YOLOX(nn.Module):
    """YOLOX detector; ``forward`` returns the raw (B, N, 85) grid predictions (see module doc)."""

    def __init__(self, depth: float, width: float, depthwise: bool = False, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.depth, self.width, self.depthwise = depth, width, depthwise
        self.backbone = YOLOPAFPN(depth, width, depthwise)
        self.head = YOLOXHead(num_classes, width, depthwise)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def fuse(self) -> YOLOX:
        """Fold every batch-norm into its convolution, in place; returns self."""
        for m in self.modules():
            if isinstance(m, BaseConv):
                m.fuse()
        return self

    @property
    def is_fused(self) -> bool:
        return not any(isinstance(m, nn.BatchNorm2d) for m in self.modules())


# --- loading weights -------------------------------------------------------------------------


def _describe(model: YOLOX) -> str:
    return f"YOLOX(depth={model.depth}, width={model.width}, depthwise={model.depthwise})"


def _mismatch_error(path: Path, model: YOLOX, missing, unexpected, misshaped) -> YOLOXWeightsError:
    parts = []
    if misshaped:
        shown = "; ".join(f"{k}: expected {tuple(e)}, found {tuple(f)}" for k, e, f in misshaped[:5])
        parts.append(f"{len(misshaped)} tensors of the wrong shape ({shown}{', ...' if len(misshaped) > 5 else ''})")
    if missing:
        parts.append(f"{len(missing)} missing ({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:5])}"
                     f"{', ...' if len(unexpected) > 5 else ''})")
    return YOLOXWeightsError(f"{path} does not fit {_describe(model)}: " + "; ".join(parts))


def load_checkpoint(model: YOLOX, path: str | os.PathLike) -> YOLOX:
    """Load an official ``.pth`` checkpoint (``{"model": state_dict}``, BN unfused) into `model`.

    `model` must be unfused. Every tensor must be present with the shape the architecture
    expects; otherwise YOLOXWeightsError names the file and the tensors that differ.
    """
    path = Path(path)
    if model.is_fused:
        raise ValueError("load_checkpoint needs an unfused YOLOX (checkpoints hold batch-norm separately)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle error, a truncated zip: say which file and what was expected
        raise YOLOXWeightsError(f"{path} is not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        found = sorted(checkpoint)[:5] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise YOLOXWeightsError(f"{path}: expected an official YOLOX checkpoint {{'model': state_dict}}, found {found}")
    # Checkpoints saved from DistributedDataParallel carry a "module." prefix.
    state = {k.removeprefix("module."): v for k, v in state.items()}

    expected = model.state_dict()
    # Older checkpoints may lack the batch-norm step counter; it plays no part in inference.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    misshaped = [(k, expected[k].shape, state[k].shape) for k in expected
                 if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or misshaped:
        raise _mismatch_error(path, model, missing, unexpected, misshaped)
    model.load_state_dict(state, strict=False)
    return model


def _convs_in_execution_order(model: YOLOX, input_size: tuple[int, int]) -> list[tuple[str, nn.Conv2d]]:
    names = {m: n for n, m in model.named_modules()}
    order: list[tuple[str, nn.Conv2d]] = []
    hooks = [m.register_forward_hook(lambda m, i, o: order.append((names[m], m)))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, *input_size))
    finally:
        for h in hooks:
            h.remove()
    return order


def load_onnx(model: YOLOX, path: str | os.PathLike) -> YOLOX:
    """Load the initialisers of an official YOLOX ONNX export into `model`, fusing it first.

    The exporter folded each batch-norm into its convolution and renamed most tensors, so the
    ONNX Conv nodes are matched to the module's convolutions in execution order (the order the
    exporter traced them in), each checked for weight shape, stride, padding and groups.
    """
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # protobuf raises its own DecodeError types
        raise YOLOXWeightsError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc})") from exc
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    conv_nodes = [n for n in graph.node if n.op_type == "Conv"]

    model.fuse()
    _check_image_input(graph, path)
    # Only the order of the convolutions matters, and it does not depend on the input size.
    convs = _convs_in_execution_order(model, (64, 64))
    tensors: dict[str, torch.Tensor] = {}
    for index, (node, (name, conv)) in enumerate(zip(conv_nodes, convs)):
        where = f"{path}: Conv node {index} ({node.name or node.output[0]}) for {name} of {_describe(model)}"
        if len(node.input) < 3 or node.input[1] not in inits or node.input[2] not in inits:
            raise YOLOXWeightsError(f"{where}: expected weight and bias initialisers, found inputs {list(node.input)}")
        weight = numpy_helper.to_array(inits[node.input[1]])
        bias = numpy_helper.to_array(inits[node.input[2]])
        if tuple(weight.shape) != tuple(conv.weight.shape) or tuple(bias.shape) != (conv.out_channels,):
            raise YOLOXWeightsError(
                f"{where}: expected weight {tuple(conv.weight.shape)} and bias ({conv.out_channels},), "
                f"found {tuple(weight.shape)} and {tuple(bias.shape)}; is it the export of another YOLOX size?")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        found = (tuple(attrs.get("strides", (1, 1))), int(attrs.get("group", 1)), tuple(attrs.get("pads", (0,) * 4)))
        wanted = (tuple(conv.stride), conv.groups, tuple(conv.padding) * 2)
        if found != wanted:
            raise YOLOXWeightsError(f"{where}: expected (strides, group, pads) {wanted}, found {found}")
        tensors[f"{name}.weight"] = torch.from_numpy(weight.copy())
        tensors[f"{name}.bias"] = torch.from_numpy(bias.copy())
    if len(conv_nodes) != len(convs):
        raise YOLOXWeightsError(
            f"{path} has {len(conv_nodes)} Conv nodes, {_describe(model)} has {len(convs)} convolutions; "
            f"is it the export of another YOLOX size?")

    result = model.load_state_dict(tensors, strict=False)
    if result.missing_keys:  # every parameter of the fused module is a conv weight or bias
        raise YOLOXWeightsError(f"{path}: nothing in the file for {', '.join(result.missing_keys[:5])}")
    return model


def _check_image_input(graph, path: Path) -> None:
    if len(graph.input) == 0:
        raise YOLOXWeightsError(f"{path}: expected one (B, 3, H, W) image input, found none")
    shape = graph.input[0].type.tensor_type.shape.dim
    if len(shape) != 4 or shape[1].dim_value not in (0, 3):
        found = [d.dim_value or d.dim_param for d in shape]
        raise YOLOXWeightsError(f"{path}: expected a (B, 3, H, W) image input, found {found}")


_PTH_SUFFIXES = (".pth", ".pt", ".tar", ".ckpt")


def build_yolox(spec: registry.ModelSpec, weights: str | os.PathLike | None = None, download: bool = True) -> YOLOX:
    """The YOLOX of registry entry `spec` in eval mode, batch-norm fused, with its real weights.

    weights: an official ``.onnx`` export or ``.pth`` checkpoint (by suffix), or a folder laid
    out like the models folder. Without it: the ONNX export in POSEKIT_MODELS or the cache,
    else the ``.pth`` checkpoint there, else the ONNX export downloaded (when `download`).
    """
    opts = spec.options
    model = YOLOX(opts["depth"], opts["width"], opts["depthwise"])
    path = _weights_path(spec, weights, download)
    if path.suffix.lower() == ".onnx":
        load_onnx(model, path)
    elif path.suffix.lower() in _PTH_SUFFIXES:
        load_checkpoint(model, path).fuse()
    else:
        raise YOLOXWeightsError(f"{path}: expected an official YOLOX .onnx export or .pth checkpoint, "
                                f"found a {path.suffix or 'suffix-less'} file")
    log.info("%s: weights from %s", spec.name, path)
    return model.eval()


def _weights_path(spec: registry.ModelSpec, weights, download: bool) -> Path:
    if weights is not None:
        given = Path(weights)
        if given.is_dir() and not (given / spec.files[0].path).is_file():
            checkpoint = given / spec.options["checkpoint"].path
            if checkpoint.is_file():
                return checkpoint
        return registry.find_weights(spec.name, weights, download=download)[0]
    for wf in (spec.files[0], spec.options["checkpoint"]):
        try:
            return registry.find_file(wf, download=False)
        except registry.WeightsNotFound:
            continue
    return registry.find_file(spec.files[0], download=download)


# --- decode (torch twin of posekit.ops.yolox.decode_yolox, for the GPU path) -----------------


def decode_yolox_torch(raw: torch.Tensor, strides=STRIDES,
                       input_size: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode raw (B, N, 5 + C) predictions to xyxy boxes and per-class scores, batched.

    input_size: (height, width) of the network input; None means square, inferred from N.
    Returns boxes (B, N, 4) xyxy in input pixels and scores (B, N, C) = objectness x class
    score, in raw's dtype and device.
    """
    if raw.ndim != 3 or raw.shape[-1] < 6:
        raise ValueError(f"expected raw YOLOX predictions (B, N, 5 + classes), got {tuple(raw.shape)}")
    n = raw.shape[1]
    if input_size is None:
        input_size = _square_size(n, strides)
    grid, stride = _grid(input_size, strides, n, raw.device, raw.dtype)
    centre = (raw[..., 0:2] + grid) * stride
    half = torch.exp(raw[..., 2:4]) * stride / 2
    boxes = torch.cat([centre - half, centre + half], dim=-1)
    return boxes, raw[..., 4:5] * raw[..., 5:]


def _square_size(n: int, strides) -> tuple[int, int]:
    # A square S x S input gives N = S^2 * sum(1 / s^2) anchors.
    side = round((n / sum(1.0 / s**2 for s in strides)) ** 0.5)
    if side % max(strides) or sum((side // s) ** 2 for s in strides) != n:
        raise ValueError(f"{n} predictions do not come from a square input at strides {tuple(strides)}; "
                         "pass input_size=(height, width)")
    return side, side


def _grid(input_size, strides, n: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = input_size
    grids, scales = [], []
    for s in strides:
        if h % s or w % s:
            raise ValueError(f"input size {h}x{w} is not a multiple of stride {s}")
        ys, xs = torch.meshgrid(torch.arange(h // s, device=device), torch.arange(w // s, device=device),
                                indexing="ij")
        grids.append(torch.stack((xs, ys), -1).reshape(-1, 2))
        scales.append(torch.full((grids[-1].shape[0], 1), s, device=device))
    grid, stride = torch.cat(grids).to(dtype), torch.cat(scales).to(dtype)
    if grid.shape[0] != n:
        raise ValueError(f"expected {grid.shape[0]} predictions for a {h}x{w} input at strides "
                         f"{tuple(strides)}, got {n}")
    return grid, stride
