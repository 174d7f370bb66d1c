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


def _members(path: Path) -> tuple[list[str], Callable[[str], bytes]]:
    """The file names of a product (relative) and a reader of one of them."""
    if path.is_file() and path.suffix.lower() == ".zip":
        try:
            zf = zipfile.ZipFile(path)
            names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise InvalidArgument(
                f"product archive {path} is not a readable zip ({exc}); download or copy it again"
            ) from None

        def read(name: str) -> bytes:
            with zipfile.ZipFile(path) as z:
                return z.read(name)

        zf.close()
        return names, read
    folder = path.parent if path.is_file() else path
    if path.is_file() and path.name == "product.xml" and folder.name == "metadata":
        folder = folder.parent
    if not folder.is_dir():
        raise InvalidArgument(f"product {path} does not exist")
    names = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]
    return names, lambda name: (folder / name).read_bytes()


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
    """The preprocessor a product needs, from the files it holds."""
    path = Path(path)
    names, read = _members(path)
    depth = {n: n.count("/") for n in names}
    top = min(depth.values(), default=0)

    def has(suffix: str, level: int) -> str | None:
        return next(
            (n for n in names if (n == suffix or n.endswith("/" + suffix)) and depth[n] == level),
            None,
        )

    if has("metadata/product.xml", top + 1) or has("metadata/product.xml", top):
        return "rcm"
    if has("product.xml", top):
        return "radarsat2"
    manifest = has("manifest.safe", top)
    if manifest:
        head = read(manifest)[:20000]
        if b"Sentinel-1" in head or b"SENTINEL-1" in head:
            return "sentinel1"
        mission = "Sentinel-2" if b"Sentinel-2" in head or b"SENTINEL-2" in head else "unknown"
        raise InvalidArgument(
            f"{path} is a {mission} SAFE product; the SAR preprocessors take Sentinel-1 GRD, "
            "RADARSAT-2 and RCM products"
        )
    raise InvalidArgument(
        f"{path} is not a product a preprocessor knows: no manifest.safe (Sentinel-1), "
        "product.xml (RADARSAT-2) or metadata/product.xml (RCM) in it; accepted: "
        + "; ".join(f"{p.name}: {p.inputs}" for p in PREPROCESSORS.values())
    )
