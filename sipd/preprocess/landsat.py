"""Landsat 4-9 Collection 2, Level-1 and Level-2, into one calibrated COG.

Formulas (every coefficient read from the product's MTL, by group):

- Level-2 surface reflectance and surface temperature: value = DN * MULT + ADD with
  REFLECTANCE_MULT/ADD_BAND_n of LEVEL2_SURFACE_REFLECTANCE_PARAMETERS (2.75e-05,
  -0.2) and TEMPERATURE_MULT/ADD_BAND_ST_Bn of LEVEL2_SURFACE_TEMPERATURE_PARAMETERS
  (0.00341802, 149.0; kelvin); DN 0 is fill. USGS, "Landsat 8-9 Collection 2 Level 2
  Science Product Guide" (LSDS-1619) and "Landsat 4-7 Collection 2 Level 2 Science
  Product Guide" (LSDS-1618), section "Scale factors"; the USGS page "How do I use a
  scale factor with Landsat Level-2 science products?".
- Level-1 top-of-atmosphere reflectance: rho = (M_rho * Q_cal + A_rho) / sin(theta_SE)
  with REFLECTANCE_MULT/ADD_BAND_n of LEVEL1_RADIOMETRIC_RESCALING and SUN_ELEVATION
  (scene centre) of IMAGE_ATTRIBUTES. USGS, "Landsat 8-9 Data Users Handbook"
  (LSDS-1574) section 5.1 and the USGS page "Using the USGS Landsat Level-1 Data
  Product".
- Level-1 at-sensor brightness temperature: T = K2 / ln(K1 / L + 1) with the radiance
  L = M_L * Q_cal + A_L (RADIANCE_MULT/ADD_BAND_n of LEVEL1_RADIOMETRIC_RESCALING,
  K1/K2_CONSTANT_BAND_n of LEVEL1_THERMAL_CONSTANTS); same sources.
- QA_PIXEL bits (Collection 2): 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud
  shadow, 5 snow, 6 clear, 7 water, 8-9 cloud, 10-11 shadow, 12-13 snow/ice, 14-15
  cirrus confidence (LSDS-1619 / LSDS-1618, "Pixel Quality Assessment Band"). The
  confidence classes start at medium (cloud) or high: clear pixels carry low (01) in
  all four confidence fields (clear land = 21824), so no "*_conf_low" class is offered.

The output is the band files' own 30 m grid: every selected band (and QA_PIXEL)
must share it. The 15 m panchromatic band is refused (no resampling here).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rasterio.errors import RasterioError
from rasterio.windows import Window

from sipd.contracts.options.landsat import QA_CLASSES, LandsatOptions
from sipd.contracts.preprocessing import PreprocessStep
from sipd.errors import InvalidArgument
from sipd.preprocess.band_stack import RunResult, StackGrid, write_stack
from sipd.preprocess.landsat_files import LandsatFiles, open_product
from sipd.preprocess.landsat_files import accepts as _accepts
from sipd.preprocess.landsat_mtl import Mtl, parse_mtl
from sipd.preprocess.streaming import DatasetsPerThread
from sipd.progress import JobContext
from sipd.raster import open_raster

CONTENTS = "PRODUCT_CONTENTS"
IMAGE = "IMAGE_ATTRIBUTES"
L2_SR = "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS"
L2_ST = "LEVEL2_SURFACE_TEMPERATURE_PARAMETERS"
L1_RESCALING = "LEVEL1_RADIOMETRIC_RESCALING"
L1_THERMAL = "LEVEL1_THERMAL_CONSTANTS"


@dataclass(frozen=True)
class Instrument:
    """An instrument's bands: common name -> (band number, centre wavelength in nm)."""

    label: str
    bands: dict[str, tuple[str, float]]
    default: tuple[str, ...]
    thermal: tuple[str, ...]


