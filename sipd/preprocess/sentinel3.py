"""Sentinel-3 Level-1 products: OLCI EFR/ERR and SLSTR RBT, as .SEN3 folders, their
xfdumanifest.xml, or a zip of the folder.

- Radiance and brightness temperature: CF packing, value = stored * scale_factor +
  add_offset, _FillValue (and valid_min/valid_max) nodata (CF conventions 1.7, 8.1;
  Sentinel-3 OLCI/SLSTR Level-1 Product Data Format Specifications).
- OLCI TOA reflectance, per pixel (ESA Sentinel-3 OLCI User Guide, "Level-1 TOA
  reflectance"; OLCI Level-1 ATBD S3-ACRI-TN-007; as SNAP's Rad2Refl operator):
      rho = pi * L / (F0 * cos(SZA))
  with L the band's radiance, F0 = instrument_data.nc solar_flux[band, detector] of
  the pixel's detector (detector_index; the flux is already corrected for the
  Sun-Earth distance of the day) and SZA interpolated bilinearly from
  tie_geometries.nc at the pixel's position in the tie-point grid (one tie point every
  ac_subsampling_factor columns and al_subsampling_factor rows).
- The swath goes onto a map grid by nearest neighbour, or with resampling bilinear
  weighted from the four swath pixels around each map pixel centre (sentinel3_swath: an
  inverse map fitted through the subsampled geolocation and checked against every
  pixel's; nearest falls back to the exact KD-tree method where the geolocation is not
  smooth, bilinear is then refused).
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
from scipy.ndimage import map_coordinates

from sipd.contracts.options.sentinel3 import Sentinel3Options
from sipd.contracts.preprocessing import PreprocessStep
from sipd.errors import InvalidArgument
from sipd.preprocess.band_stack import RunResult, StackGrid, write_stack
from sipd.preprocess.geocode import OutputGrid, utm_for
from sipd.preprocess.product_files import ProductFiles
from sipd.preprocess.sar_xml import all_named, first_text
from sipd.preprocess.sentinel3_swath import (
    Calibration,
    SwathGeolocation,
    flag_bits,
    nc_path,
    open_nc,
    read_at,
    read_quad,
    read_variable,
)
from sipd.preprocess.streaming import DatasetsPerThread
from sipd.progress import JobContext

MANIFEST = "xfdumanifest.xml"
PRODUCT_TYPES = {"OL_1_EFR___": "OLCI", "OL_1_ERR___": "OLCI", "SL_1_RBT___": "SLSTR"}
# Nominal sampling (m): OLCI full and reduced resolution, SLSTR visible/SWIR and thermal.
DEFAULT_RESOLUTION = {"OL_1_EFR___": 300.0, "OL_1_ERR___": 1200.0, "SL_1_RBT___": 500.0}
SLSTR_THERMAL_RESOLUTION = 1000.0
METRES_PER_DEGREE = 111320.0
MAX_PIXELS = 400_000_000
# Output columns located and read at once: the swath window a block needs stays small
# on a tilted swath (a full-width block would read most of the swath's rows).
CHUNK_COLUMNS = 1024


@dataclass
class Manifest:
    """What the xfdumanifest.xml says."""

    product_type: str
    instrument: str
    name: str
    platform: str
    start: str
    stop: str
    baseline: str
    bands: dict[str, tuple[str, str]]  # name -> (central wavelength nm, bandwidth nm)
    tie_ac: int = 0
    tie_al: int = 0


@dataclass(frozen=True)
class Band:
    name: str
    rel: str  # file in the product
    var: str
    grid: str  # geolocation grid key
    quantity: str  # reflectance, radiance, brightness_temperature
    units: str
    wavelength: str
    bandwidth: str


def parse_manifest(data: bytes, source: Path) -> Manifest:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise InvalidArgument(f"{source}: xfdumanifest.xml is not valid XML: {exc}") from exc
    product_type = first_text(root, "productType")
    if product_type not in PRODUCT_TYPES:
        raise InvalidArgument(
            f"{source} is a {product_type or 'unknown'} product; accepted: Sentinel-3 "
            "OLCI Level-1 EFR/ERR (OL_1_EFR___, OL_1_ERR___) and SLSTR Level-1 RBT "
            "(SL_1_RBT___)"
        )
    bands: dict[str, tuple[str, str]] = {}
    for e in all_named(root, "band"):
        if e.get("name"):
            bands[e.get("name", "")] = (
                first_text(e, "centralWavelength"),
                first_text(e, "bandwidth"),
            )
    number = first_text(root, "number")
    return Manifest(
        product_type=product_type,
        instrument=PRODUCT_TYPES[product_type],
        name=first_text(root, "productName") or source.name,
        platform=f"Sentinel-3{number}",
        start=first_text(root, "startTime"),
        stop=first_text(root, "stopTime"),
        baseline=first_text(root, "baselineCollection"),
        bands=bands,
        tie_ac=int(first_text(root, "columnsPerTiePoint") or 0),
        tie_al=int(first_text(root, "rowsPerTiePoint") or 0),
    )


def accepts(path: Path) -> bool:
    """A Sentinel-3 OLCI L1 or SLSTR RBT product: its folder, xfdumanifest.xml or zip."""
    try:
        files = ProductFiles.open(path, (MANIFEST,))
    except Exception:  # noqa: BLE001 - any unrelated path is simply not ours
        return False
    try:
        head = files.read_bytes(MANIFEST, "manifest")
        return any(f"productType>{t}<".encode() in head for t in PRODUCT_TYPES)
    except Exception:  # noqa: BLE001
        return False
    finally:
        files.close()


def plan_bands(m: Manifest, options: Sentinel3Options) -> list[Band]:
    """The bands to stack, with their files and geolocation grids."""
    chosen = list(options.bands) or list(m.bands)
    if not chosen:
        raise InvalidArgument(f"{m.name}: the manifest lists no bands")
    missing = [b for b in chosen if b not in m.bands]
    if missing:
        raise InvalidArgument(
            f"{m.name} is {m.instrument}: it has no band {', '.join(missing)}; accepted "
            f"bands: {','.join(m.bands)}"
        )
    if m.instrument == "OLCI":
        if options.view != "nadir":
            raise InvalidArgument("view is an SLSTR option; OLCI has one view (nadir)")
        quantity = "radiance" if options.quantity == "radiance" else "reflectance"
        units = "1" if quantity == "reflectance" else "mW.m-2.sr-1.nm-1"
        return [
            Band(b, f"{b}_radiance.nc", f"{b}_radiance", "olci", quantity, units, *m.bands[b])
            for b in chosen
        ]
    if options.quantity == "reflectance":
        raise InvalidArgument(
            "quantity reflectance is for OLCI; SLSTR S1-S6 are written as radiance and "
            "S7-F2 as brightness temperature: use quantity auto or radiance"
        )
    v = "n" if options.view == "nadir" else "o"
    out = []
    for b in chosen:
        if b in ("S1", "S2", "S3", "S4", "S5", "S6"):
            grid, stem, quantity, units = f"a{v}", "radiance", "radiance", "mW.m-2.sr-1.nm-1"
        else:
            grid = f"f{v}" if b == "F1" else f"i{v}"
            stem, quantity, units = "BT", "brightness_temperature", "K"
        var = f"{b}_{stem}_{grid}"
        out.append(Band(b, f"{var}.nc", var, grid, quantity, units, *m.bands[b]))
    return out


def _geolocation(files: ProductFiles, grid: str) -> SwathGeolocation:
    if grid == "olci":
        rel, lat_var, lon_var = "geo_coordinates.nc", "latitude", "longitude"
    else:
        rel, lat_var, lon_var = f"geodetic_{grid}.nc", f"latitude_{grid}", f"longitude_{grid}"
    return SwathGeolocation(rel, nc_path(files, rel, lat_var), nc_path(files, rel, lon_var))


@dataclass
class OlciReflectance:
    """What pi*L/(F0*cos(SZA)) needs besides L."""

    detector_path: str
    solar_flux: np.ndarray  # [bands, detectors]
    sza: np.ndarray  # tie-point grid, degrees
    ac: int
    al: int

    def cos_sza(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """cos(SZA) at swath pixels, SZA bilinear in the tie-point grid."""
        sza = map_coordinates(self.sza, [rows / self.al, cols / self.ac], order=1, mode="nearest")
        return np.cos(np.deg2rad(sza))

    def factor(self, band: int, detectors: np.ndarray, cos_sza: np.ndarray) -> np.ndarray:
        """pi / (F0 * cos(SZA)) at each pixel (NaN where the detector is unknown)."""
        ok = (detectors >= 0) & (detectors < self.solar_flux.shape[1])
        f0 = np.full(detectors.shape, np.nan)
        f0[ok] = self.solar_flux[band, detectors[ok]]
        return np.pi / (f0 * cos_sza)


def _olci_reflectance(files: ProductFiles, m: Manifest, shape: tuple[int, int]) -> OlciReflectance:
    flux, _ = read_variable(nc_path(files, "instrument_data.nc", "solar_flux"))
    sza_path = nc_path(files, "tie_geometries.nc", "SZA")
    sza, tags = read_variable(sza_path)
    ac = int(float(tags.get("NC_GLOBAL#ac_subsampling_factor", m.tie_ac) or 0))
    al = int(float(tags.get("NC_GLOBAL#al_subsampling_factor", m.tie_al) or 0))
    if ac < 1 or al < 1:
        raise InvalidArgument(
            f"{m.name}: tie_geometries.nc gives no tie-point subsampling "
            "(ac_subsampling_factor/al_subsampling_factor) and the manifest none either"
        )
    rows, cols = shape
    if (sza.shape[0] - 1) * al < rows - 1 or (sza.shape[1] - 1) * ac < cols - 1:
        raise InvalidArgument(
            f"{m.name}: the tie-point grid {sza.shape[0]} x {sza.shape[1]} (every {al} rows, "
            f"{ac} columns) does not cover the {rows} x {cols} image"
        )
    if flux.shape[0] < 21:
        raise InvalidArgument(
            f"{m.name}: instrument_data.nc solar_flux has {flux.shape[0]} bands, not 21"
        )
    det = nc_path(files, "instrument_data.nc", "detector_index")
    with open_nc(det) as ds:
        if (ds.height, ds.width) != shape:
            raise InvalidArgument(
                f"{m.name}: detector_index is {ds.height} x {ds.width}, the image {rows} x {cols}"
            )
    return OlciReflectance(det, flux, sza, ac, al)


def _mask_source(
    files: ProductFiles, m: Manifest, grid: str, names: list[str]
) -> list[tuple[str, int]]:
    """(variable path, bits) whose set bits make a pixel of `grid` nodata."""
    if m.instrument == "OLCI":
        candidates = [("qualityFlags.nc", "quality_flags")]
    else:
        candidates = [
            (f"flags_{grid}.nc", f"confidence_{grid}"),
            (f"flags_{grid}.nc", f"cloud_{grid}"),
        ]
    found: dict[str, tuple[str, int]] = {}
    known: list[str] = []
    for rel, var in candidates:
        path = nc_path(files, rel, var)
        with open_nc(path) as ds:
            bits = flag_bits(ds)
        known += list(bits)
        for name in names:
            hits = [
                b
                for n, b in bits.items()
                if n.lower() == name or (name == "saturated" and n.lower().startswith("saturated"))
            ]
            if hits and name not in found:
                total = 0
                for b in hits:
                    total |= b
                found[name] = (path, total)
    unknown = [n for n in names if n not in found]
    if unknown:
        raise InvalidArgument(
            f"mask flag {', '.join(unknown)} is not a flag of {m.name}; accepted: "
            + ", ".join(dict.fromkeys(known))
        )
    merged: dict[str, int] = {}
    for path, bits in found.values():
        merged[path] = merged.get(path, 0) | bits
    return list(merged.items())


def _output_grid(
    swaths: dict[str, SwathGeolocation], crs_text: str, resolution: float
) -> tuple[CRS, float, Affine, int, int]:
    first = next(iter(swaths.values()))
    crs = utm_for(*first.centre()) if crs_text == "auto" else CRS.from_user_input(crs_text)
    if crs.is_geographic:
        resolution = resolution / METRES_PER_DEGREE
    bounds = np.array([s.bounds(crs) for s in swaths.values()])
    xmin, ymin = bounds[:, 0].min(), bounds[:, 1].min()
    xmax, ymax = bounds[:, 2].max(), bounds[:, 3].max()
    # Pixel centres on the extreme swath centres: a swath on a regular grid of the same
    # step maps one to one.
    width = int(np.floor((xmax - xmin) / resolution + 0.5)) + 1
    height = int(np.floor((ymax - ymin) / resolution + 0.5)) + 1
    if width * height > MAX_PIXELS:
        raise InvalidArgument(
            f"the output would be {width} x {height} pixels at {resolution:g} CRS units; "
            "choose a larger resolution or a CRS that suits the scene (crs auto = UTM)"
        )
    transform = Affine(
        resolution, 0.0, xmin - resolution / 2, 0.0, -resolution, ymax + resolution / 2
    )
    for s in swaths.values():
        s.fit(OutputGrid(crs, transform, width, height))
    return crs, resolution, transform, width, height


def _tags(
    m: Manifest,
    bands: list[Band],
    options: Sentinel3Options,
    swaths: dict[str, SwathGeolocation],
) -> dict[str, str]:
    tags = {
        "S3_PRODUCT_NAME": m.name,
        "S3_PRODUCT_TYPE": m.product_type,
        "S3_INSTRUMENT": m.instrument,
        "S3_PLATFORM": m.platform,
        "S3_START_TIME": m.start,
        "S3_STOP_TIME": m.stop,
        "S3_BASELINE_COLLECTION": m.baseline,
        "S3_QUANTITY": ",".join(dict.fromkeys(b.quantity for b in bands)),
        "S3_RESAMPLING": options.resampling,
        # How each swath was mapped, and the inverse map's largest error (swath pixels).
        "S3_GEOLOCATION": "; ".join(
            f"{s.name}: {s.method}, max error {s.max_error:.3f} px" for s in swaths.values()
        ),
    }
    if m.instrument == "SLSTR":
        tags["S3_VIEW"] = options.view
    tags["SIPD_MASK"] = ",".join(options.mask)
    return {k: v for k, v in tags.items() if v or k == "SIPD_MASK"}


def run(
    source: Path,
    step: PreprocessStep,
    output: Path,
    ctx: JobContext,
    tags: dict[str, str],
    threads: int,
) -> RunResult:
    options = step.options
    assert isinstance(options, Sentinel3Options)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    files = ProductFiles.open(source, (MANIFEST,))
    datasets = DatasetsPerThread(opener=open_nc)
    try:
        m = parse_manifest(files.read_bytes(MANIFEST, "manifest"), Path(source))
        bands = plan_bands(m, options)
        paths = [nc_path(files, b.rel, b.var) for b in bands]
        ctx.progress("geolocation", 0.0, "reading the swath geolocation", force=True)
        swaths = {g: _geolocation(files, g) for g in dict.fromkeys(b.grid for b in bands)}
        calibrations = []
        for band, path in zip(bands, paths, strict=True):
            with open_nc(path) as ds:
                if (ds.height, ds.width) != swaths[band.grid].shape:
                    raise InvalidArgument(
                        f"{m.name}: {band.rel} is {ds.height} x {ds.width} but its "
                        f"geolocation is {swaths[band.grid].shape[0]} x "
                        f"{swaths[band.grid].shape[1]}; the product is inconsistent"
                    )
                calibrations.append(Calibration.of(ds))
        reflectance = None
        if any(b.quantity == "reflectance" for b in bands):
            reflectance = _olci_reflectance(files, m, swaths["olci"].shape)
        masks = (
            {g: _mask_source(files, m, g, list(options.mask)) for g in swaths}
            if options.mask
            else {}
        )
        ctx.check_cancelled()
        resolution = options.resolution or (
            SLSTR_THERMAL_RESOLUTION
            if m.instrument == "SLSTR" and all(b.grid[0] != "a" for b in bands)
            else DEFAULT_RESOLUTION[m.product_type]
        )
        crs, res, transform, width, height = _output_grid(swaths, options.crs, resolution)
        if options.resampling == "bilinear":
            for s in swaths.values():
                if s.exact:
                    raise InvalidArgument(
                        f"{m.name}: resampling bilinear needs a smooth geolocation and "
                        f"{s.name}'s is not ({s.method}); use resampling nearest"
                    )
        ctx.check_cancelled()
        seconds["geolocation"] = time.perf_counter() - t
        ctx.progress("geolocation", 1.0, f"{width} x {height} pixels in {crs}", force=True)

        def read_chunk(window: Window, out: np.ndarray) -> None:
            """Fill out[bands, rows, cols] with the output pixels of `window`."""
            size = window.width * window.height
            located = {g: s.locate(window) for g, s in swaths.items()}
            masked = np.zeros(size, dtype=bool)
            for g, sources in masks.items():
                found, r, c = located[g]
                for path, bits in sources:
                    flags = read_at(datasets.get(path), r, c).astype(np.int64)
                    hit = np.zeros(size, dtype=bool)
                    hit[found] = (flags & bits) != 0
                    masked |= hit
            factors: dict[str, np.ndarray] = {}
            for i, (band, path, cal) in enumerate(zip(bands, paths, calibrations, strict=True)):
                found, r, c = located[band.grid]
                values = cal.apply(read_at(datasets.get(path), r, c))
                if band.quantity == "reflectance" and reflectance is not None:
                    if "det" not in factors:
                        det = read_at(datasets.get(reflectance.detector_path), r, c)
                        factors["det"] = det.astype(np.int64)
                        factors["cos"] = reflectance.cos_sza(r, c)
                    index = int(band.name[2:]) - 1
                    values *= reflectance.factor(index, factors["det"], factors["cos"])
                flat = np.full(size, np.nan, dtype=np.float32)
                flat[found] = values
                flat[masked] = np.nan
                out[i] = flat.reshape(window.height, window.width)

        def read_chunk_bilinear(window: Window, out: np.ndarray) -> None:
            """As read_chunk, each value weighted from the four swath pixels around."""
            size = window.width * window.height
            located = {g: s.locate_bilinear(window) for g, s in swaths.items()}
            masked = np.zeros(size, dtype=bool)
            for g, sources in masks.items():
                found, r, c, _, _ = located[g]
                for path, bits in sources:
                    flags = read_quad(datasets.get(path), r, c).astype(np.int64)
                    hit = np.zeros(size, dtype=bool)
                    hit[found] = ((flags & bits) != 0).any(axis=0)
                    masked |= hit
            factors: dict[str, np.ndarray] = {}
            for i, (band, path, cal) in enumerate(zip(bands, paths, calibrations, strict=True)):
                found, r, c, fr, fc = located[band.grid]
                values = cal.apply(read_quad(datasets.get(path), r, c))
                if band.quantity == "reflectance" and reflectance is not None:
                    if "det" not in factors:
                        det = read_quad(datasets.get(reflectance.detector_path), r, c)
                        factors["det"] = det.astype(np.int64)
                        quad_r = r[None] + np.array([0, 0, 1, 1])[:, None]
                        quad_c = c[None] + np.array([0, 1, 0, 1])[:, None]
                        factors["cos"] = reflectance.cos_sza(quad_r, quad_c)
                    index = int(band.name[2:]) - 1
                    values *= reflectance.factor(index, factors["det"], factors["cos"])
                # NaN at any of the four (nodata) makes the sum NaN, whatever its weight.
                weights = np.stack([(1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc])
                flat = np.full(size, np.nan, dtype=np.float32)
                flat[found] = (values * weights).sum(axis=0)
                flat[masked] = np.nan
                out[i] = flat.reshape(window.height, window.width)

        chunk_reader = read_chunk_bilinear if options.resampling == "bilinear" else read_chunk

        def read_block(row0: int, row1: int) -> np.ndarray:
            out = np.full((len(bands), row1 - row0, width), np.nan, dtype=np.float32)
            for c0 in range(0, width, CHUNK_COLUMNS):
                c1 = min(width, c0 + CHUNK_COLUMNS)
                chunk_reader(Window(c0, row0, c1 - c0, row1 - row0), out[:, :, c0:c1])
            return out

        band_tags = [
            {
                "wavelength": b.wavelength,
                "bandwidth": b.bandwidth,
                "quantity": b.quantity,
                "units": b.units,
            }
            for b in bands
        ]
        meta = _tags(m, bands, options, swaths)
        seconds.update(
            write_stack(
                output,
                StackGrid(width, height, crs, transform),
                [b.name for b in bands],
                read_block,
                ctx,
                {**meta, **tags},
                threads=threads,
                block_rows=256,
                band_tags=band_tags,
            )
        )
    finally:
        datasets.close()
        files.close()
    sensor = f"{m.platform} {m.instrument} {m.product_type.rstrip('_')}"
    info = {**meta, "bands": ",".join(b.name for b in bands), "crs": str(crs),
            "resolution": f"{res:g}"}  # fmt: skip
    return RunResult(sensor, info, seconds)
