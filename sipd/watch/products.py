"""A unit in the inbox -> the raster path GDAL opens (a file, a product folder, an archive)."""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from pathlib import Path

import rasterio
from rasterio.errors import RasterioError

from sipd.errors import InvalidArgument
from sipd.watch.files import RASTER_SUFFIXES, is_companion_name, is_ignored_name

# Files GDAL opens as a whole product (the SENTINEL1/SENTINEL2/SAFE drivers).
_MANIFESTS = ("manifest.safe", "xfdumanifest.xml", "MTD_MSIL1C.xml", "MTD_MSIL2A.xml")


def raster_path(unit: Path) -> str:
    """The path to hand the predictor; InvalidArgument names what was found when none fits.

    A unit must be self-contained: regular files (or a folder/archive of them), no
    symlinks, and every file GDAL opens for it (VRT sources, sidecars) inside it.
    Everything is stat'ed before anything is opened: a FIFO would block the worker.
    """
    _check_entry(unit, unit.name)
    lower = unit.name.lower()
    if unit.is_dir():
        _check_folder(unit)
        path = str(_in_folder(unit))
    elif lower.endswith(".zip"):
        path = _in_archive(unit, _zip_members(unit), "/vsizip/")
    elif lower.endswith((".tar.gz", ".tgz", ".tar")):
        path = _in_archive(unit, _tar_members(unit), "/vsitar/")
    else:
        path = str(unit)
    _check_opened(unit, path)
    return path


_ACCEPTED = "accepted: regular files, or folders and zip/tar archives of them"


def check_unit(unit: Path) -> None:
    """A raw product unit (read by a preprocessor, not GDAL): no links, FIFOs or devices."""
    _check_entry(unit, unit.name)
    if unit.is_dir():
        _check_folder(unit)


def _check_entry(path: Path, shown: str) -> None:
    try:
        mode = path.lstat().st_mode
    except OSError as exc:
        raise InvalidArgument(f"{shown} cannot be read: {exc}") from exc
    if stat.S_ISLNK(mode):
        # A link may point anywhere (outside the allowed roots); and with
        # --on-success delete only the link would go. Links are never followed.
        raise InvalidArgument(
            f"{shown} is a symbolic link; links are not followed in a watched inbox. "
            f"Copy or move the file in; {_ACCEPTED}"
        )
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InvalidArgument(
            f"{shown} is not a regular file (a FIFO, device or socket); {_ACCEPTED}"
        )


def _check_folder(folder: Path) -> None:
    for root, dirs, files in os.walk(folder):  # os.walk does not follow links
        for name in (*dirs, *files):
            path = Path(root) / name
            _check_entry(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")


def _check_opened(unit: Path, path: str) -> None:
    """Open the chosen raster (metadata only) and refuse it when GDAL opened any file
    outside the unit: a VRT must name files of its own product, not the disk."""
    try:
        with rasterio.open(path) as ds:
            files = list(ds.files)
    except RasterioError:
        # Unreadable: nothing can be read through it either; the job reports
        # the reader's own error, as for any corrupt scene.
        return
    stem = unit.name.split(".", 1)[0]
    for name in files:
        if name.startswith("/vsi"):
            if name.startswith((f"/vsizip/{unit}/", f"/vsitar/{unit}/")):
                continue
        else:
            real = Path(os.path.realpath(name))
            if real == unit or real.is_relative_to(unit):
                continue
            # Sidecars of a single file (scene.tif.aux.xml, scene.hdr, scene.tfw).
            if real.parent == unit.parent and real.name.split(".", 1)[0] == stem:
                continue
        raise InvalidArgument(
            f"{unit.name} references {name}, outside the unit; a VRT (or sidecar) in a "
            "watched inbox may only name files inside its own folder or archive"
        )


def _in_folder(folder: Path) -> Path:
    for manifest in _MANIFESTS:
        if (folder / manifest).is_file():
            return folder / manifest
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return folder / _choose(folder, files)


def _zip_members(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            return [i.filename for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidArgument(f"{path.name} is not a readable zip archive: {exc}") from exc


def _tar_members(path: Path) -> list[str]:
    try:
        with tarfile.open(path) as tf:
            return [m.name for m in tf.getmembers() if m.isfile()]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidArgument(f"{path.name} is not a readable tar archive: {exc}") from exc


def _in_archive(path: Path, members: list[str], vsi: str) -> str:
    for member in members:
        name = member.rsplit("/", 1)[-1]
        if name in _MANIFESTS:
            return f"{vsi}{path}/{member}"
    return f"{vsi}{path}/{_choose(path, members)}"


def _choose(where: Path, members: list[str]) -> str:
    """The one raster among a product's files; a VRT wins, as it names the others."""
    usable = [
        m
        for m in members
        if not any(is_ignored_name(p) for p in m.split("/"))
        and not is_companion_name(m.rsplit("/", 1)[-1])
    ]
    vrts = [m for m in usable if m.lower().endswith(".vrt")]
    if len(vrts) == 1:
        return vrts[0]
    rasters = [m for m in usable if m.lower().endswith(RASTER_SUFFIXES)]
    if len(rasters) == 1:
        return rasters[0]
    if not rasters:
        shown = ", ".join(usable[:8]) or "no files"
        raise InvalidArgument(
            f"{where.name} holds no raster this watch can read ({shown}); a product must hold "
            "one raster (GeoTIFF, JP2, ...), a VRT naming its bands, or a SAFE manifest"
        )
    raise InvalidArgument(
        f"{where.name} holds {len(rasters)} rasters ({', '.join(rasters[:6])}); a product "
        "must hold exactly one, or a VRT that stacks them into one scene"
    )
