"""Builders of broken and awkward input files, shared by the reader and `posekit infer` tests."""

from __future__ import annotations

import contextlib
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from paths import COCO_IMAGES, DEMO_VIDEO

GOOD_JPEG = COCO_IMAGES / "000000000785.jpg"  # one person, skiing


def _good() -> np.ndarray:
    return cv2.imread(str(GOOD_JPEG))


def zero_png(path: Path, width: int, height: int) -> None:
    """A grey 8-bit PNG of zeros written row by row: 20000 x 20000 compresses to ~400 kB."""
    row = b"\x00" * (width + 1)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def make(kind: str, folder: Path) -> Path:
    """Write one input of `kind` into `folder`; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "empty":
        path = folder / "empty.jpg"
        path.write_bytes(b"")
    elif kind == "text":
        path = folder / "notes.jpg"
        path.write_text("these are notes, not a picture\n")
    elif kind == "truncated_jpeg":
        path = folder / "cut.jpg"
        data = GOOD_JPEG.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "grayscale":
        path = folder / "gray.png"
        cv2.imwrite(str(path), cv2.cvtColor(_good(), cv2.COLOR_BGR2GRAY))
    elif kind == "rgba":
        path = folder / "rgba.png"
        cv2.imwrite(str(path), cv2.cvtColor(_good(), cv2.COLOR_BGR2BGRA))
    elif kind == "png16":
        path = folder / "deep.png"
        cv2.imwrite(str(path), _good().astype(np.uint16) * 257)
    elif kind == "one_pixel":
        path = folder / "dot.png"
        cv2.imwrite(str(path), _good()[:1, :1])
    elif kind == "huge":
        path = folder / "huge.png"
        zero_png(path, 20000, 20000)
    elif kind == "truncated_video":
        path = folder / "cut.mp4"
        data = DEMO_VIDEO.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "good":
        path = folder / "good.jpg"
        shutil.copy(GOOD_JPEG, path)
    else:
        raise ValueError(kind)
    return path


# kind -> (read_image works?, what the error says)
IMAGE_CASES = {
    "good": (True, None),
    "grayscale": (True, None),
    "rgba": (True, None),
    "png16": (True, None),
    "one_pixel": (True, None),
    "empty": (False, r"empty\.jpg: empty file \(0 bytes\), expected an image"),
    "text": (False, r"notes\.jpg: not a decodable image .*starting b'these ar'.*expected JPEG, PNG"),
    "truncated_jpeg": (False, r"cut\.jpg: truncated JPEG"),
    "huge": (False, r"huge\.png: image is 20000x20000 \(400 megapixels\), above the 100 megapixel limit"),
}


@contextlib.contextmanager
def shared_models(tmp_path_factory):
    """The same environment conftest's autouse fixture gives each test, for module-scoped
    fixtures (which are set up before any function-scoped one)."""
    from paths import MODELS, session_cache

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POSEKIT_MODELS", str(MODELS))
        mp.setenv("POSEKIT_CACHE", str(session_cache(tmp_path_factory)))
        yield
