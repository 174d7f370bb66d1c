"""Sentinel-3 swath pieces: netCDF variables read in image order, and a swath's
geolocation turned into an inverse map (output pixel -> swath pixel).

GDAL's netCDF driver reads a 2-D variable bottom-up unless told otherwise (it
assumes a y axis that increases with the row, as in CF grids); Sentinel-3 L1
arrays are in acquisition order, row 0 first, so every read here opens with
GDAL_NETCDF_BOTTOMUP=NO (tests prove the orientation against the latitudes).

The swath is not a map grid: each output pixel centre takes the value of the nearest
swath pixel centre, and nodata when that is farther than one sampling step (the larger
of the median along- and across-track steps).

How (SwathGeolocation): the latitudes/longitudes are streamed in row blocks and only
every SUBSAMPLE-th row and column (and the last) is kept: a node grid. The forward map
(swath row, column) -> map (x, y) is bilinear between the projected nodes. It is
inverted by Newton's method at output pixel centres every LATTICE pixels (with the
swath's local metric there) and interpolated bilinearly in between, as
geocode.InverseMap does for SAR. Of the four swath pixels around the fractional
(row, column), the nearest in that metric is taken (so sheared rows are handled); beyond
the swath's edge, the nearest edge pixel if within one step. Memory: the node grid, the
lattice and a few row blocks, whatever the swath size (a full OLCI EFR swath: 4091 x 4865
pixels: about 400 MB in all, against 1.3 GB for a KD-tree on every pixel).

Checked on every product before use, in swath pixels:
- every full-resolution pixel against the bilinear node grid (in latitude/longitude,
  converted with the smallest local ground step): this catches what a smooth map cannot
  hold, such as terrain displacement in ortho-geolocated coordinates;
- the whole inverse (projection, Newton, lattice) at the centre of every node cell,
  where interpolation errs most, against the pixel's own latitude/longitude.
The larger is `max_error` (reported in the output's S3_GEOLOCATION tag). An output pixel
then takes the nearest swath pixel or one whose centre is at most 2 * max_error local
steps farther (the pixel's centre is off by under max_error pixels); whether a pixel
just at one step from the swath is nodata may differ within that margin too. Measured on
a synthetic full OLCI swath (sipd.bench.sentinel3_products; across-track steps from 220
to 440 m): max_error 0.005, 0.2 % of the pixels take a neighbour of the nearest, at most
2.5 m farther. Above MAX_INVERSE_ERROR, or with missing geolocation, the exact method is
used instead (ExactSwath: a KD-tree on every projected pixel centre; slower and about 60
bytes a swath pixel, but exact whatever the geometry).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window
from scipy.ndimage import map_coordinates
from scipy.spatial import cKDTree

from sipd.errors import InvalidArgument
from sipd.paths import require_regular
from sipd.preprocess.geocode import OutputGrid
from sipd.preprocess.product_files import ProductFiles
from sipd.raster import check_files_read

NETCDF_ENV = {"GDAL_NETCDF_BOTTOMUP": "NO"}
# Swath pixels between kept geolocation nodes: on a full OLCI swath the bilinear node
# grid is off by 0.005 pixel at 8, 0.019 at 16 (the across-track step grows outwards).
SUBSAMPLE = 8
# Output pixels between exactly inverted points (geocode.LATTICE is 16: on the same swath
# the interpolated inverse errs by 0.01 pixel at 16, a quarter of that at 8).
LATTICE = 8
MAX_INVERSE_ERROR = 0.1  # swath pixels; above it the exact (KD-tree) method is used
BLOCK_NODES = 16  # node intervals per block of geolocation rows read at once


def nc_path(files: ProductFiles, rel: str, var: str) -> str:
    """The GDAL name of variable `var` in member `rel`, after checking the file is there
    and (for a plain file) inside the allowed roots."""
    if not files.exists(rel):
        raise InvalidArgument(f"product {files.source} is incomplete: {rel} is missing")
    local = files.local_path(rel)
    if local is not None:
        require_regular(local, "product file")
        check_files_read([str(local)])
    return f'NETCDF:"{files.gdal_path(rel)}":{var}'


def open_nc(path: str) -> rasterio.DatasetReader:
    """Open a NETCDF:"file":var path top-down (see the module doc); a missing variable
    or an unreadable file is the product's fault, said so."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.Env(**NETCDF_ENV):
                return rasterio.open(path)
    except RasterioIOError as exc:
        file, _, var = path.removeprefix("NETCDF:").rpartition(":")
        raise InvalidArgument(
            f"cannot read variable {var} in {file.strip(chr(34))}: {exc}; the product file "
            "is truncated, empty or not the one the product names"
        ) from exc


