"""Options of the SAR preprocessors (Sentinel-1, RADARSAT-2, RCM)."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from sipd.contracts.base import Contract
from sipd.contracts.options import text_list

POLARISATIONS = ("HH", "HV", "VH", "VV")
# Speckle filters sipd.preprocess.speckle implements (a test keeps the two in step).
SPECKLE_KINDS = ("none", "boxcar", "lee", "refined-lee")

_LOOKS = re.compile(r"^\s*(\d{1,2})\s*(?:[xX]\s*(\d{1,2}))?\s*$")
_SPECKLE = re.compile(r"^\s*([a-z-]+)\s*(?::\s*(\d{1,2}))?\s*$")


class SarOptions(Contract):
    """Options of the SAR preprocessors (Sentinel-1, RADARSAT-2, RCM)."""

    PATH_OPTIONS: ClassVar[tuple[str, ...]] = ("dem",)

    polarisations: list[str] = Field(
        default=[], description="bands to make, e.g. HH,HV; empty = every polarisation present"
    )
    calibration: Literal["sigma0", "gamma0", "beta0"] = Field(
        default="sigma0", description="radiometric quantity: sigma0, gamma0 or beta0"
    )
    noise_removal: bool = Field(
        default=True, description="subtract the product's thermal noise (range and azimuth)"
    )
    noise_floor_db: float = Field(
        default=-40.0,
        ge=-80.0,
        le=0.0,
        description="floor, in dB, for values that go to or below zero after noise removal",
    )
    border_noise: bool = Field(
        default=False,
        description="blank the low-DN border noise at the near and far range edges",
    )
    multilook: str = Field(
        default="1x1", description="looks as AZIMUTHxRANGE, e.g. 2x2; block mean of intensity"
    )
    speckle: str = Field(
        default="none",
        description="speckle filter KIND[:SIZE]: none, boxcar, lee, refined-lee (refined-lee:7)",
    )
    db: bool = Field(default=True, description="write 10*log10 of the intensity")
    incidence_band: bool = Field(
        default=False, description="add a band with the incidence angle (degrees)"
    )
    crs: str = Field(
        default="auto",
        description="output CRS (EPSG:3413, ...); auto = UTM zone of the scene centre; "
        "none = radar geometry with GCPs",
    )
    resolution: float = Field(
        default=0.0,
        ge=0.0,
        description="output pixel size in CRS units; 0 = the multilooked pixel spacing",
    )
    dem: str = Field(
        default="",
        description="DEM raster for terrain correction (Sentinel-1; range-Doppler with the "
        "orbit, sarsen); empty = geocode on the ellipsoid heights of the geolocation grid",
    )
    resampling: Literal["bilinear", "nearest"] = Field(
        default="bilinear", description="resampling when geocoding: bilinear or nearest"
    )

    @field_validator("polarisations", mode="before")
    @classmethod
    def _polarisations(cls, value: Any) -> list[str]:
        value = text_list(value)
        out = []
        for p in value or []:
            pol = str(p).strip().upper()
            if pol not in POLARISATIONS:
                raise ValueError(f"polarisation {p!r} is not one of {', '.join(POLARISATIONS)}")
            if pol not in out:
                out.append(pol)
        return out

    @field_validator("multilook")
    @classmethod
    def _multilook(cls, value: str) -> str:
        m = _LOOKS.match(value)
        if not m or int(m.group(1)) < 1 or int(m.group(2) or m.group(1)) < 1:
            raise ValueError(
                f"multilook {value!r} is not AZIMUTHxRANGE looks (1-99 each), e.g. 2x2 or 4x1"
            )
        return f"{int(m.group(1))}x{int(m.group(2) or m.group(1))}"

    @field_validator("speckle")
    @classmethod
    def _speckle(cls, value: str) -> str:
        m = _SPECKLE.match(value.lower())
        if not m or m.group(1) not in SPECKLE_KINDS:
            raise ValueError(
                f"speckle {value!r} is not KIND[:SIZE] with KIND one of "
                f"{', '.join(SPECKLE_KINDS)} and an odd SIZE, e.g. refined-lee:7"
            )
        kind, size = m.group(1), int(m.group(2) or 7)
        if kind == "none":
            return "none"
        smallest = 5 if kind == "refined-lee" else 3
        if size < smallest or size > 31 or size % 2 == 0:
            raise ValueError(
                f"speckle window {size} for {kind} must be odd, {smallest} to 31, e.g. {kind}:7"
            )
        return f"{kind}:{size}"

    @field_validator("crs")
    @classmethod
    def _crs(cls, value: str) -> str:
        text = value.strip()
        return text.lower() if text.lower() in ("auto", "none", "") else text

    @property
    def looks(self) -> tuple[int, int]:
        az, rg = self.multilook.split("x")
        return int(az), int(rg)

    def band_names(self, polarisations: list[str]) -> list[str]:
        """The output's band names for these polarisations: "HH_sigma0_dB", ...,
        then "incidence_angle" when asked for."""
        suffix = "_dB" if self.db else ""
        names = [f"{p}_{self.calibration}{suffix}" for p in polarisations]
        return names + (["incidence_angle"] if self.incidence_band else [])

    @property
    def speckle_filter(self) -> tuple[str, int]:
        if self.speckle == "none":
            return "none", 0
        kind, size = self.speckle.split(":")
        return kind, int(size)

    def output_bands(self) -> list[str]:
        # Without polarisations the product decides which bands there are.
        return self.band_names(self.polarisations) if self.polarisations else []
