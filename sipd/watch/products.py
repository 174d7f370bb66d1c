"""A unit in the inbox -> the raster path GDAL opens (a file, a product folder, an archive)."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

from sipd.errors import InvalidArgument
from sipd.watch.files import RASTER_SUFFIXES, is_companion_name, is_ignored_name

# Files GDAL opens as a whole product (the SENTINEL1/SENTINEL2/SAFE drivers).
_MANIFESTS = ("manifest.safe", "xfdumanifest.xml", "MTD_MSIL1C.xml", "MTD_MSIL2A.xml")


def raster_path(unit: Path) -> str:
    """The path to hand the predictor; InvalidArgument names what was found when none fits."""
    lower = unit.name.lower()
    if unit.is_dir():
        return str(_in_folder(unit))
    if lower.endswith(".zip"):
        return _in_archive(unit, _zip_members(unit), "/vsizip/")
    if lower.endswith((".tar.gz", ".tgz", ".tar")):
        return _in_archive(unit, _tar_members(unit), "/vsitar/")
    return str(unit)


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
