"""Convert the weight formats posekit reads to ONNX with numpy and `onnx` alone: no torch.

    convert("movenet-thunder", "thunder.onnx", spatial="dynamic")   # -> Path
    ensure_converted("movenet-thunder")   # cached under registry.cache_dir() / "onnx", converted once
    ensure_onnx("movenet-thunder")        # drop-in for posekit.export.ensure_onnx: converts where it can

The registry entry's format picks the converter: ``tfjs`` (TF.js graph models: MoveNet single-
and multi-pose, `posekit.convert.tfjs_onnx`) or ``openvino`` (OpenVINO IR: TinyPose, PicoDet,
`posekit.convert.openvino_onnx`). The result has the same input (``images``, NCHW float32 0..255,
the spec's colour order), outputs, names and ``posekit.*`` metadata as `posekit.export.export_onnx`
makes from the torch networks; normalisation that is not inside the graph is recorded as
``posekit.mean``/``posekit.std`` and applied by the runner.

Every conversion checks itself before it is written (atomically, as export does): ONNX Runtime
runs the converted graph on the real photo `posekit/assets/person.jpg` (and its mirror image, as a
batch of two) and must match an independent numpy evaluation of the source graph in the source
format's own layout and semantics (`run_tfjs_numpy`, NHWC, TF padding and resize arithmetic)
within export's tolerance; the batch-of-two result must equal batch-1 runs image by image, and a
``spatial="dynamic"`` graph is checked again at a narrower input. What was measured is stored in
``posekit.check``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from posekit import registry
from posekit.convert._onnx_graph import Conversion

log = logging.getLogger(__name__)

# the batch-of-N run must equal the batch-1 runs to this (ONNX Runtime may pick other kernels per batch)
BATCH_ATOL = 1e-4
BATCH_RTOL = 1e-4


# registry formats (ModelSpec.format) with a converter
FORMATS = ("tfjs", "openvino")


class ConversionCheckFailed(RuntimeError):
    """The converted ONNX does not reproduce the source graph on the check image."""


def _spec(spec_or_name) -> registry.ModelSpec:
    return spec_or_name if isinstance(spec_or_name, registry.ModelSpec) else registry.get(spec_or_name)


def source_files(spec: registry.ModelSpec, weights: str | os.PathLike | None = None, download: bool = True) -> list[Path]:
    """The files `spec` is converted from: an explicit model (TF.js folder/model.json, IR .xml), else the registry's."""
    from posekit.tfjs import model_files

    if weights is not None:
        local = model_files(weights)
        if local:
            return local
        from posekit.openvino import ir_files

        ir = ir_files(weights)  # an IR .xml, or a folder holding one
        if ir:
            return list(ir)
        return registry.find_weights(spec.name, path=weights, download=download)
    return [registry.find_file(wf, download=download) for wf in spec.files]


