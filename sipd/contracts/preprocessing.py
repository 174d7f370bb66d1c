"""Preprocessing options, steps and recipes: one typed definition each.

The options of a SAR preprocessor arrive as text (a proto map, sipctl flags,
sipd.yaml) and are parsed here once, so a recipe stored today reads the same
tomorrow and a typo is refused when the recipe is made, not when a product
arrives at 3 a.m.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from sipd.contracts.base import Contract

POLARISATIONS = ("HH", "HV", "VH", "VV")
# Speckle filters sipd.preprocess.speckle implements (a test keeps the two in step).
SPECKLE_KINDS = ("none", "boxcar", "lee", "refined-lee")
RECIPE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

_LOOKS = re.compile(r"^\s*(\d{1,2})\s*(?:[xX]\s*(\d{1,2}))?\s*$")
_SPECKLE = re.compile(r"^\s*([a-z-]+)\s*(?::\s*(\d{1,2}))?\s*$")


class SarOptions(Contract):
    """Options of the SAR preprocessors (Sentinel-1, RADARSAT-2, RCM)."""

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
        if isinstance(value, str):
            value = [p for p in re.split(r"[,\s]+", value) if p]
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


class PreprocessStep(Contract):
    """What to do to a raw product: a preprocessor, its options, and the recipe they came
    from (name and version; empty when given ad hoc)."""

    preprocessor: Literal["sentinel1", "radarsat2", "rcm"]
    options: SarOptions = SarOptions()
    recipe: str = ""
    recipe_version: int = Field(default=0, ge=0)

    @property
    def recipe_label(self) -> str:
        return f"{self.recipe}@{self.recipe_version}" if self.recipe else ""


class Recipe(Contract):
    """A named, versioned preprocessing step as stored by the daemon."""

    name: str
    version: int = Field(ge=1)
    step: PreprocessStep
    description: str = ""
    created: float = 0.0
    from_config: bool = False
    # Deleted recipes are still read by version: scenes, models and watches name them.
    deleted: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not RECIPE_NAME.match(value):
            raise ValueError(
                f"recipe name {value!r} is not valid: 1-63 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        return value


def option_text(value: Any) -> str:
    """An option's value as the text the API and sipctl use: true/false, HH,HV, 40.0."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def option_specs(model: type[Contract]) -> list[dict[str, str]]:
    """Name, type, default, meaning and choices of every option (for ListPreprocessors)."""
    specs = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        choices = ""
        if getattr(annotation, "__origin__", None) is Literal:
            choices = ",".join(str(a) for a in annotation.__args__)
            kind = "choice"
        else:
            kind = {bool: "bool", float: "float", int: "int", str: "string"}.get(
                annotation,
                "list",  # type: ignore[arg-type]
            )
        if name == "speckle":
            choices = ",".join(SPECKLE_KINDS)
        specs.append(
            {
                "name": name,
                "type": kind,
                "default": option_text(field.default),
                "description": field.description or "",
                "choices": choices,
            }
        )
    return specs
