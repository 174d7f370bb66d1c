"""The sentinel2 preprocessor: Sentinel-2 MSI L1C and L2A products to a reflectance COG.

Reflectance (L1C top of atmosphere, L2A bottom of atmosphere) per pixel:

    rho = (DN + offset) / Q

with Q the product's QUANTIFICATION_VALUE (L1C) or BOA_QUANTIFICATION_VALUE (L2A) and
the offset its RADIO_ADD_OFFSET (L1C) or BOA_ADD_OFFSET (L2A) of the band, applied only
when the product's PROCESSING_BASELINE is 04.00 or later (ESA, "Copernicus Sentinel-2:
Processing Baseline 04.00 ... radiometric offset", Sentinel Online, 2022-01; ESA,
Sentinel-2 Products Specification Document S2-PDGS-TAS-DI-PSD v14.9, "Product Image
Characteristics"). DN 0 is NODATA and 65535 SATURATED (the product's Special_Values).
The baseline is read from the product, never guessed from a date.

Bands are resampled onto one of the tile's grids (10, 20 or 60 m, sentinel2_resample),
masks come from SCL (L2A) or the L1C cloud masks (sentinel2_masks), and the scene is
written in row blocks by band_stack.write_stack. Every band file the product lists is
checked before any pixel is read: GDAL reads a missing or short JP2 inside a SAFE as
zeros without an error.
"""

from __future__ import annotations

import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.windows import Window

from sipd.contracts.options.sentinel2 import BAND_IDS, S2_BANDS, Sentinel2Options
from sipd.contracts.preprocessing import PreprocessStep
from sipd.errors import InvalidArgument
from sipd.preprocess.band_stack import RunResult, StackGrid, write_stack
from sipd.preprocess.product_files import ProductFiles, open_measurement
from sipd.preprocess.sentinel2_masks import (
    CLASSI_LAYERS,
    GML_TYPES,
    BlockMask,
    RasterMask,
    expand,
    gml_polygons,
    polygon_mask,
)
from sipd.preprocess.sentinel2_metadata import (
    PRODUCT_MTD,
    ImageFile,
    S2Product,
    TileGrid,
    open_product,
)
from sipd.preprocess.sentinel2_resample import (
    Scale,
    coarsen_mean,
    refine_bilinear,
    refine_nearest,
    source_rows,
)
from sipd.preprocess.streaming import DatasetsPerThread
from sipd.progress import JobContext

NODATA_DN = 0
SATURATED_DN = 65535
# Source rows one band read may span: a block of output rows reads at most this many
# rows of its finest band (memory ~ rows x 10980 x 4 bytes per band and block).
MAX_SOURCE_ROWS = 1024


def accepts(path: Path) -> bool:
    """A SAFE folder, its MTD_MSIL1C/2A.xml, or a zip holding one (names only)."""
    try:
        p = Path(path)
        if p.is_dir():
            return any((p / m).is_file() for m in PRODUCT_MTD)
        if p.name in PRODUCT_MTD:
            return p.is_file()
        if p.is_file() and p.suffix.lower() == ".zip" and zipfile.is_zipfile(p):
            ProductFiles.open(p, PRODUCT_MTD).close()
            return True
    except Exception:  # noqa: BLE001 - a sniff says no; the run gives the error
        return False
    return False


@dataclass(frozen=True)
class BandSource:
    """One output band: the file it is read from and how it maps to the output grid."""

    ident: str
    name: str
    image: ImageFile
    path: str
    scale: Scale
    height: int
    width: int
    offset: float


def run(
    source: Path,
    step: PreprocessStep,
    output: Path,
    ctx: JobContext,
    tags: dict[str, str],
    threads: int,
) -> RunResult:
    options = step.options
    assert isinstance(options, Sentinel2Options)
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    product = open_product(source)
    try:
        grid = _grid(product, options.resolution)
        sources = _band_sources(product, options, grid)
        mask, mask_source = _mask(product, options, grid)
        ctx.check_cancelled()
        ctx.progress("open", 0.5, "checking the product's band files")
        _check_images(product, sources, mask)
        seconds["open"] = time.perf_counter() - t
        ctx.check_cancelled()
        out_grid = StackGrid(
            grid.cols,
            grid.rows,
            product.crs,
            grid.transform,
        )
        datasets = DatasetsPerThread(opener=open_measurement)
        try:
            read_block = _block_reader(product, options, sources, mask, grid.cols, datasets)
            seconds.update(
                write_stack(
                    output,
                    out_grid,
                    [s.name for s in sources],
                    read_block,
                    ctx,
                    {**_tags(product, options, sources, mask_source), **tags},
                    threads=threads,
                    block_rows=_block_rows(sources),
                    band_tags=[_band_tags(product, options, s) for s in sources],
                )
            )
        finally:
            datasets.close()
    finally:
        product.files.close()
    f = product.fields
    sensor = f"{f['spacecraft'] or 'Sentinel-2'} MSI {product.level}"
    metadata = {
        "product": f["product_uri"],
        "processing_baseline": product.baseline,
        "tile": f["mgrs_tile"],
        "sensing_time": f["sensing_time"],
        "cloud_cover": f["cloud_cover"],
        "offset_applied": str(product.offset_applies).lower(),
        "resolution": str(options.resolution),
        "mask": ",".join(options.mask),
        "mask_source": mask_source,
    }
    return RunResult(sensor, metadata, seconds)


