"""Sentinel-2 L1C/L2A product metadata: what the preprocessor needs from MTD_MSIL1C.xml /
MTD_MSIL2A.xml (product) and GRANULE/*/MTD_TL.xml (tile).

Element names follow the ESA Sentinel-2 Products Specification Document
(S2-PDGS-TAS-DI-PSD, v14.x, the "compact" SAFE naming used since 2016). Namespaces change
between PSD versions, so elements are matched by local name only.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from affine import Affine
from rasterio.crs import CRS

from sipd.contracts.options.sentinel2 import SCL_CLASSES
from sipd.errors import InvalidArgument
from sipd.preprocess.product_files import ProductFiles
from sipd.preprocess.sar_xml import all_named, first_text

PRODUCT_MTD = ("MTD_MSIL1C.xml", "MTD_MSIL2A.xml")
# The baseline from which DN carry a radiometric offset (ESA, "Copernicus Sentinel-2:
# Processing Baseline 04.00", 2022-01-25: L1C/L2A reflectance = (DN + offset) / Q).
OFFSET_BASELINE = 4.0
# The product's SCL legend names (Scene_Classification_List) mapped to the option names;
# the older spellings come from baselines 02.xx.
_SCL_TEXT = {
    "SC_NODATA": "no_data",
    "SC_SATURATED_DEFECTIVE": "saturated_defective",
    "SC_DARK_FEATURE_SHADOW": "dark_area",
    "SC_DARK_AREA_PIXELS": "dark_area",
    "SC_CLOUD_SHADOW": "cloud_shadow",
    "SC_CLOUD_SHADOWS": "cloud_shadow",
    "SC_VEGETATION": "vegetation",
    "SC_NOT_VEGETATED": "not_vegetated",
    "SC_BARE_SOILS": "not_vegetated",
    "SC_WATER": "water",
    "SC_UNCLASSIFIED": "unclassified",
    "SC_CLOUD_MEDIUM_PROBA": "cloud_medium",
    "SC_CLOUD_HIGH_PROBA": "cloud_high",
    "SC_THIN_CIRRUS": "thin_cirrus",
    "SC_SNOW_ICE": "snow",
}
_IMAGE_NAME = re.compile(r"_(B\d\d|B8A|SCL|AOT|WVP|TCI)(?:_(10|20|60)m)?$")
_EXTENSIONS = {"JPEG2000": ".jp2", "GEOTIFF": ".tif"}


@dataclass(frozen=True)
class ImageFile:
    """One IMAGE_FILE the product lists: its member path (with extension), what it holds
    (B02, B8A, SCL, TCI...) and at which resolution (metres)."""

    rel: str
    kind: str
    resolution: int


@dataclass(frozen=True)
class TileGrid:
    """The tile's grid at one resolution (MTD_TL Tile_Geocoding)."""

    ulx: float
    uly: float
    xdim: float
    ydim: float
    rows: int
    cols: int

    @property
    def transform(self) -> Affine:
        return Affine(self.xdim, 0.0, self.ulx, 0.0, self.ydim, self.uly)


@dataclass
class S2Product:
    """What the preprocessor reads from a product's metadata."""

    files: ProductFiles
    level: str  # "L1C" or "L2A"
    fields: dict[str, str]
    baseline: str
    quantification: float
    # Offsets by band id (B01..B12, B8A) as listed, whether or not they apply.
    offsets: dict[str, float]
    offset_applies: bool
    wavelengths: dict[str, float]
    images: list[ImageFile]
    crs: CRS
    grids: dict[int, TileGrid]
    granule: str
    scl_legend: dict[str, int] = field(default_factory=dict)
    # Quality masks named in MTD_TL (MSK_CLASSI, MSK_CLOUDS: member paths).
    qi_masks: dict[str, str] = field(default_factory=dict)

    def offset(self, band_id: str) -> float:
        """The offset added to a DN before dividing by the quantification value."""
        return self.offsets.get(band_id, 0.0) if self.offset_applies else 0.0

    def image(self, kind: str, resolution: int | None = None) -> ImageFile | None:
        """The listed file holding `kind` at `resolution` (any when None: the finest)."""
        found = sorted((i for i in self.images if i.kind == kind), key=lambda i: i.resolution)
        if resolution is not None:
            found = [i for i in found if i.resolution == resolution]
        return found[0] if found else None


def _parse(data: bytes, what: str) -> ET.Element:
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise InvalidArgument(f"{what} is not valid XML ({exc}); the product is damaged") from exc


