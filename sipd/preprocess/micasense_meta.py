"""The metadata of one MicaSense frame (one band of a capture) and its radiometric model.

A frame is a 16-bit TIFF whose calibration sits in its EXIF (ExposureTime, ISOSpeed,
BlackLevel) and XMP (MicaSense:RadiometricCalibration, Camera:VignettingCenter,
Camera:VignettingPolynomial, Camera:BandName, Camera:CentralWavelength, Camera:Irradiance).
Tags are read with tifffile (the IFDs only, no pixels) after the allowed-roots check.

The radiance model is MicaSense's published one ("RedEdge Camera Radiometric Calibration
Model", MicaSense knowledge base, support.micasense.com/hc/en-us/articles/115000351194,
which says it applies to Altum too; the same model in MicaSense's "Image Processing
Tutorials", github.com/micasense/imageprocessing, micasense/image.py `radiance()` and
`vignette()`):

    L = V(x, y) * a1 / g * (p - pBL) / (te + a2 * y - a3 * te * y)

with p and pBL the raw value and the black level normalised by 2^bits, g = ISO / 100,
te the exposure time in seconds, y the pixel row, a1..a3 the RadiometricCalibration,
and V = 1 / (1 + k0 r + k1 r^2 + ... + k5 r^6) with r the distance in pixels from the
vignetting centre. L is in W / m^2 / sr / nm.

The DLS irradiance is XMP Irradiance (or SpectralIrradiance when that is absent) times a
unit scale chosen as MicaSense's own metadata code does (micasense/imageprocessing,
micasense/metadata.py `irradiance_scale_factor()`, applied in `spectral_irradiance()`):
the XMP IrradianceScaleToSIUnits when the frame has it; else 0.01 when the frame has an
XMP HorizontalIrradiance (a DLS2, which reports uW/cm^2/nm = 0.01 W/m^2/nm); else 1
(a DLS1, already in W/m^2/nm). Frame.irradiance_source records the tag and the scale.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from sipd.errors import InvalidArgument
from sipd.raster import check_files_read

# Frames are named IMG_<capture>_<band>.tif by every MicaSense camera.
FRAME_NAME = re.compile(r"^(IMG_\d{4})_(\d{1,2})\.tif{1,2}$", re.IGNORECASE)
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"
# The thermal band of Altum cameras holds temperatures, not a radiance to calibrate.
THERMAL_BANDS = ("lwir",)


@dataclass(frozen=True)
class Frame:
    """One band of a capture: where it is, what it shows, how to calibrate it."""

    path: Path
    band_number: int  # from the file name: IMG_0001_<n>.tif
    width: int
    height: int
    bits: int
    make: str
    model: str
    serial: str
    software: str
    taken: str  # EXIF DateTimeOriginal
    capture_id: str
    flight_id: str
    band_name: str  # XMP Camera:BandName, e.g. "Red", "Red edge"
    wavelength: float  # nm
    fwhm: float  # nm
    exposure: float  # s
    gain: float  # ISO / 100
    black_level_exif: float  # mean of the EXIF BlackLevel, in raw DN
    dark_pixels: float  # mean of XMP DarkRowValue, in raw DN (NaN when absent)
    radiometric: tuple[float, float, float]  # a1, a2, a3
    vignetting_center: tuple[float, float]  # x, y pixels
    vignetting_polynomial: tuple[float, ...]  # k0..k5 (coefficients of r^1..r^6)
    irradiance: float  # DLS spectral irradiance, W/m^2/nm (NaN when absent)
    gps: tuple[float, float, float] | None  # lat, lon (degrees), altitude (m)
    # Where `irradiance` came from: "<XMP tag> * <scale> (<why that scale>)", "" if absent.
    irradiance_source: str = ""

    @property
    def slug(self) -> str:
        """The band's name part: "red", "nir", "rededge" (what follows a dash goes)."""
        return re.sub(r"[^a-z0-9]", "", self.band_name.split("-")[0].lower()) or "band"

    @property
    def output_name(self) -> str:
        return f"{self.slug}_{round(self.wavelength)}nm"

    @property
    def thermal(self) -> bool:
        return self.slug in THERMAL_BANDS

    @property
    def saturation(self) -> float:
        """Raw values at or above this are saturated: 12-bit sensors store their top
        level 4095 as 65520 in 16-bit frames, so "the maximum" is within 0.1 % of 2^bits."""
        return 0.999 * (2**self.bits - 1)

    def black_level(self, method: str) -> float:
        if method == "dark_pixels":
            if not np.isfinite(self.dark_pixels):
                raise InvalidArgument(
                    f"frame {self.path.name} has no XMP DarkRowValue; use black_level=exif"
                )
            return self.dark_pixels
        return self.black_level_exif

    def radiance(self, raw: np.ndarray, row0: int, black_level: float) -> np.ndarray:
        """Radiance (float32, W/m^2/sr/nm) of raw rows row0.. of this frame, full width.

        MicaSense's model (module docstring); negative values (dark noise below the black
        level) are clamped to 0, as MicaSense's own implementation does."""
        a1, a2, a3 = self.radiometric
        rows, cols = raw.shape
        y = np.arange(row0, row0 + rows, dtype=np.float64)[:, None]
        x = np.arange(cols, dtype=np.float64)[None, :]
        scale = float(2**self.bits)
        signal = np.maximum(raw.astype(np.float64) - black_level, 0.0) / scale
        te = self.exposure
        row_gradient = te + a2 * y - a3 * te * y
        out = self.vignetting(x, y) * (a1 / self.gain) * signal / row_gradient
        return out.astype(np.float32)

    def vignetting(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """V(x, y) = 1 / (1 + sum k_i r^(i+1)), r from the vignetting centre (pixels)."""
        cx, cy = self.vignetting_center
        r = np.hypot(x - cx, y - cy)
        # Horner: 1 + r (k0 + r (k1 + ... + r k5)).
        poly = np.zeros_like(r)
        for k in reversed(self.vignetting_polynomial):
            poly += k
            poly *= r
        poly += 1.0
        return 1.0 / poly


def read_frame(path: Path) -> Frame:
    """The metadata of one frame; InvalidArgument when it is not a MicaSense frame."""
    m = FRAME_NAME.match(path.name)
    if not m:
        raise InvalidArgument(
            f"{path.name} is not named as a MicaSense frame; accepted: IMG_<capture>_<band>.tif"
        )
    check_files_read([str(path)])
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            tags = {t.code: t.value for t in page.tags.values()}
            shape = page.shape
    except (tifffile.TiffFileError, OSError, ValueError, IndexError) as exc:
        raise InvalidArgument(f"frame {path} is not a readable TIFF: {exc}") from exc
    xmp = _xmp(tags.get(700), path)
    exif: dict[str, Any] = tags.get(34665) or {}
    if len(shape) != 2:
        raise InvalidArgument(f"frame {path.name} is not a one-band image (shape {shape})")
    irradiance, source = _irradiance(xmp, path)
    return Frame(
        path=path,
        band_number=int(m.group(2)),
        width=int(shape[1]),
        height=int(shape[0]),
        bits=int(tags.get(258, 16)),
        make=str(tags.get(271, "")).strip(),
        model=str(tags.get(272, "")).strip(),
        serial=str(exif.get("BodySerialNumber", "")).strip(),
        software=str(tags.get(305, "")).strip(),
        taken=str(exif.get("DateTimeOriginal", tags.get(306, ""))).strip(),
        capture_id=xmp.get("CaptureId", ""),
        flight_id=xmp.get("FlightId", ""),
        band_name=_need(xmp, "BandName", path),
        wavelength=_number(_need(xmp, "CentralWavelength", path), "CentralWavelength", path),
        fwhm=_number(xmp.get("WavelengthFWHM", "nan"), "WavelengthFWHM", path),
        exposure=_exposure(exif, path),
        gain=_gain(exif, path),
        black_level_exif=_black_level(tags, path),
        dark_pixels=_mean(xmp.get("DarkRowValue", [])),
        radiometric=_floats(xmp, "RadiometricCalibration", 3, path),  # type: ignore[arg-type]
        vignetting_center=_floats(xmp, "VignettingCenter", 2, path),  # type: ignore[arg-type]
        vignetting_polynomial=_floats(xmp, "VignettingPolynomial", 0, path),
        irradiance=irradiance,
        gps=_gps(tags.get(34853)),
        irradiance_source=source,
    )


def _irradiance(xmp: dict[str, Any], path: Path) -> tuple[float, str]:
    """DLS spectral irradiance in W/m^2/nm and where it came from (module docstring:
    MicaSense metadata.py irradiance_scale_factor). (NaN, "") without a DLS value."""
    key = "Irradiance" if "Irradiance" in xmp else "SpectralIrradiance"
    if key not in xmp:
        return float("nan"), ""
    value = _number(xmp[key], key, path)
    if "IrradianceScaleToSIUnits" in xmp:
        scale = _number(xmp["IrradianceScaleToSIUnits"], "IrradianceScaleToSIUnits", path)
        why = "XMP IrradianceScaleToSIUnits"
    elif "HorizontalIrradiance" in xmp:
        scale, why = 0.01, "DLS2 without IrradianceScaleToSIUnits: uW/cm2/nm"
    else:
        scale, why = 1.0, "DLS1: W/m2/nm"
    return value * scale, f"{key} * {scale!r} ({why})"


def _xmp(raw: Any, path: Path) -> dict[str, Any]:
    """XMP properties by local name: text, or a list for rdf:Seq/rdf:Bag values.
    Properties may be child elements or attributes of rdf:Description (both forms are
    valid XMP and both occur in MicaSense firmware versions)."""
    if raw is None:
        raise InvalidArgument(
            f"frame {path.name} has no XMP metadata (TIFF tag 700): not a MicaSense frame, "
            "or its metadata was stripped by another program"
        )
    text = raw if isinstance(raw, bytes) else str(raw).encode()
    start, end = text.find(b"<x:xmpmeta"), text.rfind(b"</x:xmpmeta>")
    try:
        root = ET.fromstring(text[start : end + len(b"</x:xmpmeta>")])
    except ET.ParseError as exc:
        raise InvalidArgument(f"frame {path.name} has unreadable XMP: {exc}") from exc
    out: dict[str, Any] = {}
    for desc in root.iter(f"{_RDF}Description"):
        for key, value in desc.attrib.items():
            out.setdefault(key.rpartition("}")[2], value.strip())
        for child in desc:
            name = child.tag.rpartition("}")[2]
            items = [li.text.strip() for li in child.iter(f"{_RDF}li") if li.text]
            out.setdefault(name, items if items else (child.text or "").strip())
    return out


def _need(xmp: dict[str, Any], key: str, path: Path) -> str:
    value = xmp.get(key)
    if not value or not isinstance(value, str):
        raise InvalidArgument(
            f"frame {path.name} has no XMP {key}: not a MicaSense frame with radiometric "
            "metadata (firmware 2.1 or later writes it)"
        )
    return value


def _number(text: str, key: str, path: Path) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise InvalidArgument(f"frame {path.name}: XMP {key} {text!r} is not a number") from None


def _floats(xmp: dict[str, Any], key: str, count: int, path: Path) -> tuple[float, ...]:
    value = xmp.get(key)
    if not isinstance(value, list) or (count and len(value) != count) or not value:
        raise InvalidArgument(
            f"frame {path.name} has no usable XMP {key} (expected "
            f"{count or 'a list of'} numbers): the radiometric calibration needs it"
        )
    return tuple(_number(v, key, path) for v in value)


def _mean(values: list[str]) -> float:
    try:
        return float(np.mean([float(v) for v in values])) if values else float("nan")
    except ValueError:
        return float("nan")


def _rational(value: Any) -> float:
    if isinstance(value, tuple) and len(value) == 2:
        return value[0] / value[1] if value[1] else float("nan")
    return float(value)


def _exposure(exif: dict[str, Any], path: Path) -> float:
    try:
        te = _rational(exif["ExposureTime"])
    except (KeyError, TypeError, ValueError):
        te = float("nan")
    if not te > 0:
        raise InvalidArgument(f"frame {path.name} has no valid EXIF ExposureTime")
    return te


def _gain(exif: dict[str, Any], path: Path) -> float:
    # ISO 100 is gain 1 on MicaSense cameras (their metadata.py: gain = ISO / 100).
    iso = exif.get("ISOSpeed") or exif.get("ISOSpeedRatings") or exif.get("PhotographicSensitivity")
    if isinstance(iso, tuple):
        iso = iso[0] if iso else None
    if not iso or float(iso) <= 0:
        raise InvalidArgument(f"frame {path.name} has no EXIF ISOSpeed (the sensor gain)")
    return float(iso) / 100.0


def _black_level(tags: dict[int, Any], path: Path) -> float:
    value = tags.get(50714)  # DNG BlackLevel, one value per CFA position
    if value is None:
        raise InvalidArgument(f"frame {path.name} has no EXIF BlackLevel")
    values = value if isinstance(value, tuple) else (value,)
    return float(np.mean([_rational(v) for v in values]))


def _gps(gps: Any) -> tuple[float, float, float] | None:
    if not isinstance(gps, dict):
        return None
    try:

        def degrees(v: tuple[int, ...]) -> float:
            parts = [v[i] / v[i + 1] for i in range(0, len(v), 2)]
            return parts[0] + parts[1] / 60 + parts[2] / 3600

        lat = degrees(gps["GPSLatitude"]) * (-1 if gps.get("GPSLatitudeRef") == "S" else 1)
        lon = degrees(gps["GPSLongitude"]) * (-1 if gps.get("GPSLongitudeRef") == "W" else 1)
        alt = _rational(gps.get("GPSAltitude", (0, 1)))
        return lat, lon, alt
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError):
        return None
