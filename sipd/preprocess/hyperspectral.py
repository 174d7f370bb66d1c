"""The hyperspectral preprocessor: a cube (ENVI .hdr + data, or a raster GDAL reads with
a wavelength per band) into a COG of reflectance bands or principal components.

Steps, per row block (memory stays at a few blocks whatever the cube's size):
1. bands chosen by wavelength (a range and/or a list), bad bands (ENVI bbl = 0) dropped;
2. the header's data ignore value (or the raster's nodata) becomes NaN;
3. white/dark reference calibration, the flat-field correction of push-broom imagers
   (e.g. Geladi, Burger & Lestander 2004, "Hyperspectral imaging: calibration problems
   and solutions", Chemometrics and Intelligent Laboratory Systems 72:209-217):
       R = r_white * (raw - dark) / (white - dark)
   with white and dark the references averaged over their lines, per band and per
   sample (column: each detector element has its own response) or per band when a
   reference is a single spectrum; r_white is the reflectance of the white target;
4. optionally a projection on principal components fitted with the recipe
   (sipd.preprocess.hyperspectral_pca): pc = (x - mean) @ basis.T.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sipd.contracts.options.hyperspectral import HyperspectralOptions, band_label
from sipd.contracts.preprocessing import PreprocessStep
from sipd.errors import InvalidArgument
from sipd.preprocess.band_stack import RunResult, StackGrid, write_stack
from sipd.preprocess.hyperspectral_cube import (
    WAVELENGTH_MATCH_NM,
    Cube,
    envi_headers_in,
    envi_pair,
    gdal_cube_has_wavelengths,
    open_cube,
    starts_envi,
)
from sipd.preprocess.product_files import open_measurement
from sipd.preprocess.streaming import DatasetsPerThread
from sipd.progress import JobContext

# Raster suffixes a GDAL cube may have (ENVI pairs are recognised by their header).
_GDAL_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".nc", ".h5", ".he5")
# Bytes of one row block of the bands read (a 1000-sample x 400-band cube: ~20 rows).
_BLOCK_BYTES = 32 * 1024 * 1024


# ---------------------------------------------------------------- detection


def accepts(path: Path) -> bool:
    """An ENVI header (or its data file, or a folder holding one header), or a
    multi-band raster with a wavelength per band. Never raises."""
    try:
        p = Path(path)
        if p.is_dir():
            return len(envi_headers_in(p, limit=200)) == 1
        if not p.is_file():
            return False
        pair = envi_pair(p)
        if pair is not None:
            return pair[0].is_file() and starts_envi(pair[0])
        if p.suffix.lower() in _GDAL_SUFFIXES:
            return gdal_cube_has_wavelengths(p)
        return False
    except Exception:  # noqa: BLE001 - a sniff: any failure means "not mine"
        return False


# ---------------------------------------------------------------- band selection


def band_tolerance(cube: Cube, j: int, options: HyperspectralOptions) -> float:
    """How far (nm) a requested wavelength may be from band j: the option, else half the
    band's FWHM, else half the larger gap to its neighbours."""
    if options.tolerance > 0:
        return options.tolerance
    assert cube.wavelengths is not None
    if cube.fwhm is not None and cube.fwhm[j] > 0:
        return max(float(cube.fwhm[j]) / 2, WAVELENGTH_MATCH_NM)
    w = cube.wavelengths
    gaps = [abs(w[j] - w[k]) for k in (j - 1, j + 1) if 0 <= k < w.size]
    return max(max(gaps, default=0.0) / 2, WAVELENGTH_MATCH_NM)


@dataclass(frozen=True)
class Selection:
    indexes: np.ndarray  # 0-based band numbers in the cube, output order
    names: list[str]
    wavelengths: np.ndarray | None  # nm of the chosen bands


