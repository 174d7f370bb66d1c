"""Options of the sentinel3 preprocessor (OLCI EFR/ERR and SLSTR RBT Level-1)."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from sipd.contracts.base import Contract
from sipd.contracts.options import text_list

OLCI_BANDS = tuple(f"Oa{i:02d}" for i in range(1, 22))
SLSTR_BANDS = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "F1", "F2")
_OLCI = re.compile(r"^oa0?(\d{1,2})$", re.I)
# Flag names as the products spell them: "sun-glint_risk", "1.37_threshold", "summary_cloud".
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.@-]{0,63}$")


def _split(value: Any) -> list[str]:
    return [str(v) for v in text_list(value)]


def normalise_band(name: str) -> str:
    """Oa1, oa01, OA01 -> Oa01; s7 -> S7; anything else is refused."""
    m = _OLCI.match(name.strip())
    if m and 1 <= int(m.group(1)) <= 21:
        return f"Oa{int(m.group(1)):02d}"
    up = name.strip().upper()
    if up in SLSTR_BANDS:
        return up
    raise ValueError(
        f"band {name!r} is not a Sentinel-3 band; accepted: OLCI Oa01..Oa21, SLSTR S1..S9, F1, F2"
    )


class Sentinel3Options(Contract):
    """Options of the sentinel3 preprocessor."""

    PATH_OPTIONS: ClassVar[tuple[str, ...]] = ()

    bands: list[str] = Field(
        default=[],
        description="bands to stack, in this order: OLCI Oa01..Oa21, SLSTR S1..S9, F1, F2 "
        "(e.g. Oa04,Oa06,Oa08,Oa17); empty = every band of the product",
    )
    quantity: Literal["auto", "reflectance", "radiance"] = Field(
        default="auto",
        description="OLCI: reflectance = TOA reflectance pi*L/(F0*cos(SZA)), radiance = "
        "TOA radiance (mW m-2 sr-1 nm-1); auto = reflectance for OLCI. SLSTR S1-S6 are "
        "always radiance and S7-F2 brightness temperature (K)",
    )
    view: Literal["nadir", "oblique"] = Field(
        default="nadir", description="SLSTR view: nadir (an/in/fn files) or oblique (ao/io/fo)"
    )
    mask: list[str] = Field(
        default=[],
        description="OLCI quality flags whose pixels become nodata, named as the product's "
        "quality_flags flag_meanings: invalid, land, coastline, fresh_inland_water, "
        "tidal_region, bright, straylight_risk, cosmetic, duplicated, sun-glint_risk, "
        "dubious, saturated (any band); SLSTR: the flag names of the view's cloud_ or "
        "confidence_ variables (e.g. summary_cloud, coastline)",
    )
    resampling: Literal["nearest", "bilinear"] = Field(
        default="nearest",
        description="how swath pixels become map pixels: nearest = the value of the nearest "
        "swath pixel; bilinear = of the four swath pixels around the map pixel centre, "
        "weighted by its position among them (nodata when one of them is nodata or masked, "
        "and beyond the outermost swath pixel centres); bilinear needs a smooth "
        "geolocation (see the S3_GEOLOCATION tag)",
    )
    crs: str = Field(
        default="auto",
        description="output CRS (EPSG:4326, EPSG:32633, ...); auto = UTM zone of the scene centre",
    )
    resolution: float = Field(
        default=0.0,
        ge=0.0,
        description="output pixel size in CRS units (metres, or degrees for EPSG:4326); "
        "0 = the product's: 300 m OLCI EFR, 1200 m ERR, 500 m SLSTR (1000 m when only "
        "thermal bands are chosen)",
    )

    @field_validator("bands", mode="before")
    @classmethod
    def _bands(cls, value: Any) -> list[str]:
        names = [normalise_band(v) for v in _split(value)]
        if len(set(names)) != len(names):
            raise ValueError(f"bands names a band twice: {','.join(names)}")
        olci = [n for n in names if n.startswith("Oa")]
        if olci and len(olci) != len(names):
            raise ValueError(
                "bands mixes OLCI (Oa..) and SLSTR (S.., F..) bands; one product "
                "holds one instrument"
            )
        return names

    @field_validator("mask", mode="before")
    @classmethod
    def _mask(cls, value: Any) -> list[str]:
        names = [v.strip().lower() for v in _split(value)]
        for name in names:
            if not _NAME.match(name):
                raise ValueError(
                    f"mask flag {name!r} is not valid: a flag name such as invalid, land, "
                    "bright, summary_cloud or 1.37_threshold"
                )
        return names

    @field_validator("crs")
    @classmethod
    def _crs(cls, value: str) -> str:
        value = value.strip()
        if value.lower() == "auto":
            return "auto"
        from rasterio.crs import CRS
        from rasterio.errors import CRSError

        try:
            CRS.from_user_input(value)
        except CRSError as exc:
            raise ValueError(
                f"crs {value!r} is not a CRS: {exc}; accepted: auto or EPSG:code"
            ) from None
        return value

    def output_bands(self) -> list[str]:
        return list(self.bands)
