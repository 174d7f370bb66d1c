"""Terrain correction: output pixels -> radar (line, pixel) through a DEM and the orbit.

`InverseMap` (geocode.py) maps through the annotation's geolocation grid, whose
heights are the IPF's coarse ellipsoid heights: wherever the real terrain is
higher or lower, the image lands beside where it should (foreshortening, about
h / tan(incidence) in ground range: 100 m of terrain at 35 degrees is ~14 full
resolution pixels). `TerrainMap` replaces it when a DEM is given. For each output
pixel centre it takes the DEM height, goes to ECEF, and solves the range-Doppler
equations against the orbit (backward geocoding), all with sarsen, the way
`sarsen.apps.terrain_correction` does (apps.do_terrain_correction ->
apps.simulate_acquisition -> geocoding.backward_geocode, then
Sentinel1SarProduct.slant_range_time_to_ground_range as in apps.geocode_grd_chunk).
sarsen runs that chain as a dask graph over the whole DEM; here it runs eagerly
on plain numpy-backed xarray objects, one output tile at a time, so memory stays
at a few tiles and `geocode.warp` can drive it from its thread pool. By default
the solve runs on a lattice every 16 output pixels at three heights spanning the
tile's DEM heights, and each pixel interpolates bilinearly in (row, col) and
quadratically in its own height (`_layered`): within 0.01 pixel of solving every
pixel (`lattice=None`) at about a third of the time.

Vertical datum: heights go to ECEF with PROJ, from the DEM's vertical CRS. A DEM
tagged with a geoid height (e.g. EPSG:9707 = WGS 84 + EGM96 height, the Rome
fixture) needs PROJ's geoid grid (us_nga_egm96_15.tif). Offline, without the
grid, PROJ falls back to a "ballpark" vertical transformation that takes the
geoid heights as ellipsoid heights unchanged: every height is then off by the
geoid undulation (about +47 m around Rome, -100..+85 m worldwide), which moves
the image by undulation / tan(incidence) in ground range (~7 pixels of 10 m at
Rome). sarsen has the same behaviour (scene.transform_dem_3d uses the same PROJ
operation). `geoid_ignored` says when that happened; installing the grid in
PROJ's user data directory (pyproj.datadir.get_user_data_dir()) or PROJ_DATA
makes PROJ use it with no change here. A DEM without a vertical CRS is taken as
ellipsoid heights.
"""

from __future__ import annotations

import logging
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pyproj
import rasterio
import xarray as xr
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window
from sarsen import apps, orbit
from sarsen.sentinel1 import Sentinel1SarProduct
from shapely.geometry import MultiPoint, box

from sipd.errors import InvalidArgument
from sipd.preprocess.geocode import OutputGrid
from sipd.raster import open_raster

log = logging.getLogger("sipd.preprocess.terrain")

ECEF = pyproj.CRS.from_epsg(4978)
# Backward geocoding solves exactly on a lattice every SEED output pixels and
# starts each pixel from the lattice's interpolated azimuth time (sarsen's
# seed_step): one Newton step then converges, against ~4 from a blind guess.
SEED = 32
# Fast path: exact solves every LATTICE output pixels, at three heights (_layered).
LATTICE = 16
# Zero-Doppler convergence, metres along track: 0.01 full-resolution lines at
# S1 IW's ~14 m/line (sarsen's default of 1 m is a tenth of a line).
ZERO_DOPPLER_DISTANCE = 0.1
# One Newton step from the seeds' interpolated guess (sarsen's default too). The slant
# range comes from the guess's orbit position, but range is stationary at zero Doppler:
# a guess 1 m along track off changes it by ~1 m^2 / (2 * 850 km), nothing.
MAXITER_AFTER_SEED = 1


