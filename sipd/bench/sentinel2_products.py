"""Sentinel-2 L1C/L2A products in the SAFE layout with generated DN, for benchmarks and tests.

With a template SAFE (real MTD_MSIL*.xml and MTD_TL.xml, e.g. the ones in
../shared/fixtures/sentinel2) its metadata is copied: the tile sizes are rewritten to
the size asked for and, when `keep` is given, IMAGE_FILE entries for files that are not
written are dropped, so the product is consistent (every listed file present). Without
one, minimal metadata in the same layout is generated (baseline 04.00, offset -1000,
quantification 10000, the standard SCL legend). Band files are lossless JP2 (reversible
5/3 wavelet, 1024 x 1024 tiles, as ESA's). Nothing here is used by the daemon.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin
from rasterio.windows import Window

# (kind, resolution, row0, col0, rows, cols) -> uint16 (uint8 for SCL/TCI) block
DnFunction = Callable[[str, int, int, int, int, int], np.ndarray]

NATIVE = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20,
    "B08": 10, "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20,
}  # fmt: skip
WAVELENGTH = {
    "B01": 442.7, "B02": 492.7, "B03": 559.8, "B04": 664.6, "B05": 704.1, "B06": 740.5,
    "B07": 782.8, "B08": 832.8, "B8A": 864.7, "B09": 945.1, "B10": 1373.5, "B11": 1613.7,
    "B12": 2202.4,
}  # fmt: skip
SCL_LEGEND = (
    "SC_NODATA", "SC_SATURATED_DEFECTIVE", "SC_DARK_FEATURE_SHADOW", "SC_CLOUD_SHADOW",
    "SC_VEGETATION", "SC_NOT_VEGETATED", "SC_WATER", "SC_UNCLASSIFIED",
    "SC_CLOUD_MEDIUM_PROBA", "SC_CLOUD_HIGH_PROBA", "SC_THIN_CIRRUS", "SC_SNOW_ICE",
)  # fmt: skip
CRS = "EPSG:32633"
ULX, ULY = 499980.0, 8900040.0
_SIZE = re.compile(r'(<Size resolution="(\d+)">\s*<NROWS>)\d+(</NROWS>\s*<NCOLS>)\d+(</NCOLS>)')
_IMAGE = re.compile(r"\s*<IMAGE_FILE>([^<]+)</IMAGE_FILE>")


def listed_images(safe: Path) -> list[tuple[str, str, int]]:
    """(member path without extension, kind, resolution m) of every IMAGE_FILE listed."""
    mtd = next(safe.glob("MTD_MSIL*.xml"))
    out = []
    for rel in _IMAGE.findall(mtd.read_text()):
        name = rel.rsplit("/", 1)[-1]
        m = re.search(r"_(B\d\d|B8A|SCL|AOT|WVP|TCI)(?:_(\d+)m)?$", name)
        assert m, rel
        kind = m.group(1)
        res = int(m.group(2)) if m.group(2) else (10 if kind == "TCI" else NATIVE[kind])
        out.append((rel, kind, res))
    return out


def adapt_template(
    template: Path, dest: Path, size: int, keep: Callable[[str, int], bool] | None = None
) -> Path:
    """Copy a SAFE's metadata (no rasters) to `dest`, its tile `size` px at 10 m."""
    if size % 6:
        raise ValueError(f"size {size} must be a multiple of 6 (10, 20 and 60 m grids nest)")
    dest.mkdir(parents=True, exist_ok=True)
    kept = (
        {rel for rel, kind, res in listed_images(template) if keep(kind, res)}
        if keep is not None
        else set()
    )
    for f in template.rglob("*.xml"):
        target = dest / f.relative_to(template)
        target.parent.mkdir(parents=True, exist_ok=True)
        text = f.read_text(encoding="utf-8")
        if f.name == "MTD_TL.xml":
            text = _SIZE.sub(
                lambda m: (
                    f"{m.group(1)}{size * 10 // int(m.group(2))}{m.group(3)}"
                    f"{size * 10 // int(m.group(2))}{m.group(4)}"
                ),
                text,
            )
        elif f.name.startswith("MTD_MSIL") and keep is not None:
            text = _IMAGE.sub(lambda m: m.group(0) if m.group(1) in kept else "", text)
        target.write_text(text, encoding="utf-8")
    if (template / "manifest.safe").is_file():
        shutil.copy(template / "manifest.safe", dest / "manifest.safe")
    return dest