def band_id(physical: str) -> str:
    """ "B1" / "B01" / "B8A" as the two-digit id the file names use (B01, B8A)."""
    m = re.fullmatch(r"B0?(\d{1,2}|8A)", physical.strip().upper())
    if not m:
        raise InvalidArgument(f"unknown Sentinel-2 band {physical!r} in the product metadata")
    return "B8A" if m.group(1) == "8A" else f"B{int(m.group(1)):02d}"


def baseline_number(text: str) -> float:
    """PROCESSING_BASELINE "04.00" as 4.0 (refused when it is not NN.NN)."""
    if not re.fullmatch(r"\d{1,2}\.\d{1,2}", text):
        raise InvalidArgument(
            f"PROCESSING_BASELINE {text!r} is not a baseline number like 04.00; "
            "the product metadata is damaged"
        )
    return float(text)


def open_product(path: Path) -> S2Product:
    """Read a product's metadata from its folder, its MTD_MSIL*.xml or its zip."""
    files = ProductFiles.open(path, PRODUCT_MTD)
    try:
        return _read(files)
    except BaseException:
        files.close()
        raise


def _read(files: ProductFiles) -> S2Product:
    mtd = next((m for m in PRODUCT_MTD if files.exists(m)), "")
    level = "L1C" if mtd == "MTD_MSIL1C.xml" else "L2A"
    root = _parse(files.read_bytes(mtd, "product metadata"), mtd)
    baseline = first_text(root, "PROCESSING_BASELINE")
    if not baseline:
        raise InvalidArgument(f"{mtd} has no PROCESSING_BASELINE; the product metadata is damaged")
    number = baseline_number(baseline)
    quant_name = "QUANTIFICATION_VALUE" if level == "L1C" else "BOA_QUANTIFICATION_VALUE"
    quant = _float(first_text(root, quant_name), f"{mtd} {quant_name}")
    if quant <= 0:
        raise InvalidArgument(f"{mtd} {quant_name} is {quant}; it must be positive")
    index_to_band: dict[str, str] = {}
    wavelengths: dict[str, float] = {}
    native: dict[str, int] = {}
    for info in all_named(root, "Spectral_Information"):
        ident = band_id(info.get("physicalBand", ""))
        index_to_band[info.get("bandId", "")] = ident
        central = first_text(info, "CENTRAL")
        if central:
            wavelengths[ident] = _float(central, f"{mtd} wavelength of {ident}")
        native[ident] = int(
            _float(first_text(info, "RESOLUTION", "0"), f"{mtd} resolution of {ident}")
        )
    offsets: dict[str, float] = {}
    for name in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET"):
        for e in all_named(root, name):
            ident = index_to_band.get(e.get("band_id", ""))
            if ident is None:
                raise InvalidArgument(f"{mtd} has {name} for unknown band_id {e.get('band_id')!r}")
            offsets[ident] = _float(e.text or "", f"{mtd} {name} of {ident}")
    granules = all_named(root, "Granule")
    if len(granules) != 1:
        raise InvalidArgument(
            f"{mtd} lists {len(granules)} granules; accepted: single-tile products "
            "(the SAFE_COMPACT format delivered since December 2016)"
        )
    ext = _EXTENSIONS.get(granules[0].get("imageFormat", "JPEG2000").upper(), ".jp2")
    listed = [e.text.strip() for e in all_named(granules[0], "IMAGE_FILE") if e.text]
    if not listed:
        raise InvalidArgument(f"{mtd} lists no IMAGE_FILE; the product metadata is damaged")
    granule = "/".join(PurePosixPath(listed[0]).parts[:2])
    images = [_image(files, rel, ext, native) for rel in listed]
    tile_rel = f"{granule}/MTD_TL.xml"
    tile = _parse(files.read_bytes(tile_rel, "tile metadata"), tile_rel)
    crs, grids = _tile_grids(tile, tile_rel)
    fields = {
        "spacecraft": first_text(root, "SPACECRAFT_NAME"),
        "product_type": first_text(root, "PRODUCT_TYPE"),
        "product_uri": first_text(root, "PRODUCT_URI"),
        "start_time": first_text(root, "PRODUCT_START_TIME"),
        "sensing_time": first_text(tile, "SENSING_TIME"),
        "tile_id": first_text(tile, "TILE_ID"),
        "mgrs_tile": _mgrs(first_text(root, "PRODUCT_URI"), listed[0]),
        "orbit_number": first_text(root, "SENSING_ORBIT_NUMBER"),
        "orbit_direction": first_text(root, "SENSING_ORBIT_DIRECTION"),
        "cloud_cover": first_text(root, "Cloud_Coverage_Assessment"),
        "sun_zenith_mean": _mean_sun(tile, "ZENITH_ANGLE"),
        "sun_azimuth_mean": _mean_sun(tile, "AZIMUTH_ANGLE"),
    }
    return S2Product(
        files=files,
        level=level,
        fields=fields,
        baseline=baseline,
        quantification=quant,
        offsets=offsets,
        offset_applies=number >= OFFSET_BASELINE and bool(offsets),
        wavelengths=wavelengths,
        images=images,
        crs=crs,
        grids=grids,
        granule=granule,
        scl_legend=_scl_legend(root),
        qi_masks={
            e.get("type", ""): e.text.strip()
            for e in all_named(tile, "MASK_FILENAME")
            if e.get("type") in ("MSK_CLASSI", "MSK_CLOUDS") and e.text
        },
    )


