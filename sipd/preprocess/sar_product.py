"""What every SAR reader (Sentinel-1, RADARSAT-2, RCM) gives the pipeline.

Every calibration the supported products publish has one form,

    value = (DN^2 - N) * K

with N the noise (and offset) term and K the inverse squared gain, both
functions of (line, pixel). A reader returns them for a window; the pipeline
squares the DN, subtracts, scales, floors, multilooks, filters and geocodes
without knowing which mission the product came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np


class Quantity(StrEnum):
    """Radiometric quantity a band is calibrated to."""

    SIGMA0 = "sigma0"
    GAMMA0 = "gamma0"
    BETA0 = "beta0"


class Radiometry(Protocol):
    """Calibration of one polarisation of one product."""

    def terms(
        self, rows: slice, cols: slice, quantity: Quantity, noise: bool
    ) -> tuple[np.ndarray, np.ndarray | float]:
        """(K, N) for the window rows x cols of the measurement raster.

        Each is float32 (or a Python float for N) and broadcastable to
        (rows.stop - rows.start, cols.stop - cols.start): e.g. a (1, ncols)
        gain when it varies by range only. With `noise` False, N holds only
        the product's offset (0 for Sentinel-1). A quantity the product has
        no LUT for raises InvalidArgument naming the LUTs it has.
        """
        ...

    def noise_available(self) -> bool:
        """Whether the product carries noise vectors for this polarisation."""
        ...


@dataclass(frozen=True)
class Gcp:
    """One point of the product's geolocation grid.

    `line`/`pixel` follow GDAL's convention: (0, 0) is the top-left corner of
    the first pixel, so the centre of sample i is i + 0.5.
    """

    line: float
    pixel: float
    lon: float
    lat: float
    height: float = 0.0
    incidence: float | None = None  # degrees, where the product gives it


@dataclass
class SarBand:
    polarisation: str  # "HH", "HV", "VV", "VH"
    measurement: str  # GDAL path of the DN raster (/vsizip/... inside an archive)
    radiometry: Radiometry


@dataclass
class SarProduct:
    sensor: str  # "sentinel1" | "radarsat2" | "rcm"
    source: str  # what the user named
    lines: int  # measurement raster height
    pixels: int  # measurement raster width
    bands: list[SarBand]
    gcps: list[Gcp]
    # Acquisition metadata as text, for the output's tags and the job result:
    # mission, mode, product_type, start_time, stop_time, orbit_direction,
    # polarisations, incidence_near, incidence_far (degrees), pixel_spacing.
    metadata: dict[str, str] = field(default_factory=dict)
    # (range, azimuth) ground pixel spacing in metres.
    pixel_spacing: tuple[float, float] = (10.0, 10.0)
    # Plain files read (for the allowed-roots check); an archive counts as one.
    files: list[str] = field(default_factory=list)

    def band(self, polarisation: str) -> SarBand:
        for b in self.bands:
            if b.polarisation == polarisation.upper():
                return b
        from sipd.errors import InvalidArgument

        raise InvalidArgument(
            f"product {self.source} has no {polarisation} band; it has "
            f"{', '.join(b.polarisation for b in self.bands)}"
        )
