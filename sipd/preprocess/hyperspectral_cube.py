"""Reading a hyperspectral cube: an ENVI header + data file, or a raster GDAL reads
with wavelengths in its metadata (a multi-band GeoTIFF).

The ENVI header is parsed here (keys and meanings from the ENVI header format
documentation, L3Harris "ENVI Header Files"), pixels are read through GDAL
(open_raster: the allowed roots apply) in row blocks.

Byte order: the ENVI documentation lists `byte order` (0 = little-endian, 1 =
big-endian) as a header field, but files written by numpy-based tools (PlantCV's
corn kernel cube among them) often lack it. GDAL's ENVI driver then reads the
data as little-endian; so do we (option byte_order=auto), and the output's
HYPERSPECTRAL_BYTE_ORDER tag says it was assumed. byte_order=big swaps.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from sipd.contracts.options.hyperspectral import HyperspectralOptions
from sipd.errors import InvalidArgument
from sipd.preprocess.catalog import SOFTWARE_TAG
from sipd.preprocess.product_files import open_measurement
from sipd.preprocess.streaming import DatasetsPerThread
from sipd.raster import check_files_read

# Headers hold a few lists of band values: 16 MB is far beyond any real one and stops
# a mistaken multi-GB file from being read as text.
MAX_HEADER_BYTES = 16 * 1024 * 1024
# ENVI "data type" codes (ENVI header documentation) and their numpy types.
ENVI_DTYPES = {
    1: "uint8",
    2: "int16",
    3: "int32",
    4: "float32",
    5: "float64",
    12: "uint16",
    13: "uint32",
    14: "int64",
    15: "uint64",
}
# Extensions ENVI and the tools that write it give data files (GDAL's ENVI driver looks
# for the header beside a data file the same ways).
DATA_SUFFIXES = ("", ".raw", ".img", ".dat", ".bil", ".bsq", ".bip", ".bin", ".envi", ".hsi")
# Wavelength units the header may name, as factors to nanometres.
_UNIT_FACTORS = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometers": 1.0,
    "nanometre": 1.0,
    "nanometres": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "micrometers": 1e3,
    "micrometre": 1e3,
    "micrometres": 1e3,
    "mm": 1e6,
    "millimeter": 1e6,
    "millimeters": 1e6,
}
_WAVENUMBER = ("wavenumber", "cm-1", "1/cm", "cm^-1")
# Two references and a cube taken with one camera list the same centres; a few
# hundredths of a nm cover values written with fewer decimals.
WAVELENGTH_MATCH_NM = 0.05
# Header fields copied into the output's tags (HYPERSPECTRAL_DESCRIPTION, ...).
_TAGGED_FIELDS = ("description", "sensor type", "acquisition time")


@dataclass(frozen=True)
class Cube:
    """What a cube is made of: where its pixels are and what each band is."""

    source: Path
    data_path: str
    header: Path | None
    format: str
    width: int
    height: int
    count: int
    dtype: str
    wavelengths: np.ndarray | None  # nm, float64, one per band
    fwhm: np.ndarray | None  # nm
    good: np.ndarray  # bool per band: False where the header's bbl marks it bad
    source_units: str
    ignore_value: float | None
    swap_bytes: bool
    byte_order: str
    crs: CRS | None
    transform: Affine
    fields: dict[str, str] = field(default_factory=dict)

    def describe_range(self) -> str:
        if self.wavelengths is None:
            return f"{self.count} bands, no wavelengths"
        return f"{self.count} bands, {self.wavelengths.min():.1f}-{self.wavelengths.max():.1f} nm"

    def read(
        self, datasets: DatasetsPerThread, indexes: np.ndarray, row0: int, row1: int
    ) -> np.ndarray:
        """float32 [len(indexes), row1-row0, width] of bands `indexes` (0-based), NaN
        where the data holds the header's data ignore value (or the raster's nodata)."""
        ds = datasets.get(self.data_path)
        raw = ds.read(
            [int(i) + 1 for i in indexes], window=Window(0, row0, self.width, row1 - row0)
        )
        if self.swap_bytes:
            raw = raw.byteswap()
        out = raw.astype(np.float32)
        if self.ignore_value is not None:
            out[raw == self.ignore_value] = np.nan
        return out


# ---------------------------------------------------------------- ENVI header


def parse_envi_header(text: str, name: str = "header") -> dict[str, str]:
    """Fields of an ENVI header: lowercased keys, values as written ({...} lists keep
    their braces' content, newlines joined). The first line must be "ENVI"."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if not lines or lines[0].strip() != "ENVI":
        raise InvalidArgument(
            f"{name} is not an ENVI header: its first line is not 'ENVI'; accepted: an ENVI "
            ".hdr beside its data file, or a multi-band raster with wavelengths"
        )
    fields: dict[str, str] = {}
    i = 1
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith(";"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise InvalidArgument(f"{name} line {i}: {line[:80]!r} is not 'key = value'")
        value = value.strip()
        if value.startswith("{"):
            parts = [value]
            while "}" not in parts[-1]:
                if i >= len(lines):
                    raise InvalidArgument(
                        f"{name}: the value of {key.strip()!r} opens '{{' and never closes it"
                    )
                parts.append(lines[i].strip())
                i += 1
            joined = " ".join(parts)
            value = joined[joined.index("{") + 1 : joined.rindex("}")].strip()
        fields[" ".join(key.lower().split())] = value
    return fields


def _int_field(fields: dict[str, str], key: str, name: str, default: int | None = None) -> int:
    text = fields.get(key)
    if text is None:
        if default is not None:
            return default
        raise InvalidArgument(f"{name} has no '{key}'; an ENVI header needs it")
    try:
        return int(text)
    except ValueError:
        raise InvalidArgument(f"{name}: '{key} = {text}' is not a whole number") from None


def _float_list(fields: dict[str, str], key: str, count: int, name: str) -> np.ndarray | None:
    text = fields.get(key)
    if text is None or not text.strip():
        return None
    try:
        values = np.array([float(v) for v in re.split(r"[,\s]+", text.strip()) if v], float)
    except ValueError:
        raise InvalidArgument(f"{name}: '{key}' holds a value that is not a number") from None
    if values.size != count:
        raise InvalidArgument(
            f"{name} lists {values.size} {key} values for {count} bands; give one per band"
        )
    return values


def unit_factor(units: str, wavelengths: np.ndarray, name: str) -> tuple[float, str]:
    """Factor taking the header's wavelengths to nm, and how it was decided. Unknown or
    missing units: micrometres when every value is below 30 (no sensor band is under
    30 nm), else nanometres."""
    key = units.strip().lower()
    if key in _UNIT_FACTORS:
        return _UNIT_FACTORS[key], units.strip()
    if key in ("", "unknown"):
        if float(np.nanmax(wavelengths)) < 30:
            return 1e3, "micrometers (assumed: no wavelength units, values below 30)"
        return 1.0, "nanometers (assumed: no wavelength units)"
    raise InvalidArgument(
        f"{name}: wavelength units {units!r} are not understood; accepted: nanometers (nm), "
        "micrometers (um), millimeters (mm), wavenumber (cm-1)"
    )


def to_nm(values: np.ndarray, units: str, name: str) -> tuple[np.ndarray, str]:
    if units.strip().lower() in _WAVENUMBER:
        if np.any(values <= 0):
            raise InvalidArgument(f"{name}: a wavenumber is not positive")
        return 1e7 / values, units.strip()  # lambda [nm] = 1e7 / nu [cm-1]
    factor, how = unit_factor(units, values, name)
    return values * factor, how


def envi_pair(path: Path) -> tuple[Path, Path] | None:
    """(header, data file) when `path` names either half of an ENVI pair, else None."""
    if path.suffix.lower() == ".hdr":
        stem = path.with_suffix("")
        for suffix in DATA_SUFFIXES:
            data = stem.with_name(stem.name + suffix) if suffix else stem
            if data.is_file() and data != path:
                return path, data
        return path, Path("")
    for header in (path.with_suffix(".hdr"), path.with_name(path.name + ".hdr")):
        if header != path and header.is_file() and starts_envi(header):
            return header, path
    return None


def starts_envi(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"ENVI"
    except OSError:
        return False


def _open_envi(header: Path, data: Path, options: HyperspectralOptions) -> Cube:
    name = f"ENVI header {header}"
    if not data.name:
        raise InvalidArgument(
            f"{name} has no data file beside it: looked for {header.stem} with "
            f"{', '.join(s or '(no extension)' for s in DATA_SUFFIXES)}"
        )
    check_files_read([str(header), str(data)])
    if header.stat().st_size > MAX_HEADER_BYTES:
        raise InvalidArgument(f"{name} is {header.stat().st_size} bytes: not a header")
    fields = parse_envi_header(header.read_text(encoding="utf-8", errors="replace"), name)
    samples = _int_field(fields, "samples", name)
    lines = _int_field(fields, "lines", name)
    bands = _int_field(fields, "bands", name)
    code = _int_field(fields, "data type", name)
    offset = _int_field(fields, "header offset", name, default=0)
    if min(samples, lines, bands) < 1:
        raise InvalidArgument(f"{name}: samples, lines and bands must be at least 1")
    if code not in ENVI_DTYPES:
        raise InvalidArgument(
            f"{name}: data type {code} is not supported; accepted: "
            + ", ".join(f"{k} ({v})" for k, v in ENVI_DTYPES.items())
        )
    dtype = np.dtype(ENVI_DTYPES[code])
    interleave = fields.get("interleave", "bsq").strip().lower()
    if interleave not in ("bsq", "bil", "bip"):
        raise InvalidArgument(f"{name}: interleave {interleave!r} is not bsq, bil or bip")
    expected = offset + samples * lines * bands * dtype.itemsize
    size = data.stat().st_size
    if size < expected:
        # GDAL would read the missing part as zeros without an error.
        raise InvalidArgument(
            f"ENVI data file {data} is short: {size} bytes, but the header describes "
            f"{expected} ({samples} samples x {lines} lines x {bands} bands x "
            f"{dtype.itemsize} bytes + {offset} header offset); copy it again"
        )
    swap, order = _byte_order(fields.get("byte order"), options.byte_order, dtype, name)
    wavelengths, fwhm, units = _wavelengths(fields, bands, name)
    good = _good_bands(fields, bands, name)
    ignore = _ignore_value(fields.get("data ignore value"), name)
    ds = open_measurement(str(data))
    try:
        if (ds.width, ds.height, ds.count) != (samples, lines, bands):
            raise InvalidArgument(
                f"GDAL reads {data} as {ds.width} x {ds.height} x {ds.count}, not the "
                f"{samples} x {lines} x {bands} of {header.name}: is another header beside it?"
            )
        crs, transform = ds.crs, ds.transform
    finally:
        ds.close()
    return Cube(
        source=header,
        data_path=str(data),
        header=header,
        format="ENVI",
        width=samples,
        height=lines,
        count=bands,
        dtype=str(dtype),
        wavelengths=wavelengths,
        fwhm=fwhm,
        good=good,
        source_units=units,
        ignore_value=ignore,
        swap_bytes=swap,
        byte_order=order,
        crs=crs,
        transform=transform,
        fields={k: fields[k] for k in _TAGGED_FIELDS if k in fields},
    )


def _byte_order(text: str | None, wanted: str, dtype: np.dtype[Any], name: str) -> tuple[bool, str]:
    """(swap after GDAL's read, what the data was read as). GDAL reads the header's byte
    order, and little-endian when there is none."""
    if text is None:
        gdal_little = True
        header = "none in the header"
    elif text.strip() in ("0", "1"):
        gdal_little = text.strip() == "0"
        header = f"header byte order = {text.strip()}"
    else:
        raise InvalidArgument(f"{name}: byte order {text!r} is not 0 (little) or 1 (big endian)")
    little = gdal_little if wanted == "auto" else wanted == "little"
    endian = "little-endian" if little else "big-endian"
    how = "option" if wanted != "auto" else "assumed" if text is None else "header"
    swap = little != gdal_little and dtype.itemsize > 1
    return swap, f"{endian} ({how}; {header})"


def _wavelengths(
    fields: dict[str, str], bands: int, name: str
) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """Band centres and FWHM in nm (None when the header has none), and the units."""
    values = _float_list(fields, "wavelength", bands, name)
    if values is None:
        return None, None, ""
    if not np.all(np.isfinite(values)) or np.any(values == 0):
        raise InvalidArgument(f"{name}: a wavelength is zero or not a finite number")
    nm, how = to_nm(values, fields.get("wavelength units", ""), name)
    fwhm = _float_list(fields, "fwhm", bands, name)
    if fwhm is not None:
        # The FWHM is in the wavelengths' units: scale it by the same local factor
        # (d(lambda) = lambda / nu * d(nu) for wavenumbers, a constant otherwise).
        fwhm = np.abs(fwhm * nm / values)
    return nm, fwhm, how


def _good_bands(fields: dict[str, str], bands: int, name: str) -> np.ndarray:
    bbl = _float_list(fields, "bbl", bands, name)
    if bbl is None:
        return np.ones(bands, bool)
    if not np.all(np.isin(bbl, (0.0, 1.0))):
        raise InvalidArgument(f"{name}: bbl (bad band list) must hold only 0 (bad) and 1 (good)")
    return bbl == 1.0


def _ignore_value(text: str | None, name: str) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgument(f"{name}: data ignore value {text!r} is not a number") from None
    return None if math.isnan(value) else value


# ---------------------------------------------------------------- GDAL rasters


def _gdal_wavelengths(
    ds: rasterio.DatasetReader,
) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """Band centres and FWHM in nm from what GDAL drivers write: band tags `wavelength`
    (+ `wavelength_units`, or the dataset's), the ENVI domain's lists, then GDAL 3.10's
    IMAGERY CENTRAL_WAVELENGTH_UM / FWHM_UM (rounded to 1 nm by some drivers: last)."""
    name = f"raster {ds.name}"
    units_default = ds.tags().get("wavelength_units", "")
    band_tags = [ds.tags(b) for b in range(1, ds.count + 1)]
    if all("wavelength" in t for t in band_tags):
        try:
            raw = np.array([float(t["wavelength"]) for t in band_tags])
        except ValueError:
            raw = None
        if raw is not None:
            units = band_tags[0].get("wavelength_units", units_default)
            nm, how = to_nm(raw, units, name)
            fwhm = None
            if all("fwhm" in t for t in band_tags):
                fwhm = np.abs(np.array([float(t["fwhm"]) for t in band_tags]) * nm / raw)
            return nm, fwhm, how
    envi = ds.tags(ns="ENVI")
    if "wavelength" in envi:
        fields = {k.replace("_", " "): v.strip().strip("{}") for k, v in envi.items()}
        return _wavelengths(fields, ds.count, name)
    imagery = [ds.tags(b, ns="IMAGERY") for b in range(1, ds.count + 1)]
    if all("CENTRAL_WAVELENGTH_UM" in t for t in imagery):
        nm = np.array([float(t["CENTRAL_WAVELENGTH_UM"]) for t in imagery]) * 1e3
        fwhm = None
        if all("FWHM_UM" in t for t in imagery):
            fwhm = np.array([float(t["FWHM_UM"]) for t in imagery]) * 1e3
        return nm, fwhm, "micrometers (GDAL IMAGERY metadata)"
    return None, None, ""


def _open_gdal(path: Path) -> Cube:
    ds = open_measurement(str(path))
    try:
        try:
            wavelengths, fwhm, units = _gdal_wavelengths(ds)
        except ValueError as exc:
            raise InvalidArgument(f"raster {path}: a wavelength is not a number: {exc}") from None
        envi_bbl = ds.tags(ns="ENVI").get("bbl")
        good = (
            _good_bands({"bbl": envi_bbl.strip("{}")}, ds.count, f"raster {path}")
            if envi_bbl
            else np.ones(ds.count, bool)
        )
        dtypes = set(ds.dtypes)
        if len(dtypes) != 1 or next(iter(dtypes)).startswith("complex"):
            raise InvalidArgument(
                f"raster {path} has band types {sorted(dtypes)}; accepted: one real type"
            )
        return Cube(
            source=path,
            data_path=str(path),
            header=None,
            format=ds.driver,
            width=ds.width,
            height=ds.height,
            count=ds.count,
            dtype=ds.dtypes[0],
            wavelengths=wavelengths,
            fwhm=fwhm,
            good=good,
            source_units=units,
            ignore_value=None if ds.nodata is None or math.isnan(ds.nodata) else float(ds.nodata),
            swap_bytes=False,
            byte_order="native (GDAL)",
            crs=ds.crs,
            transform=ds.transform,
        )
    finally:
        ds.close()


def open_cube(path: Path, options: HyperspectralOptions) -> Cube:
    """The cube `path` names: an ENVI header or data file, or a GDAL raster (a folder
    holding exactly one ENVI header is that cube)."""
    path = Path(path)
    check_files_read([str(path)])
    if path.is_dir():
        headers = envi_headers_in(path)
        if len(headers) != 1:
            raise InvalidArgument(
                f"folder {path} holds {len(headers)} ENVI headers; name the cube's .hdr"
                if headers
                else f"folder {path} holds no ENVI header (.hdr); accepted: an ENVI .hdr or "
                "its data file, or a multi-band raster with wavelengths"
            )
        path = headers[0]
    if not path.is_file():
        raise InvalidArgument(f"cube {path} does not exist")
    pair = envi_pair(path)
    if pair is not None:
        return _open_envi(pair[0], pair[1], options)
    return _open_gdal(path)


def envi_headers_in(folder: Path, limit: int = 1000) -> list[Path]:
    """ENVI headers at the top of `folder` (at most `limit` entries looked at)."""
    found = []
    with os.scandir(folder) as entries:
        for n, entry in enumerate(entries):
            if n >= limit:
                break
            is_header = entry.name.lower().endswith(".hdr") and entry.is_file()
            if is_header and starts_envi(Path(entry.path)):
                found.append(Path(entry.path))
    return sorted(found)


def gdal_cube_has_wavelengths(path: Path) -> bool:
    """Whether GDAL reads `path` as a multi-band raster with a wavelength per band (and
    it is not already a scene sipd made)."""
    ds = open_measurement(str(path))
    try:
        if ds.count < 2 or SOFTWARE_TAG in ds.tags():
            return False
        return _gdal_wavelengths(ds)[0] is not None
    finally:
        ds.close()