def _float(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise InvalidArgument(
            f"{what} is {text!r}, not a number; the metadata is damaged"
        ) from None


def _image(files: ProductFiles, rel: str, ext: str, native: dict[str, int]) -> ImageFile:
    """An IMAGE_FILE entry (listed without extension) as the member that holds it."""
    m = _IMAGE_NAME.search(PurePosixPath(rel).name)
    if not m:
        raise InvalidArgument(f"IMAGE_FILE {rel!r} is not a Sentinel-2 band file name")
    kind = m.group(1)
    if m.group(2):
        resolution = int(m.group(2))
    elif kind == "TCI":
        resolution = 10
    elif kind in native:
        resolution = native[kind]
    else:
        raise InvalidArgument(f"IMAGE_FILE {rel!r}: no resolution for {kind} in the metadata")
    # The declared format's extension; a product re-encoded to the other one (a few
    # mirrors deliver GeoTIFF) is read as it is.
    other = ".tif" if ext == ".jp2" else ".jp2"
    chosen = next((e for e in (ext, other) if files.exists(rel + e)), ext)
    return ImageFile(rel + chosen, kind, resolution)


def _tile_grids(tile: ET.Element, what: str) -> tuple[CRS, dict[int, TileGrid]]:
    code = first_text(tile, "HORIZONTAL_CS_CODE")
    try:
        crs = CRS.from_user_input(code)
    except Exception as exc:  # noqa: BLE001 - any pyproj/GDAL error means the same here
        raise InvalidArgument(f"{what} HORIZONTAL_CS_CODE {code!r} is not a known CRS") from exc
    sizes = {
        int(e.get("resolution", "0")): (
            int(first_text(e, "NROWS", "0")),
            int(first_text(e, "NCOLS", "0")),
        )
        for e in all_named(tile, "Size")
    }
    grids: dict[int, TileGrid] = {}
    for e in all_named(tile, "Geoposition"):
        res = int(e.get("resolution", "0"))
        if res not in sizes:
            continue
        rows, cols = sizes[res]
        grids[res] = TileGrid(
            ulx=_float(first_text(e, "ULX"), f"{what} ULX"),
            uly=_float(first_text(e, "ULY"), f"{what} ULY"),
            xdim=_float(first_text(e, "XDIM"), f"{what} XDIM"),
            ydim=_float(first_text(e, "YDIM"), f"{what} YDIM"),
            rows=rows,
            cols=cols,
        )
    if not grids:
        raise InvalidArgument(f"{what} has no Tile_Geocoding sizes and geopositions")
    return crs, grids


def _mean_sun(tile: ET.Element, name: str) -> str:
    for mean in all_named(tile, "Mean_Sun_Angle"):
        return first_text(mean, name)
    return ""


def _mgrs(uri: str, first_image: str) -> str:
    for text in (uri, PurePosixPath(first_image).name):
        m = re.search(r"_T(\d{2}[A-Z]{3})_", f"_{text}_") or re.search(r"T(\d{2}[A-Z]{3})", text)
        if m:
            return m.group(1)
    return ""


def _scl_legend(root: ET.Element) -> dict[str, int]:
    """The product's SCL classes by option name; the standard legend when it has none."""
    legend: dict[str, int] = {}
    for e in all_named(root, "Scene_Classification_ID"):
        name = _SCL_TEXT.get(first_text(e, "SCENE_CLASSIFICATION_TEXT"))
        index = first_text(e, "SCENE_CLASSIFICATION_INDEX")
        if name and index.isdigit():
            legend[name] = int(index)
    return legend or dict(SCL_CLASSES)
