"""Build an engine once, cache it, and never load a stale or corrupt one.

Artefacts live under ``registry.cache_dir()/engines/<model>/<backend>-<precision>-<key>/``,
where <key> hashes everything the artefact depends on: the source weights' sha256, backend,
precision, batch shapes, device kind and the versions of posekit and of the libraries that made
it. Beside each artefact, ``entry.json`` records that key in full and the artefact's own sha256;
it is written last, so an entry without it is unfinished. On load the recorded key and the
artefact's checksum are both checked: anything that does not match (a truncated file, flipped
bytes, another library version) is rebuilt, never loaded.

Backends with a file artefact: onnxruntime (fp32: ORT's offline-optimised graph; int8: static
QDQ quantisation calibrated on real crops), aotinductor (`.pt2` package), tensorrt (`.plan`).
Inductor (torch.compile) compiles in-process and keeps its own cache (TORCHINDUCTOR_CACHE_DIR).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Callable, Sequence

from posekit import registry

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
ENTRY = "entry.json"
# Bumped whenever how an artefact is made changes (so old cache entries count as stale).
# 4: INT8 pose models keep the stem, FPN and heads in float, moving-average calibration
# 5: ONNX Runtime pose engines take any height and width (crops shaped like the person); INT8 pose
#    models are calibrated on the packaged crops (posekit/assets/calibration-crops.jpg)
# 6: INT8 weights are 7-bit (reduce_range), so ONNX Runtime's u8s8 kernels cannot saturate on
#    x86 CPUs without VNNI (AVX2 / AVX-512 vpmaddubsw: 16-bit sums of two products); families may
#    override INT8 options (`Family.int8_options`)
BUILD_FORMAT = 6

# INT8 settings that compute the same on every x86 CPU. ONNX Runtime multiplies uint8 activations
# by int8 weights; without VNNI (e.g. AMD EPYC Rome/Milan, Intel before Cascade Lake) it sums
# pairs of products in 16 bits (`vpmaddubsw`), which saturates when |w| > 64: 2 * 255 * 127 >
# 32767. 7-bit weights (|w| <= 64: 2 * 255 * 64 = 32640) cannot, so the sums are exact there as
# with VNNI. Measured with scripts/int8_isa.py (native AVX-512 VNNI, and a CPU without VNNI
# emulated by qemu-user -cpu EPYC-Rome): MoveNet-Thunder AP 0.7082 FP32, 0.6975 u8s8 (and its
# outputs change without VNNI), 0.7114 u8s8 reduce_range at the same speed; u8u8 (0.6825) is
# slower than FP32 and s8s8 (0.6911) saturates too.
ISA_SAFE_INT8 = {"reduce_range": True}
COCO_MINI_ANNOTATIONS = "person_keypoints_val2017_mini.json"


@dataclass(frozen=True)
class BuildRequest:
    """What to build: model, backend, precision, batch profile (min, opt, max) and device."""

    model: str
    backend: str
    precision: str = "fp32"
    batch: tuple[int, int, int] = (1, 8, 32)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; use one of {', '.join(PRECISIONS)}")
        low, opt, high = self.batch
        if not 1 <= low <= opt <= high:
            raise ValueError(f"expected batch MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, got {self.batch}")


def parse_batch(text: str) -> tuple[int, int, int]:
    """'1,8,32' -> (1, 8, 32); '16' -> (16, 16, 16)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"expected --batch MIN,OPT,MAX (integers), got {text!r}") from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ValueError(f"expected --batch MIN,OPT,MAX (three integers), got {text!r}")
    return values  # type: ignore[return-value]


def _version(package: str) -> str | None:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return None


def source_checksum(model: str) -> str:
    """sha256 over the model's weight files (their names and contents), as found by the registry."""
    digest = hashlib.sha256()
    for path in registry.find_weights(model):
        digest.update(Path(path).name.encode())
        digest.update(registry.sha256sum(path).encode())
    return digest.hexdigest()


def _device_kind(device: str) -> str:
    if device.startswith("cuda"):
        try:
            import torch

            return f"cuda:{torch.cuda.get_device_name(torch.device(device))}"
        except Exception as exc:  # noqa: BLE001 - the name is only part of a cache key
            log.debug("no CUDA device name (%s)", exc)
            return "cuda"
    return device


