"""Options of the modis preprocessor (MODIS HDF4-EOS grid products)."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import Field, field_validator

from sipd.contracts.base import Contract

# SDS names as HDF-EOS writes them: letters, digits, '_', '.', '-' and spaces
# (MOD09GA has "sur_refl_b01_1", MOD11A1 "LST_Day_1km", MOD10A2 "Maximum_Snow_Extent").
_SDS_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_. -]{0,127}$")


class ModisOptions(Contract):
    """Options of the modis preprocessor."""

    PATH_OPTIONS: ClassVar[tuple[str, ...]] = ()

    sds: list[str] = Field(
        default=[],
        description="scientific datasets to stack, by name, in this order, e.g. "
        "sur_refl_b01,sur_refl_b02; they must share one grid; empty = every 2-D dataset "
        "of the file's first grid",
    )
    calibrate: bool = Field(
        default=True,
        description="apply each dataset's scale_factor and add_offset with the HDF4 "
        "convention value = scale_factor * (stored - add_offset), except that a "
        "scale_factor greater than 1 divides: value = (stored - add_offset) / "
        "scale_factor (MODIS scales stored integers down, e.g. MOD13 NDVI with scale "
        "10000 is stored / 10000; MOD09 Range and MOD16 keep the multiplication); each "
        "band's calibration tag names the rule used; false = stored values "
        "(fill and out-of-valid-range values are nodata either way)",
    )

    @field_validator("sds", mode="before")
    @classmethod
    def _sds(cls, value: Any) -> list[str]:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        names = [str(v).strip() for v in value or []]
        for name in names:
            if not _SDS_NAME.match(name):
                raise ValueError(
                    f"sds name {name!r} is not valid: letters, digits, '_', '.', '-' or "
                    "spaces, as the file names its datasets (e.g. sur_refl_b01)"
                )
        if len(set(names)) != len(names):
            raise ValueError(f"sds names a dataset twice: {','.join(names)}")
        return names

    def output_bands(self) -> list[str]:
        return list(self.sds)