def convert(spec_or_name, out: str | os.PathLike, batch: int | str = "dynamic", spatial: str = "fixed",
            weights: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Convert registry entry (or ModelSpec) `spec_or_name` to the ONNX file `out`, checked, written atomically.

    batch:   "dynamic" for a batch axis of any size, or an int for a static batch
    spatial: "fixed" for the entry's input size; "dynamic" (pose models whose graph allows it)
             for any height and width that are multiples of 32
    """
    return convert_report(spec_or_name, out, batch=batch, spatial=spatial, weights=weights, download=download).path


def convert_report(spec_or_name, out: str | os.PathLike, batch: int | str = "dynamic", spatial: str = "fixed",
                   weights: str | os.PathLike | None = None, download: bool = True):
    """`convert`, returning posekit.export's ExportReport (max differences measured by the check)."""
    import onnx

    from posekit.export import SPATIAL, ExportReport, _metadata, atomic_output, source_checksum

    spec = _spec(spec_or_name)
    if batch != "dynamic" and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ValueError(f"batch must be 'dynamic' or a positive int, got {batch!r}")
    if spatial not in SPATIAL:
        raise ValueError(f"spatial must be one of {', '.join(SPATIAL)}, got {spatial!r}")
    if spatial == "dynamic" and spec.task != "pose":
        raise ValueError(f"{spec.name}: only pose models convert with dynamic height and width; it is a {spec.task}")
    if spec.format not in FORMATS:
        raise ValueError(f"{spec.name}: no converter for its {spec.format!r} weights; converters: {', '.join(FORMATS)}")
    paths = source_files(spec, weights, download)
    conversion = {"tfjs": _tfjs, "openvino": _openvino}[spec.format](spec, paths, batch, spatial)
    proto = conversion.proto
    output_names = [o.name for o in proto.graph.output]
    checksums = source_checksum(paths)
    meta = _metadata(spec, conversion, output_names, checksums, batch, proto.opset_import[0].version, False, spatial)
    meta["posekit.converter"] = conversion.converter
    if conversion.normalises_inside:
        meta["posekit.mean"], meta["posekit.std"] = json.dumps([0.0] * 3), json.dumps([1.0] * 3)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    out = Path(out)
    with atomic_output(out) as tmp:
        onnx.save(proto, str(tmp))
        record = check_conversion(tmp, spec, conversion, output_names, batch, spatial)
        entry = proto.metadata_props.add()
        entry.key, entry.value = "posekit.check", json.dumps(record)
        onnx.save(proto, str(tmp))
    metadata = {p.key: p.value for p in proto.metadata_props}
    log.info("converted %s -> %s (batch %s, max diff vs %s %s)", spec.name, out, batch, record["reference"],
             record["max_abs_diff"])
    return ExportReport(path=out, max_abs_diff=record["max_abs_diff"], batch=batch, fp16_rounding=None, metadata=metadata)


def _tfjs(spec, paths, batch, spatial):
    from posekit.convert.tfjs_onnx import HEADS_BY_FAMILY, run_tfjs_numpy, tfjs_to_onnx
    from posekit.tfjs import load_graph_model

    if spec.family not in HEADS_BY_FAMILY:
        raise ValueError(f"{spec.name}: no TF.js head table for family {spec.family!r}; known: {', '.join(HEADS_BY_FAMILY)}")
    heads, layout = HEADS_BY_FAMILY[spec.family]
    model_json = next((p for p in paths if Path(p).suffix == ".json"), paths[0])
    graph = load_graph_model(model_json)
    proto, cut = tfjs_to_onnx(graph, heads, spec.input_size, batch=batch, spatial=spatial)
    declared = tuple(cut.input_hw)
    if declared != tuple(spec.input_size):
        raise ValueError(f"{model_json} declares a {declared[0]}x{declared[1]} input, {spec.name} expects "
                         f"{spec.input_size[0]}x{spec.input_size[1]}: these are another model's files")

    return Conversion(proto, lambda images: run_tfjs_numpy(cut, images),
                      "numpy evaluation of the TF.js graph (NHWC, TF semantics)", layout, "posekit.convert.tfjs_onnx")


def _openvino(spec, paths, batch, spatial):
    from posekit.convert.openvino_onnx import convert_ir

    return convert_ir(spec, paths, batch=batch, spatial=spatial)


def check_conversion(path: Path, spec: registry.ModelSpec, conversion: Conversion, output_names, batch, spatial) -> dict:
    """Run `path` with ONNX Runtime on the check image and compare with the conversion's numpy reference; raise on disagreement."""
    from posekit.engines.onnxruntime import OnnxRuntimeEngine
    from posekit.export import ASSET_IMAGE, CHECK_ATOL, CHECK_RTOL, check_image

    reference, label = conversion.reference, conversion.reference_label
    engine = OnnxRuntimeEngine(path)
    images = check_image(spec, 2 if batch == "dynamic" else batch)
    # what the runner feeds: the photo normalised by the metadata's mean/std (identity for MoveNet)
    mean = np.asarray(json.loads(engine.metadata["posekit.mean"]), np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(json.loads(engine.metadata["posekit.std"]), np.float32).reshape(1, 3, 1, 1)
    images = ((images - mean) / std).astype(np.float32)
    got = dict(zip(engine.output_names, engine(images)))
    diffs = _compare(got, reference(images), output_names, CHECK_ATOL, CHECK_RTOL, spec.name,
                     f"disagrees with the {label} on {ASSET_IMAGE.name}")
    record = {"image": "posekit/assets/person.jpg", "reference": label, "max_abs_diff": diffs,
              "atol": CHECK_ATOL, "rtol": CHECK_RTOL}
    if batch == "dynamic":  # each image of the batch alone gives the same heads
        singles = [dict(zip(engine.output_names, engine(images[i:i + 1]))) for i in range(len(images))]
        stacked = {n: np.concatenate([s[n] for s in singles]) for n in output_names}
        record["max_abs_diff_batch_vs_single"] = _compare(
            got, stacked, output_names, BATCH_ATOL, BATCH_RTOL, spec.name, "gives other results in a batch than alone")
    if spatial == "dynamic":  # a person-shaped input: the full height, half the width
        w = images.shape[3]
        narrow = np.ascontiguousarray(images[:, :, :, w // 4: w // 4 + w // 2])
        narrow_got = dict(zip(engine.output_names, engine(narrow)))
        record["max_abs_diff_narrow"] = _compare(
            narrow_got, reference(narrow), output_names, CHECK_ATOL, CHECK_RTOL, spec.name,
            f"disagrees with the {label} at {narrow.shape[2]}x{narrow.shape[3]}")
    return record


def _compare(got, expected, names, atol, rtol, label, what) -> dict[str, float]:
    diffs, failures = {}, []
    for name in names:
        g, e = np.asarray(got[name], np.float32), np.asarray(expected[name], np.float32)
        if g.shape != e.shape:
            failures.append(f"{name}: shape {g.shape}, expected {e.shape}")
            continue
        diff = np.abs(g - e)
        diffs[name] = float(diff.max())
        if (diff - (atol + rtol * np.abs(e))).max() > 0:
            failures.append(f"{name}: max difference {diff.max():.3g} exceeds atol {atol} + rtol {rtol}")
    if failures:
        raise ConversionCheckFailed(f"{label}: the converted ONNX {what}: " + "; ".join(failures))
    return diffs


def converted_path(spec_or_name, batch: int | str = "dynamic", spatial: str = "fixed", download: bool = True) -> Path:
    """Where `ensure_converted` keeps this conversion: named by the weights' checksum and the options."""
    from posekit.convert._onnx_graph import OPSET
    from posekit.export import _combined, source_checksum

    spec = _spec(spec_or_name)
    checksums = source_checksum(source_files(spec, download=download))
    tag = f"{spec.name}-{_combined(checksums)[:16]}-b{batch}-op{OPSET}-cv" + ("-hwdynamic" if spatial == "dynamic" else "")
    return registry.cache_dir() / "onnx" / f"{tag}.onnx"


def ensure_converted(spec_or_name, batch: int | str = "dynamic", spatial: str = "fixed", download: bool = True) -> Path:
    """The cached conversion of registry entry (or ModelSpec) `spec_or_name`, converted (and checked) on first use.

    No torch. A changed weight file has another checksum, hence another cache name: it re-converts.
    """
    path = converted_path(spec_or_name, batch=batch, spatial=spatial, download=download)
    if path.is_file():
        return path
    log.info("converting %s to %s (first use)", _spec(spec_or_name).name, path)
    convert(spec_or_name, path, batch=batch, spatial=spatial, download=download)
    return path


def ensure_onnx(name, batch: int | str = "dynamic", opset: int = 17, fp16: bool = False, download: bool = True,
                spatial: str = "fixed") -> Path:
    """Drop-in for `posekit.export.ensure_onnx` on the CPU path: TF.js and IR weights are converted
    here without torch; other formats, float16 weights or another opset go to the torch export."""
    from posekit.convert._onnx_graph import OPSET

    spec = _spec(name)
    if spec.format in FORMATS and not fp16 and opset == OPSET:
        return ensure_converted(spec, batch=batch, spatial=spatial, download=download)
    from posekit import export

    return export.ensure_onnx(spec.name, batch=batch, opset=opset, fp16=fp16, download=download, spatial=spatial)