# Band numbers per instrument (Landsat 8-9 handbook LSDS-1574 table 2-1; Landsat 7
# handbook LSDS-1927; Landsat 4-5 TM handbook LSDS-1415). Wavelengths: band centres,
# nm, for the output's band tags.
OLI_TIRS = Instrument(
    "OLI/TIRS",
    {
        "coastal": ("1", 443),
        "blue": ("2", 482),
        "green": ("3", 561),
        "red": ("4", 655),
        "nir08": ("5", 865),
        "swir16": ("6", 1609),
        "swir22": ("7", 2201),
        "cirrus": ("9", 1373),
        "lwir11": ("10", 10895),
        "lwir12": ("11", 12005),
    },
    ("coastal", "blue", "green", "red", "nir08", "swir16", "swir22"),
    ("lwir11", "lwir12"),
)
ETM = Instrument(
    "ETM+",
    {
        "blue": ("1", 485),
        "green": ("2", 560),
        "red": ("3", 660),
        "nir08": ("4", 835),
        "swir16": ("5", 1650),
        "lwir": ("6_VCID_1", 11450),
        "lwir_high_gain": ("6_VCID_2", 11450),
        "swir22": ("7", 2220),
    },
    ("blue", "green", "red", "nir08", "swir16", "swir22"),
    ("lwir", "lwir_high_gain"),
)
TM = Instrument(
    "TM",
    {
        "blue": ("1", 485),
        "green": ("2", 560),
        "red": ("3", 660),
        "nir08": ("4", 830),
        "swir16": ("5", 1650),
        "lwir": ("6", 11450),
        "swir22": ("7", 2215),
    },
    ("blue", "green", "red", "nir08", "swir16", "swir22"),
    ("lwir",),
)
INSTRUMENTS = {"OLI_TIRS": OLI_TIRS, "OLI": OLI_TIRS, "TIRS": OLI_TIRS, "ETM": ETM, "TM": TM}


@dataclass(frozen=True)
class BandPlan:
    """How one output band is made: from which file, with which formula."""

    name: str
    file: str  # name in the product
    quantity: str  # surface_reflectance, surface_temperature, toa_reflectance, ...
    gain: float
    offset: float
    k1: float = 0.0  # brightness temperature only
    k2: float = 0.0
    wavelength: float = 0.0
    label: str = ""  # e.g. B4, ST_B10

    def calibrate(self, dn: np.ndarray) -> np.ndarray:
        """float32 values of uint DNs; 0 (fill) -> NaN."""
        value = dn.astype(np.float32)
        value *= np.float32(self.gain)
        value += np.float32(self.offset)
        if self.quantity == "brightness_temperature":
            # value is the radiance L here; ln(K1/L + 1) needs L > 0.
            with np.errstate(divide="ignore", invalid="ignore"):
                radiance = np.where(value > 0, value, np.nan).astype(np.float32)
                value = np.float32(self.k2) / np.log(np.float32(self.k1) / radiance + 1)
        value[dn == 0] = np.nan
        return value

    def tags(self) -> dict[str, str]:
        units = "K" if self.quantity.endswith("temperature") else "1"
        return {
            "common_name": self.name,
            "wavelength": f"{self.wavelength:g}",
            "wavelength_units": "nm",
            "landsat_band": self.label,
            "quantity": self.quantity,
            "units": units,
        }


@dataclass(frozen=True)
class Product:
    """What a run needs from the MTL."""

    mtl: Mtl
    spacecraft: str
    sensor_id: str
    instrument: Instrument
    level: str  # L2SP, L2SR, L1TP, L1GT, L1GS

    @property
    def level2(self) -> bool:
        return self.level.startswith("L2")

    @property
    def title(self) -> str:
        number = self.spacecraft.removeprefix("LANDSAT_")
        return f"Landsat {number} {self.instrument.label} {self.level}"


def accepts(path: Path) -> bool:
    """Whether `path` is a Landsat Collection 2 product (folder, MTL or .tar)."""
    return _accepts(path)


