"""Sentinel-2 quality masks as row blocks of the output grid (True = make nodata).

- L2A: the scene classification SCL (20 m and 60 m files, one class code per pixel;
  codes from the product's own Scene_Classification_List);
- L1C from baseline 04.00: MSK_CLASSI_B00 (60 m raster, one 0/1 layer each for opaque
  clouds, cirrus, snow/ice, in that order; ESA, Sentinel-2 Products Specification
  Document, PSD 14.8 "MSK_CLASSI", and the L1C Data Quality Report);
- L1C before 04.00: MSK_CLOUDS_B00.gml, polygons of type OPAQUE or CIRRUS in the tile's
  CRS, rasterised onto each output block (pixel centres inside a polygon are masked).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from affine import Affine
from rasterio import features
from rasterio.windows import Window

from sipd.contracts.options.sentinel2 import L1C_MASKS, MASK_GROUPS, SCL_CLASSES
from sipd.errors import InvalidArgument
from sipd.preprocess.sar_xml import all_named
from sipd.preprocess.sentinel2_resample import Scale, coarsen_any, refine_nearest, source_rows
from sipd.preprocess.streaming import DatasetsPerThread

# MSK_CLASSI_B00 layers (1-based raster bands) and MSK_CLOUDS maskType per L1C name.
CLASSI_LAYERS = {"opaque_cloud": 1, "cirrus": 2, "snow": 3}
GML_TYPES = {"opaque_cloud": "OPAQUE", "cirrus": "CIRRUS"}


class BlockMask(Protocol):
    def block(self, r0: int, r1: int, datasets: DatasetsPerThread) -> np.ndarray: ...


def expand(names: list[str], level: str) -> list[str]:
    """The option's mask names as classes of this product's level (groups expanded);
    a name of the other level is an error saying which names apply."""
    accepted = list(SCL_CLASSES) if level == "L2A" else list(L1C_MASKS)
    out: list[str] = []
    for name in names:
        members = MASK_GROUPS[name][level] if name in MASK_GROUPS else (name,)
        for m in members:
            if m not in accepted:
                raise InvalidArgument(
                    f"mask class {name!r} does not exist in {level} products; accepted for "
                    f"{level}: {', '.join([*accepted, *MASK_GROUPS])}"
                )
            if m not in out:
                out.append(m)
    return out


@dataclass(frozen=True)
class RasterMask:
    """A mask read from a raster: pixels whose value is in `codes` (SCL), or non-zero in
    any of `layers` (MSK_CLASSI), brought onto the output grid."""

    path: str
    scale: Scale
    height: int
    width: int
    out_width: int
    codes: tuple[int, ...] = ()
    layers: tuple[int, ...] = ()

    def block(self, r0: int, r1: int, datasets: DatasetsPerThread) -> np.ndarray:
        s0, s1 = source_rows(Scale(self.scale.coarsen, self.scale.refine), r0, r1, self.height)
        if self.scale.refine > 1:  # nearest needs no halo
            k = self.scale.refine
            s0, s1 = r0 // k, min(self.height, (r1 - 1) // k + 1)
        ds = datasets.get(self.path)
        window = Window(0, s0, self.width, s1 - s0)
        if self.layers:
            hit = (ds.read(list(self.layers), window=window) != 0).any(axis=0)
        else:
            hit = np.isin(ds.read(1, window=window), self.codes)
        if self.scale.coarsen > 1:
            return coarsen_any(hit, self.scale.coarsen)
        if self.scale.refine > 1:
            return refine_nearest(hit, self.scale.refine, r0, r1, s0, self.out_width)
        return hit


@dataclass(frozen=True)
class PolygonMask:
    """MSK_CLOUDS_B00.gml polygons burnt into each block of the output grid."""

    polygons: tuple[tuple[dict[str, object], float, float], ...]  # (geometry, ymin, ymax)
    transform: Affine
    width: int

    def block(self, r0: int, r1: int, datasets: DatasetsPerThread) -> np.ndarray:
        top = self.transform.f + r0 * self.transform.e
        bottom = self.transform.f + r1 * self.transform.e
        lo, hi = min(top, bottom), max(top, bottom)
        # Only the polygons crossing this block's rows: a cloudy tile has thousands.
        shapes = [(g, 1) for g, ymin, ymax in self.polygons if ymax >= lo and ymin <= hi]
        if not shapes:
            return np.zeros((r1 - r0, self.width), bool)
        burnt = features.rasterize(
            shapes,
            out_shape=(r1 - r0, self.width),
            transform=self.transform @ Affine.translation(0, r0),
            fill=0,
            dtype="uint8",
        )
        return burnt.astype(bool)


def gml_polygons(data: bytes, types: set[str], what: str) -> list[dict[str, object]]:
    """The polygons (GeoJSON-like dicts) of the MaskFeatures whose maskType is in `types`."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise InvalidArgument(f"{what} is not valid GML ({exc}); the product is damaged") from exc
    out: list[dict[str, object]] = []
    for feature in all_named(root, "MaskFeature"):
        kind = next((e.text or "" for e in all_named(feature, "maskType")), "")
        if kind.strip().upper() not in types:
            continue
        for poly in all_named(feature, "Polygon"):
            rings = [_ring(e, what) for e in all_named(poly, "posList")]
            if rings:
                out.append({"type": "Polygon", "coordinates": rings})
    return out


def _ring(pos: ET.Element, what: str) -> list[tuple[float, float]]:
    dim = int(pos.get("srsDimension", "2"))
    try:
        values = [float(v) for v in re.split(r"\s+", (pos.text or "").strip()) if v]
    except ValueError:
        raise InvalidArgument(f"{what} has a posList that is not numbers") from None
    if dim < 2 or len(values) % dim or len(values) < 4 * dim:
        raise InvalidArgument(f"{what} has a polygon ring with {len(values)} numbers")
    return [(values[i], values[i + 1]) for i in range(0, len(values), dim)]


def polygon_mask(polygons: list[dict[str, object]], transform: Affine, width: int) -> PolygonMask:
    spans = []
    for g in polygons:
        ys = [y for ring in g["coordinates"] for _, y in ring]  # type: ignore[attr-defined]
        spans.append((g, min(ys), max(ys)))
    return PolygonMask(tuple(spans), transform, width)
