"""A product as delivered: a folder, a file inside it (manifest.safe, product.xml) or a zip.

Metadata files are read with Python (zipfile for archives: nothing is unpacked),
rasters through GDAL paths (`/vsizip/...` inside an archive), so a product is
read in place whatever form it came in.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sipd.errors import InvalidArgument


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
        product root: the folder holding one of the `marker` files (e.g. "manifest.safe")."""
        p = Path(path)
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
        """The bytes of a member; a missing one is an error naming it."""
        if not self.exists(rel):
            raise InvalidArgument(f"product {self.source} is incomplete: {what} {rel} is missing")
        if self._zip is not None:
            try:
                return self._zip.read(self._member(rel))
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise InvalidArgument(
                    f"product archive {self.source} is corrupt at {rel}: {exc}"
                ) from exc
        return (self.source / rel).read_bytes()

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