def _safe_folder(product_path: str) -> str:
    """The SAFE folder of what the user named (as ProductFiles.open accepts it)."""
    p = Path(product_path)
    if p.is_file() and (zipfile.is_zipfile(p) or p.suffix.lower() == ".zip"):
        # xarray-sentinel reads a zip only through an fsspec "zip://...::" URL, and
        # sarsen's product class and its measurement paths do not follow it there.
        raise InvalidArgument(
            f"product {product_path}: terrain correction needs the product unpacked "
            "(a .SAFE folder)"
        )
    folder = p.parent if p.is_file() else p  # manifest.safe names its folder
    if not (folder / "manifest.safe").is_file():
        raise InvalidArgument(
            f"product {product_path}: terrain correction needs a Sentinel-1 GRD .SAFE "
            "folder (or its manifest.safe); no manifest.safe found there"
        )
    return str(folder)


class TerrainMap:
    """Output pixel -> radar (line, pixel) array indices of the multilooked image, through a
    DEM and the orbit (range-Doppler backward geocoding, sarsen)."""

    def __init__(
        self,
        product_path: str,
        polarisation: str,
        dem_path: str,
        grid: OutputGrid,
        looks: tuple[int, int],
        *,
        lattice: int | None = LATTICE,
    ) -> None:
        """`lattice`: solve exactly every `lattice` output pixels at three heights and
        interpolate (the default); None solves every pixel (reference, ~3x slower)."""
        self.grid = grid
        self.lattice = lattice
        self.looks = looks
        self.dem_path = dem_path
        # The DEM first: reading it is cheap, the product costs seconds.
        self.dem_crs, self.dem_nodata, dem_bounds = self._read_dem(dem_path)
        self.product = self._open_product(product_path, polarisation)
        self._check_coverage(dem_path, dem_bounds)
        attrs = self._attrs
        # Per product, once: the orbit polynomial (sarsen fits it to the state
        # vectors, as apps.do_terrain_correction does) and the slant-to-ground
        # range polynomials (cached by Sentinel1SarProduct.coordinate_conversion).
        self.orbit = orbit.OrbitPolyfitInterpolator.from_position(self.product.state_vectors())
        assert self.product.coordinate_conversion is not None
        self.first_line = np.datetime64(attrs["product_first_line_utc_time"], "ns")
        last_line = np.datetime64(attrs["product_last_line_utc_time"], "ns")
        self.line_interval = float(attrs["azimuth_time_interval"])  # seconds
        self.range_spacing = float(attrs["range_pixel_spacing"])  # metres, ground range
        # Seeds start from mid-scene (orbit time is seconds from the orbit's epoch).
        mid = self.first_line + (last_line - self.first_line) / 2
        self.time_guess = float((mid - self.orbit.epoch) / np.timedelta64(1, "s"))
        self.to_ecef, self.geoid_ignored = self._ecef_transformer(grid, self.dem_crs)

    # -- per product ------------------------------------------------------------------

    def _open_product(self, product_path: str, polarisation: str) -> Sentinel1SarProduct:
        folder = _safe_folder(product_path)
        pol = polarisation.upper()
        try:
            with warnings.catch_warnings():
                # The measurement TIFF is in radar geometry: "not georeferenced" is expected.
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                # rioxarray inside xarray-sentinel still multiplies Affines with "*".
                warnings.simplefilter("ignore", PendingDeprecationWarning)
                probe = Sentinel1SarProduct(folder, measurement_chunks=None)
                groups = probe.all_measurement_groups()
                group = next((g for g in groups if g.split("/")[-1].upper() == pol), None)
                if group is None:
                    raise InvalidArgument(
                        f"product {product_path} has no {pol} measurement for terrain "
                        f"correction; it has {', '.join(groups) or 'none'}"
                    )
                # measurement_chunks=None: no dask anywhere; only metadata is read here.
                product = Sentinel1SarProduct(
                    folder, measurement_group=group, measurement_chunks=None
                )
                attrs = dict(product.measurement.attrs)
                if attrs.get("product_type") != "GRD":
                    raise InvalidArgument(
                        f"product {product_path} is a Sentinel-1 {attrs.get('product_type')} "
                        "product; terrain correction takes GRD products only"
                    )
                _ = product.orbit, product.coordinate_conversion  # read (and cache) now
        except InvalidArgument:
            raise
        except Exception as exc:  # xarray-sentinel raises many types on foreign input
            raise InvalidArgument(
                f"product {product_path} is not a Sentinel-1 GRD product that terrain "
                f"correction can read ({type(exc).__name__}: {exc})"
            ) from None
        self._attrs = attrs
        return product

    @staticmethod
    def _read_dem(
        dem_path: str,
    ) -> tuple[pyproj.CRS, float | None, tuple[float, float, float, float]]:
        """(CRS, nodata, lon/lat bounds) of a DEM GDAL can read."""
        try:
            # open_raster: in the worker, every file GDAL opens for the DEM (a VRT's
            # tiles) must be inside the allowed roots.
            with open_raster(dem_path) as dem:
                if dem.crs is None:
                    raise InvalidArgument(
                        f"DEM {dem_path} has no CRS; a georeferenced DEM is needed"
                    )
                crs = pyproj.CRS.from_wkt(dem.crs.to_wkt())
                dem.read(1, window=Window(0, 0, 1, 1))  # fail now on an undecodable file
                bounds = transform_bounds(dem.crs, "EPSG:4326", *dem.bounds, densify_pts=21)
                return crs, dem.nodata, bounds
        except InvalidArgument:
            raise
        except (RasterioError, OSError, ValueError) as exc:
            raise InvalidArgument(
                f"DEM {dem_path} is not a raster GDAL can read ({exc}); accepted: a "
                "single-band elevation raster in metres (GeoTIFF, VRT, ...)"
            ) from None

    def _check_coverage(self, dem_path: str, bounds: tuple[float, float, float, float]) -> None:
        # The scene footprint: the hull of the annotation's geolocation grid.
        gcp = self.product.gcp
        footprint = MultiPoint(
            list(zip(gcp.longitude.values.ravel(), gcp.latitude.values.ravel(), strict=True))
        ).convex_hull
        if not footprint.intersects(box(*bounds)):
            w, s, e, n = footprint.bounds
            raise InvalidArgument(
                f"DEM {dem_path} (lon {bounds[0]:.3f}..{bounds[2]:.3f}, lat "
                f"{bounds[1]:.3f}..{bounds[3]:.3f}) does not cover the scene (lon "
                f"{w:.3f}..{e:.3f}, lat {s:.3f}..{n:.3f}) at all"
            )

    @staticmethod
    def _ecef_transformer(grid: OutputGrid, dem_crs: pyproj.CRS) -> tuple[pyproj.Transformer, bool]:
        """(x, y) in the output CRS with a DEM height -> ECEF, built once.

        Heights keep the DEM's vertical CRS: output horizontal CRS + DEM vertical CRS
        as a compound CRS, so PROJ applies the geoid (when it has the grid) in the
        same step that sarsen's scene.transform_dem_3d does with rasterio.
        """
        horizontal = pyproj.CRS.from_wkt(grid.crs.to_wkt())
        vertical = next((c for c in dem_crs.sub_crs_list if c.is_vertical), None)
        if vertical is None and dem_crs.is_vertical:
            vertical = dem_crs
        if vertical is None:
            source = horizontal.to_3d()  # heights are ellipsoidal already
        else:
            source = pyproj.crs.CompoundCRS(
                f"{horizontal.name} + {vertical.name}", [horizontal, vertical]
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            transformer = pyproj.Transformer.from_crs(source, ECEF, always_xy=True)
        ballpark = "ballpark" in transformer.description.lower() and vertical is not None
        if ballpark:
            missing = "; ".join(str(w.message) for w in caught) or transformer.description
            log.warning(
                "DEM heights in %s taken as ellipsoid heights: PROJ has no geoid grid "
                "offline (%s); the geocoding is off by the geoid undulation / "
                "tan(incidence) in range",
                vertical.name,
                missing,
            )
        return transformer, ballpark

    # -- per tile ---------------------------------------------------------------------

    def heights(self, window: Window) -> np.ndarray:
        """DEM heights (float64, the DEM's vertical datum) bilinear at the window's
        output pixel centres; NaN where the DEM has no data or does not reach."""
        h, w = int(window.height), int(window.width)
        out = np.full((h, w), np.nan, dtype=np.float32)
        dst_transform = self.grid.transform @ rasterio.Affine.translation(
            window.col_off, window.row_off
        )
        # One handle per call: geocode.warp calls from several threads and GDAL
        # handles are not thread-safe; opening a GeoTIFF costs a few ms.
        with rasterio.open(self.dem_path) as dem:
            reproject(
                source=rasterio.band(dem, 1),
                destination=out,
                src_nodata=self.dem_nodata,
                dst_transform=dst_transform,
                dst_crs=self.grid.crs,
                dst_nodata=np.nan,
                resampling=Resampling.bilinear,
            )
        return out.astype(np.float64)

    def radar_indices(
        self, x: np.ndarray, y: np.ndarray, height: np.ndarray, seed: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Full-resolution (line, pixel) sample indices (centre-based: sample i at i) of
        points (x, y) in the output CRS at `height` (DEM datum), 2-D arrays, no NaN in.

        This is sarsen's chain for one block, eagerly: apps.simulate_acquisition
        (geocoding.backward_geocode: zero-Doppler time by Newton against the orbit
        polynomial, then slant range = |target - satellite|), then
        Sentinel1SarProduct.slant_range_time_to_ground_range (annotation srgr
        polynomials), as apps.geocode_grd_chunk does before it interpolates.
        """
        ex, ey, ez = self.to_ecef.transform(x, y, height)
        ny, nx = x.shape
        dem_ecef = xr.DataArray(
            np.stack([ex, ey, ez]),
            dims=("axis", "y", "x"),
            coords={
                "axis": [0, 1, 2],
                "y": np.arange(ny, dtype=float),
                "x": np.arange(nx, dtype=float),
            },
        )
        # Seeds need two lattice points per axis for sarsen's linear interpolation.
        use_seed = seed and min(ny, nx) >= 2 * SEED
        acquisition = apps.simulate_acquisition(
            dem_ecef,
            self.orbit,
            include_variables=("azimuth_time", "slant_range_time"),
            azimuth_time=self.time_guess,
            seed_step=(SEED, SEED) if use_seed else None,
            zero_doppler_distance=ZERO_DOPPLER_DISTANCE,
            maxiter_after_seed=MAXITER_AFTER_SEED,
        )
        azimuth_time = acquisition.azimuth_time.transpose("y", "x")
        # GRD samples are on a ground-range grid (NaN outside the times the srgr
        # polynomials are given for, i.e. outside the scene).
        ground_range = self.product.slant_range_time_to_ground_range(
            azimuth_time, acquisition.slant_range_time.transpose("y", "x")
        )
        # Sample indices as xarray-sentinel's measurement coordinates define them:
        # azimuth_time = first line + line * interval, ground_range = pixel * spacing.
        line = (azimuth_time.values - self.first_line) / np.timedelta64(1, "ns")
        line = line * 1e-9 / self.line_interval
        pixel = np.asarray(ground_range.transpose("y", "x").values) / self.range_spacing
        return line, pixel

    def coords(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """(lines, pixels) float64 arrays of window shape, same convention as InverseMap.coords;
        NaN where the DEM has no data or does not cover the pixel."""
        h, w = int(window.height), int(window.width)
        lines = np.full((h, w), np.nan)
        pixels = np.full((h, w), np.nan)
        height = self.heights(window)
        valid = np.isfinite(height)
        if not valid.any():
            return lines, pixels
        # Holes get the tile's mean height so that neighbours stay defined (seeds and
        # lattice nodes interpolate linearly: one NaN spoils its surroundings); the
        # holes are NaN again at the end.
        height = np.where(valid, height, float(height[valid].mean()))
        if self.lattice is None:
            line, pixel = self._exact(window, height)
        else:
            line, pixel = self._layered(window, height, self.lattice)
        # Full-resolution index -> multilooked array index: corner-based full-res
        # coordinate (index + 0.5) / looks - 0.5, as InverseMap does with the GCPs.
        az, rg = self.looks
        lines[valid] = ((line + 0.5) / az - 0.5)[valid]
        pixels[valid] = ((pixel + 0.5) / rg - 0.5)[valid]
        return lines, pixels

    def _centres(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates of output pixel (row, col) centres, as 2-D arrays."""
        cc, rr = np.meshgrid(cols + 0.5, rows + 0.5)
        t = self.grid.transform
        return t.a * cc + t.b * rr + t.c, t.d * cc + t.e * rr + t.f

    def _exact(self, window: Window, height: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.arange(window.height, dtype=np.float64) + window.row_off
        cols = np.arange(window.width, dtype=np.float64) + window.col_off
        x, y = self._centres(rows, cols)
        return self.radar_indices(x, y, height, seed=True)

    def _layered(
        self, window: Window, height: np.ndarray, step: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The exact solve on a lattice every `step` output pixels at three heights
        spanning the tile's, then bilinear in (row, col) and quadratic in height.

        At a fixed height the map is as smooth as InverseMap's (same lattice idea);
        along the height it is nearly linear (-h / tan(incidence)), with a small
        quadratic term from the range sphere that three levels take exactly. Measured
        against the per-pixel solve on the Rome DEM and on 0-4000 m synthetic relief:
        under 0.01 full-resolution pixel, at about a third of the time (the solve on
        the lattice is then ~1/3 of a tile's time, the DEM read another ~1/4).
        """
        h, w = height.shape
        ny, nx = (h - 1) // step + 2, (w - 1) // step + 2
        rows = np.arange(ny, dtype=np.float64) * step + window.row_off
        cols = np.arange(nx, dtype=np.float64) * step + window.col_off
        x, y = self._centres(rows, cols)
        lo, hi = float(height.min()), float(height.max())
        levels = np.array([lo, (lo + hi) / 2, hi]) if hi - lo > 0.01 else np.array([lo])
        k = len(levels)
        # All levels in one solve: stacked along y.
        line_n, pixel_n = self.radar_indices(
            np.tile(x, (k, 1)), np.tile(y, (k, 1)), np.repeat(levels, ny)[:, None] * np.ones(nx)
        )
        bad = ~(np.isfinite(line_n) & np.isfinite(pixel_n))
        # Per node, the quadratic through the levels in u = (h - mid) / half-span:
        # f = c0 + c1 u + c2 u^2. Interpolating the coefficients bilinearly equals
        # interpolating the levels and then in height (all linear), with less per pixel.
        coefficients = []
        for f in (line_n, pixel_n):
            f = np.where(bad, 0.0, f).reshape(k, ny, nx)
            if k == 1:
                coefficients.append([f[0]])
            else:
                coefficients.append([f[1], (f[2] - f[0]) / 2, (f[0] + f[2]) / 2 - f[1]])
        # Bilinear upsampling of a regular lattice, separable: rows then columns.
        up = _Upsampler(h, w, step)
        u = (height - levels[k // 2]) / ((hi - lo) / 2) if k > 1 else None
        out = []
        for c in coefficients:
            v = [up(ci) for ci in c]
            value = v[0] if u is None else v[0] + u * (v[1] + u * v[2])
            out.append(value)
        # NaN nodes (outside the srgr polynomials' time span: off the scene) were
        # zeroed to keep them out of the products; NaN every pixel that leans on one.
        node_bad = bad.reshape(k, ny, nx).any(axis=0).astype(np.float64)
        off_scene = up(node_bad) > 0
        line, pixel = out
        line[off_scene] = np.nan
        pixel[off_scene] = np.nan
        return line, pixel


class _Upsampler:
    """Bilinear interpolation from lattice nodes at 0, step, 2 step, ... to every
    position 0..n-1, separably: gathers and a multiply-add per axis (a few ms for
    512 x 512; map_coordinates takes ~15 ms, BLAS products stall when the cores
    are busy)."""

    def __init__(self, h: int, w: int, step: int) -> None:
        self.rows = self._axis(h, step)
        self.cols = self._axis(w, step)

    @staticmethod
    def _axis(n: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        pos = np.arange(n) / step
        i0 = np.floor(pos).astype(np.intp)
        return i0, pos - i0

    def __call__(self, nodes: np.ndarray) -> np.ndarray:
        i, f = self.rows
        r = nodes[i] * (1.0 - f)[:, None] + nodes[i + 1] * f[:, None]
        j, g = self.cols
        return r[:, j] * (1.0 - g) + r[:, j + 1] * g
