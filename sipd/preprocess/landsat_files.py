"""A Landsat product as delivered: a folder of GeoTIFFs and an MTL, the MTL itself, or
the .tar USGS ships (read in place: the MTL through tarfile, the rasters through
GDAL's /vsitar/; nothing is unpacked).

Every file is read inside the daemon's allowed roots: the folder or archive is
checked once here, members again as they are read (ProductFiles for folders; rasters
through open_raster, which checks every file GDAL opened, /vsitar/ paths on their
archive).
"""

from __future__ import annotations

import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sipd.errors import InvalidArgument, SipError
from sipd.preprocess.product_files import ProductFiles
from sipd.raster import check_files_read

# Collection 2 product ids start with the sensor/satellite letters and number:
# LC08/LC09 (OLI/TIRS), LO/LT 08-09 (OLI or TIRS only), LE07 (ETM+), LT04/LT05 (TM).
PRODUCT_ID = re.compile(r"^L[COTEM]0[1-9]_L[12][A-Z0-9]{2}_\d{6}_\d{8}_\d{8}_\d{2}_[A-Z0-9]{2}")
MTL_SUFFIXES = ("_MTL.txt", "_MTL.xml", "_MTL.json")
# How many folder entries or tar members `accepts` looks at before giving up: a sniff,
# not a walk (a user may name a huge folder by mistake).
SNIFF_ENTRIES = 256
ACCEPTED = (
    "accepted: a Landsat Collection 2 product folder, its _MTL.txt/_MTL.xml/_MTL.json, "
    "or the .tar as delivered by USGS"
)


def is_mtl_name(name: str) -> bool:
    return name.upper().endswith(tuple(s.upper() for s in MTL_SUFFIXES))


def choose_mtl(names: list[str]) -> str | None:
    """The MTL to read among `names` (text first: it is the reference form, then XML,
    then JSON); None when there is none. Several products in one place is an error."""
    mtls = [n for n in names if is_mtl_name(PurePosixPath(n).name)]
    if not mtls:
        return None
    ids = {re.sub(r"_MTL$", "", PurePosixPath(n).name.rsplit(".", 1)[0]) for n in mtls}
    if len(ids) > 1:
        raise InvalidArgument(
            f"found the metadata of {len(ids)} products ({', '.join(sorted(ids))}); "
            "give one product's folder, MTL or .tar"
        )
    for suffix in MTL_SUFFIXES:
        for n in mtls:
            if n.upper().endswith(suffix.upper()):
                return n
    return None


@dataclass
class LandsatFiles:
    """The files of one product, by their names in the MTL (FILE_NAME_*: bare names of
    files next to the MTL)."""

    source: Path  # what the user named
    mtl_name: str  # the MTL's name (relative to the product folder)
    folder: ProductFiles | None = None
    tar: tarfile.TarFile | None = field(default=None, repr=False)
    members: dict[str, tarfile.TarInfo] = field(default_factory=dict, repr=False)
    prefix: str = ""  # the product folder inside the tar ("" when flat)

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()

    def exists(self, name: str) -> bool:
        if self.tar is not None:
            return self.prefix + name in self.members
        assert self.folder is not None
        return self.folder.exists(name)

    def read_bytes(self, name: str, what: str) -> bytes:
        _check_name(name, self.source)
        if self.tar is None:
            assert self.folder is not None
            return self.folder.read_bytes(name, what)
        info = self.members.get(self.prefix + name)
        if info is None:
            raise InvalidArgument(f"product {self.source} is incomplete: {what} {name} is missing")
        f = self.tar.extractfile(info)
        if f is None:
            raise InvalidArgument(f"product archive {self.source}: {name} is not a plain file")
        with f:
            return f.read()

    def gdal_path(self, name: str) -> str:
        _check_name(name, self.source)
        if self.tar is not None:
            return f"/vsitar/{self.source}/{self.prefix}{name}"
        assert self.folder is not None
        return self.folder.gdal_path(name)


