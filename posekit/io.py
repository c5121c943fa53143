"""Readers (images, folders, globs, videos, cameras -> frames) and writers (COCO results JSON,
JSON Lines per video frame, rendered images and videos).

Every reader error names the file and what was expected versus found (`InputError`). Every
writer writes to a temporary name beside its target and renames it into place only when the
whole file is written, so an interrupted run never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import logging
import os
import re
import struct
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import orjson

from posekit.journal import signals_held
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
    an image; image: (H, W, 3) uint8 BGR; timestamp: seconds from the start of a video as the
    container stamps the frame (variable frame rates included), None for an image.
    """

    source: str
    index: int
    image: np.ndarray
    timestamp: float | None = None


# -- image headers ------------------------------------------------------------------------------


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """(width, height) from the file header, without decoding; None for a format not parsed here.

    Reads PNG, JPEG, BMP, GIF, WebP (lossy, lossless, extended), TIFF (classic and BigTIFF, the
    first page: the one OpenCV decodes) and PNM (PBM/PGM/PPM) headers.
    """
    with open(path, "rb") as f:
        head = f.read(32)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])
        if head[:2] == b"BM" and len(head) >= 26:
            w, h = struct.unpack("<ii", head[18:26])
            return abs(w), abs(h)
        if head[:2] == b"\xff\xd8":
            return jpeg_size(f)
        if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
            return struct.unpack("<HH", head[6:10])
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
            return _webp_size(head)
        if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return _tiff_size(f, head)
        if len(head) >= 2 and head[:1] == b"P" and head[1:2] in b"123456":
            return _pnm_size(head + f.read(1024))
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 ":  # lossy: 14-bit sizes after the key-frame start code
        w, h = struct.unpack("<HH", head[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":  # lossless: 14 bits each, minus one, after the 0x2f signature
        bits = struct.unpack("<I", head[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas sizes, minus one
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _tiff_size(f: Any, head: bytes) -> tuple[int, int] | None:
    order = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\x00", b"\x00+")
    if big:
        offset = struct.unpack(order + "Q", head[8:16])[0]
        count_fmt, entry_size, value_at = "Q", 20, 12
    else:
        offset = struct.unpack(order + "I", head[4:8])[0]
        count_fmt, entry_size, value_at = "H", 12, 8
    f.seek(offset)
    raw = f.read(struct.calcsize(count_fmt))
    if len(raw) < struct.calcsize(count_fmt):
        return None
    count = struct.unpack(order + count_fmt, raw)[0]
    entries = f.read(entry_size * min(count, 4096))
    found: dict[int, int] = {}
    for n in range(len(entries) // entry_size):
        entry = entries[n * entry_size:(n + 1) * entry_size]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT, LONG or LONG8
            fmt = {3: "H", 4: "I", 16: "Q"}.get(kind)
            if fmt is None:
                return None
            found[tag] = struct.unpack(order + fmt, entry[value_at:value_at + struct.calcsize(fmt)])[0]
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def _pnm_size(head: bytes) -> tuple[int, int] | None:
    tokens: list[bytes] = []
    for line in head[2:].split(b"\n"):
        tokens += line.split(b"#", 1)[0].split()
        if len(tokens) >= 2:
            break
    try:
        return int(tokens[0]), int(tokens[1])
    except (IndexError, ValueError):
        return None


def jpeg_size(f: Any) -> tuple[int, int] | None:
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


def jpeg_complete(data: bytes) -> bool:
    """Whether a JPEG holds its end-of-image marker after its first scan.

    Walks the marker segments (so an EXIF thumbnail's own markers are skipped) to the first
    start-of-scan, then looks for the end-of-image marker anywhere after it: entropy-coded data
    never holds 0xFFD9 (0xFF is stuffed), so one is found exactly when the image data is whole,
    whatever trails it (motion-photo videos, vendor trailers, padding).
    """
    pos = 2
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return b"\xff\xd9" in data  # not a marker where one belongs: judge by any end marker
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker == 0xD9:
            return False  # an end before any scan
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker == 0xDA:
            return data.find(b"\xff\xd9", pos + 2 + length) != -1
        pos += 2 + length
    return False


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
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: cannot read (permission denied)")
    if size == 0:
        raise InputError(f"{path}: empty file (0 bytes), expected an image")
    try:
        dims = image_size(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except struct.error:
        dims = None  # a header cut short: the decoder below names the problem
    if dims is not None:
        w, h = dims
        if w * h > max_pixels:
            raise InputError(f"{path}: image is {w}x{h} ({w * h / 1e6:.0f} megapixels), above the "
                             f"{max_pixels / 1e6:.0f} megapixel limit; downscale it first")
    try:
        data = np.fromfile(path, np.uint8)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data[:2].tobytes() == b"\xff\xd8" and not jpeg_complete(data.tobytes()):
        # libjpeg decodes a cut-off file with a warning and grey fill; refuse it instead.
        raise InputError(f"{path}: truncated JPEG (no end-of-image marker after its image data, {size} bytes)")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)  # 3-channel 8-bit BGR whatever the file holds
    if image is None:
        raise InputError(f"{path}: not a decodable image ({size} bytes starting {data[:8].tobytes()!r}); "
                         f"expected JPEG, PNG, BMP, WebP or TIFF")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"{path}: decoded to an empty image {image.shape}")
    if dims is None and image.shape[0] * image.shape[1] > max_pixels:  # a format whose header is not read here
        raise InputError(f"{path}: image is {image.shape[1]}x{image.shape[0]}, above the "
                         f"{max_pixels / 1e6:.0f} megapixel limit; downscale it first")
    return image


# -- finding inputs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One input: kind is "image", "video" or "camera"; path is the file (or the camera index)."""

    kind: str
    path: str


def expand_inputs(inputs: Sequence[str]) -> tuple[list[Source], list[str]]:
    """Turn command-line inputs into sources: files, folders (recursively), globs, camera indices.

    Folders and globs follow symbolic links but visit each real folder once and list each real
    file once, so a link loop neither hangs the search nor repeats a file. Returns (sources,
    problems): a problem names an input that matched nothing usable.
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
            found = [p for p in _walk_files(path) if _kind(p) is not None]
            if not found:
                problems.append(f"{item}: folder holds no image or video files")
            sources.extend(Source(_kind(p), str(p)) for p in found)
        elif path.is_file():
            # An explicitly named file is tried even with an unknown suffix: the decoder decides.
            sources.append(Source(_kind(path) or "image", str(path)))
        elif glob.has_magic(item):
            found = [p for p in _glob_files(item) if _kind(p) is not None]
            if not found:
                problems.append(f"{item}: pattern matched no image or video files")
            sources.extend(Source(_kind(p), str(p)) for p in found)
        else:
            problems.append(f"{item}: no such file or folder")
    return sources, problems


def _walk_files(root: Path) -> list[Path]:
    """Every file below `root`, sorted, following links to folders but entering each real folder
    once (a link loop is cut where it closes) and keeping each real file once."""
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()
    found: list[Path] = []
    loops = 0
    for folder, dirs, files in os.walk(root, followlinks=True):
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen_dirs:
            dirs[:] = []
            loops += 1
            continue
        seen_dirs.add((st.st_dev, st.st_ino))
        dirs.sort()
        for name in sorted(files):
            p = Path(folder) / name
            try:
                fst = p.stat()
            except OSError:  # a dangling link
                continue
            if (fst.st_dev, fst.st_ino) not in seen_files:
                seen_files.add((fst.st_dev, fst.st_ino))
                found.append(p)
    if loops:
        log.info("%s: skipped %d linked folder(s) already visited (a link loop)", root, loops)
    return sorted(found)


def _glob_files(pattern: str) -> list[Path]:
    """Files matching a glob pattern ("**" = any depth), each real file once, never looping."""
    import fnmatch
    import re

    parts = Path(pattern).parts
    fixed = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = Path(*parts[:fixed]) if fixed else Path(".")
    rest = parts[fixed:]
    if "**" not in rest:  # a fixed depth: plain glob cannot loop
        matches = (Path(p) for p in glob.glob(pattern))
        return _unique_files(sorted(p for p in matches if p.is_file()))
    # "**" matches zero or more folders: one regular expression over the path below root
    pieces = []
    for n, part in enumerate(rest):
        if part == "**":
            pieces.append("(?:[^/]+/)*")
        else:
            pieces.append(fnmatch.translate(part)[4:-3].replace(".*", "[^/]*") + ("/" if n < len(rest) - 1 else ""))
    regex = re.compile("".join(pieces) + r"\Z")
    if not root.is_dir():
        return []
    matches = [p for p in _walk_files(root) if regex.match(p.relative_to(root).as_posix())
               and not any(s.startswith(".") for s in p.relative_to(root).parts)]
    return matches


def _unique_files(paths: list[Path]) -> list[Path]:
    seen: set[tuple[int, int]] = set()
    unique = []
    for p in paths:
        st = p.stat()
        if (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            unique.append(p)
    return unique


def output_names(sources: Sequence[Source]) -> list[str]:
    """A distinct, stable output name (a relative POSIX path) for every input, in order.

    The file name when it is unique among the inputs; for names that occur more than once (say
    ``day1/img.jpg`` and ``day2/img.jpg``), the path below the folder those inputs share, so
    their outputs neither overwrite each other nor mix. Videos are compared without their suffix
    (their outputs are ``<stem>.jsonl`` and so on): ``clip.mp4`` and ``clip.avi`` in one folder
    become ``clip.mp4.mp4`` and ``clip.avi.avi`` (outputs ``clip.mp4.jsonl``, ``clip.avi.jsonl``).
    Any name still taken gets ``-2``, ``-3``... (the same file given twice; ``a.jpg a.jpg
    a-2.jpg`` -> ``a.jpg``, ``a-3.jpg``, ``a-2.jpg``). A camera is named ``camera<index>``.
    The same inputs in the same order always get the same names.
    """
    def key(i: int, name: str) -> str:
        return os.path.splitext(name)[0] if sources[i].kind != "image" else name

    base = [f"camera{s.path}" if s.kind == "camera" else Path(s.path).name for s in sources]
    counts: dict[str, int] = {}
    for i, name in enumerate(base):
        counts[key(i, name)] = counts.get(key(i, name), 0) + 1
    clashing = [i for i, s in enumerate(sources) if counts[key(i, base[i])] > 1 and s.kind != "camera"]
    names = list(base)
    if clashing:
        absolute = {i: os.path.abspath(sources[i].path) for i in clashing}
        root = os.path.commonpath([os.path.dirname(a) for a in absolute.values()])
        for i in clashing:
            names[i] = Path(os.path.relpath(absolute[i], root)).as_posix()
    # videos whose stems still clash (clip.mp4, clip.avi in one folder) keep their suffix in the stem
    stems: dict[str, int] = {}
    for i, name in enumerate(names):
        stems[key(i, name)] = stems.get(key(i, name), 0) + 1
    for i, name in enumerate(names):
        if sources[i].kind == "video" and stems[key(i, name)] > 1:
            suffix = os.path.splitext(name)[1]
            if suffix:
                names[i] = f"{name}{suffix}"
    # whatever is still taken (the same file twice, or a name that an earlier "-2" took) is numbered
    taken = {key(i, n) for i, n in enumerate(names)}
    used: set[str] = set()
    for i, name in enumerate(names):
        if key(i, name) in used:
            stem, suffix = os.path.splitext(name)
            n = 2
            while key(i, f"{stem}-{n}{suffix}") in taken | used:
                n += 1
            names[i] = f"{stem}-{n}{suffix}"
        used.add(key(i, names[i]))
    return names


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None


# Containers whose header holds an exact frame count (an index); for the others (Matroska, WebM,
# MPEG streams) OpenCV estimates the count from duration x frame rate, which variable-frame-rate
# files miss by far, so only decoding tells.
INDEXED_CONTAINERS = frozenset({".avi", ".mp4", ".mov", ".m4v"})


class VideoReader:
    """Frames of a video file or camera (an int index), decoded one at a time, with the
    container's timestamps. Iterate it (from any one thread); `close()` (also on leaving a
    `with` block) releases the capture from the calling thread, waiting for a read in progress,
    so no decoder is left running when the program ends.

    Raises `InputError` when the file cannot be opened, holds no frame, or (for a container that
    indexes its frames) ends before the frame count its header declares, after yielding the
    frames it had. `max_frames` stops after that many frames.
    """

    def __init__(self, source: str | int, max_frames: int | None = None) -> None:
        import cv2

        self.is_camera = isinstance(source, int)
        self.name = f"camera:{source}" if self.is_camera else str(source)
        if not self.is_camera:
            path = Path(source)
            if not path.is_file():
                raise InputError(f"{self.name}: no such file")
            if path.stat().st_size == 0:
                raise InputError(f"{self.name}: empty file (0 bytes), expected a video")
            if not os.access(path, os.R_OK):
                raise InputError(f"{self.name}: cannot read (permission denied)")
        self.max_frames = max_frames
        self._lock = threading.Lock()
        self._closed = False
        self.frames = 0
        self._capture = cv2.VideoCapture(source)
        if not self._capture.isOpened():
            self.close()
            raise InputError(f"{self.name}: cannot open as a video (OpenCV could not read its container)")
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 and np.isfinite(fps) and fps < 1000 else None
        declared = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not self.is_camera else 0
        self.declared = max(declared, 0)
        indexed = not self.is_camera and Path(str(source)).suffix.lower() in INDEXED_CONTAINERS
        self.exact_count = self.declared if indexed else 0

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._capture.release()

    def __iter__(self) -> Iterator[Frame]:
        import cv2

        last = -1.0
        while self.max_frames is None or self.frames < self.max_frames:
            with self._lock:
                if self._closed:
                    return
                ok, image = self._capture.read()
                msec = self._capture.get(cv2.CAP_PROP_POS_MSEC) if ok else 0.0
            if not ok:
                break
            if self.is_camera or not np.isfinite(msec) or msec < 0 or (msec <= last and self.frames > 0):
                # no container clock (cameras, broken stamps): count frames at the nominal rate
                msec = last + 1000.0 / (self.fps or 30.0) if self.frames else 0.0
            last = msec
            yield Frame(self.name, self.frames, image, round(msec / 1000.0, 6))
            self.frames += 1
        if self.frames == 0:
            raise InputError(f"{self.name}: no decodable frame (header declares {self.declared})")
        if self.max_frames is None and self.exact_count > 0 and self.frames < self.exact_count:
            raise InputError(f"{self.name}: truncated video, decoded {self.frames} of the {self.exact_count} "
                             f"frames its header declares")


def read_frame_range(path: str, start: int, stop: int | None, seek: bool = True, name: str | None = None
                     ) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame number, timestamp in seconds, BGR image) for frames [start, stop) of a video (to its
    end when stop is None), with `posekit.io.VideoReader`'s timestamps.

    seek: jump to `start` by frame number (OpenCV seeks to the key frame before it and decodes
    forward); without it, or when the seek lands elsewhere, the frames before `start` are decoded
    and dropped. A range that starts past the last frame is empty.
    """
    import cv2

    name = name or path
    if not Path(path).is_file():
        raise InputError(f"{name}: no such file")
    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise InputError(f"{name}: cannot open as a video (OpenCV could not read its container)")
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = float(fps) if fps and fps > 0 and np.isfinite(fps) and fps < 1000 else None
        position = 0
        if start and seek:
            capture.set(cv2.CAP_PROP_POS_FRAMES, start)
            position = int(capture.get(cv2.CAP_PROP_POS_FRAMES))
            if position != start:
                log.info("%s: seeking to frame %d landed on %d; decoding from the start", name, start, position)
                capture.release()
                capture = cv2.VideoCapture(path)
                position = 0
        while position < start:
            if not capture.grab():
                return
            position += 1
        last = -1.0
        index = start
        while stop is None or index < stop:
            ok, image = capture.read()
            if not ok:
                break
            msec = capture.get(cv2.CAP_PROP_POS_MSEC)
            if not np.isfinite(msec) or msec < 0 or (msec <= last and index > start):
                # no usable container clock: count frames at the nominal rate, as VideoReader does
                msec = last + 1000.0 / (fps or 30.0) if index > start else index * 1000.0 / (fps or 30.0)
            last = msec
            yield index, round(msec / 1000.0, 6), image
            index += 1
    finally:
        capture.release()


def iter_video(source: str | int, max_frames: int | None = None) -> Iterator[Frame]:
    """Frames of a video file or camera, decoded one at a time (see `VideoReader`)."""
    with VideoReader(source, max_frames) as reader:
        yield from reader


def video_fps(source: str | int, default: float = 25.0) -> float:
    import cv2

    capture = cv2.VideoCapture(source)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return float(fps) if fps and fps > 0 and np.isfinite(fps) and fps < 1000 else default


# -- writing ------------------------------------------------------------------------------------


class OutputError(ValueError):
    """An output folder or file that cannot be written; the message names it and why."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error means no more can be written at all: the disk (or quota) is full, or a
    file-size limit (RLIMIT_FSIZE) was reached. Such an error stops a batch; others skip an input."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def describe_os_error(exc: OSError) -> str:
    """One line for an OS error: 'disk full' style reason plus the file it concerns."""
    reason = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded",
              errno.EFBIG: "file too large for this system's file-size limit (disk full)",
              errno.EACCES: "permission denied", errno.EPERM: "permission denied",
              errno.EROFS: "read-only file system"}.get(exc.errno or -1, exc.strerror or str(exc))
    where = exc.filename if exc.filename is not None else ""
    return f"{where}: {reason}" if where else reason


def prepare_out(out: str | os.PathLike) -> Path:
    """Make the output folder (and its parents) and check that files can be created in it.

    Raises `OutputError` with one line when `out` names an existing file, sits on a read-only
    file system, or cannot be created or written.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: is a file, expected a folder (or a path to create one at)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".posekit-write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"--out {out}: cannot write there ({describe_os_error(exc).split(': ')[-1]})") from None
    return out


def check_out(out: str | os.PathLike) -> None:
    """`prepare_out`'s checks without creating anything: `OutputError` when `out` names a file, or
    its nearest existing folder cannot be written (permissions, a read-only file system)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: is a file, expected a folder (or a path to create one at)")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"--out {out}: {parent} is a file, so no folder can be made there")
    if not os.access(parent, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only(parent) else "permission denied"
        raise OutputError(f"--out {out}: cannot write in {parent} ({reason})")


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


_PART = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.part(\.[^.]+)?$")  # what atomic_path's mkstemp names look like


def remove_stale_parts(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries that a killed run (SIGKILL, power loss: no handler runs) left in
    `folder` and its subfolders; returns them. Only names `atomic_path` makes are touched."""
    removed = []
    for path in Path(folder).rglob(".*.part*"):
        if path.is_file() and _PART.match(path.name):
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        log.warning("%s: removed %d unfinished file(s) left by a killed run, e.g. %s", folder, len(removed), removed[0].name)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix) that is renamed to `path` on success and
    deleted on any error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp: Path | None = None
    try:
        with signals_held():  # a Ctrl-C between making the file and knowing its name would leave it behind
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".part{path.suffix}")
            os.close(fd)
            tmp = Path(tmp_name)
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def json_line(record: Any) -> bytes:
    """One JSON Lines line: `record` as compact JSON and a newline. orjson: at GPU frame rates
    the stdlib's json.dumps (0.3 ms for 15 people) is a share of every frame's main-thread time."""
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def write_json(path: str | os.PathLike, data: Any, pretty: bool = False) -> Path:
    """`data` as JSON at `path`, atomically: compact (pretty: indented by 2), numpy scalars and
    arrays as numbers, NaN as null (valid JSON, which Python's own NaN is not)."""
    option = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if pretty else 0)
    with atomic_path(path) as tmp:
        tmp.write_bytes(orjson.dumps(data, option=option))
    return Path(path)


