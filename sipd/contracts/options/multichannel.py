"""Options of the multichannel preprocessor (biomedical and industrial images: OME-TIFF,
multi-page and multi-sample TIFF, folders of PNG/JPEG/TIFF with one image per channel)."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from sipd.contracts.base import Contract

# What `z` and `t` accept besides a plane index: a projection over the whole axis.
PROJECTIONS = ("max", "mean")
# Pixels per channel the percentiles are computed on; bigger images are sampled on
# every k-th row (sipd.preprocess.multichannel keeps to this bound).
PERCENTILE_SAMPLE_PIXELS = 4_000_000


def _split(value: Any) -> list[str]:
    """A list option given as text ("a,b,c") or as a list; commas only, since OME channel
    names may hold spaces."""
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [str(v).strip() for v in value if str(v).strip()]


class MultichannelOptions(Contract):
    """Options of the multichannel preprocessor."""

    PATH_OPTIONS: ClassVar[tuple[str, ...]] = ()

    channels: list[str] = Field(
        default=[],
        description="channels to keep, in this order: OME channel names, file names "
        "without extension (folders), or 0-based indices, e.g. DAPI,GFP or 2,0; "
        "empty = every channel",
    )
    z: str = Field(
        default="0",
        description="Z plane: a 0-based index, or max / mean to project the whole Z stack "
        "(maximum or mean intensity projection)",
    )
    t: str = Field(
        default="0",
        description="time point: a 0-based index, or max / mean over every time point",
    )
    series: int = Field(
        default=0,
        ge=0,
        description="image series (OME Image, or TIFF page series) to read, 0-based",
    )
    normalize: Literal["none", "percentile"] = Field(
        default="none",
        description="intensity normalisation per channel: none (values as stored, as "
        "float32) or percentile (clip to the percentiles, then scale to 0..1)",
    )
    percentiles: list[float] = Field(
        default=[1.0, 99.0],
        description="low,high percentiles (0-100) for normalize=percentile, computed per "
        "channel over the whole image; images over "
        f"{PERCENTILE_SAMPLE_PIXELS:,} pixels are sampled on evenly spaced rows",
    )

    @field_validator("channels", mode="before")
    @classmethod
    def _channels(cls, value: Any) -> list[str]:
        names = _split(value)
        seen = [n for i, n in enumerate(names) if n in names[:i]]
        if seen:
            raise ValueError(f"channel {seen[0]!r} is named twice; name each channel once")
        return names

    @field_validator("z", "t", mode="before")
    @classmethod
    def _plane(cls, value: Any) -> str:
        text = str(value).strip().lower()
        if text in PROJECTIONS or re.fullmatch(r"\d{1,6}", text):
            return text if text in PROJECTIONS else str(int(text))
        raise ValueError(
            f"{value!r} is not a plane: accepted a 0-based index (0, 1, ...) or "
            f"{' / '.join(PROJECTIONS)} for a projection"
        )

    @field_validator("percentiles", mode="before")
    @classmethod
    def _percentiles(cls, value: Any) -> list[float]:
        parts = _split(value) if isinstance(value, str) else list(value or [])
        try:
            numbers = [float(p) for p in parts]
        except (TypeError, ValueError):
            raise ValueError(f"percentiles {value!r} are not two numbers, e.g. 1,99") from None
        if len(numbers) != 2 or not 0.0 <= numbers[0] < numbers[1] <= 100.0:
            raise ValueError(
                f"percentiles {value!r} must be LOW,HIGH with 0 <= LOW < HIGH <= 100, e.g. 1,99"
            )
        return numbers

    def output_bands(self) -> list[str]:
        # Channel names are fixed by the options only when all are names, not indices
        # (an index names whatever channel the file has there).
        if self.channels and not any(c.isdigit() for c in self.channels):
            return list(self.channels)
        return []
