"""The preprocessors a daemon offers: name, what they take, their typed options, and
which one a product needs (from its content, not its name)."""

from __future__ import annotations

import contextlib
import importlib
import logging
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from rasterio.errors import RasterioError

from sipd.contracts.base import Contract
from sipd.contracts.preprocessing import OPTIONS
from sipd.errors import InvalidArgument
from sipd.preprocess.product_files import ProductFiles, is_metadata_file
from sipd.preprocess.sar_product import SarProduct

# The dataset tag every preprocessed scene carries (preprocessor, recipe, options).
SOFTWARE_TAG = "SIPD_PREPROCESSING"
# What a reader raises when a product's own content is malformed (a number that is not
# one, a legend without a class, an array of the wrong shape): bad input, not a fault.
MALFORMED = (ValueError, KeyError, IndexError, ZeroDivisionError, RasterioError)

log = logging.getLogger("sipd.preprocess")


@contextlib.contextmanager
def malformed_is_bad_input(what: str) -> Iterator[None]:
    """Turn MALFORMED errors into INVALID_ARGUMENT saying `what` failed and why (the
    trace stays in the log, for the cases that are ours to fix)."""
    try:
        yield
    except MALFORMED as exc:
        log.warning("%s", what, exc_info=True)
        raise InvalidArgument(f"{what}: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class Preprocessor:
    """A preprocessor. SAR ones share sar_pipeline and differ by reader (`module` has
    `open_<name>(path, polarisations) -> SarProduct`); the others are whole modules with
    `accepts(path) -> bool` and `run(source, step, output, ctx, tags, threads)`."""

    name: str
    description: str
    inputs: str
    module: str
    kind: Literal["sar", "sensor"] = "sensor"
    # "module:function" fitting option values on training products (paths, options)
    # -> {option: value}; empty when the preprocessor learns nothing.
    fitter: str = ""

    @property
    def options(self) -> type[Contract]:
        return OPTIONS[self.name]

    def code(self) -> ModuleType:
        return importlib.import_module(self.module)

    def open(self, path: str, polarisations: list[str] | None = None) -> SarProduct:
        opener: Callable[..., SarProduct] = getattr(self.code(), f"open_{self.name}")
        return opener(path, polarisations or None)

    def fit(self, paths: list[Path], options: Contract) -> dict[str, Any]:
        module, _, function = self.fitter.partition(":")
        return dict(getattr(importlib.import_module(module), function)(paths, options))

    def accepts(self, path: Path) -> bool:
        """Whether this preprocessor reads `path` (a cheap look at its content)."""
        if self.kind == "sar":
            return _detect_sar(Path(path)) == self.name
        return bool(self.code().accepts(path))


_SAR = (
    "thermal noise removal, calibration to sigma0/gamma0/beta0, multilook, speckle "
    "filter, dB, incidence angle, geocoding from the product's geolocation grid"
)
PREPROCESSORS: dict[str, Preprocessor] = {
    p.name: p
    for p in (
        Preprocessor(
            "sentinel1",
            f"Sentinel-1 GRD (IW, EW; single and dual polarisation): {_SAR}",
            "a .SAFE folder, its manifest.safe, or the .zip as downloaded",
            "sipd.preprocess.sentinel1",
            "sar",
        ),
        Preprocessor(
            "radarsat2",
            f"RADARSAT-2 detected products (SGF, SGX, SCN, SCW): {_SAR}",
            "a product folder, its product.xml, or the .zip",
            "sipd.preprocess.radarsat2",
            "sar",
        ),
        Preprocessor(
            "rcm",
            f"RADARSAT Constellation Mission GRD products: {_SAR}",
            "a product folder (metadata/product.xml), its product.xml, or the .zip",
            "sipd.preprocess.rcm",
            "sar",
        ),
        Preprocessor(
            "landsat",
            "Landsat 4-9 Collection 2 Level-1 and Level-2: surface reflectance and "
            "temperature, or TOA reflectance and brightness temperature; QA_PIXEL masks",
            "a product folder, its MTL file, or the .tar as delivered",
            "sipd.preprocess.landsat",
        ),
        Preprocessor(
            "sentinel2",
            "Sentinel-2 L1C and L2A: reflectance with the baseline's offset, bands "
            "resampled to one resolution, SCL or cloud masks",
            "a .SAFE folder, its MTD_MSIL1C.xml/MTD_MSIL2A.xml, or the .zip as downloaded",
            "sipd.preprocess.sentinel2",
        ),
        Preprocessor(
            "sentinel3",
            "Sentinel-3 OLCI (EFR/ERR) radiance or TOA reflectance and SLSTR (RBT) "
            "radiance and brightness temperature, the swath resampled onto a map grid",
            "a .SEN3 folder, its xfdumanifest.xml, or the .zip",
            "sipd.preprocess.sentinel3",
        ),
        Preprocessor(
            "modis",
            "MODIS HDF4-EOS products: scientific datasets calibrated (HDF4 convention), "
            "fill and valid range masked, georeferenced from the StructMetadata",
            "an .hdf file (HDF4-EOS grid: tiles such as MOD09A1, MOD10A2, MOD13Q1, or CMG)",
            "sipd.preprocess.modis",
        ),
        Preprocessor(
            "micasense",
            "drone multispectral captures (MicaSense RedEdge/Altum-style, one frame per "
            "band): radiance, reflectance from a panel or the DLS, bands aligned and stacked",
            "a folder holding one capture's frames, or one frame of the capture",
            "sipd.preprocess.micasense",
        ),
        Preprocessor(
            "hyperspectral",
            "hyperspectral cubes: white/dark reference calibration, bands by wavelength, "
            "bad bands dropped, optional principal components fitted with the recipe",
            "an ENVI .hdr (or its data file), or a multi-band raster with wavelengths",
            "sipd.preprocess.hyperspectral",
            fitter="sipd.preprocess.hyperspectral_pca:fit_projection",
        ),
        Preprocessor(
            "multichannel",
            "biomedical and industrial images: OME-TIFF, multi-page TIFF, one image per "
            "channel; channels, Z/T selection, per-channel intensity normalisation",
            "an OME-TIFF or TIFF, or a folder of PNG/JPEG/TIFF images, one per channel",
            "sipd.preprocess.multichannel",
        ),
    )
}
# The order `detect` asks the non-SAR preprocessors in: the most specific first;
# multichannel takes any image, so it is asked last.
_SENSOR_ORDER = (
    "landsat",
    "sentinel2",
    "sentinel3",
    "modis",
    "micasense",
    "hyperspectral",
    "multichannel",
)


def get(name: str) -> Preprocessor:
    try:
        return PREPROCESSORS[name]
    except KeyError:
        raise InvalidArgument(
            f"no preprocessor {name!r}; accepted: {', '.join(PREPROCESSORS)}"
        ) from None


# Files that are products as delivered (archives, formats GDAL cannot classify as they are).
_PRODUCT_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".hdf", ".hdr", ".ome.tif", ".ome.tiff")