def _grid(product: S2Product, resolution: int) -> TileGrid:
    grid = product.grids.get(resolution)
    if grid is None or grid.rows < 1 or grid.cols < 1:
        raise InvalidArgument(
            f"the tile metadata has no {resolution} m grid; it lists "
            f"{', '.join(f'{r} m' for r in sorted(product.grids))}"
        )
    return grid


def _band_sources(
    product: S2Product, options: Sentinel2Options, grid: TileGrid
) -> list[BandSource]:
    """Each chosen band's file: L2A products hold most bands at several resolutions, and
    the file at the output resolution is read when there is one (ESA's own resampling,
    and less to decode); otherwise the band's finest file is resampled here."""
    target = options.resolution
    sources = []
    for name in options.bands:
        ident = S2_BANDS[name]
        image = product.image(ident, target) or product.image(ident)
        if image is None:
            have = sorted(
                {BAND_IDS[i.kind] for i in product.images if i.kind in BAND_IDS},
                key=list(S2_BANDS).index,
            )
            raise InvalidArgument(
                f"band {name} ({ident}) is not in this {product.level} product; it has: "
                + ", ".join(have)
            )
        sources.append(_source(product, ident, name, image, grid, target))
    return sources


def _source(
    product: S2Product, ident: str, name: str, image: ImageFile, grid: TileGrid, target: int
) -> BandSource:
    src = product.grids.get(image.resolution)
    if src is None:
        raise InvalidArgument(f"the tile metadata has no {image.resolution} m grid for {image.rel}")
    scale = Scale.between(image.resolution, target)
    _check_nesting(src, grid, scale, image.rel)
    return BandSource(
        ident,
        name,
        image,
        product.files.gdal_path(image.rel),
        scale,
        src.rows,
        src.cols,
        product.offset(ident),
    )