# suffixes OpenCV encodes everywhere; a render of anything else (.jfif, .jpg.bak, no suffix) is a JPEG
RENDER_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def render_name(name: str) -> str:
    """The render's file name for an image output name: the same name when OpenCV can encode its
    suffix, else the name with ``.jpg`` added (``photo.jfif`` -> ``photo.jfif.jpg``)."""
    return name if Path(name).suffix.lower() in RENDER_SUFFIXES else f"{name}.jpg"


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    import cv2

    path = Path(path)
    try:
        ok, encoded = cv2.imencode(path.suffix or ".jpg", image)
    except cv2.error as exc:
        raise ValueError(f"{path}: OpenCV cannot encode {path.suffix or 'a file without suffix'} images "
                         f"({str(exc).strip().splitlines()[-1]})") from None
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode an image of shape {image.shape} as {path.suffix}")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(encoded.tobytes())  # (ndarray.tofile reports a full disk without its errno)
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


class _Committed:
    """The exit rule shared by the streaming writers: a file holding at least one record is
    renamed into place however its `with` block ends (an interrupt, an error, a truncated input:
    what was finished is kept); an empty one is deleted, and so is one cut by a full disk unless
    the writer keeps it whole (JSON Lines cut back to their last complete line)."""

    _ctx: Any
    path: Path

    def _finish(self, count: int, exc: tuple, empty_ok: bool, whole_on_disk_full: bool = False) -> bool:
        failed = exc[0] is not None
        keep = (count > 0 or (empty_ok and not failed)) and not (failed and is_disk_full(exc[1]) and not whole_on_disk_full)
        if keep:
            try:
                self._ctx.__exit__(None, None, None)
            except OSError as err:  # the rename itself failed: nothing kept
                if not failed:
                    raise
                log.error("%s: could not keep the partial file (%s)", self.path, describe_os_error(err))
            return False
        if not failed:  # a clean exit with nothing written
            err = ValueError(f"{self.path}: nothing written")
            self._ctx.__exit__(ValueError, err, None)
            raise err
        self._ctx.__exit__(*exc)  # deletes the temporary
        return False


