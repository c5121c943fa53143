"""Export a registered network to ONNX, checked against torch on a real image.

    export_onnx("movenet-thunder", "thunder.onnx", batch="dynamic")
    ensure_onnx("movenet-thunder")  # cached under registry.cache_dir() / "onnx", exported once

Every export runs the torch module and ONNX Runtime on the same real person image
(`posekit/assets/person.jpg`) and fails if they disagree beyond tolerance; the file is written
under a temporary name and renamed into place only once it has passed. The ONNX carries its
own metadata (``posekit.*`` props): model, input size, colour order, normalisation, keypoints,
skeleton, output names and layout, the sha256 of the source weights and the posekit version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from posekit import registry
from posekit.skeleton import COCO_KEYPOINTS, COCO_SKELETON

log = logging.getLogger(__name__)

ASSET_IMAGE = Path(__file__).resolve().parent / "assets" / "person.jpg"

# max |onnx - torch| allowed, as atol + rtol * |torch|. An FP16-weight export is checked against
# the torch module with its weights rounded to float16 the same way, so this tolerance catches
# export bugs only; what the rounding itself changes is measured and reported separately.
CHECK_ATOL = 1e-3
CHECK_RTOL = 1e-3

SPATIAL = ("fixed", "dynamic")


class ExportCheckFailed(RuntimeError):
    """The exported ONNX does not reproduce the torch module on the check image."""


@dataclass(frozen=True)
class ExportReport:
    path: Path
    max_abs_diff: dict[str, float]  # per output, ONNX Runtime versus torch on the check image
    batch: int | str
    fp16_rounding: dict[str, float] | None  # per output, max change FP16 weights make (fp16=True only)
    metadata: dict[str, str]


def source_checksum(paths: list[Path]) -> dict[str, str]:
    """{file name: sha256} of a model's weight files."""
    return {Path(p).name: registry.sha256sum(p) for p in paths}


def weight_paths(name: str, weights: str | os.PathLike | None = None, download: bool = True) -> list[Path]:
    """The files a model is built from: an explicit TF.js model with its shards, else the registry's."""
    from posekit.tfjs import model_files

    local = model_files(weights) if weights is not None else None
    return local or registry.find_weights(name, path=weights, download=download)


def _combined(checksums: dict[str, str]) -> str:
    return hashlib.sha256("".join(f"{k}:{v};" for k, v in sorted(checksums.items())).encode()).hexdigest()


def check_image(spec: registry.ModelSpec, batch: int) -> np.ndarray:
    """(batch, 3, H, W) float32 0..255 in the spec's colour order: the asset photo and its mirror image."""
    import cv2

    bgr = cv2.imread(str(ASSET_IMAGE), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"the export check image is missing or unreadable: {ASSET_IMAGE}")
    h, w = spec.input_size
    image = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_LINEAR)
    if spec.colour == "RGB":
        image = image[:, :, ::-1]
    frames = [image if i % 2 == 0 else image[:, ::-1] for i in range(batch)]
    return np.ascontiguousarray(np.stack(frames).transpose(0, 3, 1, 2), dtype=np.float32)


def _metadata(spec, model, output_names, checksums, batch, opset, fp16, spatial="fixed") -> dict[str, str]:
    from posekit import __version__

    meta = {
        "posekit.model": spec.name,
        "posekit.family": spec.family,
        "posekit.task": spec.task,
        "posekit.input_size": json.dumps(list(spec.input_size)),  # height, width
        "posekit.input_layout": "NCHW float32 0..255",
        "posekit.colour": spec.colour,
        "posekit.mean": json.dumps(list(spec.mean)),
        "posekit.std": json.dumps(list(spec.std)),
        "posekit.outputs": json.dumps(list(output_names)),
        "posekit.output_layout": getattr(model, "output_layout", ""),
        "posekit.source_sha256": json.dumps(checksums),
        "posekit.source_checksum": _combined(checksums),
        "posekit.batch": str(batch),
        # "dynamic": any height and width that are multiples of posekit.input_multiple
        "posekit.spatial": spatial,
        "posekit.input_multiple": "32",
        "posekit.opset": str(opset),
        "posekit.fp16_weights": str(bool(fp16)).lower(),
        "posekit.version": __version__,
        "posekit.licence": spec.licence,
    }
    if spec.task == "pose":
        meta["posekit.keypoints"] = json.dumps(list(COCO_KEYPOINTS))
        meta["posekit.skeleton"] = json.dumps([list(p) for p in COCO_SKELETON])
    return meta


