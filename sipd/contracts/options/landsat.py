"""Options of the landsat preprocessor (Landsat 4-9 Collection 2, Level-1 and Level-2).

The vocabularies live here, next to the fields that use them, so the options can be
checked when a recipe is made (no product needed); sipd.preprocess.landsat maps them
onto each spacecraft's band numbers and onto the QA_PIXEL bits.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator

from sipd.contracts.base import Contract
from sipd.contracts.options import text_list

# Common names (as in the STAC eo extension) of every Landsat 4-9 band sipd reads.
# Which exist depends on the instrument (OLI/TIRS, ETM+, TM): the reader says so.
# "lwir_high_gain" is ETM+ band 6 VCID 2 (Level-1 only); "lwir" is ETM+/TM band 6
# (VCID 1, low gain, on ETM+ Level-1).
BAND_NAMES = (
    "coastal",
    "blue",
    "green",
    "red",
    "nir08",
    "swir16",
    "swir22",
    "cirrus",
    "lwir",
    "lwir_high_gain",
    "lwir11",
    "lwir12",
)
# Other spellings people use for the same bands; stored under the common name so a
# recipe's band list (and the output's band names) is the same however it was typed.
BAND_ALIASES = {"nir": "nir08", "swir1": "swir16", "swir2": "swir22", "thermal": "lwir"}

# QA_PIXEL classes (Collection 2 layout, USGS LSDS-1619 / LSDS-1618 section "Pixel
# Quality Assessment Band"): name -> (first bit, number of bits, lowest value that
# counts). Single flags count when set; a confidence counts at that level or higher.
# Confidences are 00 none, 01 low, 10 medium (cloud) or reserved (shadow, snow,
# cirrus), 11 high. There is no "low or higher" class: CFMask writes low (01) in all
# four confidence fields of ordinary clear pixels (the guides' QA value table: 21824 =
# clear land "with lows set", 21952 = clear water), so such a class masked every
# non-fill pixel (see CONF_LOW_REFUSED).
QA_CLASSES: dict[str, tuple[int, int, int]] = {
    "fill": (0, 1, 1),
    "dilated_cloud": (1, 1, 1),
    "cirrus": (2, 1, 1),  # OLI only (bit unused on TM/ETM+)
    "cloud": (3, 1, 1),
    "shadow": (4, 1, 1),
    "snow": (5, 1, 1),
    "not_clear": (6, 1, 0),  # the clear bit is 0 (handled as "== 0", see qa_mask)
    "water": (7, 1, 1),
    "cloud_conf_medium": (8, 2, 2),
    "cloud_conf_high": (8, 2, 3),
    "shadow_conf_high": (10, 2, 3),
    "snow_conf_high": (12, 2, 3),
    "cirrus_conf_high": (14, 2, 3),
}
# Removed "low or higher" classes -> what to use instead (cloud has a medium level;
# shadow, snow and cirrus have only low and high, 10 being reserved).
CONF_LOW_REFUSED = {
    "cloud_conf_low": "cloud_conf_medium or cloud_conf_high",
    "shadow_conf_low": "shadow_conf_high",
    "snow_conf_low": "snow_conf_high",
    "cirrus_conf_low": "cirrus_conf_high",
}


def _names(value: Any) -> list[str]:
    """A list option as text ("a,b c") or a list, lower-cased, empty items dropped."""
    return [str(v).strip().lower() for v in text_list(value) if str(v).strip()]


class LandsatOptions(Contract):
    """Options of the landsat preprocessor."""

    PATH_OPTIONS: ClassVar[tuple[str, ...]] = ()

    bands: list[str] = Field(
        default=[],
        description="bands to write, in this order, by common name: coastal, blue, green, "
        "red, nir08 (nir), swir16, swir22, lwir11, lwir12 (Landsat 8/9), lwir (TM/ETM+ "
        "band 6), lwir_high_gain (ETM+ L1 band 6 VCID 2), cirrus (L1 OLI). Reflective "
        "bands come out as surface (L2) or TOA (L1) reflectance, thermal ones as surface "
        "(L2) or brightness (L1) temperature in kelvin; pan (15 m) is refused. Empty = "
        "the instrument's 30 m reflective bands (OLI: coastal..swir22, TM/ETM+: "
        "blue..swir22)",
    )
    mask: list[str] = Field(
        default=["fill"],
        description="QA_PIXEL classes written as nodata (NaN) in every band: fill, "
        "dilated_cloud, cirrus, cloud, shadow, snow, water, not_clear, "
        "cloud_conf_medium, cloud_conf_high, shadow_conf_high, snow_conf_high, "
        "cirrus_conf_high (a confidence counts at that level or higher; there are no "
        "*_conf_low classes: clear pixels carry low confidence, so they would mask every "
        "pixel); empty = no QA mask (a band's own fill value 0 is nodata always)",
    )

    @field_validator("bands", mode="before")
    @classmethod
    def _bands(cls, value: Any) -> list[str]:
        out: list[str] = []
        for name in _names(value):
            name = BAND_ALIASES.get(name, name)
            if name == "pan":
                raise ValueError(
                    "band pan (15 m) cannot be stacked with the 30 m bands; leave it out "
                    "(pan-sharpening is not done here)"
                )
            if name not in BAND_NAMES:
                raise ValueError(
                    f"band {name!r} is not a Landsat band name; accepted: "
                    f"{', '.join(BAND_NAMES)} (or nir, swir1, swir2, thermal)"
                )
            if name in out:
                raise ValueError(f"band {name!r} is named twice in bands")
            out.append(name)
        return out

    @field_validator("mask", mode="before")
    @classmethod
    def _mask(cls, value: Any) -> list[str]:
        out: list[str] = []
        for name in _names(value):
            if name in CONF_LOW_REFUSED:
                raise ValueError(
                    f"mask class {name!r} is not offered: Collection 2 QA_PIXEL gives "
                    "ordinary clear pixels low (01) confidence in all four confidence "
                    "fields (e.g. clear land 21824), so 'low or higher' would mask every "
                    f"pixel that is not fill; use {CONF_LOW_REFUSED[name]}"
                )
            if name not in QA_CLASSES:
                raise ValueError(
                    f"mask class {name!r} is not a QA_PIXEL class; accepted: "
                    f"{', '.join(QA_CLASSES)}"
                )
            if name not in out:
                out.append(name)
        return out

    def output_bands(self) -> list[str]:
        # The default list depends on the instrument (OLI has coastal, TM/ETM+ not).
        return list(self.bands)
