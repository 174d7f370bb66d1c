"""RADARSAT Constellation Mission (RCM) detected products (GRD, GCD) as a SarProduct.

Calibration (RCM Product Format Definition, RCM-SP-53-0419, Issue 2/5,
January 2, 2018, section 7 "Calibration", p. 7-56, as quoted in GDAL's
frmts/rcm/rcmdataset.cpp; the PDF itself was not reachable): "For detected
products, in order to convert the digital number of a given range sample to
a calibrated value, the digital value is first squared, then the offset (B)
is added and the result is divided by the gains value (A) corresponding to
the range sample":

    calibrated(j) = (DN(j)^2 + B) / A(j)

The LUT (metadata/calibration/lut{Beta,Sigma,Gamma}_{pol}.xml, named per pole
and sarCalibrationType by <lookupTableFileName> in product.xml) holds
<offset> B and <gains>; "the range sample index = gains entry index *
stepSize + pixelFirstLutValue, where the gains entry index starts with 0"
(same document, quoted in GDAL's ReadLUT). stepSize may be negative: the
entries then run from far to near range in image columns. Gains are linearly
interpolated between the sampled columns and held constant beyond the ends.
(GDAL's own InterpolateValues ignores pixelFirstLutValue when stepSize < 0
and builds the table from column 0; we follow the documented mapping.)

In the SarProduct form value = (DN^2 - N) * K: K = 1/A(j), N = -B.

Noise: metadata/calibration/noiseLevels_{pol}.xml holds <referenceNoiseLevel>
per sarCalibrationType, noise-equivalent levels in dB of that quantity at
columns pixelFirstNoiseValue + k * stepSize (same mapping). They are
interpolated in dB, converted to linear power and subtracted from the
calibrated value: N = noise_lin * A(j) - B.

Tie points (imageReferenceAttributes/geographicInformation/geolocationGrid):
zero-based sample indices, so Gcp = (line + 0.5, pixel + 0.5) as in GDAL's
RCM driver. Incidence angles come from incidenceAngles.xml (angles at columns
pixelFirstAnglesValue + k * stepSize), interpolated at each tie point's pixel.
"""

from __future__ import annotations

import os
import posixpath
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sipd.errors import InvalidArgument
from sipd.preprocess import sar_xml as sx
from sipd.preprocess.product_files import ProductFiles
from sipd.preprocess.sar_product import Gcp, Quantity, SarBand, SarProduct

DETECTED_TYPES = ("GRD", "GCD")
COMPLEX_TYPES = ("SLC", "GRC", "GCC")
PRODUCT_XML = "metadata/product.xml"
CALIBRATION = "metadata/calibration"


def open_rcm(path: str | os.PathLike[str], polarisations: list[str] | None = None) -> SarProduct:
    """An RCM product: its folder (manifest.safe, metadata/), metadata/product.xml, or the zip."""
    p = Path(path)
    if p.is_file() and p.name.lower() == "product.xml":
        # metadata/product.xml: the product root is the folder above metadata/.
        p = p.parent.parent if p.parent.name == "metadata" else p.parent
    files = ProductFiles.open(p, ("manifest.safe", "product.xml"))
    try:
        return _read(files, str(path), polarisations)
    finally:
        files.close()


