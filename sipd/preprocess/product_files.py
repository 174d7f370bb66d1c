"""A product as delivered: a folder, a file inside it (manifest.safe, product.xml) or a zip.

Metadata files are read with Python (zipfile for archives: nothing is unpacked),
rasters through GDAL paths (`/vsizip/...` inside an archive), so a product is
read in place whatever form it came in.
"""

from __future__ import annotations

import os
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import rasterio
from rasterio.errors import NotGeoreferencedWarning

from sipd.errors import InvalidArgument
from sipd.raster import check_files_read, open_raster


def open_measurement(path: str) -> rasterio.DatasetReader:
    """A product's raster, opened through open_raster: in the worker every file GDAL opens
    for it (a measurement that is really a VRT names others) must be inside the allowed
    roots. Detected SAR rasters carry GCPs or nothing: no georeferencing warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return open_raster(path)


# A product's own metadata files: naming one names the folder that holds it.
_METADATA_FILES = ("manifest.safe", "product.xml", "xfdumanifest.xml")
# Packaging suffixes, longest first (".safe.zip" before ".zip").
_PACKAGING = (".safe.zip", ".sen3.zip", ".tar.gz", ".ome.tiff", ".ome.tif", ".zip", ".safe",
              ".sen3", ".tar", ".tgz")  # fmt: skip


def is_metadata_file(name: str) -> bool:
    """Whether `name` is a product's own metadata file (manifest.safe, product.xml,
    MTD_MSIL2A.xml, a Landsat _MTL file, ...): it stands for the product folder."""
    lower = name.lower()
    return (
        lower in _METADATA_FILES
        or (lower.startswith("mtd_msil") and lower.endswith(".xml"))
        or lower.endswith(("_mtl.txt", "_mtl.xml", "_mtl.json"))
    )


def product_name(path: str | os.PathLike[str]) -> str:
    """A product's name without its packaging: "S1A_..._5371" for S1A_..._5371.SAFE,
    its .zip or its manifest.safe; "RS2_..." for a product folder or its product.xml;
    "LC08_..._T1" for a Landsat folder, its .tar or its MTL file."""
    p = Path(path)
    name = p.name
    lower = name.lower()
    if is_metadata_file(name):
        name = (p.parent.parent if p.parent.name == "metadata" else p.parent).name
        lower = name.lower()
    for suffix in _PACKAGING:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem if "." in name else name


@dataclass
class ProductFiles:
    """The files of one product, addressed relative to the product's root folder.

    `source` is what the user named (the folder or the zip); `root` is the
    product folder inside it ("" for a folder given directly, "S1A_....SAFE"
    inside a zip).
    """

    source: Path
    root: str = ""
    _zip: zipfile.ZipFile | None = field(default=None, repr=False)
    _names: set[str] = field(default_factory=set, repr=False)

    @classmethod
    def open(cls, path: str | os.PathLike[str], marker: tuple[str, ...]) -> ProductFiles:
        """Open `path` (folder, a file in the product folder, or a zip) and find the
        product root: the folder holding one of the `marker` files (e.g. "manifest.safe").

        In the worker, the folder or archive must be inside the allowed roots (checked
        here, once); each member is checked again as it is read (read_bytes)."""
        p = Path(path)
        check_files_read([str(p)])
        if p.is_file() and zipfile.is_zipfile(p):
            try:
                zf = zipfile.ZipFile(p)
                names = set(zf.namelist())
            except (zipfile.BadZipFile, OSError) as exc:
                raise InvalidArgument(f"product archive {p} is not a readable zip: {exc}") from exc
            for name in sorted(names, key=len):
                posix = PurePosixPath(name)
                if posix.name in marker:
                    root = str(posix.parent) if str(posix.parent) != "." else ""
                    return cls(p, root, zf, names)
            zf.close()
            raise InvalidArgument(
                f"archive {p} holds no {' or '.join(marker)}; accepted: a zip of one product "
                "folder as delivered"
            )
        if p.is_file() and p.suffix.lower() == ".zip":
            raise InvalidArgument(
                f"product archive {p} is not a readable zip (truncated or corrupt); "
                "download or copy it again"
            )
        folder = p.parent if p.is_file() else p
        if not folder.is_dir():
            raise InvalidArgument(f"product {p} does not exist")
        if not any((folder / m).is_file() for m in marker):
            raise InvalidArgument(f"{p} is not a product folder: it holds no {' or '.join(marker)}")
        return cls(folder)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def _member(self, rel: str) -> str:
        return str(PurePosixPath(self.root) / rel) if self.root else rel

    def exists(self, rel: str) -> bool:
        if self._zip is not None:
            return self._member(rel) in self._names
        return (self.source / rel).is_file()

    def read_bytes(self, rel: str, what: str = "file") -> bytes:
        """The bytes of a member; a missing one is an error naming it.

        Member names come from the product's own XML: one climbing out of the product
        ("..") is refused, and a plain file is checked against the allowed roots before
        it is read (a link inside a product folder may point anywhere).
        """
        if ".." in PurePosixPath(rel).parts or rel.startswith("/"):
            raise InvalidArgument(
                f"product {self.source} names {what} {rel!r}, outside the product; "
                "member paths must stay inside the product folder"
            )
        if not self.exists(rel):
            raise InvalidArgument(f"product {self.source} is incomplete: {what} {rel} is missing")
        if self._zip is not None:
            try:
                return self._zip.read(self._member(rel))
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                raise InvalidArgument(
                    f"product archive {self.source} is corrupt at {rel}: {exc}; download "
                    "or copy it again"
                ) from exc
        path = self.source / rel
        check_files_read([str(path)])
        return path.read_bytes()

    def listdir(self, rel: str = "") -> list[str]:
        """Names (relative to the root) of the files under folder `rel`."""
        if self._zip is not None:
            prefix = self._member(rel).rstrip("/") + "/" if (self.root or rel) else ""
            start = len(self._member("")) + 1 if self.root else 0
            return sorted(
                n[start:] for n in self._names if n.startswith(prefix) and not n.endswith("/")
            )
        base = self.source / rel
        if not base.is_dir():
            return []
        return sorted(str(f.relative_to(self.source)) for f in base.rglob("*") if f.is_file())

    def gdal_path(self, rel: str) -> str:
        """The path GDAL opens a raster member with (a /vsizip/ path inside archives)."""
        if self._zip is not None:
            return f"/vsizip/{self.source}/{self._member(rel)}"
        return str(self.source / rel)

    def local_path(self, rel: str) -> Path | None:
        """The plain file of a member, None inside an archive (for the roots check)."""
        return None if self._zip is not None else self.source / rel
