"""The SAR chain, streamed by blocks: DN -> calibrated intensity -> multilook -> speckle
filter -> dB -> geocoded COG.

Stage 1 works in radar geometry. Row blocks of the multilooked image are computed
by a small thread pool (numpy and GDAL release the GIL) while the main thread
writes finished blocks, in order, to a scratch GeoTIFF at the multilooked
resolution that carries the product's GCPs. A speckle filter needs context: each
block reads `halo` multilooked rows more on either side and drops them after
filtering, so a block's result equals filtering the whole image. Memory is a
few blocks in flight, whatever the product's size.

Stage 2 maps every output pixel to (line, pixel) of that scratch file: a
thin-plate spline through the geolocation grid (geocode.py), or the orbit and a
DEM (terrain.py); tiles of the output are sampled on a thread pool and written
in order to a scratch file on the output grid. Stage 3 copies it to the COG
(GDAL's COG driver: overviews, compression), renamed into place.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import RasterioError
from rasterio.windows import Window

from sipd.contracts.preprocessing import SarOptions
from sipd.errors import InvalidArgument
from sipd.preprocess import geocode, speckle
from sipd.preprocess.band_stack import scene_cog
from sipd.preprocess.product_files import open_measurement
from sipd.preprocess.sar_product import Gcp, Quantity, SarBand, SarProduct
from sipd.preprocess.streaming import DatasetsPerThread, in_order
from sipd.progress import JobContext
from sipd.raster import scratch_path, tiled_gtiff_profile

WGS84 = CRS.from_epsg(4326)
# DN lines read per block (before multilooking): ~27 MB per float32 array at the
# 26,000-pixel width of an IW GRD; a handful of such arrays per thread in flight.
BLOCK_LINES = 256
# Border noise: a run of DN below this from either range edge (within BORDER_LIMIT
# pixels) is the low-value border of older GRD products, not signal.
BORDER_DN = 30
BORDER_LIMIT = 2000


@dataclass
class Timings:
    """Seconds per step, summed over threads (so they may exceed the wall time)."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, step: str, started: float) -> float:
        now = time.perf_counter()
        with self.lock:
            self.seconds[step] += now - started
        return now


@dataclass
class Plan:
    product: SarProduct
    bands: list[SarBand]
    options: SarOptions
    looks: tuple[int, int]
    out_lines: int
    out_pixels: int
    kind: str
    size: int
    halo: int
    floor: float
    # Incidence angles of the geolocation grid (lines, pixels, values), for the band.
    incidence: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def band_names(self) -> list[str]:
        return self.options.band_names([b.polarisation for b in self.bands])


def plan(product: SarProduct, options: SarOptions) -> Plan:
    bands = [product.band(p) for p in options.polarisations] or list(product.bands)
    az, rg = options.looks
    out_lines, out_pixels = product.lines // az, product.pixels // rg
    if out_lines < 1 or out_pixels < 1:
        raise InvalidArgument(
            f"multilook {options.multilook} is larger than the product "
            f"({product.lines} lines x {product.pixels} pixels)"
        )
    if options.dem and product.sensor != "sentinel1":
        raise InvalidArgument(
            f"terrain correction (dem) is for Sentinel-1 products; {product.source} is "
            f"{product.sensor}: leave dem empty to geocode it on the ellipsoid"
        )
    if options.dem and options.crs == "none":
        raise InvalidArgument("dem needs a geocoded output; crs none keeps radar geometry")
    kind, size = options.speckle_filter
    halo = speckle.halo(kind, size) if kind != "none" else 0
    return Plan(
        product,
        bands,
        options,
        (az, rg),
        out_lines,
        out_pixels,
        kind,
        size,
        halo,
        float(10.0 ** (options.noise_floor_db / 10.0)),
        incidence_grid(product.gcps) if options.incidence_band else None,
    )


# -- stage 1: radar geometry ------------------------------------------------------------


# DN lines calibrated at once inside a block: every array of a chunk (DN, K, N, the
# intensity) stays in the CPU cache at IW widths, so numpy's passes over them run
# at cache speed instead of memory speed (measured: ~4x on this chain).
CHUNK_LINES = 16


