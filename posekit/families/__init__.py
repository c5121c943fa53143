"""Model families: everything posekit knows about one kind of network, in one module.

A family module (``posekit/families/<family>.py``, or any importable module named by a registry
entry's ``family``) defines ``FAMILY``: a `TopDownFamily`, `BottomUpFamily` or `DetectorFamily`.
It says what the network's raw outputs are and how they decode (numpy, and torch for the GPU
path), which keypoints mirror each other, what INT8 keeps in float, and where its torch network
is built. Nothing outside the family module knows these things: the runners
(`posekit.pose_models`, `posekit.detectors`, `posekit.bottomup`), the engine factory
(`posekit.runtime`) and the builders (`posekit.build`) ask the family.

Adding a family: its module here (or anywhere importable), a registry entry whose ``family``
names it (`posekit.registry.register`), and for the GPU path its torch network.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Callable, Sequence

import numpy as np

KINDS = ("top-down", "bottom-up", "detector")

# (outputs in `output_names` order, input_size (h, w)) -> keypoints (N, K, 2) input pixels x then y, scores (N, K)
PoseDecode = Callable[[Sequence[np.ndarray], tuple[int, int]], tuple[np.ndarray, np.ndarray]]


def _keep_nothing_float(node_names: Sequence[str]) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class Family:
    """What every family states.

    name:          the registry entries' ``family``
    output_names:  the raw outputs, in the order the decoder takes them (posekit's exports name
                   their outputs so; an artefact with other names is taken in its own order)
    torch_network: "module:function" building the torch network from a registry entry
                   (``fn(spec, weights=None, download=True) -> nn.Module``); None: no torch network
    int8_options:  `posekit.quantize.QuantOptions` fields this family's INT8 builds override
                   (``posekit.build.int8_options`` starts from settings that hold on any x86 CPU)
    """

    name: str
    output_names: tuple[str, ...]
    torch_network: str | None = None
    int8_options: dict[str, Any] = field(default_factory=dict)
    kind: str = field(init=False, default="")

    def build_torch(self, spec: Any, weights: Any = None, download: bool = True) -> Any:
        if self.torch_network is None:
            raise ValueError(f"{spec.name} ({self.name}) has no PyTorch implementation in posekit")
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            raise ImportError(f"building {spec.name} in PyTorch needs torch: pip install 'posekit[gpu]'") from exc
        return _resolve(self.torch_network)(spec, weights=weights, download=download)

    def named(self, outputs: Sequence[Any], names: Sequence[str]) -> list[Any]:
        """`outputs` in this family's order: picked by name when the artefact names them so,
        else as the artefact orders them."""
        by_name = dict(zip(names, outputs))
        if all(n in by_name for n in self.output_names):
            return [by_name[n] for n in self.output_names]
        return list(outputs)


@dataclass(frozen=True)
class TopDownFamily(Family):
    """A pose network run on one person crop at a time.

    decode:        numpy decoder, see `PoseDecode`
    decode_torch:  "module:function", the torch twin for the GPU pipeline (same signature, tensors)
    flip_pairs:    left/right keypoint pairs, for the flip test
    merge_flip:    fn(outputs, outputs of the mirrored crops, flip_pairs) -> outputs; None: no flip test
    any_size:      the network takes crops of any height and width (multiples of 32), so crops may be
                   shaped like the person (`PoseEstimator(crop_shape="fit")`)
    int8_keep_float: fn(node names of the float ONNX) -> names INT8 quantisation leaves in float
    int8_on_cpu:   INT8 is this family's default precision for ONNX Runtime on the CPU (set only where
                   an INT8 build measured both as accurate and faster; INT8 is still built when asked)
    crop:          fn(image, boxes (N, 4) xyxy, (h, w), scale) -> (crops (N, h, w, 3), CropTransform):
                   how the family cuts person crops (the coordinate convention it was trained in);
                   None: `posekit.ops.crop.affine_crop`
    """

    decode: PoseDecode = None  # type: ignore[assignment]
    crop: Callable[..., Any] | None = None
    int8_on_cpu: bool = False
    decode_torch: str | None = None
    flip_pairs: tuple[tuple[int, int], ...] = ()
    merge_flip: Callable[..., list[np.ndarray]] | None = None
    any_size: bool = False
    int8_keep_float: Callable[[Sequence[str]], tuple[str, ...]] = _keep_nothing_float
    kind: str = field(init=False, default="top-down")

    def decoder_torch(self) -> Callable:
        if self.decode_torch is None:
            raise ValueError(f"family {self.name} has no torch decoder (needed by the GPU pipeline)")
        return _resolve(self.decode_torch)


@dataclass(frozen=True)
class BottomUpFamily(Family):
    """A pose network that finds every person in a whole frame.

    decode: fn(outputs, input_size) -> list per image of (keypoints (P, K, 2) input pixels,
            keypoint scores (P, K), boxes (P, 4) xyxy input pixels, person scores (P,))
    multiple: input height and width must be multiples of this
    """

    decode: Callable[..., list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = None  # type: ignore[assignment]
    multiple: int = 32
    int8_keep_float: Callable[[Sequence[str]], tuple[str, ...]] = _keep_nothing_float
    kind: str = field(init=False, default="bottom-up")


@dataclass(frozen=True)
class DetectorFamily(Family):
    """A person detector.

    resize:      "letterbox" (aspect kept, padded right/bottom with `pad_value`) or "stretch"
                 (plain resize to the input size)
    postprocess: fn(outputs, input_size, score_threshold, iou_threshold, max_det) -> per image
                 (boxes (M, 4) xyxy input pixels, scores (M,))
    boxes_torch: "module:function", the GPU pipeline's twin: fn(outputs, input_size, score_threshold,
                 iou_threshold, max_det) -> boxes (B, D, 4) input pixels, scores (B, D), valid (B, D)
    """

    postprocess: Callable[..., list[tuple[np.ndarray, np.ndarray]]] = None  # type: ignore[assignment]
    resize: str = "letterbox"
    pad_value: int = 114
    boxes_torch: str | None = None
    int8_keep_float: Callable[[Sequence[str]], tuple[str, ...]] = _keep_nothing_float
    kind: str = field(init=False, default="detector")


def _resolve(path: str) -> Callable:
    module, _, name = path.partition(":")
    return getattr(import_module(module), name)


_REGISTERED: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Make `family` known by its name (for families defined outside an importable module)."""
    _REGISTERED[family.name] = family
    get.cache_clear()
    return family


@functools.lru_cache(maxsize=None)
def get(name: str) -> Family:
    """The family called `name`: registered, or ``FAMILY`` of ``posekit.families.<name>``, or of
    the module `name` itself (a family kept outside posekit)."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    module = None
    for candidate in (f"posekit.families.{name}", name):
        try:
            module = import_module(candidate)
            break
        except ModuleNotFoundError as exc:
            if exc.name not in (candidate, candidate.rpartition(".")[0] or candidate):
                raise  # the family module exists but something it imports does not
    if module is None:
        raise ValueError(f"unknown model family {name!r}: no posekit.families.{name} module and no module {name!r}")
    family = getattr(module, "FAMILY", None)
    if not isinstance(family, Family):
        raise ValueError(f"{module.__name__} defines no FAMILY (a posekit.families.Family)")
    if family.kind not in KINDS:
        raise ValueError(f"family {family.name}: unknown kind {family.kind!r}")
    return family


def of(spec: Any) -> Family:
    """The family of registry entry `spec`."""
    return get(spec.family)