class JsonLinesWriter(_Committed):
    """One JSON object per line (a video's frames); renamed into place when its block ends.

    Used as a context manager; `lines` counts the records written so far. On an error or
    interrupt the lines written so far are kept (each line is whole: a record is written and
    flushed in one piece); a file with no line is not left behind.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._ctx = atomic_path(self.path)
        self._file = None
        self.lines = 0

    def __enter__(self) -> "JsonLinesWriter":
        tmp = self._ctx.__enter__()
        self._file = open(tmp, "wb", buffering=0)
        self._size = 0
        return self

    def write(self, record: dict) -> None:
        data = memoryview(json_line(record))
        try:
            while data:  # unbuffered: the line is on disk when this returns
                data = data[self._file.write(data):]
        except OSError:  # a full disk: cut the file back to its last complete line
            with contextlib.suppress(OSError):
                os.ftruncate(self._file.fileno(), self._size)
            raise
        self._size = self._file.tell()
        self.lines += 1

    def __exit__(self, *exc: Any) -> bool:
        self._file.close()
        return self._finish(self.lines, exc, empty_ok=True, whole_on_disk_full=True)


_H264_MESSAGE_SHOWN = False


def h264_available() -> bool:
    """Whether PyAV with an H.264 encoder (libx264) is installed: renders are then H.264 MP4,
    which browsers play; otherwise OpenCV's MPEG-4 Part 2."""
    try:
        import av
    except ImportError:
        return False
    return "libx264" in av.codecs_available