def _intensity(
    plan: Plan, band: SarBand, readers: DatasetsPerThread, h0: int, h1: int, timings: Timings
) -> np.ndarray:
    """Calibrated, multilooked linear intensity of output rows h0..h1 (radar geometry).

    NaN where no DN is valid (DN 0 is outside the swath); a multilook cell averages
    the valid DN of its az x rg pixels only.
    """
    az, rg = plan.looks
    width = plan.out_pixels * rg
    t = time.perf_counter()
    ds = readers.get(band.measurement)
    try:
        dn_all = ds.read(1, window=Window(0, h0 * az, width, (h1 - h0) * az))
    except RasterioError as exc:
        raise InvalidArgument(
            f"measurement {band.measurement} cannot be read at lines {h0 * az}-{h1 * az} "
            f"({exc}): the product is truncated or corrupt; download or copy it again"
        ) from exc
    if np.iscomplexobj(dn_all):
        raise InvalidArgument(
            f"{band.measurement} holds complex (SLC) samples; accepted: detected (GRD) products"
        )
    t = timings.add("read", t)
    out = np.full((h1 - h0, plan.out_pixels), np.nan, dtype=np.float32)
    quantity = Quantity(plan.options.calibration)
    noise = plan.options.noise_removal and band.radiometry.noise_available()
    step = az * max(1, CHUNK_LINES // az)
    for c0 in range(0, dn_all.shape[0], step):
        dn = dn_all[c0 : c0 + step]
        if not dn.any():
            continue  # wholly outside the swath: stays NaN, no LUT terms built
        l0 = h0 * az + c0
        k, n = band.radiometry.terms(slice(l0, l0 + dn.shape[0]), slice(0, width), quantity, noise)
        value = dn.astype(np.float32)
        np.multiply(value, value, out=value)
        if isinstance(n, np.ndarray) or n != 0.0:
            np.subtract(value, n, out=value)
        np.multiply(value, k, out=value)
        np.maximum(value, plan.floor, out=value)
        invalid = dn == 0
        if plan.options.border_noise:
            _blank_border(dn, invalid)
        rows = slice(c0 // az, c0 // az + dn.shape[0] // az)
        if (az, rg) == (1, 1):
            np.copyto(value, np.nan, where=invalid)
            out[rows] = value
        elif not invalid.any():
            out[rows] = speckle.block_sum(value, az, rg) * (1.0 / (az * rg))
        else:
            np.copyto(value, 0.0, where=invalid)
            sums = speckle.block_sum(value, az, rg)
            counts = speckle.block_sum((~invalid).astype(np.float32), az, rg)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[rows] = np.where(counts > 0, sums / counts, np.nan)
    timings.add("calibrate", t)
    return out


def _blank_border(dn: np.ndarray, invalid: np.ndarray) -> None:
    """Mark invalid, per line, the run of low DN that starts at either range edge.

    Older GRD products (IPF < 2.9) carry a border of low, non-zero DN at near and
    far range that no noise vector removes; a run from the edge (bounded by
    BORDER_LIMIT) of DN under BORDER_DN is taken as that border.
    """
    limit = min(BORDER_LIMIT, dn.shape[1] // 2)
    if limit == 0:
        return
    low = dn[:, :limit] < BORDER_DN
    near = np.where(low.all(axis=1), limit, np.argmin(low, axis=1))
    low = dn[:, ::-1][:, :limit] < BORDER_DN
    far = np.where(low.all(axis=1), limit, np.argmin(low, axis=1))
    cols = np.arange(dn.shape[1])
    invalid |= cols[None, :] < near[:, None]
    invalid |= cols[None, ::-1] < far[:, None]


def _block(
    plan: Plan, readers: DatasetsPerThread, r0: int, r1: int, timings: Timings
) -> np.ndarray:
    """Output rows r0..r1 (multilooked geometry) of every band, filtered and in dB."""
    az, rg = plan.looks
    h0, h1 = max(0, r0 - plan.halo), min(plan.out_lines, r1 + plan.halo)
    out = []
    for band in plan.bands:
        value = _intensity(plan, band, readers, h0, h1, timings)
        t = time.perf_counter()
        if plan.kind != "none":
            value = speckle.speckle_filter(value, plan.kind, plan.size, looks=float(az * rg))
            t = timings.add("speckle", t)
        value = value[r0 - h0 : r0 - h0 + (r1 - r0)]
        if plan.options.db:
            value = speckle.to_db(value)
            timings.add("db", t)
        out.append(value.astype(np.float32, copy=False))
    if plan.options.incidence_band:
        t = time.perf_counter()
        incidence = _incidence(plan, r0, r1)
        incidence[np.isnan(out[0])] = np.nan  # nodata outside the swath, like the bands
        out.append(incidence)
        timings.add("incidence", t)
    return np.stack(out)


def _incidence(plan: Plan, r0: int, r1: int) -> np.ndarray:
    """Incidence angle (degrees) at the centres of output rows r0..r1, bilinear in the
    geolocation grid (line, pixel)."""
    assert plan.incidence is not None
    grid = plan.incidence
    az, rg = plan.looks
    lines = (np.arange(r0, r1) + 0.5) * az
    pixels = (np.arange(plan.out_pixels) + 0.5) * rg
    return _bilinear(grid, lines, pixels)


def incidence_grid(gcps: list[Gcp]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The incidence angles of the geolocation grid as (lines, pixels, values[lines, pixels])."""
    pts = [g for g in gcps if g.incidence is not None]
    if not pts:
        raise InvalidArgument(
            "the product's geolocation grid has no incidence angles; run without --incidence-band"
        )
    lines = np.unique([g.line for g in pts])
    pixels = np.unique([g.pixel for g in pts])
    grid = np.full((lines.size, pixels.size), np.nan)
    li = {v: i for i, v in enumerate(lines)}
    pi = {v: i for i, v in enumerate(pixels)}
    for g in pts:
        grid[li[g.line], pi[g.pixel]] = g.incidence
    if np.isnan(grid).any():
        # Not a rectilinear grid (e.g. tie points by row of varying columns): fill
        # each row by interpolating over the points it has.
        for i in range(lines.size):
            ok = ~np.isnan(grid[i])
            if ok.any():
                grid[i] = np.interp(pixels, pixels[ok], grid[i, ok])
    return lines, pixels, grid


def _bilinear(
    grid: tuple[np.ndarray, np.ndarray, np.ndarray], lines: np.ndarray, pixels: np.ndarray
) -> np.ndarray:
    glines, gpixels, values = grid
    rows = np.stack([np.interp(pixels, gpixels, values[i]) for i in range(glines.size)])
    if glines.size == 1:
        return np.broadcast_to(rows[0], (lines.size, pixels.size)).astype(np.float32)
    idx = np.clip(np.searchsorted(glines, lines) - 1, 0, glines.size - 2)
    t = np.clip((lines - glines[idx]) / (glines[idx + 1] - glines[idx]), 0.0, 1.0)[:, None]
    return ((1 - t) * rows[idx] + t * rows[idx + 1]).astype(np.float32)


def _row_blocks(plan: Plan) -> Iterator[tuple[int, int]]:
    step = max(8, BLOCK_LINES // plan.looks[0], 4 * plan.halo)
    for r0 in range(0, plan.out_lines, step):
        yield r0, min(plan.out_lines, r0 + step)


def _radar_gcps(plan: Plan) -> list[GroundControlPoint]:
    az, rg = plan.looks
    return [
        GroundControlPoint(row=g.line / az, col=g.pixel / rg, x=g.lon, y=g.lat, z=g.height)
        for g in plan.product.gcps
    ]


def write_radar_geometry(
    plan: Plan, path: Path, ctx: JobContext, timings: Timings, threads: int
) -> None:
    """Stage 1: the multilooked, filtered bands in radar geometry, with GCPs."""
    profile = tiled_gtiff_profile(
        {"width": plan.out_pixels, "height": plan.out_lines},
        count=len(plan.band_names),
        dtype="float32",
        nodata=float("nan"),
    )
    profile.update(gcps=_radar_gcps(plan), crs=WGS84)
    profile.pop("transform", None)
    blocks = list(_row_blocks(plan))
    readers = DatasetsPerThread(open_measurement)
    try:
        with rasterio.open(path, "w", **profile) as dst:

            def block(rows: tuple[int, int]) -> np.ndarray:
                return _block(plan, readers, *rows, timings)

            with in_order(block, blocks, threads, ahead=threads + 1) as done_blocks:
                for done, ((r0, r1), data) in enumerate(done_blocks, start=1):
                    ctx.check_cancelled()
                    t = time.perf_counter()
                    dst.write(data, window=Window(0, r0, plan.out_pixels, r1 - r0))
                    timings.add("write", t)
                    lines = f"lines {r0 * plan.looks[0]}-{r1 * plan.looks[0]}"
                    ctx.progress(
                        "calibrate", done / len(blocks), f"block {done}/{len(blocks)} ({lines})"
                    )
    finally:
        readers.close()


# -- stage 2: geocoding -------------------------------------------------------------------


def output_crs(plan: Plan) -> CRS:
    text = plan.options.crs
    if text in ("auto", ""):
        # A circular mean: a scene across the antimeridian (lon 179 and -179) is centred
        # at 180, not at 0.
        rad = np.radians([g.lon for g in plan.product.gcps])
        lon = float(np.degrees(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())))
        lat = float(np.mean([g.lat for g in plan.product.gcps]))
        return geocode.utm_for(lon, lat)
    return geocode.parse_crs(text)


def to_output_grid(
    plan: Plan, radar: Path, path: Path, ctx: JobContext, timings: Timings, threads: int
) -> None:
    """Stage 2: the radar-geometry file onto a north-up grid in the output CRS."""
    t = time.perf_counter()
    crs = output_crs(plan)
    az, rg = plan.looks
    spacing = plan.product.pixel_spacing
    resolution = plan.options.resolution or max(spacing[0] * rg, spacing[1] * az)
    if crs.is_geographic and not plan.options.resolution:
        resolution /= 111_320.0  # metres to degrees at the equator: a sane default only
    grid = geocode.output_grid(plan.product.gcps, crs, resolution)
    if grid.width * grid.height > 2_000_000_000:
        raise InvalidArgument(
            f"resolution {resolution} in {crs} makes a {grid.width} x {grid.height} output; "
            "choose a coarser --resolution"
        )
    profile = tiled_gtiff_profile(
        {"width": grid.width, "height": grid.height, "crs": crs, "transform": grid.transform},
        count=len(plan.band_names),
        dtype="float32",
        nodata=float("nan"),
    )

    def progress(done: int, total: int) -> None:
        ctx.check_cancelled()
        ctx.progress("geocode", done / total, f"tile {done}/{total}")

    mapping: geocode.CoordinateMap
    if plan.options.dem:
        from sipd.preprocess.terrain import TerrainMap

        terrain = TerrainMap(
            plan.product.source, plan.bands[0].polarisation, plan.options.dem, grid, plan.looks
        )
        # Said in the result and the tags: heights above the geoid taken as ellipsoidal
        # (no geoid grid offline) shift the scene by tens of metres in range.
        plan.product.metadata["terrain_correction"] = (
            "DEM heights taken as ellipsoidal: PROJ has no geoid grid for the DEM's "
            "vertical datum here"
            if terrain.geoid_ignored
            else "applied"
        )
        mapping = terrain
    else:
        mapping = geocode.InverseMap(plan.product.gcps, grid, plan.looks)
    with rasterio.open(path, "w", **profile) as dst:
        geocode.warp(
            str(radar),
            mapping,
            grid,
            dst,
            nearest=plan.options.resampling == "nearest",
            threads=threads,
            progress=progress,
        )
    timings.add("geocode", t)


def describe_output(path: Path, plan: Plan, tags: dict[str, str]) -> None:
    """Band names, the product's acquisition metadata (SAR_*, as it stands after the
    chain: geocoding may add to it) and the caller's tags."""
    with rasterio.open(path, "r+") as ds:
        for i, name in enumerate(plan.band_names, start=1):
            ds.set_band_description(i, name)
        ds.update_tags(**{f"SAR_{k.upper()}": v for k, v in plan.product.metadata.items()}, **tags)


def run(
    product: SarProduct,
    options: SarOptions,
    output: Path,
    ctx: JobContext,
    tags: dict[str, str],
    threads: int = 2,
) -> dict[str, float]:
    """Write the COG `output` (atomically) and return seconds per step."""
    p = plan(product, options)
    timings = Timings()
    started = time.perf_counter()
    ctx.progress("calibrate", 0.0, f"{len(p.bands)} band(s), {p.out_lines} x {p.out_pixels} out")
    with scratch_path(output, ".radar.tif") as radar:
        write_radar_geometry(p, radar, ctx, timings, threads)
        ctx.check_cancelled()
        if options.crs == "none":
            describe_output(radar, p, tags)
            timings.seconds.update(scene_cog(radar, output, ctx, threads=threads))
        else:
            ctx.progress("geocode", 0.0, "geocoding", force=True)
            with scratch_path(output, ".geo.tif") as geo:
                to_output_grid(p, radar, geo, ctx, timings, threads)
                ctx.check_cancelled()
                describe_output(geo, p, tags)
                timings.seconds.update(scene_cog(geo, output, ctx, threads=threads))
    result = dict(timings.seconds)
    result["total"] = time.perf_counter() - started
    return result