def read_product(files: LandsatFiles) -> Product:
    mtl = parse_mtl(files.read_bytes(files.mtl_name, "metadata file"), files.mtl_name)
    spacecraft = mtl.get(IMAGE, "SPACECRAFT_ID")
    sensor_id = mtl.get(IMAGE, "SENSOR_ID")
    instrument = INSTRUMENTS.get(sensor_id)
    if instrument is None:
        raise InvalidArgument(
            f"{files.mtl_name}: sensor {sensor_id} is not supported; accepted: Landsat 8/9 "
            "OLI/TIRS, Landsat 7 ETM+ and Landsat 4/5 TM (not MSS)"
        )
    level = mtl.get(CONTENTS, "PROCESSING_LEVEL")
    if not level.startswith(("L1", "L2")):
        raise InvalidArgument(
            f"{files.mtl_name}: processing level {level} is not supported; accepted: "
            "Level-1 (L1TP, L1GT, L1GS) and Level-2 (L2SP, L2SR)"
        )
    return Product(mtl, spacecraft, sensor_id, instrument, level)


def plan_bands(product: Product, names: list[str]) -> list[BandPlan]:
    """The formula and file of each asked band; a band this product lacks is an error
    that says which bands it has."""
    inst = product.instrument
    wanted = names or list(inst.default)
    plans = []
    for name in wanted:
        if name not in inst.bands:
            raise InvalidArgument(
                f"band {name} does not exist on {product.title}; its bands: "
                f"{', '.join(available(product))}"
            )
        number, wavelength = inst.bands[name]
        make = _level2 if product.level2 else _level1
        plans.append(replace(make(product, name, number), wavelength=wavelength))
    return plans


def available(product: Product) -> list[str]:
    """The band names this product's MTL lists files for."""
    out = []
    for name, (number, _) in product.instrument.bands.items():
        key = _file_key(product, name, number)
        if key and product.mtl.find(CONTENTS, key):
            out.append(name)
    return out


def _file_key(product: Product, name: str, number: str) -> str:
    if not product.level2:
        return f"FILE_NAME_BAND_{number}"
    if name in product.instrument.thermal:
        # Level-2 has one surface temperature band, from TIRS B10 or TM/ETM+ B6.
        return {"lwir11": "FILE_NAME_BAND_ST_B10", "lwir": "FILE_NAME_BAND_ST_B6"}.get(name, "")
    if name == "cirrus":
        return ""
    return f"FILE_NAME_BAND_{number}"


def _file(product: Product, name: str, number: str) -> str:
    key = _file_key(product, name, number)
    file = product.mtl.find(CONTENTS, key) if key else None
    if not file:
        raise InvalidArgument(
            f"{product.title} holds no {name} band ({key or 'not made at this level'} is not "
            f"in the MTL's {CONTENTS}); its bands: {', '.join(available(product))}"
        )
    return file


def _level2(product: Product, name: str, number: str) -> BandPlan:
    file = _file(product, name, number)
    mtl = product.mtl
    if name in product.instrument.thermal:
        st = "ST_B10" if number == "10" else "ST_B6"
        return BandPlan(
            name,
            file,
            "surface_temperature",
            mtl.number(L2_ST, f"TEMPERATURE_MULT_BAND_{st}"),
            mtl.number(L2_ST, f"TEMPERATURE_ADD_BAND_{st}"),
            label=st,
        )
    return BandPlan(
        name,
        file,
        "surface_reflectance",
        mtl.number(L2_SR, f"REFLECTANCE_MULT_BAND_{number}"),
        mtl.number(L2_SR, f"REFLECTANCE_ADD_BAND_{number}"),
        label=f"B{number}",
    )


def _level1(product: Product, name: str, number: str) -> BandPlan:
    file = _file(product, name, number)
    mtl = product.mtl
    if name in product.instrument.thermal:
        return BandPlan(
            name,
            file,
            "brightness_temperature",
            mtl.number(L1_RESCALING, f"RADIANCE_MULT_BAND_{number}"),
            mtl.number(L1_RESCALING, f"RADIANCE_ADD_BAND_{number}"),
            mtl.number(L1_THERMAL, f"K1_CONSTANT_BAND_{number}"),
            mtl.number(L1_THERMAL, f"K2_CONSTANT_BAND_{number}"),
            label=f"B{number}",
        )
    elevation = mtl.number(IMAGE, "SUN_ELEVATION")
    if not 0 < elevation <= 90:
        raise InvalidArgument(
            f"{mtl.name}: SUN_ELEVATION {elevation} is not above the horizon; TOA "
            "reflectance (divided by its sine) is defined for a sun in 0-90 degrees"
        )
    sine = math.sin(math.radians(elevation))
    # (M * Q + A) / sin(e) computed as Q * (M / sin e) + (A / sin e).
    return BandPlan(
        name,
        file,
        "toa_reflectance",
        mtl.number(L1_RESCALING, f"REFLECTANCE_MULT_BAND_{number}") / sine,
        mtl.number(L1_RESCALING, f"REFLECTANCE_ADD_BAND_{number}") / sine,
        label=f"B{number}",
    )


