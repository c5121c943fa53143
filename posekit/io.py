"""Readers (images, folders, globs, videos, cameras -> frames) and writers (COCO results JSON,
JSON Lines per video frame, rendered images and videos).

Every reader error names the file and what was expected versus found (`InputError`). Every
writer writes to a temporary name beside its target and renames it into place only when the
whole file is written, so an interrupted run never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from posekit.structures import Poses

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
# 100 megapixels: a 12000 x 8000 photo passes; decoding a larger one would take gigabytes.
MAX_PIXELS = 100_000_000


class InputError(ValueError):
    """An input file that cannot be used; the message names the file and what was wrong."""


@dataclass
class Frame:
    """One decoded picture and where it came from.

    source: the image or video path (or "camera:<index>"); index: frame number in a video, 0 for
    an image; image: (H, W, 3) uint8 BGR.
    """

    source: str
    index: int
    image: np.ndarray


# -- image headers ------------------------------------------------------------------------------


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) from the file header, without decoding; None for a format not parsed here."""
    with open(path, "rb") as f:
        head = f.read(32)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])
        if head[:2] == b"BM" and len(head) >= 26:
            w, h = struct.unpack("<ii", head[18:26])
            return abs(w), abs(h)
        if head[:2] == b"\xff\xd8":
            return _jpeg_size(f)
    return None


def _jpeg_size(f: Any) -> tuple[int, int] | None:
    f.seek(2)
    while True:
        byte = f.read(1)
        while byte and byte != b"\xff":
            byte = f.read(1)
        while byte == b"\xff":
            byte = f.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        length_bytes = f.read(2)
        if len(length_bytes) < 2:
            return None
        length = struct.unpack(">H", length_bytes)[0]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            data = f.read(5)
            if len(data) < 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return w, h
        f.seek(length - 2, os.SEEK_CUR)


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file to (H, W, 3) uint8 BGR.

    Grayscale, RGBA and 16-bit images are converted. Raises `InputError` naming the file for a
    missing, empty, undecodable or truncated file, and for one whose header declares more than
    `max_pixels` (checked before decoding, so a huge image never reaches memory).
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: empty file (0 bytes), expected an image")
    dims = image_size(path)
    if dims is not None:
        w, h = dims
        if w * h > max_pixels:
            raise InputError(f"{path}: image is {w}x{h} ({w * h / 1e6:.0f} megapixels), above the "
                             f"{max_pixels / 1e6:.0f} megapixel limit; downscale it first")
    data = np.fromfile(path, np.uint8)
    if data[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in data[-64:].tobytes():
        # libjpeg decodes a cut-off file with a warning and grey fill; refuse it instead.
        raise InputError(f"{path}: truncated JPEG (no end-of-image marker in the last bytes of {size} bytes)")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)  # 3-channel 8-bit BGR whatever the file holds
    if image is None:
        raise InputError(f"{path}: not a decodable image ({size} bytes starting {data[:8].tobytes()!r}); "
                         f"expected JPEG, PNG, BMP, WebP or TIFF")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"{path}: decoded to an empty image {image.shape}")
    return image


# -- finding inputs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One input: kind is "image", "video" or "camera"; path is the file (or the camera index)."""

    kind: str
    path: str


def expand_inputs(inputs: Sequence[str]) -> tuple[list[Source], list[str]]:
    """Turn command-line inputs into sources: files, folders (recursively), globs, camera indices.

    Returns (sources, problems): a problem names an input that matched nothing usable.
    """
    sources: list[Source] = []
    problems: list[str] = []
    for item in inputs:
        item = str(item)
        if item.isdigit() and not Path(item).exists():
            sources.append(Source("camera", item))
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and _kind(p) is not None)
            if not found:
                problems.append(f"{item}: folder holds no image or video files")
            sources.extend(Source(_kind(p), str(p)) for p in found)
        elif path.is_file():
            # An explicitly named file is tried even with an unknown suffix: the decoder decides.
            sources.append(Source(_kind(path) or "image", str(path)))
        elif glob.has_magic(item):
            found = sorted(Path(p) for p in glob.glob(item, recursive=True))
            found = [p for p in found if p.is_file() and _kind(p) is not None]
            if not found:
                problems.append(f"{item}: pattern matched no image or video files")
            sources.extend(Source(_kind(p), str(p)) for p in found)
        else:
            problems.append(f"{item}: no such file or folder")
    return sources, problems


def output_names(sources: Sequence[Source]) -> list[str]:
    """A distinct output name (a relative POSIX path) for every input, in order.

    The file name when it is unique among the inputs; for names that occur more than once (say
    ``day1/img.jpg`` and ``day2/img.jpg``), the path below the folder those inputs share, so
    their outputs neither overwrite each other nor mix. The same file given twice gets ``-2``.
    A camera is named ``camera<index>``.
    """
    base = [f"camera{s.path}" if s.kind == "camera" else Path(s.path).name for s in sources]
    counts: dict[str, int] = {}
    for name in base:
        counts[name] = counts.get(name, 0) + 1
    clashing = [i for i, s in enumerate(sources) if counts[base[i]] > 1 and s.kind != "camera"]
    names = list(base)
    if clashing:
        absolute = {i: os.path.abspath(sources[i].path) for i in clashing}
        root = os.path.commonpath([os.path.dirname(a) for a in absolute.values()])
        for i in clashing:
            names[i] = Path(os.path.relpath(absolute[i], root)).as_posix()
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            stem, suffix = os.path.splitext(name)
            names[i] = f"{stem}-{seen[name]}{suffix}"
    return names


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None