def write_band(
    path: Path, resolution: int, size: int, dn: Callable[[int, int, int, int], np.ndarray],
    *, count: int = 1, dtype: str = "uint16", driver: str = "JP2OpenJPEG",
    ulx: float = ULX, uly: float = ULY, crs: str = CRS,
) -> None:  # fmt: skip
    """One band file of the tile (`size` px at 10 m) at `resolution`, DN from `dn(row0,
    col0, rows, cols)` written by strips into a scratch GeoTIFF, then encoded (the JP2
    driver only copies a whole dataset; the copy reads it tile row by tile row)."""
    n = size * 10 // resolution
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff", "width": n, "height": n, "count": count, "dtype": dtype,
        "crs": crs, "transform": from_origin(ulx, uly, resolution, resolution),
        "tiled": True, "blockxsize": 512, "blockysize": 512,
    }  # fmt: skip
    scratch = path.with_name(path.name + ".scratch.tif")
    try:
        with rasterio.open(scratch, "w", **profile) as dst:
            for r0 in range(0, n, 1024):
                rows = min(1024, n - r0)
                block = np.asarray(dn(r0, 0, rows, n), dtype=dtype)
                if block.ndim == 2:
                    block = np.broadcast_to(block, (count, rows, n))
                dst.write(block, window=Window(0, r0, n, rows))
        if driver == "GTiff":
            shutil.move(scratch, path)
            return
        options = {"QUALITY": "100", "REVERSIBLE": "YES"}
        if n > 1024:  # ESA's tiling; a small image is one tile (the driver's default)
            options |= {"BLOCKXSIZE": "1024", "BLOCKYSIZE": "1024"}
        with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):
            rasterio.shutil.copy(scratch, path, driver=driver, **options)
    finally:
        scratch.unlink(missing_ok=True)
        path.with_name(path.name + ".aux.xml").unlink(missing_ok=True)


def scene_dn(seed: int = 0, scale: float = 1.0) -> DnFunction:
    """A plausible scene: fields in a checkerboard of land covers, a river, clouds with
    their shadows, sensor noise; the SCL says which pixel is which. Computed per block.
    Lengths are those of a full 109.8 km tile times `scale` (size / 10980 keeps a small
    product's share of clouds, shadows and water)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 25.0, (512, 512)).astype(np.float32)
    level = {"B01": 1300, "B02": 1150, "B03": 1350, "B04": 1250, "B05": 1700, "B06": 2400,
             "B07": 2700, "B08": 2900, "B8A": 3000, "B09": 1100, "B10": 1010, "B11": 2300,
             "B12": 1700}  # fmt: skip

    def classes(res: int, r0: int, c0: int, rows: int, cols: int) -> np.ndarray:
        # metres from the tile corner, so every resolution shows the same scene
        y = (np.arange(r0, r0 + rows)[:, None] + 0.5) * res / scale
        x = (np.arange(c0, c0 + cols)[None, :] + 0.5) * res / scale
        scl = np.where(((x // 7000) + (y // 5000)) % 3 == 0, 5, 4).astype(np.uint8)
        scl[np.abs(x - 30000 - 8000 * np.sin(y / 9000)) < 400] = 6
        cloud = ((x % 23000 - 11000) ** 2 + (y % 19000 - 9000) ** 2) < 3000**2
        shadow = ((x % 23000 - 12500) ** 2 + (y % 19000 - 10500) ** 2) < 3000**2
        scl[shadow & ~cloud] = 3
        scl[cloud] = 9
        return scl

    def dn(kind: str, res: int, r0: int, c0: int, rows: int, cols: int) -> np.ndarray:
        scl = classes(res, r0, c0, rows, cols)
        if kind == "SCL":
            return scl
        factor = np.choose(np.minimum(scl, 11), [0, 1, 0.5, 0.4, 1, 1.2, 0.3, 1, 2.5, 3, 1.5, 3])
        nz = noise[np.ix_(np.arange(r0, r0 + rows) % 512, np.arange(c0, c0 + cols) % 512)]
        value = level.get(kind, 1000) * factor + nz + 1000  # + 1000: the 04.00 offset
        return np.clip(value, 1, 65534).astype(np.uint16)

    return dn


def _generated_mtd(
    level: str, kinds: list[tuple[str, int]], granule: str, stem: str, uri: str
) -> str:
    files = "\n".join(
        f"<IMAGE_FILE>GRANULE/{granule}/IMG_DATA/"
        + (f"R{res}m/{stem}_{kind}_{res}m" if level == "L2A" else f"{stem}_{kind}")
        + "</IMAGE_FILE>"
        for kind, res in kinds
    )
    spectral = "\n".join(
        f'<Spectral_Information bandId="{i}" physicalBand="B{b[1:].lstrip("0")}">'
        f'<RESOLUTION>{NATIVE[b]}</RESOLUTION><Wavelength><CENTRAL unit="nm">'
        f"{WAVELENGTH[b]}</CENTRAL></Wavelength></Spectral_Information>"
        for i, b in enumerate(NATIVE)
    )
    prefix = "BOA_" if level == "L2A" else "RADIO_"
    offsets = "\n".join(
        f'<{prefix}ADD_OFFSET band_id="{i}">-1000</{prefix}ADD_OFFSET>' for i in range(13)
    )
    quant = (
        "<QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE>10000</BOA_QUANTIFICATION_VALUE>"
        f"</QUANTIFICATION_VALUES_LIST><BOA_ADD_OFFSET_VALUES_LIST>{offsets}"
        "</BOA_ADD_OFFSET_VALUES_LIST>"
        if level == "L2A"
        else "<QUANTIFICATION_VALUE>10000</QUANTIFICATION_VALUE>"
        f"<Radiometric_Offset_List>{offsets}</Radiometric_Offset_List>"
    )
    legend = "".join(
        f"<Scene_Classification_ID><SCENE_CLASSIFICATION_TEXT>{t}</SCENE_CLASSIFICATION_TEXT>"
        f"<SCENE_CLASSIFICATION_INDEX>{i}</SCENE_CLASSIFICATION_INDEX></Scene_Classification_ID>"
        for i, t in enumerate(SCL_LEGEND)
    )
    scl = f"<Scene_Classification_List>{legend}</Scene_Classification_List>" * (level == "L2A")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-{level[1:]}_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-{level[1:]}.xsd">
<n1:General_Info><Product_Info>
<PRODUCT_START_TIME>2022-04-13T15:07:59.024Z</PRODUCT_START_TIME>
<PRODUCT_URI>{uri}.SAFE</PRODUCT_URI>
<PROCESSING_LEVEL>Level-{level[1:]}</PROCESSING_LEVEL>
<PRODUCT_TYPE>S2MSI{level[1:]}</PRODUCT_TYPE>
<PROCESSING_BASELINE>04.00</PROCESSING_BASELINE>
<Datatake><SPACECRAFT_NAME>Sentinel-2B</SPACECRAFT_NAME>
<SENSING_ORBIT_NUMBER>25</SENSING_ORBIT_NUMBER>
<SENSING_ORBIT_DIRECTION>ASCENDING</SENSING_ORBIT_DIRECTION></Datatake>
<Product_Organisation><Granule_List><Granule imageFormat="JPEG2000">
{files}
</Granule></Granule_List></Product_Organisation>
</Product_Info>
<Product_Image_Characteristics>{quant}
<Spectral_Information_List>{spectral}</Spectral_Information_List>{scl}
</Product_Image_Characteristics></n1:General_Info>
<n1:Quality_Indicators_Info><Cloud_Coverage_Assessment>12.5</Cloud_Coverage_Assessment>
</n1:Quality_Indicators_Info>
</n1:Level-{level[1:]}_User_Product>
"""  # noqa: E501