def select_bands(cube: Cube, options: HyperspectralOptions) -> Selection:
    """The bands the options keep: good bands in [wavelength_min, wavelength_max], then
    the nearest of those to each wavelength in `bands`."""
    wanted = options.bands or options.wavelength_min or options.wavelength_max
    if cube.wavelengths is None:
        if wanted:
            raise InvalidArgument(
                f"cube {cube.source} has no wavelengths in its metadata; wavelength_min, "
                "wavelength_max and bands need them: leave them empty to keep every band"
            )
        idx = np.flatnonzero(cube.good)
        return Selection(idx, [f"band{i + 1}" for i in idx], None)
    w = cube.wavelengths
    keep = cube.good.copy()
    if options.wavelength_min:
        keep &= w >= options.wavelength_min
    if options.wavelength_max:
        keep &= w <= options.wavelength_max
    candidates = np.flatnonzero(keep)
    if candidates.size == 0:
        raise InvalidArgument(
            f"the options keep none of the cube's bands ({cube.describe_range()}, "
            f"{int((~cube.good).sum())} marked bad); widen wavelength_min/wavelength_max"
        )
    if not options.bands:
        return Selection(candidates, _names(w[candidates]), w[candidates])
    chosen: list[int] = []
    for target in options.bands:
        j = int(candidates[np.argmin(np.abs(w[candidates] - target))])
        tol = band_tolerance(cube, j, options)
        if abs(w[j] - target) > tol:
            nearest_any = int(np.argmin(np.abs(w - target)))
            bad = (
                ""
                if cube.good[nearest_any]
                else (f"; the band at {w[nearest_any]:.3f} nm is marked bad (bbl = 0)")
            )
            raise InvalidArgument(
                f"wrong wavelengths: no band of the cube within {tol:.3g} nm of {target} nm "
                f"(nearest kept band: {w[j]:.3f} nm; the cube has {cube.describe_range()})"
                f"{bad}; choose wavelengths inside the cube's range or raise tolerance"
            )
        if j in chosen:
            raise InvalidArgument(
                f"bands {options.bands[chosen.index(j)]} and {target} nm both select the "
                f"band at {w[j]:.3f} nm; list each band once"
            )
        chosen.append(j)
    idx = np.array(chosen)
    names = [band_label(t) for t in options.bands]
    return Selection(idx, names, w[idx])


def _names(wavelengths: np.ndarray) -> list[str]:
    """Names like "w550.3nm", with the same decimals for every band ("w604.0nm"): one
    unless bands closer than 0.1 nm need more."""
    for decimals in (1, 2, 3):
        names = [f"w{float(x):.{decimals}f}nm" for x in wavelengths]
        if len(set(names)) == len(names):
            return names
    return [f"{band_label(float(x))}_{i + 1}" for i, x in enumerate(wavelengths)]


# ---------------------------------------------------------------- references


def load_reference(
    path: str,
    cube: Cube,
    selection: Selection,
    options: HyperspectralOptions,
    what: str,
    averaged: dict[tuple[str, tuple[int, ...]], np.ndarray] | None = None,
) -> np.ndarray:
    """A reference averaged over its lines: float64 [bands chosen, 1, samples or 1]. It must
    have the cube's bands (same count and wavelengths) and its width or a single sample.
    `averaged` keeps the averages already read (a fit prepares several cubes with the same
    references: each is checked against every cube, read once)."""
    ref = open_cube(Path(path), options)
    if ref.count != cube.count:
        raise InvalidArgument(
            f"wrong wavelengths: {what} reference {path} has {ref.count} bands, the cube "
            f"{cube.count}; a reference is taken with the same camera and band setting"
        )
    if ref.wavelengths is not None and cube.wavelengths is not None:
        differ = np.flatnonzero(np.abs(ref.wavelengths - cube.wavelengths) > WAVELENGTH_MATCH_NM)
        if differ.size:
            worst = int(differ[0])
            raise InvalidArgument(
                f"wrong wavelengths: {what} reference {path} band {worst + 1} is at "
                f"{ref.wavelengths[worst]:.3f} nm, the cube's at {cube.wavelengths[worst]:.3f} "
                "nm; a reference is taken with the same camera and band setting"
            )
    if ref.width not in (cube.width, 1):
        raise InvalidArgument(
            f"{what} reference {path} is {ref.width} samples wide, the cube {cube.width}; "
            "accepted: a reference as wide as the cube (averaged over its lines), or a "
            "single spectrum (1 sample)"
        )
    key = (path, tuple(int(i) for i in selection.indexes))
    if averaged is not None and key in averaged:
        return averaged[key]
    total = np.zeros((selection.indexes.size, ref.width))
    count = np.zeros_like(total)
    datasets = DatasetsPerThread(opener=open_measurement)
    try:
        step = block_rows(ref, selection.indexes.size)
        for r0 in range(0, ref.height, step):
            block = ref.read(datasets, selection.indexes, r0, min(r0 + step, ref.height))
            finite = np.isfinite(block)
            total += np.where(finite, block, 0.0).sum(axis=1)
            count += finite.sum(axis=1)
    finally:
        datasets.close()
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)[:, None, :]
    if averaged is not None:
        averaged[key] = mean
    return mean