def export_onnx(
    name: str,
    out: str | os.PathLike,
    batch: int | str = "dynamic",
    opset: int = 17,
    fp16: bool = False,
    weights: str | os.PathLike | None = None,
    download: bool = True,
    simplify: bool = True,
    spatial: str = "fixed",
) -> ExportReport:
    """Export registry entry `name` to the ONNX file `out`, checked against torch, written atomically.

    batch:   "dynamic" for a batch axis of any size, or an int for a static batch
    fp16:    store the weights as float16 (computed in float32 after a Cast: half the file size)
    spatial: "fixed" for the registry's input size; "dynamic" (pose models) for any height and
             width that are multiples of 32, so a crop can follow a person's shape: a standing
             person fits a 256x128 input, half the work of 256x256. Checked at both shapes.
    """
    import onnx
    import torch

    from posekit.models import build

    if batch != "dynamic" and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"batch must be 'dynamic' or a positive int, got {batch!r}")
    spec = registry.get(name)
    if spatial not in SPATIAL:
        raise ValueError(f"spatial must be one of {', '.join(SPATIAL)}, got {spatial!r}")
    if spatial == "dynamic" and spec.task != "pose":
        raise ValueError(f"{name}: only pose models export with dynamic height and width; {name} is a {spec.task}")
    model = build(name, weights=weights, download=download)
    # The builder knows which files it read (YOLOX may prefer a .pth); else the registry's lookup.
    paths = getattr(model, "source_files", None) or weight_paths(name, weights, download)
    checksums = source_checksum(paths)
    example = torch.from_numpy(check_image(spec, 2 if batch == "dynamic" else batch))
    expected = _run_torch(model, example)
    output_names = tuple(getattr(model, "output_names", None) or (f"output{i}" for i in range(len(expected))))
    if len(output_names) != len(expected):
        raise RuntimeError(f"{name}: the module names {len(output_names)} outputs but returns {len(expected)}")
    rounding = None
    reference = _round_weights_to_fp16(model) if fp16 else model  # what the ONNX must reproduce
    if fp16:
        expected_fp32, expected = expected, _run_torch(reference, example)
        rounding = {n: float(np.abs(a.numpy() - b.numpy()).max()) for n, a, b in zip(output_names, expected, expected_fp32)}

    out = Path(out)
    with atomic_output(out) as tmp:
        axes = ({0: "batch"} if batch == "dynamic" else {}) | ({2: "height", 3: "width"} if spatial == "dynamic" else {})
        dynamic_axes = {n: dict(axes) for n in ("images", *output_names)} if axes else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's tracer warnings about shapes
            torch.onnx.export(
                model, (example,), str(tmp), dynamo=False, opset_version=opset,
                input_names=["images"], output_names=list(output_names), dynamic_axes=dynamic_axes,
            )
        proto = onnx.load(str(tmp))
        if simplify:
            proto = _slim(proto, name)
        if fp16:
            proto = _fp16_weights(proto)
        for key, value in _metadata(spec, model, output_names, checksums, batch, opset, fp16, spatial).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        diffs = _check(tmp, example.numpy(), [e.numpy() for e in expected], output_names, name)
        if spatial == "dynamic":  # the same graph at a person-shaped input: height 256, width 128
            h, w = spec.input_size
            narrow = torch.from_numpy(np.ascontiguousarray(example.numpy()[:, :, :, (w - w // 2) // 2 : (w + w // 2) // 2]))
            narrow_expected = _run_torch(reference, narrow)
            _check(tmp, narrow.numpy(), [e.numpy() for e in narrow_expected], output_names, name)
        # The measured agreement goes into the file too, so a user can read what was verified.
        proto = onnx.load(str(tmp))
        record = {"image": "posekit/assets/person.jpg", "max_abs_diff_vs_torch": diffs,
                  "atol": CHECK_ATOL, "rtol": CHECK_RTOL}
        if rounding is not None:
            record["fp16_weights_max_abs_change_vs_fp32"] = rounding
        entry = proto.metadata_props.add()
        entry.key, entry.value = "posekit.check", json.dumps(record)
        onnx.save(proto, str(tmp))
    metadata = {p.key: p.value for p in proto.metadata_props}
    log.info("exported %s -> %s (batch %s, max diff vs torch %s)", name, out, batch, diffs)
    return ExportReport(path=out, max_abs_diff=diffs, batch=batch, fp16_rounding=rounding, metadata=metadata)


def _run_torch(model, images) -> list:
    import torch

    with torch.no_grad():
        out = model(images)
    return [out] if isinstance(out, torch.Tensor) else list(out)


def _round_weights_to_fp16(model):
    """A copy of `model` whose float parameters and buffers hold float16-representable values."""
    import copy

    import torch

    rounded = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in (*rounded.parameters(), *rounded.buffers()):
            if tensor.dtype == torch.float32:
                tensor.copy_(tensor.half().float())
    return rounded


@contextlib.contextmanager
def atomic_output(out: Path):
    """A temporary path beside `out`, renamed to `out` when the block ends, removed if it raises.

    A partial or failed write never looks like a finished file.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    _default_permissions(tmp)
    try:
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _default_permissions(path: Path) -> None:
    """mkstemp makes 0600 files; give the output the permissions a plain open() would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _slim(proto, name: str):
    try:
        import onnxslim
    except ImportError:
        log.info("onnxslim is not installed; %s is exported without slimming", name)
        return proto
    try:
        return onnxslim.slim(proto)
    except Exception as exc:  # slimming is an optimisation: an export without it is still correct
        log.warning("onnxslim failed on %s (%s); keeping the unslimmed graph", name, exc)
        return proto


def _fp16_weights(proto):
    """Store float32 initializers as float16, each followed by a Cast back to float32."""
    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    casts, keep = [], []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            keep.append(init)
            continue
        array = numpy_helper.to_array(init)
        half = numpy_helper.from_array(array.astype(np.float16), name=f"{init.name}__fp16")
        keep.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                      name=f"{init.name}__to_fp32"))
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    return proto


def _check(path: Path, images: np.ndarray, expected: list[np.ndarray], output_names, name: str) -> dict[str, float]:
    from posekit.engines.onnxruntime import OnnxRuntimeEngine

    engine = OnnxRuntimeEngine(path)
    got = engine(images)
    atol, rtol = CHECK_ATOL, CHECK_RTOL
    diffs, failures = {}, []
    for label, g, e in zip(output_names, got, expected):
        if g.shape != e.shape:
            failures.append(f"{label}: shape {g.shape}, torch {e.shape}")
            continue
        diff = np.abs(g.astype(np.float32) - e)
        diffs[label] = float(diff.max())
        excess = diff - (atol + rtol * np.abs(e))
        if excess.max() > 0:
            failures.append(f"{label}: max |onnx - torch| {diff.max():.3g} exceeds atol {atol} + rtol {rtol}")
    if failures:
        raise ExportCheckFailed(f"{name}: the ONNX export disagrees with torch on {ASSET_IMAGE.name}: " + "; ".join(failures))
    return diffs


def onnx_cache_path(name: str, batch: int | str = "dynamic", opset: int = 17, fp16: bool = False,
                    download: bool = True, spatial: str = "fixed") -> Path:
    """Where `ensure_onnx` keeps this export: named by the weights' checksum and the options."""
    checksums = source_checksum(registry.find_weights(name, download=download))
    tag = (f"{name}-{_combined(checksums)[:16]}-b{batch}-op{opset}" + ("-fp16" if fp16 else "")
           + ("-hwdynamic" if spatial == "dynamic" else ""))
    return registry.cache_dir() / "onnx" / f"{tag}.onnx"


def ensure_onnx(name: str, batch: int | str = "dynamic", opset: int = 17, fp16: bool = False,
                download: bool = True, spatial: str = "fixed") -> Path:
    """The cached ONNX export of `name`, exported (and checked) on first use.

    A changed weight file has a different checksum, hence a different cache name: it re-exports.
    """
    path = onnx_cache_path(name, batch=batch, opset=opset, fp16=fp16, download=download, spatial=spatial)
    if path.is_file():
        return path
    log.info("exporting %s to %s (first use)", name, path)
    export_onnx(name, path, batch=batch, opset=opset, fp16=fp16, download=download, spatial=spatial)
    return path