def _check_name(name: str, source: Path) -> None:
    """A file name from the MTL must be a plain name next to it: an edited MTL must not
    send the reader elsewhere on the disk."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise InvalidArgument(
            f"product {source} names the file {name!r}; the MTL's FILE_NAME_* values must "
            "be plain names of files in the product folder"
        )


def open_product(path: Path) -> LandsatFiles:
    """Open what the user named: a folder, an MTL file or a .tar."""
    check_files_read([str(path)])
    if path.is_dir():
        return _open_folder(path, None)
    if not path.is_file():
        raise InvalidArgument(f"product {path} does not exist; {ACCEPTED}")
    lower = path.name.lower()
    if is_mtl_name(path.name):
        return _open_folder(path.parent, path.name)
    if lower.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        raise InvalidArgument(
            f"{path.name} is a compressed tar: its bands cannot be read in place block by "
            "block; accepted: the uncompressed .tar USGS delivers, or the product folder"
        )
    if lower.endswith(".tar"):
        return _open_tar(path)
    raise InvalidArgument(f"{path} is not a Landsat product; {ACCEPTED}")


def _open_folder(folder: Path, mtl: str | None) -> LandsatFiles:
    if mtl is None:
        names = _folder_names(folder)
        mtl = choose_mtl(names)
        if mtl is None:
            raise InvalidArgument(
                f"folder {folder} holds no Landsat metadata file (*_MTL.txt, *_MTL.xml or "
                f"*_MTL.json); {ACCEPTED}"
            )
    return LandsatFiles(folder, mtl, folder=ProductFiles(folder))


def _folder_names(folder: Path) -> list[str]:
    # The product id is the folder's name as delivered: try the MTL named after it
    # first, then list the folder (USGS folders hold some 20 files).
    named = [folder.name + s for s in MTL_SUFFIXES if (folder / (folder.name + s)).is_file()]
    if named:
        return named
    try:
        return sorted(e.name for e in os.scandir(folder) if e.is_file(follow_symlinks=False))
    except OSError as exc:
        raise InvalidArgument(f"folder {folder} cannot be listed: {exc}") from exc


def _open_tar(path: Path) -> LandsatFiles:
    size = path.stat().st_size
    try:
        # Kept open for the run (LandsatFiles.close): the MTL is read through it.
        tar = tarfile.open(path, "r:")  # noqa: SIM115
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise _bad_tar(path, exc) from exc
    try:
        try:
            infos = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise _bad_tar(path, exc) from exc
        members: dict[str, tarfile.TarInfo] = {}
        for info in infos:
            if not info.isfile():
                continue  # folders; links are never followed (they could point anywhere)
            if info.offset_data + info.size > size:
                raise InvalidArgument(
                    f"product archive {path} is truncated: member {info.name} needs "
                    f"{info.offset_data + info.size} bytes, the file has {size}; download "
                    "or copy it again"
                )
            members[info.name] = info
        mtl = choose_mtl(sorted(members))
        if mtl is None:
            raise InvalidArgument(
                f"archive {path} holds no Landsat metadata file (*_MTL.txt/.xml/.json); {ACCEPTED}"
            )
        parent = str(PurePosixPath(mtl).parent)
        prefix = "" if parent == "." else parent + "/"
        return LandsatFiles(path, mtl[len(prefix) :], tar=tar, members=members, prefix=prefix)
    except BaseException:
        tar.close()
        raise


def _bad_tar(path: Path, exc: BaseException) -> InvalidArgument:
    return InvalidArgument(
        f"product archive {path} is not a readable tar (truncated or corrupt: {exc}); "
        "download or copy it again"
    )


def accepts(path: Path) -> bool:
    """Whether `path` is a Landsat C2 product (folder, MTL or .tar), from a few names
    and the first bytes of the MTL; never raises. Files outside the allowed roots are
    not looked into (the run then says why)."""
    try:
        if path.is_dir():
            return _folder_accepts(path)
        if not path.is_file():
            return False
        lower = path.name.lower()
        if is_mtl_name(path.name):
            return _sniff(path)
        if lower.endswith(".tar"):
            check_files_read([str(path)])
            return _tar_accepts(path)
        if lower.endswith((".tar.gz", ".tgz")):
            # Not readable in place; accepted here so that the run says why.
            return bool(PRODUCT_ID.match(path.name))
    except (OSError, ValueError, tarfile.TarError, EOFError, SipError):
        return False
    return False


def _sniff(mtl: Path) -> bool:
    """Whether the first bytes of a regular file `mtl` are a Collection 2 MTL's."""
    if not mtl.is_file():  # follows links; False for FIFOs and devices
        return False
    check_files_read([str(mtl)])
    with mtl.open("rb") as f:
        return _looks_like_mtl(f.read(4096))


def _looks_like_mtl(head: bytes) -> bool:
    text = head.decode("utf-8", "replace")
    return bool(
        re.search(r"GROUP\s*=\s*LANDSAT_METADATA_FILE", text)
        or "<LANDSAT_METADATA_FILE" in text
        or '"LANDSAT_METADATA_FILE"' in text
    )


def _folder_accepts(folder: Path) -> bool:
    names = [folder.name + s for s in MTL_SUFFIXES if (folder / (folder.name + s)).is_file()]
    if not names:
        with os.scandir(folder) as it:
            for i, entry in enumerate(it):
                if i >= SNIFF_ENTRIES:
                    break
                if is_mtl_name(entry.name) and entry.is_file(follow_symlinks=False):
                    names.append(entry.name)
    return any(_sniff(folder / name) for name in names)


def _tar_accepts(path: Path) -> bool:
    with tarfile.open(path, "r:") as tar:
        for i, info in enumerate(tar):
            if i >= SNIFF_ENTRIES:
                break
            if info.isfile() and is_mtl_name(PurePosixPath(info.name).name):
                f = tar.extractfile(info)
                return f is not None and _looks_like_mtl(f.read(4096))
    return False
