"""RADARSAT-2 detected products (SGF, SGX, SCN, SCW, SSG, SPG) as a SarProduct.

Calibration (RADARSAT-2 Product Format Definition, RN-RP-51-2713, section
"Calibration"/"Lookup Tables"): for detected data

    calibrated(j) = (DN(j)^2 + A0) / A(j)

with A0 the LUT's <offset> and A(j) its <gains> entry for range sample j, one
entry per sample of the line. lutSigma.xml / lutBeta.xml / lutGamma.xml are
named by <lookupTable incidenceAngleCorrection="..."> in product.xml. In the
SarProduct form value = (DN^2 - N) * K this is K = 1/A(j), N = -A0.
(The PDF itself was not reachable when this was written; the formula is the
one GDAL's frmts/rs2/rs2dataset.cpp applies to detected data, and SigLib's.)

GDAL's RS2 driver is not used for values: GDAL 3.10's calibrated subdataset
applies the wrong gain per column on tiled TIFFs; the LUT XML is read here.

Noise: product.xml's <referenceNoiseLevel incidenceAngleCorrection="..."> gives
noise-equivalent levels in dB of the calibrated quantity at range samples
pixelFirstNoiseValue + k * stepSize. They are interpolated linearly in dB onto
every sample, converted to linear power and subtracted from the calibrated
value: N = noise_lin * A(j) - A0, so (DN^2 - N) * K = (DN^2 + A0)/A(j) - noise_lin.

Range direction: the LUT and noise vectors run in increasing range time.
When rasterAttributes/pixelTimeOrdering is "Decreasing" the image columns run
the other way (far range first), so both vectors are reversed before being
applied to image column j. This is what SigLib (Carleton University's
RADARSAT tools, metadata.py: "calgain[::-1] ... REVERSE!!") does; the line
ordering does not matter, both vectors vary by range only.

Tie points: <imageTiePoint><imageCoordinate> gives zero-based line/pixel
sample indices, i.e. the centre of the sample, so the Gcp (whose (0, 0) is
the top-left corner of the first pixel) is (line + 0.5, pixel + 0.5). GDAL's
RS2 and RCM drivers read them the same way (`imageCoordinate.pixel + 0.5`).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np

from sipd.errors import InvalidArgument
from sipd.preprocess import sar_xml as sx
from sipd.preprocess.product_files import ProductFiles
from sipd.preprocess.sar_product import Gcp, Quantity, SarBand, SarProduct

# Detected product types the RS2 processor delivers (product format definition, table of
# product types); SLC is complex and calibrates differently (|DN|^2 / A^2).
DETECTED_TYPES = ("SGF", "SGX", "SCN", "SCW", "SSG", "SPG")


def open_radarsat2(
    path: str | os.PathLike[str], polarisations: list[str] | None = None
) -> SarProduct:
    """A RADARSAT-2 product: its folder, its product.xml, or the zip as delivered."""
    p = Path(path)
    # An RCM folder (metadata/product.xml) given here: read it so the error names the mission.
    if p.is_dir() and not (p / "product.xml").is_file() and (p / "metadata/product.xml").is_file():
        p = p / "metadata" / "product.xml"
    files = ProductFiles.open(p, ("product.xml",))
    try:
        return _read(files, str(path), polarisations)
    finally:
        files.close()


def check_mission(satellite: str, source: str) -> None:
    if satellite.strip().upper() != "RADARSAT-2":
        hint = "; open it as an RCM product" if satellite.upper().startswith("RCM") else ""
        raise InvalidArgument(
            f"{source} is a {satellite or 'unnamed-mission'} product, not RADARSAT-2{hint}"
        )


def check_product_type(product_type: str, data_type: str | None, source: str) -> None:
    kind = product_type.strip().upper()
    if kind == "SLC" or (data_type or "").strip().lower() == "complex":
        raise InvalidArgument(
            f"{source} is a single-look complex (SLC) RADARSAT-2 product; only detected "
            f"products ({', '.join(DETECTED_TYPES)}) are supported"
        )
    if kind not in DETECTED_TYPES:
        raise InvalidArgument(
            f"{source} has RADARSAT-2 productType {product_type!r}; supported: "
            f"{', '.join(DETECTED_TYPES)}"
        )


def _read(files: ProductFiles, source: str, polarisations: list[str] | None) -> SarProduct:
    root = sx.parse(files.read_bytes("product.xml", "metadata file"), f"{source} product.xml")
    if sx.local(root.tag) != "product":
        raise InvalidArgument(f"{source}: product.xml is not a RADARSAT-2 product description")
    check_mission(sx.text(root, "sourceAttributes/satellite", "") or "", source)
    product_type = sx.text(root, "generalProcessingInformation/productType", "") or ""
    check_product_type(product_type, sx.text(root, "rasterAttributes/dataType"), source)

    lines = int(sx.number(sx.text(root, "rasterAttributes/numberOfLines"), "numberOfLines", source))
    pixels = int(
        sx.number(
            sx.text(root, "rasterAttributes/numberOfSamplesPerLine"),
            "numberOfSamplesPerLine",
            source,
        )
    )
    pixel_order = (sx.text(root, "rasterAttributes/pixelTimeOrdering", "Increasing") or "").lower()
    if pixel_order not in ("increasing", "decreasing"):
        raise InvalidArgument(
            f"{source}: pixelTimeOrdering {pixel_order!r} is neither Increasing nor Decreasing"
        )
    reverse = pixel_order == "decreasing"

    # pole -> measurement file, in product order.
    images: dict[str, str] = {}
    for el in sx.all_named(root, "fullResolutionImageData"):
        pole = (el.get("pole") or "").strip().upper()
        if pole and el.text and el.text.strip():
            images[pole] = el.text.strip()
    if not images:
        raise InvalidArgument(f"{source}: product.xml lists no fullResolutionImageData")
    wanted = sx.select(images, polarisations, source)

    lut_builders = _lut_builders(root, files, source, pixels, reverse)
    noise_builders = _noise_builders(root, source, pixels, reverse)

    bands: list[SarBand] = []
    read: list[str] = ["product.xml"]
    for pole in wanted:
        rel = images[pole]
        sx.check_raster(files, rel, lines, pixels, source)
        read.append(rel)
        bands.append(
            SarBand(
                polarisation=pole,
                measurement=files.gdal_path(rel),
                radiometry=sx.RangeRadiometry(
                    source=source,
                    polarisation=pole,
                    width=pixels,
                    lut_builders=lut_builders,
                    noise_builders=noise_builders,
                ),
            )
        )
    read += [rel for rel in _lut_files(root).values() if files.exists(rel)]

    rg = sx.optional_number(sx.text(root, "rasterAttributes/sampledPixelSpacing"))
    az = sx.optional_number(sx.text(root, "rasterAttributes/sampledLineSpacing"))
    metadata = _metadata(root, product_type, list(images), rg, az)
    return SarProduct(
        sensor="radarsat2",
        source=source,
        lines=lines,
        pixels=pixels,
        bands=bands,
        gcps=_gcps(root, source),
        metadata=metadata,
        pixel_spacing=(rg, az) if rg and az else (10.0, 10.0),
        files=sx.plain_files(files, read),
    )


def _lut_files(root: ET.Element) -> dict[Quantity, str]:
    out: dict[Quantity, str] = {}
    for el in sx.all_named(root, "lookupTable"):
        quantity = sx.quantity_of(el.get("incidenceAngleCorrection"))
        if quantity is not None and el.text and el.text.strip():
            out[quantity] = str(PurePosixPath(el.text.strip()))
    return out


def _lut_builders(
    root: ET.Element, files: ProductFiles, source: str, width: int, reverse: bool
) -> dict[Quantity, Callable[[], sx.Lut]]:
    builders: dict[Quantity, Callable[[], sx.Lut]] = {}
    for quantity, rel in _lut_files(root).items():
        # Read now (the archive is closed after opening); a missing file errors on use only,
        # so a product lacking lutGamma.xml still gives sigma0.
        data = files.read_bytes(rel, "LUT") if files.exists(rel) else None

        def build(rel: str = rel, data: bytes | None = data) -> sx.Lut:
            if data is None:
                raise InvalidArgument(
                    f"product {source} is incomplete: LUT {rel} is listed in product.xml "
                    "but missing"
                )
            lut = sx.parse(data, f"{source} {rel}")
            gains = sx.floats(sx.text(lut, "gains"), f"{rel} gains", source)
            offset = sx.number(sx.text(lut, "offset", "0"), f"{rel} offset", source)
            if gains.size != width:
                raise InvalidArgument(
                    f"product {source}: {rel} has {gains.size} gains for {width} range samples"
                )
            if not np.all(gains > 0):
                raise InvalidArgument(f"product {source}: {rel} holds gains <= 0")
            return sx.Lut(gains[::-1].copy() if reverse else gains, offset)

        builders[quantity] = build
    return builders


def _noise_builders(
    root: ET.Element, source: str, width: int, reverse: bool
) -> dict[Quantity, Callable[[], np.ndarray]]:
    builders: dict[Quantity, Callable[[], np.ndarray]] = {}
    for el in sx.all_named(root, "referenceNoiseLevel"):
        quantity = sx.quantity_of(el.get("incidenceAngleCorrection"))
        if quantity is None:
            continue

        def build(el: ET.Element = el, quantity: Quantity = quantity) -> np.ndarray:
            what = f"{quantity} referenceNoiseLevel"
            first = sx.number(sx.text(el, "pixelFirstNoiseValue"), f"{what} pixelFirst", source)
            step = sx.number(sx.text(el, "stepSize"), f"{what} stepSize", source)
            values = sx.floats(sx.text(el, "noiseLevelValues"), f"{what} values", source)
            # Interpolated in dB (a smooth curve there), then to linear power for subtraction.
            db = sx.range_vector(first, step, values, width, what, source)
            linear = sx.db_to_linear(db)
            return linear[::-1].copy() if reverse else linear

        builders[quantity] = build
    return builders


def _gcps(root: ET.Element, source: str) -> list[Gcp]:
    out: list[Gcp] = []
    for tp in sx.all_named(root, "imageTiePoint"):
        line = sx.number(sx.text(tp, "imageCoordinate/line"), "tie point line", source)
        pixel = sx.number(sx.text(tp, "imageCoordinate/pixel"), "tie point pixel", source)
        lat = sx.number(sx.text(tp, "geodeticCoordinate/latitude"), "tie point latitude", source)
        lon = sx.number(sx.text(tp, "geodeticCoordinate/longitude"), "tie point longitude", source)
        height = sx.optional_number(sx.text(tp, "geodeticCoordinate/height")) or 0.0
        out.append(Gcp(line=line + 0.5, pixel=pixel + 0.5, lon=lon, lat=lat, height=height))
    return out


def _metadata(
    root: ET.Element,
    product_type: str,
    poles: list[str],
    rg: float | None,
    az: float | None,
) -> dict[str, str]:
    md: dict[str, str] = {
        "mission": sx.text(root, "sourceAttributes/satellite", "") or "",
        "mode": sx.text(root, "sourceAttributes/beamModeMnemonic", "") or "",
        "product_type": product_type,
        "polarisations": ",".join(poles),
    }
    near = sx.optional_number(sx.text(root, "sarProcessingInformation/incidenceAngleNearRange"))
    far = sx.optional_number(sx.text(root, "sarProcessingInformation/incidenceAngleFarRange"))
    return md | sx.acquisition(root, near, far, rg, az)
