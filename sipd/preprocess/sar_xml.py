"""XML and range-vector helpers shared by the RADARSAT-2 and RCM readers.

Both missions describe calibration the same way: a product-level XML, LUT
files of gains sampled along range (`pixelFirst*Value + k * stepSize`) and
noise levels in dB sampled the same way. The parsing here ignores XML
namespaces on purpose: RADARSAT-2 products carry
http://www.rsi.ca/rs2/prod/xml/schemas, RCM products `rcmGsProductSchema`,
and test layouts (GDAL's) yet another; matching on local names reads them all.
"""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from sipd.errors import InvalidArgument
from sipd.preprocess.product_files import ProductFiles, open_measurement
from sipd.preprocess.sar_product import Quantity

# The attribute values the products use to name a calibration type.
CALIBRATION_NAMES: dict[str, Quantity] = {
    "sigma nought": Quantity.SIGMA0,
    "beta nought": Quantity.BETA0,
    "gamma": Quantity.GAMMA0,
    "gamma nought": Quantity.GAMMA0,
}


def quantity_of(name: str | None) -> Quantity | None:
    """The quantity a product's calibration-type text ("Sigma Nought") names, else None."""
    return CALIBRATION_NAMES.get((name or "").strip().lower())


def local(tag: str) -> str:
    """A tag without its namespace: "{ns}lut" -> "lut"."""
    return tag.rsplit("}", 1)[-1]


def parse(data: bytes, what: str) -> ET.Element:
    """The root element of an XML document; a malformed one is an error naming it."""
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise InvalidArgument(f"{what} is not readable XML: {exc}") from exc


def children(el: ET.Element, name: str) -> list[ET.Element]:
    """Direct children called `name` (any namespace)."""
    return [c for c in el if local(c.tag) == name]


def all_named(el: ET.Element, name: str) -> list[ET.Element]:
    """Every descendant called `name` (any namespace), in document order."""
    return [d for d in el.iter() if local(d.tag) == name]


def first_text(el: ET.Element, name: str, default: str = "") -> str:
    """The stripped text of the first element called `name` (any namespace, `el`
    included) whose text is not blank, else `default`."""
    for e in el.iter():
        if local(e.tag) == name and e.text and e.text.strip():
            return e.text.strip()
    return default


def find(el: ET.Element, path: str) -> ET.Element | None:
    """The first element at the slash-separated `path` of local names below `el`.

    The first step may sit at any depth (products nest the same element under
    different parents across versions); the following steps are direct children.
    """
    first, *rest = path.split("/")
    for start in all_named(el, first):
        node: ET.Element | None = start
        for step in rest:
            found = children(node, step) if node is not None else []
            node = found[0] if found else None
        if node is not None:
            return node
    return None


def text(el: ET.Element, path: str, default: str | None = None) -> str | None:
    node = find(el, path)
    if node is None or node.text is None or not node.text.strip():
        return default
    return node.text.strip()


def number(value: str | None, what: str, source: str) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidArgument(f"product {source}: {what} is {value!r}, not a number") from None


def optional_number(value: str | None) -> float | None:
    """A number when the text is one; placeholder text ("sampledPixelSpacing") reads as None."""
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def floats(value: str | None, what: str, source: str) -> np.ndarray:
    try:
        return np.array([float(v) for v in (value or "").split()], dtype=np.float64)
    except ValueError as exc:
        raise InvalidArgument(f"product {source}: {what} holds a non-number: {exc}") from None


def range_vector(
    first: float, step: float, values: np.ndarray, width: int, what: str, source: str
) -> np.ndarray:
    """`values` given at range pixels first + k * step, linearly interpolated onto 0..width-1.

    The RCM product format (RCM-SP-53-0419) maps gains entry k to range sample
    pixelFirstLutValue + k * stepSize; a negative step lists the samples from
    far to near. Outside the sampled span the end values hold (no extrapolation).
    """
    if values.size == 0:
        raise InvalidArgument(f"product {source}: {what} holds no values")
    if step == 0 and values.size > 1:
        raise InvalidArgument(f"product {source}: {what} has stepSize 0 for {values.size} values")
    positions = first + step * np.arange(values.size, dtype=np.float64)
    order = np.argsort(positions, kind="stable")
    return np.interp(np.arange(width, dtype=np.float64), positions[order], values[order])


def db_to_linear(db: np.ndarray) -> np.ndarray:
    return np.power(10.0, db / 10.0)


def acquisition(
    root: ET.Element, near: float | None, far: float | None, rg: float | None, az: float | None
) -> dict[str, str]:
    """Times, orbit direction, incidence range and pixel spacing of a RADARSAT-2 or RCM
    product.xml (both write them in the same places) as metadata text."""
    md: dict[str, str] = {}
    first = text(root, "sarProcessingInformation/zeroDopplerTimeFirstLine")
    last = text(root, "sarProcessingInformation/zeroDopplerTimeLastLine")
    if first and last:
        # Lines may run backwards in time (lineTimeOrdering Decreasing): start is the earlier.
        md["start_time"], md["stop_time"] = min(first, last), max(first, last)
    else:
        md["start_time"] = text(root, "sourceAttributes/rawDataStartTime", "") or ""
    direction = text(root, "orbitInformation/passDirection")
    if direction:
        md["orbit_direction"] = direction
    if near is not None:
        md["incidence_near"] = f"{near:g}"
    if far is not None:
        md["incidence_far"] = f"{far:g}"
    if rg and az:
        md["pixel_spacing"] = f"{rg:g}x{az:g}"
    return md


