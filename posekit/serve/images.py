"""Decode an uploaded image with limits, each refusal a `RequestError` with its HTTP status.

The type comes from the bytes' signature, not from what the client claims; the pixel count from
the header, before decoding, so a small file that declares a huge image never reaches memory.
"""

from __future__ import annotations

import io
import struct

import numpy as np

from posekit.io import jpeg_size

FORMATS = "JPEG, PNG, BMP or WebP"


class RequestError(ValueError):
    """A request the server refuses: `status` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def sniff(data: bytes) -> str | None:
    """"jpeg", "png", "bmp", "webp" from the first bytes, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:2] == b"BM":
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def header_size(data: bytes, kind: str) -> tuple[int, int] | None:
    """(width, height) declared by the header, or None when the header is cut short."""
    if kind == "png":
        return struct.unpack(">II", data[16:24]) if len(data) >= 24 and data[12:16] == b"IHDR" else None
    if kind == "bmp":
        if len(data) < 26:
            return None
        w, h = struct.unpack("<ii", data[18:26])
        return abs(w), abs(h)
    if kind == "webp":
        if len(data) < 30:
            return None
        chunk = data[12:16]
        if chunk == b"VP8 ":  # lossy: 14-bit sizes after the key-frame start code
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if chunk == b"VP8L":  # lossless: 14 bits each, minus one
            bits = struct.unpack("<I", data[21:25])[0]
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":  # extended: 24-bit canvas sizes, minus one
            return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
        return None
    return jpeg_size(io.BytesIO(data))


def decode_image(data: bytes, max_pixels: int, name: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 BGR from an uploaded file's bytes.

    415 for bytes that are not a JPEG, PNG, BMP or WebP; 413 for a header declaring more than
    `max_pixels`; 400 for an empty, truncated or undecodable file. `name` starts each message.
    """
    import cv2

    if not data:
        raise RequestError(400, f"{name}: empty body (0 bytes), expected a {FORMATS} image")
    kind = sniff(data)
    if kind is None:
        raise RequestError(415, f"{name}: not a {FORMATS} image ({len(data)} bytes starting {data[:8]!r})")
    size = header_size(data, kind)
    if size is None:
        raise RequestError(400, f"{name}: truncated {kind.upper()} ({len(data)} bytes): its header has no image size")
    w, h = size
    if w * h > max_pixels:
        raise RequestError(413, f"{name}: image is {w}x{h} ({w * h:,} pixels), above this server's limit of "
                                f"{max_pixels:,} pixels; downscale it first")
    if kind == "jpeg" and b"\xff\xd9" not in data[-64:]:
        # libjpeg decodes a cut-off file with a warning and grey fill; refuse it instead.
        raise RequestError(400, f"{name}: truncated JPEG (no end-of-image marker in the last bytes of {len(data)} bytes)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise RequestError(400, f"{name}: {kind.upper()} of {len(data)} bytes could not be decoded (corrupt or truncated)")
    if image.shape[1] * image.shape[0] > max_pixels:  # the header lied
        raise RequestError(413, f"{name}: decoded to {image.shape[1]}x{image.shape[0]} pixels, above this server's "
                                f"limit of {max_pixels:,}")
    return image