@dataclass(frozen=True)
class Prepared:
    """A cube with its bands chosen and its calibration ready to apply per block."""

    cube: Cube
    selection: Selection
    dark: np.ndarray | None  # float32 [n, 1, width or 1]
    gain: np.ndarray | None  # float32: r_white / (white - dark), NaN where white <= dark
    calibration: str

    def block(self, datasets: DatasetsPerThread, row0: int, row1: int) -> np.ndarray:
        x = self.cube.read(datasets, self.selection.indexes, row0, row1)
        if self.dark is not None:
            x -= self.dark
        if self.gain is not None:
            x *= self.gain
        return x


def prepare(
    source: Path,
    options: HyperspectralOptions,
    ctx: JobContext | None = None,
    averaged: dict[tuple[str, tuple[int, ...]], np.ndarray] | None = None,
) -> Prepared:
    """Open the cube, choose its bands and load the references the options name (their
    averages kept in `averaged` when given, see load_reference)."""
    cube = open_cube(source, options)
    selection = select_bands(cube, options)
    dark = white = None
    if options.dark:
        dark = load_reference(options.dark, cube, selection, options, "dark", averaged)
    if ctx is not None:
        ctx.check_cancelled()
    if options.white:
        white = load_reference(options.white, cube, selection, options, "white", averaged)
    gain = None
    r = options.white_reflectance
    if white is not None:
        span = white - (dark if dark is not None else 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            # A white no brighter than the dark is a dead or saturated detector element:
            # its pixels are nodata rather than infinite or negative reflectance.
            gain = np.where(span > 0, r / span, np.nan).astype(np.float32)
        formula = (
            f"reflectance = {r:g} * (raw - dark) / (white - dark)"
            if dark is not None
            else f"reflectance = {r:g} * raw / white"
        )
    else:
        formula = "raw - dark" if dark is not None else "raw (no references)"
    return Prepared(
        cube, selection, None if dark is None else dark.astype(np.float32), gain, formula
    )


def block_rows(cube: Cube, bands: int) -> int:
    per_row = max(1, cube.width * bands * (np.dtype(cube.dtype).itemsize + 8))
    return int(max(1, min(512, _BLOCK_BYTES // per_row)))


# ---------------------------------------------------------------- projection


@dataclass(frozen=True)
class Projection:
    mean: np.ndarray  # float32 [n]
    basis: np.ndarray  # float32 [k, n]

    def apply(self, x: np.ndarray) -> np.ndarray:
        """[n, rows, width] -> [k, rows, width]; NaN where any band is NaN."""
        n, rows, width = x.shape
        pixels = x.reshape(n, -1).T
        out = (pixels - self.mean) @ self.basis.T
        out[~np.isfinite(pixels).all(axis=1)] = np.nan
        return np.ascontiguousarray(out.T.reshape(self.basis.shape[0], rows, width))


def projection_for(options: HyperspectralOptions, prepared: Prepared) -> Projection:
    """The recipe's projection, checked against the bands this cube gives."""
    if not options.fitted:
        raise InvalidArgument(
            f"components={options.components} needs a projection fitted on training cubes; "
            "fit it first (sipctl recipe create NAME --preprocessor hyperspectral --option "
            f"components={options.components} --fit-on CUBE ...) and preprocess with that recipe"
        )
    sel = prepared.selection
    n = len(options.pca_mean)
    if sel.indexes.size != n:
        raise InvalidArgument(
            f"wrong wavelengths: the projection was fitted on {n} bands but the options "
            f"select {sel.indexes.size} of this cube ({prepared.cube.describe_range()})"
        )
    if options.pca_wavelengths and sel.wavelengths is not None:
        pairs = zip(options.pca_wavelengths, sel.wavelengths, strict=True)
        for i, (fitted, here) in enumerate(pairs):
            tol = band_tolerance(prepared.cube, int(sel.indexes[i]), options)
            if abs(fitted - here) > tol:
                raise InvalidArgument(
                    f"wrong wavelengths: the projection's band {i + 1} is at {fitted:.3f} nm, "
                    f"this cube's at {here:.3f} nm; fit the projection on cubes of this "
                    "camera or choose the same bands"
                )
    return Projection(
        np.asarray(options.pca_mean, np.float32), np.asarray(options.pca_basis, np.float32)
    )


# ---------------------------------------------------------------- run


def run(
    source: Path,
    step: PreprocessStep,
    output: Path,
    ctx: JobContext,
    tags: dict[str, str],
    threads: int,
) -> RunResult:
    options = step.options
    if not isinstance(options, HyperspectralOptions):
        raise TypeError(f"hyperspectral needs HyperspectralOptions, got {type(options)}")
    started = time.perf_counter()
    prepared = prepare(Path(source), options, ctx)
    projection = projection_for(options, prepared) if options.components else None
    opened = time.perf_counter() - started
    ctx.check_cancelled()
    cube, sel = prepared.cube, prepared.selection
    if projection is not None:
        names = [f"pc{i}" for i in range(1, options.components + 1)]
        band_tags = [{"component": str(i)} for i in range(1, len(names) + 1)]
    else:
        names = sel.names
        band_tags = [_band_tags(cube, sel, i) for i in range(len(names))]
    grid = StackGrid(cube.width, cube.height, cube.crs, cube.transform)
    datasets = DatasetsPerThread(opener=open_measurement)

    def read_block(row0: int, row1: int) -> np.ndarray:
        x = prepared.block(datasets, row0, row1)
        return projection.apply(x) if projection is not None else x

    metadata = _metadata(prepared, options)
    all_tags = {**{f"HYPERSPECTRAL_{k.upper()}": v for k, v in metadata.items()}, **tags}
    try:
        seconds = write_stack(
            output,
            grid,
            names,
            read_block,
            ctx,
            all_tags,
            threads=threads,
            block_rows=block_rows(cube, sel.indexes.size),
            band_tags=band_tags,
        )
    finally:
        datasets.close()
    seconds["open"] = opened
    sensor = cube.fields.get("sensor type", "")
    sensor = sensor if sensor and sensor.lower() != "unknown" else "hyperspectral cube"
    return RunResult(f"{sensor} ({cube.format}, {cube.describe_range()})", metadata, seconds)


def _fmt(x: float) -> str:
    return f"{x:.4f}".rstrip("0").rstrip(".")


def _band_tags(cube: Cube, sel: Selection, i: int) -> dict[str, str]:
    tags = {"source_band": str(int(sel.indexes[i]) + 1)}
    if sel.wavelengths is not None:
        tags |= {"wavelength": _fmt(sel.wavelengths[i]), "wavelength_units": "nm"}
    if cube.fwhm is not None:
        tags["fwhm"] = _fmt(cube.fwhm[int(sel.indexes[i])])
    return tags


def _metadata(prepared: Prepared, options: HyperspectralOptions) -> dict[str, str]:
    """What the job result shows; also the output's HYPERSPECTRAL_* tags."""
    cube, sel = prepared.cube, prepared.selection
    meta = {
        "format": cube.format,
        "source_bands": str(cube.count),
        "bands_kept": str(sel.indexes.size),
        "bad_bands_dropped": str(int((~cube.good).sum())),
        "calibration": prepared.calibration,
        "byte_order": cube.byte_order,
        "data_type": cube.dtype,
    }
    if sel.wavelengths is not None:
        meta["wavelengths"] = ",".join(_fmt(w) for w in sel.wavelengths)
        meta["wavelength_units"] = "nm"
        meta["source_wavelength_units"] = cube.source_units
    if cube.fwhm is not None:
        meta["fwhm"] = ",".join(_fmt(cube.fwhm[int(j)]) for j in sel.indexes)
    if cube.ignore_value is not None:
        meta["data_ignore_value"] = _fmt(cube.ignore_value)
    if options.white:
        meta["white"] = Path(options.white).name
        meta["white_reflectance"] = _fmt(options.white_reflectance)
    if options.dark:
        meta["dark"] = Path(options.dark).name
    if options.components:
        meta["pca_components"] = str(options.components)
    for key, value in cube.fields.items():
        meta[key.replace(" ", "_")] = value[:1000]
    return meta
