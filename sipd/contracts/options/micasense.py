"""Options of the micasense preprocessor (drone multispectral captures, one frame per band)."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from sipd.contracts.base import Contract
from sipd.contracts.options import text_list

# Classes `mask` may name (sipd.preprocess.micasense applies them).
MASK_CLASSES = ("saturated",)
# An output band name: the band's slug and its central wavelength, e.g. "red_668nm".
_BAND_NAME = re.compile(r"^[a-z][a-z0-9]*_\d+nm$")
_BAND_SLUG = re.compile(r"^[a-z][a-z0-9]*$")


class MicasenseOptions(Contract):
    """Options of the micasense preprocessor."""

    PATH_OPTIONS: ClassVar[tuple[str, ...]] = ("panel",)

    reflectance: Literal["auto", "panel", "dls", "radiance"] = Field(
        default="auto",
        description="what the bands hold: panel = reflectance albedo * L / mean panel L; "
        "dls = reflectance pi * L / the light sensor's irradiance (not corrected for sun "
        "angle or sensor tilt); radiance = L in W/m2/sr/nm; auto = panel if `panel` is "
        "given, else dls",
    )
    panel: str = Field(
        default="",
        description="the calibration-panel capture: one of its frames (the others are found "
        "beside it by their IMG_xxxx_ prefix) or a folder holding its frames",
    )
    panel_albedo: list[float] = Field(
        default=[],
        description="the panel's reflectance (0-1) from its calibration card: one value for "
        "every band, or one per band in band-number order, e.g. 0.49,0.49,0.49,0.49,0.49",
    )
    panel_region: list[int] = Field(
        default=[],
        description="the panel's reflective area in the panel capture as x0,y0,x1,y1 pixels "
        "of the first band's frame (x1, y1 excluded), e.g. 610,490,780,660; keep inside "
        "the panel's edges",
    )
    bands: list[str] = Field(
        default=[],
        description="bands to write, in this order: output names (red_668nm) or their "
        "name part (red, nir, rededge); empty = every band of the capture in band-number "
        "order (a thermal LWIR band is left out)",
    )
    black_level: Literal["exif", "dark_pixels"] = Field(
        default="exif",
        description="dark level subtracted from the raw values: exif = the EXIF BlackLevel "
        "mean; dark_pixels = the mean of the sensor's covered pixels (XMP DarkRowValue)",
    )
    align: Literal["affine", "translation", "none"] = Field(
        default="affine",
        description="band-to-band registration onto the first band: affine = a map fitted "
        "to the offsets of 16 tiles, translation = one sub-pixel shift per band (offsets by "
        "phase correlation of image gradients); none = frames stacked as they are",
    )
    mask: list[str] = Field(
        default=["saturated"],
        description="pixels made nodata in every band: saturated = a raw value at the "
        "sensor's maximum in any band; empty = none (pixels that a band's shift leaves "
        "without data are always nodata)",
    )

    @field_validator("panel_albedo", "panel_region", "bands", "mask", mode="before")
    @classmethod
    def _lists_from_text(cls, value: Any) -> Any:
        return text_list(value)

    @field_validator("panel_albedo")
    @classmethod
    def _albedo(cls, value: list[float]) -> list[float]:
        for v in value:
            if not 0.0 < v <= 1.0:
                raise ValueError(
                    f"panel_albedo {v} is not a reflectance between 0 and 1 (exclusive of 0); "
                    "give the values from the panel's calibration card, e.g. 0.49"
                )
        return value

    @field_validator("panel_region")
    @classmethod
    def _region(cls, value: list[int]) -> list[int]:
        if not value:
            return value
        if len(value) != 4:
            raise ValueError(
                f"panel_region has {len(value)} numbers; it takes 4 pixels x0,y0,x1,y1, "
                "e.g. 610,490,780,660"
            )
        x0, y0, x1, y1 = value
        if min(value) < 0 or x1 <= x0 or y1 <= y0:
            raise ValueError(
                f"panel_region {','.join(map(str, value))} is not x0,y0,x1,y1 with "
                "0 <= x0 < x1 and 0 <= y0 < y1"
            )
        return value

    @field_validator("bands")
    @classmethod
    def _bands(cls, value: list[str]) -> list[str]:
        out = []
        for b in value:
            name = b.strip().lower()
            if not (_BAND_NAME.match(name) or _BAND_SLUG.match(name)):
                raise ValueError(
                    f"band {b!r} is neither an output band name (red_668nm) nor a band "
                    "name (red, nir, rededge, blue, green)"
                )
            if name in out:
                raise ValueError(f"band {b!r} is named twice")
            out.append(name)
        return out

    @field_validator("mask")
    @classmethod
    def _mask(cls, value: list[str]) -> list[str]:
        out = []
        for m in value:
            name = m.strip().lower()
            if name not in MASK_CLASSES:
                raise ValueError(f"mask class {m!r} is not one of {', '.join(MASK_CLASSES)}")
            if name not in out:
                out.append(name)
        return out

    @property
    def method(self) -> str:
        """The reflectance method that runs: panel, dls or radiance. (reflectance=panel
        without a panel is refused when a job runs, not here: a recipe may leave the
        panel to each run's options.)"""
        if self.reflectance == "auto":
            return "panel" if self.panel else "dls"
        return self.reflectance

    def output_bands(self) -> list[str]:
        # Only full names fix the output ("red" alone leaves the wavelength to the files).
        if self.bands and all(_BAND_NAME.match(b) for b in self.bands):
            return list(self.bands)
        return []