class VideoSink(_Committed):
    """A context-managed video writer: frames go to a temporary file renamed when the block ends.

    The frame size is taken from the first frame written. MP4/MOV/MKV renders are H.264
    (yuv420p, browser-playable) where PyAV with libx264 is installed, else MPEG-4 Part 2 through
    OpenCV with a one-time warning; AVI is Motion JPEG. `codec` says which was used. On an error
    or interrupt the frames written so far are kept as a playable file; a file without frames is
    not left behind.
    """

    FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mov": "mp4v", ".mkv": "mp4v"}
    H264_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".m4v"})

    def __init__(self, path: str | os.PathLike, fps: float = 25.0, h264: bool | None = None) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self._ctx = atomic_path(self.path)
        self._tmp: Path | None = None
        self._writer = None
        self._av: Any = None
        self.h264 = (self.path.suffix.lower() in self.H264_SUFFIXES and h264_available()) if h264 is None else h264
        self.codec: str | None = None
        self.frames = 0

    def __enter__(self) -> "VideoSink":
        self._tmp = self._ctx.__enter__()
        return self

    def _open(self, w: int, h: int) -> None:
        global _H264_MESSAGE_SHOWN
        import cv2

        self._size = (w, h)
        if self.h264:
            import av
            from fractions import Fraction

            self._av = av.open(str(self._tmp), "w")
            stream = self._av.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            stream.width, stream.height = w + w % 2, h + h % 2  # yuv420p needs even sizes
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "23", "preset": "veryfast"}
            # x264's frame threads (PyAV asks for slice threads): encode() hands the frame over
            # and returns, where slices keep the caller waiting for each frame
            stream.codec_context.thread_type = "AUTO"
            self._stream = stream
            self.codec = "h264"
            return
        if self.path.suffix.lower() in self.H264_SUFFIXES and not _H264_MESSAGE_SHOWN:
            _H264_MESSAGE_SHOWN = True
            log.warning("writing MPEG-4 Part 2 video, which web browsers do not play: H.264 needs PyAV "
                        "with libx264 (pip install av)")
        fourcc = self.FOURCC.get(self.path.suffix.lower(), "mp4v")
        self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*fourcc), self.fps, (w, h))
        if not self._writer.isOpened():
            raise RuntimeError(f"{self.path}: OpenCV cannot write {self.path.suffix} video here")
        self.codec = fourcc

    def write(self, image: np.ndarray) -> None:
        if self.codec is None:
            self._open(image.shape[1], image.shape[0])
        if (image.shape[1], image.shape[0]) != self._size:
            raise ValueError(f"{self.path}: frame size {image.shape[1]}x{image.shape[0]}, expected {self._size[0]}x{self._size[1]}")
        if self._av is not None:
            import av

            import cv2

            w, h = self._size
            if w % 2 or h % 2:
                image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            # OpenCV's BGR -> I420 (BT.601, chroma averaged) is several times faster than PyAV's
            # swscale conversion and closer to the source (PSNR 46 against 41 dB on the demo video)
            yuv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2YUV_I420)
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(yuv, format="yuv420p")):
                self._av.mux(packet)
        else:
            self._writer.write(image)
        self.frames += 1

    def _release(self) -> None:
        if self._av is not None:
            try:
                for packet in self._stream.encode():
                    self._av.mux(packet)
            finally:
                self._av.close()
                self._av = None
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __exit__(self, *exc: Any) -> bool:
        try:
            self._release()
        except OSError as err:  # a full disk while writing the last packets
            if exc[0] is None:
                exc = (type(err), err, None)
        return self._finish(self.frames, exc, empty_ok=False)