def is_raw_product(path: str | Path) -> bool:
    """Whether `path` looks like a product as delivered (a folder, an archive, a
    product's own metadata file, a format GDAL cannot classify as it is), so that
    `detect` should name its preprocessor; a plain raster is not one."""
    p = Path(path)
    if p.is_dir():
        return True
    return is_metadata_file(p.name) or p.name.lower().endswith(_PRODUCT_SUFFIXES)


def detect(path: str | Path) -> str:
    """The preprocessor a product needs, from the files it holds (a few named files are
    looked at, never a walk of the folder: a caller may name a large one by mistake)."""
    p = Path(path)
    sar = _detect_sar(p)
    if sar:
        return sar
    for name in _SENSOR_ORDER:
        if PREPROCESSORS[name].accepts(p):
            return name
    raise InvalidArgument(
        f"{path} is not a product a preprocessor knows; accepted: "
        + "; ".join(f"{pre.name}: {pre.inputs}" for pre in PREPROCESSORS.values())
    )


def _detect_sar(p: Path) -> str:
    """sentinel1, radarsat2 or rcm when `p` is such a product, "" otherwise; an archive
    that cannot be read at all is an error here (no other reader would do better)."""
    if p.is_file() and p.name == "product.xml" and p.parent.name == "metadata":
        p = p.parent.parent
    if p.is_file() and p.suffix.lower() == ".zip" and not zipfile.is_zipfile(p):
        raise InvalidArgument(
            f"product archive {p} is not a readable zip (truncated or corrupt); "
            "download or copy it again"
        )
    try:
        files = ProductFiles.open(p, ("manifest.safe", "product.xml"))
    except InvalidArgument:
        return ""
    try:
        if files.exists("metadata/product.xml"):
            return "rcm"
        if files.exists("product.xml"):
            return "radarsat2"
        head = files.read_bytes("manifest.safe", "manifest")[:20000]
    finally:
        files.close()
    return "sentinel1" if b"Sentinel-1" in head or b"SENTINEL-1" in head else ""


def made_by_sipd(path: str | Path) -> bool:
    """Whether `path` is a scene a preprocessor wrote (its SIPD_PREPROCESSING tag): such
    a file is read as it is, never preprocessed a second time."""
    import rasterio

    try:
        with rasterio.open(path) as ds:
            return SOFTWARE_TAG in ds.tags()
    except RasterioError:
        return False