def qa_mask(qa: np.ndarray, classes: list[str]) -> np.ndarray:
    """True where a QA_PIXEL value holds any of `classes` (QA_CLASSES; no "low or
    higher" confidence class, as every clear pixel has low confidence set)."""
    bad = np.zeros(qa.shape, dtype=bool)
    for name in classes:
        shift, width, lowest = QA_CLASSES[name]
        field = (qa >> shift) & ((1 << width) - 1)
        bad |= (field == 0) if name == "not_clear" else (field >= lowest)
    return bad


def metadata(product: Product) -> dict[str, str]:
    """Source metadata for the output's tags (LANDSAT_*) and the job result."""
    mtl = product.mtl
    picks = {
        "SPACECRAFT_ID": (IMAGE, "SPACECRAFT_ID"),
        "SENSOR_ID": (IMAGE, "SENSOR_ID"),
        "PRODUCT_ID": (CONTENTS, "LANDSAT_PRODUCT_ID"),
        "PROCESSING_LEVEL": (CONTENTS, "PROCESSING_LEVEL"),
        "COLLECTION_NUMBER": (CONTENTS, "COLLECTION_NUMBER"),
        "COLLECTION_CATEGORY": (CONTENTS, "COLLECTION_CATEGORY"),
        "WRS_PATH": (IMAGE, "WRS_PATH"),
        "WRS_ROW": (IMAGE, "WRS_ROW"),
        "DATE_ACQUIRED": (IMAGE, "DATE_ACQUIRED"),
        "SCENE_CENTER_TIME": (IMAGE, "SCENE_CENTER_TIME"),
        "SUN_ELEVATION": (IMAGE, "SUN_ELEVATION"),
        "SUN_AZIMUTH": (IMAGE, "SUN_AZIMUTH"),
        "EARTH_SUN_DISTANCE": (IMAGE, "EARTH_SUN_DISTANCE"),
        "CLOUD_COVER": (IMAGE, "CLOUD_COVER"),
        "CLOUD_COVER_LAND": (IMAGE, "CLOUD_COVER_LAND"),
    }
    out = {}
    for tag, (group, key) in picks.items():
        value = mtl.find(group, key)
        if value:
            out[f"LANDSAT_{tag}"] = value
    return out


def _grid(files: LandsatFiles, paths: dict[str, str]) -> StackGrid:
    """The shared grid of the band files (name -> GDAL path); any difference is an error
    naming the file."""
    first = ""
    grid: StackGrid | None = None
    for name, path in paths.items():
        with open_raster(path) as ds:
            if ds.count != 1 or ds.dtypes[0] not in ("uint8", "uint16"):
                raise InvalidArgument(
                    f"{name} file {Path(path).name} has {ds.count} band(s) of {ds.dtypes[0]}; "
                    "a Landsat band file has one band of uint8 or uint16"
                )
            here = StackGrid(ds.width, ds.height, ds.crs, ds.transform)
            if grid is None:
                grid, first = here, name
            elif here != grid:
                raise InvalidArgument(
                    f"product {files.source}: {name} file {Path(path).name} is "
                    f"{here.width} x {here.height} ({here.crs}, {tuple(here.transform)[:6]}), "
                    f"not on the grid of {first} ({grid.width} x {grid.height}, "
                    f"{grid.crs}, {tuple(grid.transform)[:6]}); every band must share one grid"
                )
    assert grid is not None
    return grid