def _check_nesting(src: TileGrid, out: TileGrid, scale: Scale, what: str) -> None:
    """The grids must share their corner and nest exactly (10980 = 2 x 5490 = 6 x 1830)."""
    if scale.refine > 1:
        k = scale.refine
        sizes_ok = src.rows == -(-out.rows // k) and src.cols == -(-out.cols // k)
    else:
        k = scale.coarsen
        sizes_ok = src.rows == out.rows * k and src.cols == out.cols * k
    if not (sizes_ok and abs(src.ulx - out.ulx) < 1e-6 and abs(src.uly - out.uly) < 1e-6):
        raise InvalidArgument(
            f"the tile metadata's grids do not nest for {what}: {src.cols} x {src.rows} at "
            f"({src.ulx}, {src.uly}) vs the output {out.cols} x {out.rows} at "
            f"({out.ulx}, {out.uly}); the product metadata is damaged"
        )


def _mask(
    product: S2Product, options: Sentinel2Options, grid: TileGrid
) -> tuple[BlockMask | None, str]:
    names = expand(options.mask, product.level)
    if not names:
        return None, ""
    target = options.resolution
    if product.level == "L2A":
        scl = product.image("SCL", target) or product.image("SCL")
        if scl is None:
            raise InvalidArgument("this L2A product lists no SCL file; a mask cannot be made")
        codes = tuple(sorted(product.scl_legend[n] for n in names))
        return _raster_mask(product, scl.rel, scl.resolution, grid, target, codes=codes), scl.rel
    classi = product.qi_masks.get("MSK_CLASSI") or _qi(product, "MSK_CLASSI_B00.jp2")
    if classi:
        layers = tuple(CLASSI_LAYERS[n] for n in names)
        return _raster_mask(product, classi, 60, grid, target, layers=layers), classi
    clouds = product.qi_masks.get("MSK_CLOUDS") or _qi(product, "MSK_CLOUDS_B00.gml")
    if not clouds:
        raise InvalidArgument(
            "this L1C product has neither MSK_CLASSI_B00 nor MSK_CLOUDS_B00.gml; no cloud mask"
        )
    unsupported = [n for n in names if n not in GML_TYPES]
    if unsupported:
        raise InvalidArgument(
            f"mask {', '.join(unsupported)} is not available before baseline 04.00 (this "
            f"product: {product.baseline}); MSK_CLOUDS_B00.gml has: {', '.join(GML_TYPES)}"
        )
    data = product.files.read_bytes(clouds, "cloud mask")
    polygons = gml_polygons(data, {GML_TYPES[n] for n in names}, clouds)
    transform = grid.transform
    return polygon_mask(polygons, transform, grid.cols), clouds


def _qi(product: S2Product, name: str) -> str:
    rel = f"{product.granule}/QI_DATA/{name}"
    return rel if product.files.exists(rel) else ""


def _raster_mask(
    product: S2Product,
    rel: str,
    resolution: int,
    grid: TileGrid,
    target: int,
    *,
    codes: tuple[int, ...] = (),
    layers: tuple[int, ...] = (),
) -> RasterMask:
    src = product.grids.get(resolution)
    if src is None:
        raise InvalidArgument(f"the tile metadata has no {resolution} m grid for {rel}")
    scale = Scale.between(resolution, target)
    _check_nesting(src, grid, scale, rel)
    return RasterMask(
        product.files.gdal_path(rel), scale, src.rows, src.cols, grid.cols, codes, layers
    )


def _check_images(product: S2Product, sources: list[BandSource], mask: BlockMask | None) -> None:
    """Every listed band file present, readable and of the tile's size; the files read
    also decoded at their last pixel (a short JP2 fails there) and georeferenced like
    the tile metadata says."""
    used = {s.image.rel for s in sources}
    for image in product.images:
        if not product.files.exists(image.rel):
            raise InvalidArgument(
                f"Sentinel-2 product {product.files.source} is incomplete: band file {image.rel} "
                "(listed in its metadata) is missing; download the product again"
            )
        grid = product.grids.get(image.resolution)
        path = product.files.gdal_path(image.rel)
        try:
            ds = open_measurement(path)
        except InvalidArgument as exc:
            raise InvalidArgument(
                f"band file {image.rel} of Sentinel-2 product {product.files.source} is not "
                f"readable (damaged or truncated): {exc}"
            ) from exc
        with ds:
            if grid is not None and (ds.height, ds.width) != (grid.rows, grid.cols):
                raise InvalidArgument(
                    f"band file {image.rel} is {ds.width} x {ds.height} pixels; the tile "
                    f"metadata says {grid.cols} x {grid.rows} at {image.resolution} m"
                )
            if image.rel in used:
                _check_georef(product, image, ds.crs, ds.transform, grid)
                _check_decodes(ds, image.rel)
    if isinstance(mask, RasterMask):
        try:
            with open_measurement(mask.path) as ds:
                if (ds.height, ds.width) != (mask.height, mask.width):
                    raise InvalidArgument(
                        f"mask file {mask.path} is {ds.width} x {ds.height} pixels; the tile "
                        f"metadata says {mask.width} x {mask.height}"
                    )
                if mask.layers and ds.count < max(mask.layers):
                    raise InvalidArgument(
                        f"mask file {mask.path} has {ds.count} layers; MSK_CLASSI_B00 has 3 "
                        "(opaque clouds, cirrus, snow)"
                    )
                _check_decodes(ds, mask.path)
        except InvalidArgument as exc:
            if "not readable" in str(exc) or "cannot read raster" in str(exc):
                raise InvalidArgument(f"mask file {mask.path} is not readable: {exc}") from exc
            raise


def _check_georef(product: S2Product, image: ImageFile, crs, transform, grid) -> None:  # noqa: ANN001
    if crs is None or grid is None:
        return  # no georeferencing in the file: the tile metadata's is used
    expected = grid.transform
    if crs != product.crs or not transform.almost_equals(expected, precision=1e-6):
        raise InvalidArgument(
            f"band file {image.rel} is georeferenced as {crs} {tuple(transform)[:6]}, the tile "
            f"metadata says {product.crs} {tuple(expected)[:6]}; the product is inconsistent"
        )


def _check_decodes(ds, rel: str) -> None:  # noqa: ANN001
    try:
        ds.read(1, window=Window(ds.width - 1, ds.height - 1, 1, 1))
    except Exception as exc:  # noqa: BLE001 - GDAL's read errors all mean the same here
        raise InvalidArgument(
            f"band file {rel} cannot be decoded to its end (truncated or damaged): {exc}; "
            "download the product again"
        ) from exc


def _block_rows(sources: list[BandSource]) -> int:
    """Output rows per block: at most MAX_SOURCE_ROWS rows of the finest band read."""
    k = max(s.scale.coarsen for s in sources)
    return max(16, MAX_SOURCE_ROWS // k)


def reflectance(dn: np.ndarray, offset: float, quantification: float, saturated: str) -> np.ndarray:
    """(DN + offset) / Q as float32, NaN for NODATA (0) and, unless kept, SATURATED."""
    out = (dn.astype(np.float32) + np.float32(offset)) / np.float32(quantification)
    bad = dn == NODATA_DN
    if saturated == "nodata":
        bad |= dn == SATURATED_DN
    out[bad] = np.nan
    return out


def _block_reader(
    product: S2Product,
    options: Sentinel2Options,
    sources: list[BandSource],
    mask: BlockMask | None,
    width: int,
    datasets: DatasetsPerThread,
):  # noqa: ANN202
    q = product.quantification

    def read_block(r0: int, r1: int) -> np.ndarray:
        out = np.empty((len(sources), r1 - r0, width), np.float32)
        for i, s in enumerate(sources):
            s0, s1 = source_rows(s.scale, r0, r1, s.height)
            dn = datasets.get(s.path).read(1, window=Window(0, s0, s.width, s1 - s0))
            refl = reflectance(dn, s.offset, q, options.saturated)
            if s.scale.coarsen > 1:
                out[i] = coarsen_mean(refl, s.scale.coarsen)
            elif s.scale.refine > 1 and options.upsampling == "bilinear":
                out[i] = refine_bilinear(refl, s.scale.refine, r0, r1, s0, s.height, width)
            elif s.scale.refine > 1:
                out[i] = refine_nearest(refl, s.scale.refine, r0, r1, s0, width)
            else:
                out[i] = refl
        if mask is not None:
            out[:, mask.block(r0, r1, datasets)] = np.nan
        return out

    return read_block


def _tags(
    product: S2Product, options: Sentinel2Options, sources: list[BandSource], mask_source: str
) -> dict[str, str]:
    f = product.fields
    tags = {
        "S2_SPACECRAFT": f["spacecraft"],
        "S2_PRODUCT_TYPE": f["product_type"],
        "S2_PROCESSING_LEVEL": product.level,
        "S2_PROCESSING_BASELINE": product.baseline,
        "S2_PRODUCT_URI": f["product_uri"],
        "S2_SENSING_TIME": f["sensing_time"] or f["start_time"],
        "S2_TILE_ID": f["mgrs_tile"],
        "S2_GRANULE_ID": f["tile_id"],
        "S2_ORBIT_NUMBER": f["orbit_number"],
        "S2_ORBIT_DIRECTION": f["orbit_direction"],
        "S2_CLOUD_COVER": f["cloud_cover"],
        "S2_SUN_ZENITH_MEAN": f["sun_zenith_mean"],
        "S2_SUN_AZIMUTH_MEAN": f["sun_azimuth_mean"],
        "S2_QUANTIFICATION_VALUE": f"{product.quantification:g}",
        "S2_OFFSET_APPLIED": str(product.offset_applies).lower(),
        "S2_OFFSETS": ",".join(f"{s.name}={s.offset:g}" for s in sources),
        "S2_RESOLUTION": str(options.resolution),
        "S2_UPSAMPLING": options.upsampling,
        "S2_SATURATED": options.saturated,
        "SIPD_MASK": ",".join(options.mask),
    }
    if mask_source:
        tags["S2_MASK_SOURCE"] = mask_source.rsplit("/", 1)[-1]
    return {k: v for k, v in tags.items() if v}  # GDAL keeps no empty tag


def _band_tags(product: S2Product, options: Sentinel2Options, s: BandSource) -> dict[str, str]:
    resampling = options.upsampling if s.scale.name == "refine" else s.scale.name
    tags = {
        "common_name": s.name,
        "band_id": s.ident,
        "source_resolution": str(s.image.resolution),
        "resampling": resampling,
        "offset": f"{s.offset:g}",
        "quantification": f"{product.quantification:g}",
    }
    if s.ident in product.wavelengths:
        tags["wavelength"] = f"{product.wavelengths[s.ident]:g}"
    return tags
