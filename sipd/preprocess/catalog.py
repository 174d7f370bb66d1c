"""The preprocessors a daemon offers: name, what they take, their typed options, and
which one a product needs (from its content, not its name)."""

from __future__ import annotations

import importlib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sipd.contracts.base import Contract
from sipd.contracts.preprocessing import SarOptions
from sipd.errors import InvalidArgument
from sipd.preprocess.product_files import ProductFiles
from sipd.preprocess.sar_product import SarProduct


@dataclass(frozen=True)
class Preprocessor:
    name: str
    description: str
    inputs: str
    options: type[Contract]
    # "module:function" opening a product: (path, polarisations) -> SarProduct.
    reader: str

    def open(self, path: str, polarisations: list[str] | None = None) -> SarProduct:
        module, _, function = self.reader.partition(":")
        opener: Callable[..., SarProduct] = getattr(importlib.import_module(module), function)
        return opener(path, polarisations or None)


_SAR = (
    "thermal noise removal, calibration to sigma0/gamma0/beta0, multilook, speckle "
    "filter, dB, incidence angle, geocoding from the product's geolocation grid"
)
PREPROCESSORS: dict[str, Preprocessor] = {
    p.name: p
    for p in (
        Preprocessor(
            "sentinel1",
            f"Sentinel-1 GRD (IW, EW; single and dual polarisation): {_SAR}",
            "a .SAFE folder, its manifest.safe, or the .zip as downloaded",
            SarOptions,
            "sipd.preprocess.sentinel1:open_sentinel1",
        ),
        Preprocessor(
            "radarsat2",
            f"RADARSAT-2 detected products (SGF, SGX, SCN, SCW): {_SAR}",
            "a product folder, its product.xml, or the .zip",
            SarOptions,
            "sipd.preprocess.radarsat2:open_radarsat2",
        ),
        Preprocessor(
            "rcm",
            f"RADARSAT Constellation Mission GRD products: {_SAR}",
            "a product folder (metadata/product.xml), its product.xml, or the .zip",
            SarOptions,
            "sipd.preprocess.rcm:open_rcm",
        ),
    )
}


def get(name: str) -> Preprocessor:
    try:
        return PREPROCESSORS[name]
    except KeyError:
        raise InvalidArgument(
            f"no preprocessor {name!r}; accepted: {', '.join(PREPROCESSORS)}"
        ) from None


def is_raw_product(path: str | Path) -> bool:
    """Whether `path` looks like a product as delivered (a folder, a zip, or a product's
    own metadata file), so that `detect` should name its preprocessor; a plain raster
    is not one."""
    p = Path(path)
    if p.is_dir():
        return True
    name = p.name.lower()
    return name.endswith(".zip") or name in ("manifest.safe", "product.xml")


def detect(path: str | Path) -> str:
    """The preprocessor a product needs, from the files it holds (a few named files are
    looked at, never a walk of the folder: a caller may name a large one by mistake)."""
    p = Path(path)
    if p.is_file() and p.name == "product.xml" and p.parent.name == "metadata":
        p = p.parent.parent
    try:
        files = ProductFiles.open(p, ("manifest.safe", "product.xml"))
    except InvalidArgument:
        if p.is_file() and zipfile.is_zipfile(p) or p.suffix.lower() == ".zip":
            raise  # the archive's own error: unreadable, or holding no product
        raise InvalidArgument(
            f"{path} is not a product a preprocessor knows: no manifest.safe (Sentinel-1), "
            "product.xml (RADARSAT-2) or metadata/product.xml (RCM) in it; accepted: "
            + "; ".join(f"{pre.name}: {pre.inputs}" for pre in PREPROCESSORS.values())
        ) from None
    try:
        if files.exists("metadata/product.xml"):
            return "rcm"
        if files.exists("product.xml"):
            return "radarsat2"
        head = files.read_bytes("manifest.safe", "manifest")[:20000]
    finally:
        files.close()
    if b"Sentinel-1" in head or b"SENTINEL-1" in head:
        return "sentinel1"
    mission = "Sentinel-2" if b"Sentinel-2" in head or b"SENTINEL-2" in head else "an unknown"
    raise InvalidArgument(
        f"{path} is {mission} SAFE product; the SAR preprocessors take Sentinel-1 GRD, "
        "RADARSAT-2 and RCM products"
    )