def run(
    source: Path,
    step: PreprocessStep,
    output: Path,
    ctx: JobContext,
    tags: dict[str, str],
    threads: int,
) -> RunResult:
    options = step.options
    if not isinstance(options, LandsatOptions):
        raise TypeError(f"landsat needs LandsatOptions, not {type(options).__name__}")
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    files = open_product(Path(source))
    try:
        product = read_product(files)
        plans = plan_bands(product, options.bands)
        paths = {}
        for plan in plans:
            if not files.exists(plan.file):
                raise InvalidArgument(
                    f"product {files.source} is incomplete: the {plan.name} band file "
                    f"{plan.file} is missing; bands here: {', '.join(_present(files, product))}"
                    " (choose some with the bands option)"
                )
            paths[plan.name] = files.gdal_path(plan.file)
        qa_path = ""
        if options.mask:
            qa_file = product.mtl.find(CONTENTS, "FILE_NAME_QUALITY_L1_PIXEL")
            if not qa_file or not files.exists(qa_file):
                raise InvalidArgument(
                    f"product {files.source} has no QA_PIXEL file "
                    f"({qa_file or 'FILE_NAME_QUALITY_L1_PIXEL not in the MTL'}), needed by "
                    f"mask={','.join(options.mask)}; give mask= (empty) to go without"
                )
            qa_path = files.gdal_path(qa_file)
            paths["QA_PIXEL"] = qa_path
        grid = _grid(files, paths)
        seconds["open"] = time.perf_counter() - started
        ctx.check_cancelled()
        ctx.progress("open", 1.0, f"{product.title}: {len(plans)} bands", force=True)

        meta = metadata(product)
        out_tags = {**meta, "SIPD_MASK": ",".join(options.mask), **tags}
        datasets = DatasetsPerThread(opener=open_raster)
        try:
            read_block = _block_reader(plans, paths, qa_path, options.mask, grid, datasets)
            seconds.update(
                write_stack(
                    output,
                    grid,
                    [p.name for p in plans],
                    read_block,
                    ctx,
                    out_tags,
                    threads=threads,
                    band_tags=[p.tags() for p in plans],
                )
            )
        finally:
            datasets.close()
    finally:
        files.close()
    shown = {k.removeprefix("LANDSAT_").lower(): v for k, v in meta.items()}
    shown.update(
        {
            "mission": product.spacecraft,
            "product_type": product.level,
            "start_time": f"{meta.get('LANDSAT_DATE_ACQUIRED', '')}T"
            f"{meta.get('LANDSAT_SCENE_CENTER_TIME', '')}",
            "bands": ",".join(f"{p.name}:{p.quantity}" for p in plans),
            "mask": ",".join(options.mask),
        }
    )
    return RunResult(product.title, shown, seconds)


def _present(files: LandsatFiles, product: Product) -> list[str]:
    out = []
    for name in available(product):
        number = product.instrument.bands[name][0]
        file = product.mtl.find(CONTENTS, _file_key(product, name, number))
        if file and files.exists(file):
            out.append(name)
    return out or ["none"]


def _block_reader(
    plans: list[BandPlan],
    paths: dict[str, str],
    qa_path: str,
    mask: list[str],
    grid: StackGrid,
    datasets: DatasetsPerThread,
) -> Callable[[int, int], np.ndarray]:
    def read(path: str, window: Window) -> np.ndarray:
        try:
            return datasets.get(path).read(1, window=window)
        except RasterioError as exc:
            raise InvalidArgument(
                f"band file {path} is corrupt or truncated ({exc}); download or copy the "
                "product again"
            ) from exc

    def read_block(row0: int, row1: int) -> np.ndarray:
        window = Window(0, row0, grid.width, row1 - row0)
        out = np.empty((len(plans), row1 - row0, grid.width), dtype=np.float32)
        for i, plan in enumerate(plans):
            out[i] = plan.calibrate(read(paths[plan.name], window))
        if qa_path:
            bad = qa_mask(read(qa_path, window), mask)
            out[:, bad] = np.nan
        return out

    return read_block