def cache_key(request: BuildRequest, libraries: Sequence[str]) -> dict[str, Any]:
    from posekit import __version__

    calibration = {"calibration_sha256": registry.sha256sum(calibration_source(request.model))} \
        if request.precision == "int8" else {}
    return {
        **calibration,
        "model": request.model,
        "source_sha256": source_checksum(request.model),
        "backend": request.backend,
        "precision": request.precision,
        "batch": list(request.batch),
        "device": _device_kind(request.device),
        "posekit": __version__,
        "build_format": BUILD_FORMAT,
        "libraries": {name: _version(name) for name in libraries},
    }


def _key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def entry_dir(request: BuildRequest, key: dict[str, Any]) -> Path:
    return registry.cache_dir() / "engines" / request.model / f"{request.backend}-{request.precision}-{_key_digest(key)[:16]}"


def check_entry(folder: Path, key: dict[str, Any]) -> tuple[Path | None, str]:
    """(artefact, "ok") when the entry matches `key` and its checksum; else (None, why not)."""
    sidecar = folder / ENTRY
    if not sidecar.is_file():
        return None, "no entry"
    try:
        record = json.loads(sidecar.read_text())
        artefact = folder / record["artefact"]
        recorded_key, recorded_sha = record["key"], record["artefact_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"unreadable {sidecar} ({type(exc).__name__}: {exc})"
    if recorded_key != key:
        changed = sorted(k for k in set(key) | set(recorded_key) if key.get(k) != recorded_key.get(k))
        return None, f"stale entry (changed: {', '.join(changed)})"
    if not artefact.is_file():
        return None, f"{artefact.name} is missing"
    found = registry.sha256sum(artefact)
    if found != recorded_sha:
        return None, f"{artefact.name} is corrupt (sha256 {found[:12]}..., recorded {recorded_sha[:12]}...)"
    return artefact, "ok"


def cached_artefact(request: BuildRequest, libraries: Sequence[str], filename: str,
                    make: Callable[[Path], Any], force: bool = False,
                    metadata: Callable[[], dict[str, str]] | None = None) -> Path:
    """The cached artefact for `request`, built by ``make(path)`` when missing, stale or corrupt.

    The build happens in a temporary folder beside the entry; the finished folder replaces the
    old one, and its entry.json (with the artefact's sha256, and ``metadata()``: the posekit
    record of an artefact format that cannot hold one itself, e.g. a TensorRT plan) is written last.
    """
    key = cache_key(request, libraries)
    folder = entry_dir(request, key)
    if not force:
        artefact, why = check_entry(folder, key)
        if artefact is not None:
            log.debug("cached %s", artefact)
            return artefact
        if why != "no entry":
            log.warning("rebuilding %s: %s", folder, why)
    log.info("building %s %s %s (first use, kept in %s)", request.model, request.backend, request.precision, folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700: a shared cache must be readable by its other users
        make(tmp / filename)
        if not (tmp / filename).is_file():
            raise RuntimeError(f"building {request} wrote no {filename}")
        record = {"key": key, "artefact": filename, "artefact_sha256": registry.sha256sum(tmp / filename)}
        if metadata is not None:
            record["metadata"] = metadata()
        (tmp / ENTRY).write_text(json.dumps(record, indent=2, sort_keys=True))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("built %s", folder / filename)
    return folder / filename


# --- source ONNX ---------------------------------------------------------------------------------

def source_onnx(model: str, spatial: str = "fixed") -> Path:
    """The float ONNX an engine is built from: the registry's file when it is ONNX, else the
    conversion of its weights (`posekit.convert`: TF.js and OpenVINO IR, no torch needed; spatial
    "dynamic": any input height and width)."""
    spec = registry.get(model)
    if spec.format == "onnx":
        return registry.find_weights(model)[0]
    from posekit.convert import ensure_onnx  # TF.js and OpenVINO IR convert without torch

    return Path(ensure_onnx(model, spatial=spatial))


def any_size(model: str) -> bool:
    """Whether `model` takes any input height and width (multiples of 32): top-down families that
    allow it (crops shaped like the person) and bottom-up ones (frames of any aspect)."""
    from posekit import families

    family = families.of(registry.get(model))
    return family.kind == "bottom-up" or bool(getattr(family, "any_size", False))


def onnxruntime_source(model: str) -> Path:
    """What ONNX Runtime runs: models that take any height and width are exported so (ORT handles
    the shapes at run time), so the pipeline can feed crops shaped like the person; the rest as registered."""
    return source_onnx(model, "dynamic" if any_size(model) else "fixed")


# --- builders, one per backend -------------------------------------------------------------------

def annotations_path() -> Path:
    """Annotated images (a COCO person-keypoints JSON with images/ beside it): POSEKIT_CALIBRATION,
    or the shared mini set. Detectors calibrate on these images; `posekit compare` and the
    benchmarks take their real inputs from them."""
    value = os.environ.get("POSEKIT_CALIBRATION")
    if value:
        return Path(value)
    folder = registry.models_dir()
    candidates = [] if folder is None else [folder.parent / "data" / "coco-val2017-mini" / COCO_MINI_ANNOTATIONS]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError("INT8 calibration needs annotated images: set POSEKIT_CALIBRATION to a COCO "
                            "person-keypoints JSON whose images/ folder sits beside it")


def calibration_source(model: str) -> Path:
    """What INT8 `model` is calibrated on: POSEKIT_CALIBRATION (a COCO person-keypoints JSON) when
    set; else, for a pose model, the person crops shipped with posekit, and for a detector the
    annotated images of `annotations_path`."""
    from posekit.calibration import CALIBRATION_CROPS

    if os.environ.get("POSEKIT_CALIBRATION") or registry.get(model).task != "pose":
        return annotations_path()
    return CALIBRATION_CROPS


def calibration_set(model: str, onnx_path: Path, limit: int = 64):
    from posekit.calibration import CALIBRATION_CROPS, calibration_inputs, packaged_crops, to_network_input
    from posekit.engines.onnxruntime import OnnxRuntimeEngine

    tensor = OnnxRuntimeEngine(onnx_path).inputs[0]
    spec = registry.get(model)
    source = calibration_source(model)
    if source == CALIBRATION_CROPS:
        return to_network_input(packaged_crops(spec.input_size)[:limit], spec, tensor)
    return calibration_inputs(spec, tensor, source, limit)


def int8_options(model: str, source: Path):
    """The INT8 quantisation of `model`: 7-bit weights (`ISA_SAFE_INT8`: the same results on x86
    CPUs with and without VNNI); for a pose model every op is quantised (Add, Resize, Concat too:
    far more accurate than Conv alone) except the nodes its family keeps in float (MoveNet: the
    stem, FPN and heads), with activation ranges averaged over the calibration crops
    (CalibMovingAverage) rather than their extremes; then the family's own `int8_options`."""
    import dataclasses

    from posekit import families
    from posekit.quantize import QuantOptions

    spec = registry.get(model)
    family = families.of(spec)
    if spec.task != "pose":
        options = QuantOptions(**ISA_SAFE_INT8)
    else:
        import onnx

        graph = onnx.load(str(source), load_external_data=False).graph
        keep = family.int8_keep_float([n.name for n in graph.node])
        options = QuantOptions(op_types=None, exclude_nodes=keep, extra={"CalibMovingAverage": True}, **ISA_SAFE_INT8)
    return dataclasses.replace(options, **family.int8_options)


def _build_onnxruntime(request: BuildRequest, force: bool) -> Path:
    source = onnxruntime_source(request.model)
    if request.precision == "int8":
        from posekit.quantize import quantize_onnx

        options = int8_options(request.model, source)

        def make(path: Path) -> None:
            quantize_onnx(source, path, calibration_set(request.model, source), options)
        return cached_artefact(request, ("onnxruntime", "onnx"), "model.int8.onnx", make, force)
    if request.precision != "fp32":
        raise ValueError(f"onnxruntime builds fp32 or int8 engines here, not {request.precision}")

    def optimise(path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # EXTENDED, not ALL: ALL adds layout transforms tied to this machine's CPU.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(path)
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    return cached_artefact(request, ("onnxruntime",), "model.opt.onnx", optimise, force)


def _build_aotinductor(request: BuildRequest, force: bool) -> Path:
    if request.precision == "int8":
        raise ValueError("aotinductor builds fp32, fp16 or bf16 engines, not int8")

    def make(path: Path) -> None:
        import torch

        from posekit.engines.inductor import compile_aoti
        from posekit.models import build

        spec = registry.get(request.model)
        sample = torch.zeros(max(2, request.batch[1]), 3, *spec.input_size)
        compile_aoti(build(request.model), sample, path, request.precision, request.device,
                     (request.batch[0], request.batch[2]))
    return cached_artefact(request, ("torch",), "model.pt2", make, force,
                           metadata=lambda: spec_metadata(registry.get(request.model)))


def _build_tensorrt(request: BuildRequest, force: bool) -> Path:
    source = source_onnx(request.model)

    def make(path: Path) -> None:
        from posekit.calibration import batches
        from posekit.engines.tensorrt import build_engine

        calibration = None
        if request.precision == "int8":
            calibration = batches(calibration_set(request.model, source, limit=256), 8, drop_last=True)
        timing = registry.cache_dir() / "engines" / "tensorrt.timing-cache"
        build_engine(source, path, request.precision, request.batch, calibration, timing_cache=timing)
    return cached_artefact(request, ("tensorrt", "torch"), "model.plan", make, force,
                           metadata=lambda: onnx_metadata(source))


def onnx_metadata(path: Path) -> dict[str, str]:
    """The posekit.* metadata an ONNX file carries."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props if p.key.startswith("posekit.")}


def spec_metadata(spec: registry.ModelSpec) -> dict[str, str]:
    """The preprocessing record of a registry entry, in the keys posekit's exports use."""
    return {"posekit.model": spec.name, "posekit.family": spec.family, "posekit.task": spec.task,
            "posekit.input_size": json.dumps(list(spec.input_size)), "posekit.colour": spec.colour,
            "posekit.mean": json.dumps(list(spec.mean)), "posekit.std": json.dumps(list(spec.std))}


def entry_metadata(artefact: Path) -> dict[str, str]:
    """The metadata recorded beside a cached artefact (empty when none was)."""
    try:
        return dict(json.loads((artefact.parent / ENTRY).read_text()).get("metadata") or {})
    except (OSError, ValueError):
        return {}


def _no_artefact(request: BuildRequest, force: bool) -> Path:
    raise ValueError(f"{request.backend} compiles in-process (torch.compile) and keeps its own cache "
                     "(TORCHINDUCTOR_CACHE_DIR); build `aotinductor` for an engine file")


BUILDERS: dict[str, Callable[[BuildRequest, bool], Path]] = {
    "onnxruntime": _build_onnxruntime,
    "aotinductor": _build_aotinductor,
    "tensorrt": _build_tensorrt,
    "inductor": _no_artefact,
    "torch": _no_artefact,
}


def build(model: str, backend: str = "onnxruntime", precision: str = "fp32", batch: tuple[int, int, int] = (1, 8, 32),
          device: str = "cpu", force: bool = False) -> Path:
    """Build (or find in the cache) the engine artefact for `model` on `backend`; returns its path."""
    from posekit.engines import engine_class

    registry.get(model)  # unknown names fail first, with close matches
    if backend not in BUILDERS:
        raise ValueError(f"unknown backend {backend!r}; buildable: {', '.join(sorted(BUILDERS))}")
    engine_class(backend)  # a missing runtime fails now, naming its package
    return BUILDERS[backend](BuildRequest(model, backend, precision, tuple(batch), device), force)


def load(model: str, backend: str = "onnxruntime", precision: str = "fp32", batch: tuple[int, int, int] = (1, 8, 32),
         device: str = "cpu", **options: Any):
    """The engine for `model`, built on first use and loaded from the cache after."""
    from posekit.engines import load_engine

    path = build(model, backend, precision, batch, device)
    if backend == "aotinductor":
        options.setdefault("precision", precision)
    engine = load_engine(path, backend, device, **options)
    recorded = entry_metadata(path)
    if recorded:  # a format that cannot hold posekit's record (TensorRT plans, AOTInductor packages)
        engine.metadata = {**recorded, **(getattr(engine, "metadata", None) or {})}
    return engine