def _read(files: ProductFiles, source: str, polarisations: list[str] | None) -> SarProduct:
    # An RS2 product (product.xml at the root) reaches the mission check below.
    xml_rel = PRODUCT_XML if files.exists(PRODUCT_XML) else "product.xml"
    root = sx.parse(files.read_bytes(xml_rel, "metadata file"), f"{source} {xml_rel}")
    satellite = sx.text(root, "sourceAttributes/satellite", "") or ""
    if not satellite.upper().startswith("RCM"):
        hint = "; open it as a RADARSAT-2 product" if satellite.upper() == "RADARSAT-2" else ""
        raise InvalidArgument(
            f"{source} is a {satellite or 'unnamed-mission'} product, not RCM{hint}"
        )
    product_type = sx.text(root, "generalProcessingInformation/productType", "") or ""
    sample_type = sx.text(root, "rasterAttributes/sampleType", "") or ""
    if product_type.upper() in COMPLEX_TYPES or "complex" in sample_type.lower():
        raise InvalidArgument(
            f"{source} is a complex RCM product ({product_type}, {sample_type or 'Complex'}); "
            f"only detected products ({', '.join(DETECTED_TYPES)}) are supported"
        )
    if product_type.upper() not in DETECTED_TYPES:
        raise InvalidArgument(
            f"{source} has RCM productType {product_type!r}; supported: {', '.join(DETECTED_TYPES)}"
        )

    lines = int(sx.number(sx.text(root, "imageAttributes/numLines"), "numLines", source))
    pixels = int(
        sx.number(sx.text(root, "imageAttributes/samplesPerLine"), "samplesPerLine", source)
    )

    poles_text = sx.text(root, "generalProcessingInformation/polarizationsInProduct") or sx.text(
        root, "radarParameters/polarizations", ""
    )
    poles = [p.upper() for p in (poles_text or "").split()]
    images = _images(root, files, poles)
    if not images:
        raise InvalidArgument(f"{source}: product.xml names no imagery (ipdf) for any polarisation")
    wanted = sx.select(images, polarisations, source)

    read = [xml_rel]
    bands: list[SarBand] = []
    for pole in wanted:
        rel = images[pole]
        sx.check_raster(files, rel, lines, pixels, source)
        read.append(rel)
        luts, lut_rels = _lut_builders(root, files, pole, source, pixels)
        noise, noise_rel, note = _noise_builders(root, files, pole, source, pixels)
        read += [r for r in [*lut_rels, noise_rel] if r and files.exists(r)]
        bands.append(
            SarBand(
                polarisation=pole,
                measurement=files.gdal_path(rel),
                radiometry=sx.RangeRadiometry(
                    source=source,
                    polarisation=pole,
                    width=pixels,
                    lut_builders=luts,
                    noise_builders=noise,
                    noise_note=note,
                ),
            )
        )

    angles = _incidence(root, files, source, pixels)
    if angles is not None:
        read.append(angles[0])
    gcps = _gcps(root, source, angles[1] if angles else None)

    rg = sx.optional_number(sx.text(root, "rasterAttributes/sampledPixelSpacing"))
    az = sx.optional_number(sx.text(root, "rasterAttributes/sampledLineSpacing"))
    md: dict[str, str] = {
        "mission": satellite,
        "mode": sx.text(root, "sourceAttributes/beamModeMnemonic")
        or sx.text(root, "sourceAttributes/beamMode", "")
        or "",
        "product_type": product_type,
        "polarisations": ",".join(poles or list(images)),
    }
    near = sx.optional_number(sx.text(root, "imageAttributes/incAngNearRng"))
    far = sx.optional_number(sx.text(root, "imageAttributes/incAngFarRng"))
    if (near is None or far is None) and angles is not None:
        # Placeholders or absent in product.xml: the angle table's ends are near and far range.
        near, far = float(np.min(angles[2])), float(np.max(angles[2]))
    md |= sx.acquisition(root, near, far, rg, az)
    return SarProduct(
        sensor="rcm",
        source=source,
        lines=lines,
        pixels=pixels,
        bands=bands,
        gcps=gcps,
        metadata=md,
        pixel_spacing=(rg, az) if rg and az else (10.0, 10.0),
        files=sx.plain_files(files, read),
    )


def _images(root: ET.Element, files: ProductFiles, poles: list[str]) -> dict[str, str]:
    """pole -> measurement path relative to the product root."""
    out: dict[str, str] = {}
    for el in sx.all_named(root, "ipdf"):
        pole = (el.get("pole") or "").strip().upper()
        if pole and el.text and el.text.strip():
            # ipdf is relative to metadata/ ("../imagery/VH.tif").
            out[pole] = posixpath.normpath(posixpath.join("metadata", el.text.strip()))
    for pole in poles:
        # Products without ipdf keep the documented layout imagery/<pol>.tif.
        out.setdefault(pole, f"imagery/{pole}.tif")
    return out


def _lut_builders(
    root: ET.Element, files: ProductFiles, pole: str, source: str, width: int
) -> tuple[dict[Quantity, Callable[[], sx.Lut]], list[str]]:
    builders: dict[Quantity, Callable[[], sx.Lut]] = {}
    rels: list[str] = []
    for el in sx.all_named(root, "lookupTableFileName"):
        if (el.get("pole") or "").strip().upper() != pole or not (el.text or "").strip():
            continue
        quantity = sx.quantity_of(el.get("sarCalibrationType"))
        if quantity is None:
            continue
        rel = f"{CALIBRATION}/{el.text.strip()}"  # type: ignore[union-attr]
        rels.append(rel)
        # Read now (the archive is closed after opening); a missing file errors on use only:
        # GDAL's own test product lists lutSigma_VH.xml without shipping it.
        data = files.read_bytes(rel, "LUT") if files.exists(rel) else None

        def build(rel: str = rel, data: bytes | None = data) -> sx.Lut:
            if data is None:
                raise InvalidArgument(
                    f"product {source} is incomplete: LUT {rel} is listed in product.xml "
                    "but missing"
                )
            lut = sx.parse(data, f"{source} {rel}")
            gains = sx.floats(sx.text(lut, "gains"), f"{rel} gains", source)
            count = sx.optional_number(sx.text(lut, "numberOfValues"))
            if count is not None and int(count) != gains.size:
                raise InvalidArgument(
                    f"product {source}: {rel} says {int(count)} values but holds {gains.size}"
                )
            first = sx.number(
                sx.text(lut, "pixelFirstLutValue"), f"{rel} pixelFirstLutValue", source
            )
            step = sx.number(sx.text(lut, "stepSize"), f"{rel} stepSize", source)
            offset = sx.number(sx.text(lut, "offset", "0"), f"{rel} offset", source)
            if not np.all(gains > 0):
                raise InvalidArgument(f"product {source}: {rel} holds gains <= 0")
            return sx.Lut(sx.range_vector(first, step, gains, width, rel, source), offset)

        builders[quantity] = build
    return builders, rels


