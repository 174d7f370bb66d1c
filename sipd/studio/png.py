"""PNG encoding of 8-bit grey, RGB or RGBA arrays.

The studio sends tiles and overlays as PNG. The format's core is a zlib stream
of filtered rows in three chunks (PNG specification, W3C 2003, sections 5, 9
and 11), a few lines with the standard library, so the daemon needs no imaging
package for it.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types by channel count: grey, grey + alpha, RGB, RGBA.
_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def encode_png(pixels: np.ndarray, level: int = 1) -> bytes:
    """`pixels`: uint8 [H, W] or [H, W, C] with C in 1-4. Level 1: fast, tiles are small."""
    array = np.asarray(pixels)
    if array.dtype != np.uint8:
        raise ValueError(f"PNG pixels must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in _COLOUR_TYPE or 0 in array.shape[:2]:
        raise ValueError(f"PNG pixels must be [H, W] or [H, W, 1-4], got {array.shape}")
    height, width, channels = array.shape
    # Filter type 0 (none) before each row: the rows as they are.
    rows = np.zeros((height, width * channels + 1), dtype=np.uint8)
    rows[:, 1:] = np.ascontiguousarray(array).reshape(height, -1)
    header = struct.pack(">IIBBBBB", width, height, 8, _COLOUR_TYPE[channels], 0, 0, 0)
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level))
        + _chunk(b"IEND", b"")
    )
