"""Options of the sentinel2 preprocessor (Sentinel-2 MSI L1C and L2A)."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from sipd.contracts.base import Contract
from sipd.contracts.options import text_list

# Common names (as in the STAC eo extension) of the MSI bands, in the product's order.
# Band ids are accepted too (B02, B8A, B2): both read as the common name.
S2_BANDS: dict[str, str] = {
    "coastal": "B01",
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "rededge1": "B05",
    "rededge2": "B06",
    "rededge3": "B07",
    "nir": "B08",
    "nir08": "B8A",
    "watervapour": "B09",
    "cirrus": "B10",
    "swir16": "B11",
    "swir22": "B12",
}
BAND_IDS = {v: k for k, v in S2_BANDS.items()}

# Mask vocabulary. L2A: the classes of the scene classification (SCL) as the product's
# own Scene_Classification_List names them (SC_ prefix dropped, lower case). L1C: the
# layers of MSK_CLASSI_B00 (baseline >= 04.00) or the mask types of MSK_CLOUDS_B00.gml
# (older baselines). "cloud" and "snow" mean the same thing at both levels.
SCL_CLASSES: dict[str, int] = {
    "no_data": 0,
    "saturated_defective": 1,
    "dark_area": 2,
    "cloud_shadow": 3,
    "vegetation": 4,
    "not_vegetated": 5,
    "water": 6,
    "unclassified": 7,
    "cloud_medium": 8,
    "cloud_high": 9,
    "thin_cirrus": 10,
    "snow": 11,
}
L1C_MASKS = ("opaque_cloud", "cirrus", "snow")
# Groups: one name that reads right for either level.
MASK_GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "cloud": {
        "L2A": ("cloud_medium", "cloud_high", "thin_cirrus"),
        "L1C": ("opaque_cloud", "cirrus"),
    },
}
MASK_NAMES = (*SCL_CLASSES, *(m for m in L1C_MASKS if m not in SCL_CLASSES), *MASK_GROUPS)
RESOLUTIONS = (10, 20, 60)


def _split(value: Any) -> list[str]:
    return [str(v) for v in text_list(value)]


def band_name(text: str) -> str:
    """The common name of a band given by common name or band id (B8A, B02, B2)."""
    key = text.strip().lower()
    if key in S2_BANDS:
        return key
    m = re.fullmatch(r"b0?(\d{1,2}|8a)", key)
    if m:
        ident = "B8A" if m.group(1) == "8a" else f"B{int(m.group(1)):02d}"
        if ident in BAND_IDS:
            return BAND_IDS[ident]
    raise ValueError(
        f"band {text!r} is not a Sentinel-2 band; accepted: {', '.join(S2_BANDS)} "
        "or band ids B01-B12, B8A"
    )


class Sentinel2Options(Contract):
    """Options of the sentinel2 preprocessor."""

    PATH_OPTIONS: ClassVar[tuple[str, ...]] = ()

    bands: list[str] = Field(
        default=["blue", "green", "red", "nir"],
        description="bands in output order, by common name (coastal, blue, green, red, "
        "rededge1, rededge2, rededge3, nir, nir08, watervapour, cirrus (L1C only), swir16, "
        "swir22) or band id (B02, B8A)",
    )
    resolution: int = Field(
        default=10,
        description="output pixel size in metres: 10, 20 or 60 (the tile's grids); an L2A "
        "band the product holds at that resolution is read as it is, otherwise finer bands "
        "are averaged over each output pixel and coarser ones refined (see upsampling)",
    )
    upsampling: Literal["bilinear", "nearest"] = Field(
        default="bilinear",
        description="how a band coarser than the output is refined: bilinear (pixel "
        "centres aligned) or nearest (each pixel repeated)",
    )
    mask: list[str] = Field(
        default=[],
        description="classes made nodata in every band. L2A (SCL): no_data, "
        "saturated_defective, dark_area, cloud_shadow, vegetation, not_vegetated, water, "
        "unclassified, cloud_medium, cloud_high, thin_cirrus, snow. L1C (MSK_CLASSI, or "
        "MSK_CLOUDS.gml before baseline 04.00): opaque_cloud, cirrus, snow. Either level: "
        "cloud (= cloud_medium,cloud_high,thin_cirrus or opaque_cloud,cirrus)",
    )
    saturated: Literal["nodata", "keep"] = Field(
        default="nodata",
        description="saturated pixels (DN 65535): nodata, or keep (converted like any DN, "
        "the brightest value the product can hold)",
    )

    @field_validator("bands", mode="before")
    @classmethod
    def _bands(cls, value: Any) -> list[str]:
        out: list[str] = []
        for text in _split(value):
            name = band_name(text)
            if name in out:
                raise ValueError(f"band {text!r} is listed twice")
            out.append(name)
        if not out:
            raise ValueError(f"no bands given; accepted: {', '.join(S2_BANDS)}")
        return out

    @field_validator("resolution", mode="before")
    @classmethod
    def _resolution(cls, value: Any) -> int:
        text = str(value).strip().lower().removesuffix("m")
        try:
            number = float(text)
        except ValueError:
            number = -1.0
        if number not in RESOLUTIONS:
            raise ValueError(
                f"resolution {value!r} is not one of the Sentinel-2 grids; accepted: 10, 20, 60"
            )
        return int(number)

    @field_validator("mask", mode="before")
    @classmethod
    def _mask(cls, value: Any) -> list[str]:
        out: list[str] = []
        for text in _split(value):
            name = text.strip().lower()
            if name not in MASK_NAMES:
                raise ValueError(
                    f"mask class {text!r} is unknown; accepted: {', '.join(MASK_NAMES)}"
                )
            if name not in out:
                out.append(name)
        return out

    def output_bands(self) -> list[str]:
        return list(self.bands)