def _noise_builders(
    root: ET.Element, files: ProductFiles, pole: str, source: str, width: int
) -> tuple[dict[Quantity, Callable[[], np.ndarray]], str | None, str]:
    rel = None
    for el in sx.all_named(root, "noiseLevelFileName"):
        if (el.get("pole") or "").strip().upper() == pole and (el.text or "").strip():
            rel = f"{CALIBRATION}/{el.text.strip()}"  # type: ignore[union-attr]
    if rel is None:
        return {}, None, ""
    if not files.exists(rel):
        return {}, rel, f"noise file {rel} is listed in product.xml but missing"
    doc = sx.parse(files.read_bytes(rel, "noise levels"), f"{source} {rel}")
    builders: dict[Quantity, Callable[[], np.ndarray]] = {}
    # Only the whole-swath referenceNoiseLevel; perBeamReferenceNoiseLevel is per ScanSAR beam.
    for ref in sx.children(doc, "referenceNoiseLevel"):
        quantity = sx.quantity_of(sx.text(ref, "sarCalibrationType"))
        if quantity is None:
            continue

        def build(ref: ET.Element = ref, what: str = f"{rel} {quantity}") -> np.ndarray:
            first = sx.number(sx.text(ref, "pixelFirstNoiseValue"), f"{what} first", source)
            step = sx.number(sx.text(ref, "stepSize"), f"{what} stepSize", source)
            values = sx.floats(sx.text(ref, "noiseLevelValues"), f"{what} values", source)
            # Interpolated in dB (a smooth curve there), then to linear power for subtraction.
            return sx.db_to_linear(sx.range_vector(first, step, values, width, what, source))

        builders[quantity] = build
    return builders, rel, ""


def _incidence(
    root: ET.Element, files: ProductFiles, source: str, width: int
) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(file, angle per column, the table's values) from incidenceAngles.xml, if present."""
    name = sx.text(root, "imageReferenceAttributes/incidenceAngleFileName")
    if not name:
        return None
    rel = f"{CALIBRATION}/{name}"
    if not files.exists(rel):
        return None  # only metadata depends on it; the product still calibrates
    doc = sx.parse(files.read_bytes(rel, "incidence angles"), f"{source} {rel}")
    first = sx.number(sx.text(doc, "pixelFirstAnglesValue"), f"{rel} pixelFirstAnglesValue", source)
    step = sx.number(sx.text(doc, "stepSize"), f"{rel} stepSize", source)
    values = sx.floats(sx.text(doc, "angles"), f"{rel} angles", source)
    return rel, sx.range_vector(first, step, values, width, rel, source), values


def _gcps(root: ET.Element, source: str, angles: np.ndarray | None) -> list[Gcp]:
    out: list[Gcp] = []
    for tp in sx.all_named(root, "imageTiePoint"):
        line = sx.number(sx.text(tp, "imageCoordinate/line"), "tie point line", source)
        pixel = sx.number(sx.text(tp, "imageCoordinate/pixel"), "tie point pixel", source)
        lat = sx.number(sx.text(tp, "geodeticCoordinate/latitude"), "tie point latitude", source)
        lon = sx.number(sx.text(tp, "geodeticCoordinate/longitude"), "tie point longitude", source)
        height = sx.optional_number(sx.text(tp, "geodeticCoordinate/height")) or 0.0
        incidence = sx.optional_number(sx.text(tp, "incidenceAngle"))
        if incidence is None and angles is not None and angles.size:
            # Angles are per column (sample index); interpolate at the tie point's sample.
            incidence = float(np.interp(pixel, np.arange(angles.size), angles))
        out.append(
            Gcp(line=line + 0.5, pixel=pixel + 0.5, lon=lon, lat=lat, height=height,
                incidence=incidence)
        )  # fmt: skip
    return out
