"""Options of the hyperspectral preprocessor (ENVI cubes and multi-band rasters with
wavelengths): reference calibration, band subsets by wavelength, principal components."""

from __future__ import annotations

import json
import math
import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from sipd.contracts.base import Contract

# A hyperspectral band list is rarely longer than ~1000 bands; the PCA basis is
# components x bands, so this bounds what a recipe may store.
MAX_BANDS = 4096
MAX_COMPONENTS = 64


def _split(value: Any) -> Any:
    """ "a,b,c" (or spaces) as the list ["a", "b", "c"]; lists pass through."""
    if isinstance(value, str):
        return [v for v in re.split(r"[,\s;]+", value.strip().strip("[]")) if v]
    return value


def band_label(wavelength_nm: float) -> str:
    """The output band name of a wavelength: "w550nm", "w550.3nm" (at most 3 decimals,
    trailing zeros dropped) - the same name for the same requested wavelength whatever
    the sensor, so scenes of different cubes stack into one project."""
    text = f"{round(wavelength_nm, 3):.3f}".rstrip("0").rstrip(".")
    return f"w{text}nm"


class HyperspectralOptions(Contract):
    """Options of the hyperspectral preprocessor."""

    PATH_OPTIONS: ClassVar[tuple[str, ...]] = ("white", "dark")

    white: str = Field(
        default="",
        description="white reference: an ENVI cube (or multi-band raster) of the same "
        "bands and width as the cube, or a single spectrum (1 sample); averaged over its "
        "lines. Empty = no reflectance calibration",
    )
    dark: str = Field(
        default="",
        description="dark reference (same forms as white), subtracted from the cube and "
        "the white; empty = dark of 0",
    )
    white_reflectance: float = Field(
        default=1.0,
        gt=0.0,
        le=2.0,
        description="reflectance of the white reference (e.g. 0.99 for a Spectralon panel); "
        "reflectance = white_reflectance * (raw - dark) / (white - dark)",
    )
    wavelength_min: float = Field(
        default=0.0, ge=0.0, description="keep bands at or above this wavelength (nm); 0 = no limit"
    )
    wavelength_max: float = Field(
        default=0.0, ge=0.0, description="keep bands at or below this wavelength (nm); 0 = no limit"
    )
    bands: list[float] = Field(
        default=[],
        description="wavelengths (nm) to keep, in this order, e.g. 450,550,650: the nearest "
        "good band to each (within tolerance); empty = every good band in the range",
    )
    tolerance: float = Field(
        default=0.0,
        ge=0.0,
        description="largest distance (nm) from a wavelength in bands to the band chosen; "
        "0 = half the band's FWHM from the header, else half the band spacing",
    )
    byte_order: Literal["auto", "little", "big"] = Field(
        default="auto",
        description="byte order of ENVI data: auto = the header's 'byte order', little-endian "
        "when the header has none (as GDAL and numpy-written files); little or big overrides",
    )
    components: int = Field(
        default=0,
        ge=0,
        le=MAX_COMPONENTS,
        description="reduce to this many principal components (bands pc1..pcN); fitted on "
        "training cubes when the recipe is made (sipctl recipe create ... --fit-on CUBE); "
        "0 = keep the bands",
    )
    pca_mean: list[float] = Field(
        default=[], description="PCA: the mean spectrum subtracted (set by the fit, not by hand)"
    )
    pca_basis: list[list[float]] = Field(
        default=[],
        description="PCA: one row of band weights per component (set by the fit, not by hand)",
    )
    pca_wavelengths: list[float] = Field(
        default=[],
        description="PCA: wavelengths (nm) of the bands the projection was fitted on (set by "
        "the fit); a cube whose selected bands differ is refused",
    )

    @field_validator("bands", "pca_mean", "pca_wavelengths", mode="before")
    @classmethod
    def _float_list(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("pca_basis", mode="before")
    @classmethod
    def _basis(cls, value: Any) -> Any:
        """Text forms: JSON ("[[..],[..]]"), rows as the API prints them ("[..],[..]"), or
        rows separated by ';' ("0.1,0.2;0.3,0.4")."""
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            for candidate in (text, f"[{text}]"):
                try:
                    parsed = json.loads(candidate)
                except ValueError:
                    continue
                if isinstance(parsed, list) and all(isinstance(r, list) for r in parsed):
                    return parsed
            raise ValueError(
                "pca_basis is not a list of rows of numbers; accepted: JSON [[...],[...]] "
                "or rows separated by ';' (0.1,0.2;0.3,0.4)"
            )
        return [_split(row) for row in text.split(";") if row.strip()]

    @field_validator("bands")
    @classmethod
    def _bands(cls, value: list[float]) -> list[float]:
        if len(value) > MAX_BANDS:
            raise ValueError(f"bands lists {len(value)} wavelengths; at most {MAX_BANDS}")
        seen: set[str] = set()
        for w in value:
            if not math.isfinite(w) or w <= 0:
                raise ValueError(f"band wavelength {w} is not a positive number of nm")
            if band_label(w) in seen:
                raise ValueError(f"band wavelength {w} nm is listed twice")
            seen.add(band_label(w))
        return value

    @model_validator(mode="after")
    def _consistent(self) -> HyperspectralOptions:
        if self.wavelength_max and self.wavelength_min > self.wavelength_max:
            raise ValueError(
                f"wavelength_min {self.wavelength_min} is above wavelength_max "
                f"{self.wavelength_max}; give min <= max (nm)"
            )
        fitted = self.pca_mean or self.pca_basis
        if fitted:
            self._check_projection()
        elif self.pca_wavelengths:
            raise ValueError("pca_wavelengths given without pca_mean and pca_basis")
        return self

    def _check_projection(self) -> None:
        n = len(self.pca_mean)
        if self.components == 0:
            raise ValueError(
                "pca_mean/pca_basis are given but components is 0; set components to the "
                "number of rows of pca_basis"
            )
        if len(self.pca_basis) != self.components:
            raise ValueError(
                f"pca_basis has {len(self.pca_basis)} rows but components is {self.components}; "
                "fit the projection again (sipctl recipe create ... --fit-on CUBE)"
            )
        if n < self.components or n > MAX_BANDS:
            raise ValueError(
                f"pca_mean has {n} values; it needs one per band (at least components="
                f"{self.components}, at most {MAX_BANDS})"
            )
        for i, row in enumerate(self.pca_basis, start=1):
            if len(row) != n:
                raise ValueError(
                    f"pca_basis row {i} has {len(row)} weights but pca_mean has {n} bands"
                )
        values = [*self.pca_mean, *(v for row in self.pca_basis for v in row)]
        if not all(math.isfinite(v) for v in values):
            raise ValueError("pca_mean/pca_basis hold a NaN or infinite value")
        if self.pca_wavelengths and len(self.pca_wavelengths) != n:
            raise ValueError(
                f"pca_wavelengths has {len(self.pca_wavelengths)} values but pca_mean has {n}"
            )
        if self.bands and len(self.bands) != n:
            raise ValueError(
                f"the projection was fitted on {n} bands but bands lists {len(self.bands)}"
            )

    @property
    def fitted(self) -> bool:
        return bool(self.pca_basis)

    def output_bands(self) -> list[str]:
        if self.components:
            return [f"pc{i}" for i in range(1, self.components + 1)]
        # With a band list the names are the requested wavelengths; otherwise the cube
        # decides which bands there are.
        return [band_label(w) for w in self.bands]