def _generated_tl(size: int, level: str, granule: str) -> str:
    qi = (
        f'<MASK_FILENAME type="MSK_CLASSI">GRANULE/{granule}/QI_DATA/MSK_CLASSI_B00.jp2'
        "</MASK_FILENAME>"
        if level == "L1C"
        else ""
    )
    grids = "".join(
        f'<Size resolution="{r}"><NROWS>{size * 10 // r}</NROWS><NCOLS>{size * 10 // r}'
        f"</NCOLS></Size>"
        for r in (10, 20, 60)
    ) + "".join(
        f'<Geoposition resolution="{r}"><ULX>{ULX:.0f}</ULX><ULY>{ULY:.0f}</ULY>'
        f"<XDIM>{r}</XDIM><YDIM>-{r}</YDIM></Geoposition>"
        for r in (10, 20, 60)
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-{level[1:]}_Tile_ID xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-{level[1:]}_Tile_Metadata.xsd">
<n1:General_Info><TILE_ID>S2B_OPER_MSI_{level}_TL_SIPD_20220414T082127_A026649_T33XWJ_N04.00</TILE_ID>
<SENSING_TIME>2022-04-13T15:08:07.846358Z</SENSING_TIME></n1:General_Info>
<n1:Geometric_Info><Tile_Geocoding><HORIZONTAL_CS_CODE>{CRS}</HORIZONTAL_CS_CODE>{grids}</Tile_Geocoding>
<Tile_Angles><Mean_Sun_Angle><ZENITH_ANGLE unit="deg">46.5</ZENITH_ANGLE>
<AZIMUTH_ANGLE unit="deg">156.5</AZIMUTH_ANGLE></Mean_Sun_Angle></Tile_Angles></n1:Geometric_Info>
<n1:Quality_Indicators_Info><Pixel_Level_QI>{qi}</Pixel_Level_QI></n1:Quality_Indicators_Info>
</n1:Level-{level[1:]}_Tile_ID>
"""  # noqa: E501


def product_from_template(
    template: Path,
    folder: Path,
    size: int = 240,
    *,
    keep: Callable[[str, int], bool] | None = None,
    dn: DnFunction | None = None,
    zip: bool = False,  # noqa: A002 - as make_s2_product
) -> Path:
    """A product with `template`'s real metadata, its tile `size` px at 10 m, every listed
    file (those `keep(kind, resolution)` accepts, the others dropped from the list) written
    as JP2 with DN from `dn` (default scene_dn scaled to the tile: clouds, shadows, water;
    its ("SCL", 20, 0, 0, n, n) block is the ground truth). Returns the .SAFE or .zip."""
    safe = adapt_template(template, Path(folder) / template.name, size, keep)
    dn = dn or scene_dn(scale=size / 10980)
    tile = next((safe / "GRANULE").glob("*/MTD_TL.xml")).read_text()
    crs = re.search(r"<HORIZONTAL_CS_CODE>([^<]+)<", tile)
    ulx = re.search(r"<ULX>([^<]+)<", tile)
    uly = re.search(r"<ULY>([^<]+)<", tile)
    assert crs and ulx and uly, "the template's MTD_TL has no geoposition"
    for rel, kind, res in listed_images(safe):
        write_band(
            safe / f"{rel}.jp2",
            res,
            size,
            lambda r0, c0, rows, cols, k=kind, r=res: dn(k, r, r0, c0, rows, cols),
            count=3 if kind == "TCI" else 1,
            dtype="uint8" if kind in ("SCL", "TCI") else "uint16",
            ulx=float(ulx.group(1)),
            uly=float(uly.group(1)),
            crs=crs.group(1),
        )
    return _zipped(safe) if zip else safe


def _zipped(safe: Path) -> Path:
    archive = safe.with_suffix(".zip")
    # Stored, not deflated: JP2 does not compress further, and /vsizip/ then reads
    # members in place.
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(safe.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(safe.parent).as_posix())
    shutil.rmtree(safe)
    return archive


def make_s2_product(
    folder: Path,
    size: int = 10980,
    bands: tuple[str, ...] = ("B02", "B03", "B04", "B08"),
    level: str = "L2A",
    zip: bool = False,  # noqa: A002 - the name the bench uses
    *,
    seed: int = 0,
) -> Path:
    """A synthetic product of `size` px at 10 m holding `bands` at their native
    resolution (and, for L2A, SCL at 20 m); returns the .SAFE folder or its .zip."""
    if level not in ("L1C", "L2A"):
        raise ValueError(f"level {level!r}: L1C or L2A")
    if size % 6:
        raise ValueError(f"size {size} must be a multiple of 6 (10, 20 and 60 m grids nest)")
    stem = f"S2B_MSI{level}_20220413T150759_N0400_R025_T33XWJ_20220414T082126"
    granule = f"{level}_T33XWJ_A026649_20220413T150756"
    safe = Path(folder) / f"{stem}.SAFE"
    if safe.exists():
        shutil.rmtree(safe)
    kinds = [(b, NATIVE[b]) for b in bands] + ([("SCL", 20)] if level == "L2A" else [])
    tile_stem = "T33XWJ_20220413T150759"
    (safe / "GRANULE" / granule).mkdir(parents=True)
    (safe / f"MTD_MSI{level}.xml").write_text(
        _generated_mtd(level, kinds, granule, tile_stem, stem)
    )
    (safe / "GRANULE" / granule / "MTD_TL.xml").write_text(_generated_tl(size, level, granule))
    dn = scene_dn(seed, scale=size / 10980)
    for kind, res in kinds:
        rel = (
            f"IMG_DATA/R{res}m/{tile_stem}_{kind}_{res}m"
            if level == "L2A"
            else f"IMG_DATA/{tile_stem}_{kind}"
        )
        write_band(
            safe / "GRANULE" / granule / f"{rel}.jp2",
            res,
            size,
            lambda r0, c0, rows, cols, k=kind, r=res: dn(k, r, r0, c0, rows, cols),
            dtype="uint8" if kind == "SCL" else "uint16",
        )
    if level == "L1C":  # the cloud mask of baseline 04.00: opaque, cirrus, snow layers
        write_band(
            safe / "GRANULE" / granule / "QI_DATA" / "MSK_CLASSI_B00.jp2",
            60,
            size,
            lambda r0, c0, rows, cols: np.stack(
                [
                    dn("SCL", 60, r0, c0, rows, cols) >= 8,
                    np.zeros((rows, cols), bool),
                    np.zeros((rows, cols), bool),
                ]  # fmt: skip
            ),
            count=3,
            dtype="uint8",
        )
    return _zipped(safe) if zip else safe