def iter_video(source: str | int) -> Iterator[Frame]:
    """Frames of a video file or camera (an int index), decoded one at a time.

    Raises `InputError` when the file cannot be opened, holds no frame, or ends before the
    frame count its header declares (a truncated file), after yielding the frames it had.
    """
    import cv2

    is_camera = isinstance(source, int)
    name = f"camera:{source}" if is_camera else str(source)
    if not is_camera:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{name}: no such file")
        if path.stat().st_size == 0:
            raise InputError(f"{name}: empty file (0 bytes), expected a video")
    capture = cv2.VideoCapture(source)
    try:
        if not capture.isOpened():
            raise InputError(f"{name}: cannot open as a video (OpenCV could not read its container)")
        declared = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not is_camera else 0
        index = 0
        while True:
            ok, image = capture.read()
            if not ok:
                break
            yield Frame(name, index, image)
            index += 1
        if index == 0:
            raise InputError(f"{name}: no decodable frame (header declares {declared})")
        if declared > 0 and index < declared:
            raise InputError(f"{name}: truncated video, decoded {index} of the {declared} frames its header declares")
    finally:
        capture.release()


def video_fps(source: str | int, default: float = 25.0) -> float:
    import cv2

    capture = cv2.VideoCapture(source)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return float(fps) if fps and fps > 0 and np.isfinite(fps) else default


# -- writing ------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix) that is renamed to `path` on success and
    deleted on any error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".part{path.suffix}")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, data: Any, indent: int | None = None) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=indent), encoding="utf-8")
    return Path(path)


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    import cv2

    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix or ".jpg", image)
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode an image of shape {image.shape} as {path.suffix}")
    with atomic_path(path) as tmp:
        encoded.tofile(tmp)
    return path


def poses_to_coco(poses: Poses, image_id: int | None = None, file_name: str | None = None) -> list[dict]:
    """COCO keypoint results: one dict per person (category 1, 17 x,y,score triples, xywh box)."""
    out = []
    for i in range(len(poses)):
        x0, y0, x1, y1 = (float(v) for v in poses.boxes[i])
        triples = np.concatenate([poses.keypoints[i], poses.keypoint_scores[i][:, None]], 1)
        record: dict[str, Any] = {}
        if file_name is not None:
            record["file_name"] = file_name
        if image_id is not None:
            record["image_id"] = int(image_id)
        record.update(
            category_id=1,
            keypoints=[round(float(v), 2) for v in triples.reshape(-1)],
            score=round(float(poses.scores[i]), 5),
            bbox=[round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
        )
        if poses.track_ids is not None:
            record["track_id"] = int(poses.track_ids[i])
        out.append(record)
    return out


def image_ids(annotation_file: str | os.PathLike) -> dict[str, int]:
    """file_name -> image_id from a COCO annotation file."""
    path = Path(annotation_file)
    try:
        data = json.loads(path.read_text())
        return {Path(im["file_name"]).name: int(im["id"]) for im in data["images"]}
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{path}: expected a COCO annotation file with an 'images' list of "
                         f"{{'id', 'file_name'}}, got {type(exc).__name__}: {exc}") from exc


class JsonLinesWriter:
    """One JSON object per line (a video's frames); renamed into place when closed cleanly.

    Used as a context manager; `lines` counts the records written so far.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._ctx = atomic_path(self.path)
        self._file = None
        self.lines = 0

    def __enter__(self) -> "JsonLinesWriter":
        tmp = self._ctx.__enter__()
        self._file = open(tmp, "w", encoding="utf-8")
        return self

    def write(self, record: dict) -> None:
        self._file.write(json.dumps(record) + "\n")
        self.lines += 1

    def __exit__(self, *exc: Any) -> bool:
        self._file.close()
        return bool(self._ctx.__exit__(*exc))


class VideoSink:
    """A context-managed video writer: frames go to a temporary file renamed on a clean exit.

    The frame size is taken from the first frame written.
    """

    FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mov": "mp4v", ".mkv": "mp4v"}

    def __init__(self, path: str | os.PathLike, fps: float = 25.0) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self._ctx = atomic_path(self.path)
        self._tmp: Path | None = None
        self._writer = None
        self.frames = 0

    def __enter__(self) -> "VideoSink":
        self._tmp = self._ctx.__enter__()
        return self

    def write(self, image: np.ndarray) -> None:
        import cv2

        if self._writer is None:
            fourcc = cv2.VideoWriter_fourcc(*self.FOURCC.get(self.path.suffix.lower(), "mp4v"))
            h, w = image.shape[:2]
            self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (w, h))
            if not self._writer.isOpened():
                raise RuntimeError(f"{self.path}: OpenCV cannot write {self.path.suffix} video here")
            self._size = (w, h)
        if (image.shape[1], image.shape[0]) != self._size:
            raise ValueError(f"{self.path}: frame size {image.shape[1]}x{image.shape[0]}, expected {self._size[0]}x{self._size[1]}")
        self._writer.write(image)
        self.frames += 1

    def __exit__(self, *exc: Any) -> bool:
        if self._writer is not None:
            self._writer.release()
        if exc[0] is None and self.frames == 0:
            return bool(self._ctx.__exit__(ValueError, ValueError(f"{self.path}: no frame written"), None))
        return bool(self._ctx.__exit__(*exc))