def select(available: dict[str, str], polarisations: list[str] | None, source: str) -> list[str]:
    if polarisations is None:
        return list(available)
    wanted = [p.strip().upper() for p in polarisations]
    for pole in wanted:
        if pole not in available:
            raise InvalidArgument(
                f"product {source} has no {pole} band; it has {', '.join(available)}"
            )
    return list(dict.fromkeys(wanted))


def plain_files(files: ProductFiles, rels: list[str]) -> list[str]:
    """What the allowed-roots check needs: the archive itself, or each plain file read."""
    if files.local_path("product.xml") is None:
        return [str(files.source)]
    out: list[str] = []
    for rel in dict.fromkeys(rels):
        local = files.local_path(rel)
        if local is not None:
            out.append(str(local))
    return out


def check_raster(files: ProductFiles, rel: str, lines: int, pixels: int, source: str) -> None:
    """The measurement exists and has product.xml's size (a wrong file would misplace the LUT)."""
    from rasterio.errors import RasterioIOError

    if not files.exists(rel):
        raise InvalidArgument(f"product {source} is incomplete: measurement {rel} is missing")
    try:
        with open_measurement(files.gdal_path(rel)) as ds:
            height, width = ds.height, ds.width
    except RasterioIOError as exc:
        raise InvalidArgument(
            f"product {source}: measurement {rel} is not readable: {exc}"
        ) from exc
    if (height, width) != (lines, pixels):
        raise InvalidArgument(
            f"product {source}: measurement {rel} is {width}x{height} pixels but product.xml "
            f"says {pixels}x{lines}; the file does not belong to this product"
        )


@dataclass
class Lut:
    """One calibration LUT expanded to every range pixel: calibrated = (DN^2 + offset) / gain."""

    gains: np.ndarray  # float64, one per measurement column
    offset: float


@dataclass
class RangeRadiometry:
    """Radiometry whose gain and noise vary along range only (RADARSAT-2, RCM).

    value = (DN^2 + offset) / gain(j) - noise(j)
          = (DN^2 - N) * K   with K = 1 / gain, N = noise * gain - offset.

    LUTs are built on first use under a lock, so a product whose unused LUT
    files are absent still opens, and concurrent `terms` calls are safe.
    """

    source: str
    polarisation: str
    width: int
    # Quantity -> a builder of its Lut (raises InvalidArgument when its file is absent).
    lut_builders: dict[Quantity, Callable[[], Lut]]
    # Quantity -> a builder of linear noise in calibrated units, one value per column.
    noise_builders: dict[Quantity, Callable[[], np.ndarray]] = field(default_factory=dict)
    # Why there is no noise, when the product says there should be (a missing file).
    noise_note: str = ""
    _luts: dict[Quantity, Lut] = field(default_factory=dict, repr=False)
    _noise: dict[Quantity, np.ndarray] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def noise_available(self) -> bool:
        return bool(self.noise_builders)

    def _lut(self, quantity: Quantity) -> Lut:
        with self._lock:
            if quantity not in self._luts:
                builder = self.lut_builders.get(quantity)
                if builder is None:
                    have = ", ".join(str(q) for q in self.lut_builders) or "none"
                    raise InvalidArgument(
                        f"product {self.source} has no {quantity} LUT for "
                        f"{self.polarisation}; it has: {have}"
                    )
                self._luts[quantity] = builder()
            return self._luts[quantity]

    def _noise_of(self, quantity: Quantity) -> np.ndarray:
        with self._lock:
            if quantity not in self._noise:
                builder = self.noise_builders.get(quantity)
                if builder is None:
                    have = ", ".join(str(q) for q in self.noise_builders) or "none"
                    raise InvalidArgument(
                        f"product {self.source} has no {quantity} noise levels for "
                        f"{self.polarisation}; it has noise for: {have}"
                        + (f" ({self.noise_note})" if self.noise_note else "")
                    )
                self._noise[quantity] = builder()
            return self._noise[quantity]

    def terms(
        self, rows: slice, cols: slice, quantity: Quantity, noise: bool
    ) -> tuple[np.ndarray, np.ndarray | float]:
        quantity = Quantity(quantity)
        # Strict rather than slice-clamped: a window past the edge would get fewer gains
        # than it has columns and fail later, far from the cause.
        start = 0 if cols.start is None else cols.start
        stop = self.width if cols.stop is None else cols.stop
        if cols.step not in (None, 1) or not 0 <= start < stop <= self.width:
            raise InvalidArgument(
                f"window columns {cols} are not a non-empty unit-step range in 0..{self.width}"
            )
        lut = self._lut(quantity)
        gains = lut.gains[start:stop]
        k = (1.0 / gains).astype(np.float32)[np.newaxis, :]
        if not noise:
            return k, 0.0 - lut.offset  # 0.0 - 0.0 is 0.0, not -0.0
        noise_lin = self._noise_of(quantity)[start:stop]
        # (DN^2 + offset)/gain - noise  ==  (DN^2 - (noise*gain - offset)) / gain
        n = (noise_lin * gains - lut.offset).astype(np.float32)[np.newaxis, :]
        return k, n