@dataclass(frozen=True)
class Calibration:
    """CF packing of a variable: value = stored * scale + offset; fill and values outside
    valid_min..valid_max (stored units) are nodata (CF conventions 1.7, sect. 2.5, 8.1)."""

    scale: float
    offset: float
    fill: float | None
    valid_min: float | None
    valid_max: float | None

    @classmethod
    def of(cls, ds: rasterio.DatasetReader) -> Calibration:
        tags = ds.tags(1)

        def num(key: str) -> float | None:
            m = re.search(r"[-+]?[0-9.]+(?:[eE][-+]?\d+)?", tags.get(key, ""))
            return float(m.group(0)) if m else None

        return cls(
            scale=float(ds.scales[0]) if ds.scales else 1.0,
            offset=float(ds.offsets[0]) if ds.offsets else 0.0,
            fill=ds.nodata,
            valid_min=num("valid_min"),
            valid_max=num("valid_max"),
        )

    def apply(self, stored: np.ndarray) -> np.ndarray:
        raw = stored.astype(np.float64)
        bad = np.zeros(raw.shape, dtype=bool)
        if self.fill is not None:
            bad |= raw == self.fill
        if self.valid_min is not None:
            bad |= raw < self.valid_min
        if self.valid_max is not None:
            bad |= raw > self.valid_max
        # In place: a full-swath latitude array is 160 MB in float64.
        raw *= self.scale
        raw += self.offset
        raw[bad] = np.nan
        return raw


def read_variable(path: str) -> tuple[np.ndarray, dict[str, str]]:
    """A whole variable, calibrated (float64, NaN nodata), and its file's tags (netCDF
    global attributes as NC_GLOBAL#name)."""
    with open_nc(path) as ds:
        return Calibration.of(ds).apply(ds.read(1)), ds.tags()


def flag_bits(ds: rasterio.DatasetReader) -> dict[str, int]:
    """flag_meanings -> flag_masks of a CF flag variable."""
    tags = ds.tags(1)
    meanings = tags.get("flag_meanings", "").split()
    masks = [int(v) for v in re.findall(r"\d+", tags.get("flag_masks", ""))]
    if len(meanings) != len(masks):
        return {}
    return dict(zip(meanings, masks, strict=True))


def _nodes(n: int) -> np.ndarray:
    """Node indices along an axis of n >= 2 pixels: every SUBSAMPLE-th and the last."""
    idx = np.arange(0, n, SUBSAMPLE)
    return idx if idx[-1] == n - 1 else np.append(idx, n - 1)


