"""The tile grid and reading one batch of tiles from a scene.

A scene is cut into a grid of core windows (tile_size x tile_size, the last
row/column clipped at the border). Each core is read with `halo` pixels of
context on every side, so the graph sees enough that the cropped cores join
without seams. All tiles have one shape, so they batch together.

At the scene border the tile is shifted inwards rather than padded: the
graph then meets the scene edge exactly where a whole-image pass meets it
(with the same zero padding inside its convolutions), so tiled labels equal
the labels of one forward pass over the whole scene. Only when the scene size
is not a multiple of `multiple` are the last few rows/columns mirrored
(reflection) to reach the next multiple.

Tile size, halo and shifts are multiples of `multiple`, which keeps every
tile on the pooling grid of a whole-image pass: a down-sampling net sees the
same pixels per pooling cell either way.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.windows import Window

from sipd.raster import open_raster
from sipd.validity import Validity


@dataclass(frozen=True)
class Tile:
    """One core window and how to build its input array.

    `row`/`col`/`height`/`width` are the core in scene pixels (clipped at the
    border); `offset` is where the core starts inside the input array. `read`
    is the scene window to read and `pad` (bottom, right) the mirrored rows
    and columns added to reach the tile shape.
    """

    index: int
    row: int
    col: int
    height: int
    width: int
    offset: tuple[int, int]
    read: Window
    pad: tuple[int, int]

    @property
    def core(self) -> Window:
        return Window(self.col, self.row, self.width, self.height)


def _place(start: int, tile: int, halo: int, padded: int) -> int:
    """First input row/col of a tile whose core starts at `start` (1-D)."""
    # Shifted inwards at either border so the tile never leaves the
    # (multiple-padded) scene; see the module docstring.
    return max(0, min(start - halo, padded - tile))


@dataclass(frozen=True)
class TileGrid:
    width: int
    height: int
    core_h: int  # core edge per axis (the tile size, or less for a small scene)
    core_w: int
    halo: int  # context per side (>= the model's halo, a multiple of `multiple`)
    multiple: int

    @property
    def padded_shape(self) -> tuple[int, int]:
        return (round_up(self.height, self.multiple), round_up(self.width, self.multiple))

    @property
    def tile_shape(self) -> tuple[int, int]:
        ph, pw = self.padded_shape
        return (min(self.core_h + 2 * self.halo, ph), min(self.core_w + 2 * self.halo, pw))

    @property
    def rows(self) -> int:
        return math.ceil(self.height / self.core_h)

    @property
    def cols(self) -> int:
        return math.ceil(self.width / self.core_w)

    def __len__(self) -> int:
        return self.rows * self.cols

    def tile(self, index: int) -> Tile:
        r0 = (index // self.cols) * self.core_h
        c0 = (index % self.cols) * self.core_w
        th, tw = self.tile_shape
        ph, pw = self.padded_shape
        top = _place(r0, th, self.halo, ph)
        left = _place(c0, tw, self.halo, pw)
        bottom = min(self.height, top + th)
        right = min(self.width, left + tw)
        return Tile(
            index=index,
            row=r0,
            col=c0,
            height=min(self.core_h, self.height - r0),
            width=min(self.core_w, self.width - c0),
            offset=(r0 - top, c0 - left),
            read=Window(left, top, right - left, bottom - top),
            pad=(top + th - bottom, left + tw - right),
        )

    def tiles(self) -> list[Tile]:
        return [self.tile(i) for i in range(len(self))]


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def make_grid(width: int, height: int, tile_size: int, halo: int, multiple: int) -> TileGrid:
    """The grid for a scene: cores of at most `tile_size`, spread evenly over each axis."""
    size = round_up(max(1, tile_size), multiple)
    return TileGrid(
        width=width,
        height=height,
        core_h=balanced_core(height, size, multiple),
        core_w=balanced_core(width, size, multiple),
        halo=round_up(halo, multiple),
        multiple=multiple,
    )


def balanced_core(extent: int, size: int, multiple: int) -> int:
    """Core edge along one axis: as few tiles as `size` allows, all about equally large.

    Equal cores waste the least computation on overlap: 5000 px in tiles of
    at most 1024 become 5 cores of 1000 px rather than four of 1024 and a
    last tile that recomputes 216 px of its neighbour (4% less work on a
    5000 x 5000 scene). A scene smaller than a tile is one tile of its own
    size (a 300 px scene is one 304 px tile, not a mostly mirrored 512 px one).
    """
    padded = round_up(extent, multiple)
    count = math.ceil(padded / size)
    return round_up(math.ceil(padded / count), multiple)


class TileReader:
    """Reads tiles of one scene into float32 arrays, with their invalid-pixel masks.

    Not thread-safe (a rasterio dataset handle is not): each reader thread
    makes its own. Invalid pixels (GDAL's dataset mask, sipd.validity) are
    written 0; every band value that is nodata or non-finite, in a valid
    pixel or not, is replaced by the band's normalization mean before the
    graph sees it, so a fill value like -9999 or NaN does not bleed into
    valid neighbours or decide a pixel's class.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fill: np.ndarray,
        background: np.ndarray | str | os.PathLike[str] | None = None,
    ) -> None:
        self.ds = open_raster(path)
        self.fill = np.asarray(fill, dtype=np.float32).reshape(-1, 1, 1)
        self._bg_array: np.ndarray | None = None
        self._bg_ds: rasterio.DatasetReader | None = None
        if isinstance(background, np.ndarray):
            self._bg_array = background
        elif background is not None:
            try:
                self._bg_ds = open_raster(background)
            except BaseException:
                self.ds.close()
                raise
        self._bg_masked = self._bg_ds is not None and self._bg_ds.mask_flag_enums[0] != [
            MaskFlags.all_valid
        ]
        self._validity = Validity(self.ds)

    def close(self) -> None:
        self.ds.close()
        if self._bg_ds is not None:
            self._bg_ds.close()

    def __enter__(self) -> TileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _background(self, tile: Tile) -> np.ndarray | None:
        rows = slice(tile.row, tile.row + tile.height)
        cols = slice(tile.col, tile.col + tile.width)
        if self._bg_array is not None:
            bg = self._bg_array[rows, cols].astype(bool, copy=False)
        elif self._bg_ds is not None:
            bg = self._bg_ds.read(1, window=tile.core) != 0
            if self._bg_masked:  # the mask file's own nodata pixels say nothing
                bg &= self._bg_ds.read_masks(1, window=tile.core) != 0
        else:
            return None
        return bg if bg.any() else None

    def read_into(self, tile: Tile, out: np.ndarray) -> np.ndarray | None:
        """Fill `out` [C, H, W] with the tile's input; return its core's invalid mask or None."""
        data = self.ds.read(window=tile.read, out_dtype="float32")
        band_bad = self._validity.band_invalid(data, tile.read)
        invalid = self._validity.invalid(data, tile.read, band_bad)
        if band_bad is not None:
            # Per band: a valid pixel with one band at nodata is classified
            # from its other bands, with the fill value never reaching the net.
            np.copyto(data, np.broadcast_to(self.fill, data.shape), where=band_bad)
        bottom, right = tile.pad
        if bottom or right:
            data = np.pad(data, ((0, 0), (0, bottom), (0, right)), mode="reflect")
        out[...] = data
        core_invalid = None
        if invalid is not None:
            r = tile.row - int(tile.read.row_off)
            c = tile.col - int(tile.read.col_off)
            core_invalid = invalid[r : r + tile.height, c : c + tile.width]
            if not core_invalid.any():
                core_invalid = None
        bg = self._background(tile)
        if bg is not None:
            core_invalid = bg if core_invalid is None else core_invalid | bg
        return core_invalid