def _cells(nodes: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Node interval of each position (the edge ones beyond the ends) and the fraction
    along it (below 0 or above 1 beyond the ends: the map is extrapolated)."""
    i = np.clip(np.searchsorted(nodes, at, side="right") - 1, 0, len(nodes) - 2)
    return i, (at - nodes[i]) / (nodes[i + 1] - nodes[i])


def _unwrap(lon: np.ndarray, ref: float) -> np.ndarray:
    """Longitudes within 180 degrees of `ref` (a swath across the antimeridian stays whole)."""
    return (lon - ref + 180.0) % 360.0 - 180.0 + ref


def _resample_rows(values: np.ndarray, nodes: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Linear interpolation along axis 0 from rows at `nodes` to rows at `at`."""
    i, w = _cells(nodes, at)
    w = w[:, None]
    return values[i] * (1.0 - w) + values[i + 1] * w


class NodeMap:
    """The forward map (swath row, column) -> map (x, y), bilinear between nodes."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, x: np.ndarray, y: np.ndarray):
        self.rows, self.cols, self.x, self.y = rows, cols, x, y

    def __call__(self, r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, ...]:
        """x, y and the Jacobian dx/dr, dx/dc, dy/dr, dy/dc at (r, c)."""
        i, u = _cells(self.rows, r)
        j, v = _cells(self.cols, c)
        dr = (self.rows[i + 1] - self.rows[i]).astype(np.float64)
        dc = (self.cols[j + 1] - self.cols[j]).astype(np.float64)
        out = []
        for g in (self.x, self.y):
            a, b, p, q = g[i, j], g[i + 1, j], g[i, j + 1], g[i + 1, j + 1]
            value = a * (1 - u) * (1 - v) + b * u * (1 - v) + p * (1 - u) * v + q * u * v
            d_r = ((b - a) * (1 - v) + (q - p) * v) / dr
            d_c = ((p - a) * (1 - u) + (q - b) * u) / dc
            out.append((value, d_r, d_c))
        (x, xr, xc), (y, yr, yc) = out
        return x, y, xr, xc, yr, yc

    def invert(
        self, x: np.ndarray, y: np.ndarray, r: np.ndarray, c: np.ndarray, tolerance: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """(r, c) with F(r, c) = (x, y) by Newton's method from (r, c); NaN where it does
        not land within `tolerance` map units."""
        r, c = r.astype(np.float64), c.astype(np.float64)
        for _ in range(40):
            fx, fy, xr, xc, yr, yc = self(r, c)
            ex, ey = x - fx, y - fy
            det = xr * yc - xc * yr
            with np.errstate(divide="ignore", invalid="ignore"):
                step_r = (yc * ex - xc * ey) / det
                step_c = (xr * ey - yr * ex) / det
            r += step_r
            c += step_c
            # Converged: the map's coordinates (some 1e6 m) hold ~1e-10 of them.
            if not len(r) or np.nanmax(np.abs(np.concatenate([step_r, step_c]))) < 1e-6:
                break
        fx, fy, *_ = self(r, c)
        bad = ~(np.hypot(x - fx, y - fy) <= tolerance)
        r[bad] = np.nan
        c[bad] = np.nan
        return r, c


class Lattice:
    """Swath (row, column) at output pixel centres every LATTICE pixels (as
    geocode.InverseMap's lattice), bilinear in between. Interpolated separably over a
    window (rows first, then columns): about six times faster than map_coordinates
    at the same values."""

    def __init__(self, lines: np.ndarray, pixels: np.ndarray, metric: tuple[np.ndarray, ...]):
        self.lines, self.pixels, self.metric = lines, pixels, metric

    def coords(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """(lines, pixels) at the output pixel centres of `window`, shape (rows, cols)."""
        n_r, n_c = self.lines.shape
        i, u = _steps(np.arange(window.row_off, window.row_off + window.height), n_r)
        j, v = _steps(np.arange(window.col_off, window.col_off + window.width), n_c)
        u, v = u[:, None], v[None, :]
        out = []
        for grid in (self.lines, self.pixels):
            part = grid[i] * (1.0 - u) + grid[i + 1] * u  # (rows, lattice columns)
            out.append(part[:, j] * (1.0 - v) + part[:, j + 1] * v)
        return out[0], out[1]

    def metric_at(self, window: Window) -> tuple[np.ndarray, ...]:
        """The metric (g11, g12, g22) of the nearest lattice point, shape (rows, cols)."""
        r = np.arange(window.row_off, window.row_off + window.height)
        c = np.arange(window.col_off, window.col_off + window.width)
        at = np.ix_((r + LATTICE // 2) // LATTICE, (c + LATTICE // 2) // LATTICE)
        return tuple(g[at] for g in self.metric)


def _steps(index: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Lattice interval and fraction of output pixel indices (clamped to the lattice)."""
    at = np.clip(index / LATTICE, 0, n - 1)
    i = np.minimum(at.astype(np.int64), n - 2)
    return i, at - i


class SwathGeolocation:
    """One swath grid's geolocation, read once in row blocks, as an inverse map into an
    output grid (see the module doc). Use: centre(), bounds(crs), fit(grid), locate()."""

    def __init__(self, name: str, lat_path: str, lon_path: str) -> None:
        self.name, self._paths = name, (lat_path, lon_path)
        self.method = "inverse-map"
        self.max_error = 0.0  # swath pixels
        self.max_distance = 0.0
        self._exact: ExactSwath | None = None
        self._map: NodeMap | None = None
        self._lattice: Lattice | None = None
        with open_nc(lat_path) as la, open_nc(lon_path) as lo:
            if (la.height, la.width) != (lo.height, lo.width):
                raise InvalidArgument(
                    f"{name}: latitude {la.height} x {la.width} and longitude {lo.height} x "
                    f"{lo.width} differ; the geolocation file is inconsistent"
                )
            self.shape = (la.height, la.width)
            if min(self.shape) < 2:
                self._use_exact("the swath is a single row or column")
                return
            self._stream(la, lo)

    def _stream(self, la: rasterio.DatasetReader, lo: rasterio.DatasetReader) -> None:
        """Keep the nodes, the swath's edge pixels and the cell-centre samples; measure
        the full-resolution pixels' distance from the bilinear node grid."""
        rows, cols = self.shape
        cal_lat, cal_lon = Calibration.of(la), Calibration.of(lo)
        R, C = _nodes(rows), _nodes(cols)
        self._rows, self._cols = R, C
        lat_n = np.empty((len(R), len(C)))
        lon_n = np.empty((len(R), len(C)))
        # Cell centres (where bilinear interpolation errs most): the inverse's check.
        sr, sc = (R[:-1] + R[1:]) // 2, (C[:-1] + C[1:]) // 2
        s_lat = np.empty((len(sr), len(sc)))
        s_lon = np.empty((len(sr), len(sc)))
        first_col, last_col = np.empty((rows, 2)), np.empty((rows, 2))
        edge_rows: list[np.ndarray] = []
        j, w = _cells(C, np.arange(cols, dtype=np.float64))
        ref: float | None = None
        worst = 0.0
        for k0 in range(0, len(R) - 1, BLOCK_NODES):
            k1 = min(k0 + BLOCK_NODES, len(R) - 1)
            r0, r1 = int(R[k0]), int(R[k1]) + 1
            window = Window(0, r0, cols, r1 - r0)
            lat = cal_lat.apply(la.read(1, window=window))
            lon = cal_lon.apply(lo.read(1, window=window))
            if not (np.isfinite(lat).all() and np.isfinite(lon).all()) or (
                np.abs(lat).max() > 90 or np.abs(lon).max() > 360
            ):
                self._use_exact("the geolocation has missing pixels")
                return
            if ref is None:
                ref = float(_unwrap(np.array([lon[0, 0]]), 0.0)[0])
            if lon.min() < ref - 180.0 or lon.max() >= ref + 180.0:
                lon = _unwrap(lon, ref)
            local = R[k0 : k1 + 1] - r0
            lat_n[k0 : k1 + 1] = lat[local][:, C]
            lon_n[k0 : k1 + 1] = lon[local][:, C]
            inside = (sr >= r0) & (sr < r1 - 1)  # a cell centre is below its next node
            s_lat[inside] = lat[sr[inside] - r0][:, sc]
            s_lon[inside] = lon[sr[inside] - r0][:, sc]
            first_col[r0:r1] = np.column_stack((lat[:, 0], lon[:, 0]))
            last_col[r0:r1] = np.column_stack((lat[:, -1], lon[:, -1]))
            if k0 == 0:
                edge_rows.append(np.column_stack((lat[0], lon[0])))
            if k1 == len(R) - 1:
                edge_rows.append(np.column_stack((lat[-1], lon[-1])))
            error = self._forward_error(
                lat, lon, lat_n[k0 : k1 + 1], lon_n[k0 : k1 + 1], local, C, (j, w)
            )
            worst = max(worst, error)
        self._lat_n, self._lon_n = lat_n, lon_n
        self._samples = (sr, sc, s_lat, s_lon)
        self._edges = np.concatenate([first_col, last_col, *edge_rows])
        self.max_error = worst

    @staticmethod
    def _forward_error(
        lat: np.ndarray,
        lon: np.ndarray,
        lat_n: np.ndarray,
        lon_n: np.ndarray,
        node_rows: np.ndarray,
        node_cols: np.ndarray,
        cells: tuple[np.ndarray, np.ndarray],
    ) -> float:
        """Largest distance of a block's pixels from the bilinear interpolation of its
        nodes, in swath pixels (the smallest ground step between the block's nodes)."""
        cos = np.cos(np.radians(lat_n))
        along = np.hypot(np.diff(lat_n, axis=0), np.diff(lon_n, axis=0) * cos[:-1])
        across = np.hypot(np.diff(lat_n, axis=1), np.diff(lon_n, axis=1) * cos[:, :-1])
        step = min(
            float(np.min(along / np.diff(node_rows)[:, None])),
            float(np.min(across / np.diff(node_cols)[None, :])),
        )
        j, w = cells
        at = np.arange(lat.shape[0], dtype=np.float64)
        err = _resample_rows(lat_n[:, j] * (1.0 - w) + lat_n[:, j + 1] * w, node_rows, at)
        err -= lat
        worst = err * err
        err = _resample_rows(lon_n[:, j] * (1.0 - w) + lon_n[:, j + 1] * w, node_rows, at)
        err -= lon
        err *= np.cos(np.radians(lat))
        worst += err * err
        return float(np.sqrt(worst.max()) / step) if step > 0 else np.inf

    def _use_exact(self, why: str) -> None:
        self.method = f"kd-tree ({why})"

    @property
    def exact(self) -> bool:
        return self.method != "inverse-map"

    def _exact_swath(self) -> ExactSwath:
        if self._exact is None:
            lat, _ = read_variable(self._paths[0])
            lon, _ = read_variable(self._paths[1])
            self._exact = ExactSwath(self.name, lat, lon)
        return self._exact

    def centre(self) -> tuple[float, float]:
        """Median longitude (-180..180) and latitude of the swath."""
        if self.exact:
            return self._exact_swath().centre()
        lon = _unwrap(self._lon_n, 0.0)
        return float(np.median(lon)), float(np.median(self._lat_n))

    def bounds(self, crs: CRS) -> tuple[float, float, float, float]:
        """Bounds in `crs` of the swath pixel centres (those on its edges)."""
        if self.exact:
            return self._exact_swath().project(crs)
        to_map = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        x, y = to_map.transform(self._edges[:, 1], self._edges[:, 0])
        x, y = np.asarray(x), np.asarray(y)
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise InvalidArgument(f"{self.name}: the swath does not project into {crs}")
        return float(x.min()), float(y.min()), float(x.max()), float(y.max())

    def fit(self, grid: OutputGrid) -> None:
        """Build the inverse map into `grid` and check it (module doc); the exact method
        when it errs by more than MAX_INVERSE_ERROR swath pixels."""
        if self.exact:
            self._fit_exact(grid)
            return
        to_map = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True)
        x, y = (np.asarray(v) for v in to_map.transform(self._lon_n, self._lat_n))
        R, C = self._rows, self._cols
        node_map = NodeMap(R, C, x, y)
        along = np.hypot(np.diff(x, axis=0), np.diff(y, axis=0)) / np.diff(R)[:, None]
        across = np.hypot(np.diff(x, axis=1), np.diff(y, axis=1)) / np.diff(C)[None, :]
        # One sampling step: the larger of the median along- and across-track steps.
        self.max_distance = max(float(np.median(along)), float(np.median(across)))
        smallest = min(float(along.min()), float(across.min()))
        if not (np.isfinite(self.max_distance) and smallest > 0):
            self._use_exact("the swath folds or does not project")
            self._fit_exact(grid)
            return
        # How far outside the swath (in its pixels) a point may be within one step.
        self._reach = self.max_distance / smallest + 1.0
        # Lattice of output pixel centres, every LATTICE pixels (as geocode.InverseMap).
        lr = np.arange(0, grid.height + LATTICE, LATTICE, dtype=np.float64)
        lc = np.arange(0, grid.width + LATTICE, LATTICE, dtype=np.float64)
        rr, cc = np.meshgrid(lr + 0.5, lc + 0.5, indexing="ij")
        t = grid.transform
        lx = t.a * cc + t.b * rr + t.c
        ly = t.d * cc + t.e * rr + t.f
        tree = cKDTree(np.column_stack((x.ravel(), y.ravel())))
        lx, ly = lx.ravel(), ly.ravel()
        # Per lattice point: (line, pixel) and the swath's local metric (squared map
        # distance of a step (dr, dc) = g11 dr^2 + 2 g12 dr dc + g22 dc^2), with which the
        # nearest of the four swath pixels around a point is the nearest, sheared rows or
        # not. In pieces: Newton's temporaries are some 30 arrays.
        values = np.empty((5, lx.size))
        for s0 in range(0, lx.size, 65536):
            part = slice(s0, s0 + 65536)
            _, k = tree.query(np.column_stack((lx[part], ly[part])))
            lines, pixels = node_map.invert(
                lx[part], ly[part], R[k // len(C)], C[k % len(C)], 1e-4 * smallest
            )
            _, _, xr, xc, yr, yc = node_map(np.nan_to_num(lines), np.nan_to_num(pixels))
            values[:, part] = (lines, pixels, xr * xr + yr * yr, xr * xc + yr * yc,
                               xc * xc + yc * yc)  # fmt: skip
        lattice = values.reshape(5, *rr.shape)
        self._lattice = Lattice(lattice[0], lattice[1], (lattice[2], lattice[3], lattice[4]))
        self._map, self._transform = node_map, grid.transform
        # The whole inverse at the cell centres, against their own coordinates.
        sr, sc, s_lat, s_lon = self._samples
        sx, sy = (np.asarray(v) for v in to_map.transform(s_lon, s_lat))
        got_r, got_c = self._inverse(sx.ravel(), sy.ravel())
        want_r, want_c = np.meshgrid(sr, sc, indexing="ij")
        error = np.hypot(got_r - want_r.ravel(), got_c - want_c.ravel())
        self.max_error = max(self.max_error, float(error.max()) if error.size else 0.0)
        if not self.max_error <= MAX_INVERSE_ERROR:
            self._use_exact(
                f"a smooth inverse map errs by {self.max_error:.2f} swath pixels, more "
                f"than {MAX_INVERSE_ERROR}"
            )
            self._fit_exact(grid)

    def _fit_exact(self, grid: OutputGrid) -> None:
        exact = self._exact_swath()
        if exact.tree is None:
            exact.project(grid.crs)
        exact.transform = grid.transform
        self.max_distance = exact.max_distance

    def _inverse(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Swath (row, column) of map points through the lattice, as locate does."""
        assert self._lattice is not None
        inv = ~self._transform
        col = inv.a * x + inv.b * y + inv.c - 0.5
        row = inv.d * x + inv.e * y + inv.f - 0.5
        at = [row / LATTICE, col / LATTICE]
        return (
            map_coordinates(self._lattice.lines, at, order=1, mode="nearest"),
            map_coordinates(self._lattice.pixels, at, order=1, mode="nearest"),
        )

    def locate_bilinear(
        self, window: Window
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(found, rows, cols, row fractions, column fractions) over the output pixels of
        `window`: whether each is within the swath's outermost pixel centres, and for
        those the upper left of the four swath pixels around it and its position among
        them (0..1). Only with the inverse map (the exact method has no positions)."""
        if self.exact or self._lattice is None:
            raise InvalidArgument(
                f"{self.name}: resampling bilinear needs a smooth geolocation and this "
                f"one is not ({self.method}); use resampling nearest"
            )
        lines, pixels = (v.ravel() for v in self._lattice.coords(window))
        rows, cols = self.shape
        found = (lines >= 0) & (lines <= rows - 1) & (pixels >= 0) & (pixels <= cols - 1)
        lines, pixels = lines[found], pixels[found]
        r = np.minimum(np.floor(lines), rows - 2)
        c = np.minimum(np.floor(pixels), cols - 2)
        return found, r.astype(np.int64), c.astype(np.int64), lines - r, pixels - c

    def locate(self, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(found, rows, cols) over the output pixels of `window`, row by row: whether
        each has a swath pixel, and the swath pixel of those that do."""
        if self._exact is not None and self.exact:
            return self._exact.locate(window)
        assert self._lattice is not None and self._map is not None
        lines, pixels = (v.ravel() for v in self._lattice.coords(window))
        g11, g12, g22 = (g.ravel() for g in self._lattice.metric_at(window))
        rows, cols = self.shape
        # The nearest of the (up to) four swath pixels around each point: with f the
        # point's offset from the lower one and k in {0,1}^2, |k - f|^2 = |f|^2 + s(k),
        # s(k) = G(k) - 2 k.G f, linear in f.
        r0, c0 = np.floor(lines), np.floor(pixels)
        fr, fc = lines - r0, pixels - c0
        p = g11 * fr + g12 * fc
        q = g12 * fr + g22 * fc
        s10 = g11 - 2.0 * p
        s01 = g22 - 2.0 * q
        s11 = s10 + s01 + 2.0 * g12
        s00 = np.zeros_like(s10)
        # Candidates outside the swath cannot be chosen.
        for lower, n, axis in ((r0, rows, 0), (c0, cols, 1)):
            out_low = (lower < 0) | (lower > n - 1)
            out_high = (lower < -1) | (lower > n - 2)
            if out_low.any() or out_high.any():
                low, high = ((s00, s01), (s10, s11)) if axis == 0 else ((s00, s10), (s01, s11))
                for score in low:
                    score[out_low] = np.inf
                for score in high:
                    score[out_high] = np.inf
        m0 = np.minimum(s00, s01)
        m1 = np.minimum(s10, s11)
        down = m1 < m0
        right = np.where(down, s11 < s10, s01 < s00)
        best = np.where(down, m1, m0) + fr * p + fc * q
        r = r0 + down
        c = c0 + right
        found = best <= (self.max_distance * 1.0001) ** 2
        # More than a pixel beyond the swath's edge: the nearest edge pixel (the foot of
        # the perpendicular on the edge, in the local metric), if within one step.
        k = np.flatnonzero(np.isinf(best))
        lk, pk = lines[k], pixels[k]
        on_r, on_c = np.clip(lk, 0, rows - 1), np.clip(pk, 0, cols - 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            foot_r = np.where(on_r == lk, lk - g12[k] * (on_c - pk) / g11[k], on_r)
            foot_c = np.where(on_c == pk, pk - g12[k] * (on_r - lk) / g22[k], on_c)
        rk = np.clip(np.rint(foot_r), 0, rows - 1)
        ck = np.clip(np.rint(foot_c), 0, cols - 1)
        close = (np.abs(lk - rk) <= self._reach) & (np.abs(pk - ck) <= self._reach)
        k, rk, ck = k[close], rk[close], ck[close]
        if k.size:
            out_r = window.row_off + k // window.width + 0.5
            out_c = window.col_off + k % window.width + 0.5
            t = self._transform
            fx, fy, *_ = self._map(rk, ck)
            dx = t.a * out_c + t.b * out_r + t.c - fx
            dist = np.hypot(dx, t.d * out_c + t.e * out_r + t.f - fy)
            found[k] = dist <= self.max_distance * 1.0001
            r[k], c[k] = rk, ck
        return found, r[found].astype(np.int64), c[found].astype(np.int64)


class ExactSwath:
    """The exact method: the nearest of every projected swath pixel centre (KD-tree),
    for geolocation a smooth map cannot hold (see the module doc)."""

    def __init__(self, name: str, lat: np.ndarray, lon: np.ndarray) -> None:
        if lat.shape != lon.shape or lat.ndim != 2:
            raise InvalidArgument(
                f"{name}: latitude {lat.shape} and longitude {lon.shape} differ; the "
                "geolocation file is inconsistent"
            )
        self.name = name
        self.shape = lat.shape
        ok = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 360)
        if not ok.any():
            raise InvalidArgument(f"{name}: the geolocation holds no valid latitude/longitude")
        self._lat, self._lon, self._ok = lat, lon, ok
        self.tree: cKDTree | None = None
        self.max_distance = 0.0
        self._flat: np.ndarray | None = None  # tree point -> swath pixel; None = identity
        self._count = 0
        self.transform: Affine | None = None  # the output grid's

    def centre(self) -> tuple[float, float]:
        lon = np.where(self._lon > 180, self._lon - 360, self._lon)[self._ok]
        return float(np.median(lon)), float(np.median(self._lat[self._ok]))

    def project(self, crs: CRS) -> tuple[float, float, float, float]:
        """Build the KD-tree in `crs`; returns the bounds of the swath pixel centres.

        Memory: the projected centres (16 bytes a pixel) are the tree's own data (no
        copy) and the latitudes/longitudes are dropped once projected; the tree is built
        unbalanced (sliding midpoint), several times faster on a full swath, with the
        same nearest-neighbour answers."""
        to_map = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        rows, cols = self.shape
        pts = np.full((rows * cols, 2), np.nan)
        chunk = max(1, 1_000_000 // cols)
        for r0 in range(0, rows, chunk):
            r1 = min(rows, r0 + chunk)
            ok = self._ok[r0:r1].ravel()
            part = pts[r0 * cols : r1 * cols]
            x, y = to_map.transform(self._lon[r0:r1].ravel()[ok], self._lat[r0:r1].ravel()[ok])
            part[ok, 0], part[ok, 1] = x, y
        del self._lat, self._lon, self._ok
        finite = np.isfinite(pts).all(axis=1)
        if not finite.any():
            raise InvalidArgument(f"{self.name}: the swath does not project into {crs}")
        # One sampling step: the larger of the median along-track and across-track
        # distances between neighbouring pixel centres (on a sample of rows/columns).
        grid = pts.reshape(rows, cols, 2)
        steps = []
        if rows > 1:
            d = grid[1:, :: max(1, cols // 200)] - grid[:-1, :: max(1, cols // 200)]
            steps.append(np.nanmedian(np.hypot(d[..., 0], d[..., 1])))
        if cols > 1:
            d = grid[:: max(1, rows // 200), 1:] - grid[:: max(1, rows // 200), :-1]
            steps.append(np.nanmedian(np.hypot(d[..., 0], d[..., 1])))
        finite_steps = [float(v) for v in steps if np.isfinite(v) and v > 0]
        self.max_distance = max(finite_steps) if finite_steps else np.inf
        if finite.all():
            self._flat = None
        else:
            self._flat = np.flatnonzero(finite)
            pts = pts[finite]
        self._count = len(pts)
        bounds = pts.min(axis=0), pts.max(axis=0)
        self.tree = cKDTree(pts, copy_data=False, balanced_tree=False, compact_nodes=False)
        return float(bounds[0][0]), float(bounds[0][1]), float(bounds[1][0]), float(bounds[1][1])

    def locate(self, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(found, rows, cols) as SwathGeolocation.locate: the nearest swath pixel of each
        output pixel centre of `window` within one step."""
        assert self.tree is not None and self.transform is not None
        cols, rows = np.meshgrid(
            np.arange(window.col_off, window.col_off + window.width) + 0.5,
            np.arange(window.row_off, window.row_off + window.height) + 0.5,
        )
        t = self.transform
        xs = t.a * cols + t.b * rows + t.c
        ys = t.d * cols + t.e * rows + t.f
        _, k = self.tree.query(
            np.column_stack((xs.ravel(), ys.ravel())),
            distance_upper_bound=self.max_distance * 1.0001,
        )
        found = k < self._count
        flat = k[found] if self._flat is None else self._flat[k[found]]
        return found, flat // self.shape[1], flat % self.shape[1]


def read_at(ds: rasterio.DatasetReader, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Stored values at (rows, cols), reading only the window that holds them."""
    if rows.size == 0:
        return np.empty(0, dtype=ds.dtypes[0])
    r0, r1 = int(rows.min()), int(rows.max()) + 1
    c0, c1 = int(cols.min()), int(cols.max()) + 1
    block = ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
    return block[rows - r0, cols - c0]


def read_quad(ds: rasterio.DatasetReader, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Stored values [4, n] at (rows, cols), (rows, cols + 1), (rows + 1, cols) and
    (rows + 1, cols + 1), reading only the window that holds them."""
    if rows.size == 0:
        return np.empty((4, 0), dtype=ds.dtypes[0])
    r0, r1 = int(rows.min()), int(rows.max()) + 2
    c0, c1 = int(cols.min()), int(cols.max()) + 2
    block = ds.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
    r, c = rows - r0, cols - c0
    return np.stack([block[r, c], block[r, c + 1], block[r + 1, c], block[r + 1, c + 1]])
