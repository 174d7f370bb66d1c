"""Which paths in an inbox are scenes, what belongs to them, and when they look complete.

A scene ("unit") is one file, or one multi-file product: a folder such as
a SAFE product, a .zip, a .tar.gz. Writers' temporary names are never
units; sentinels (NAME.done, NAME.ready) and sidecars (NAME.aux.xml, an
ENVI STEM.hdr, and what GDAL writes beside a file it reads: .ovr, .msk,
.properties, .aux) travel with their unit but are not scenes themselves.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sipd.watch.spec import FAILED_DIR, PROCESSED_DIR

# Names writers use while a file is incomplete: scp/rsync/browsers/WinSCP/editors.
TEMP_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload", ".filepart", ".swp", "~")
SENTINEL_SUFFIXES = (".done", ".ready")
# Files that describe another file and are read with it by GDAL. GDAL itself writes some
# of them beside an input it reads, even while sipd predicts it: NAME.aux.xml (PAM
# statistics and metadata), NAME.ovr (external overviews), NAME.msk (an external mask),
# NAME.properties (the /vsigzip/ index of a .gz/.tar.gz) and NAME.aux (an Erdas RRD aux).
# They are never scenes; they travel with their scene.
GDAL_SIDECAR_SUFFIXES = (".aux.xml", ".ovr", ".msk", ".properties", ".aux")
SIDECAR_SUFFIXES = (
    *GDAL_SIDECAR_SUFFIXES, ".tfw", ".tifw", ".wld", ".hdr", ".prj", ".md5", ".sha256",
)  # fmt: skip
# Folders that are one product, even when the watch descends into sub-folders.
PRODUCT_DIR_SUFFIXES = (".safe", ".sen3", ".sen2", ".zarr", ".gdb")
RASTER_SUFFIXES = (
    ".tif", ".tiff", ".jp2", ".img", ".vrt", ".nc", ".h5", ".hdf", ".he5", ".png", ".dat",
    ".bil", ".bsq", ".bip", ".ntf", ".envi",
)  # fmt: skip


def is_ignored_name(name: str) -> bool:
    """Dotfiles (rsync's .NAME.XXXXXX, our own atomic temporaries) and temporary suffixes."""
    lower = name.lower()
    return name.startswith(".") or lower.endswith(TEMP_SUFFIXES)


def is_companion_name(name: str) -> bool:
    lower = name.lower()
    return lower.endswith(SENTINEL_SUFFIXES) or lower.endswith(SIDECAR_SUFFIXES)


# Landsat Collection 2 product ids (LC08_L2SP_008059_20191201_20200825_02_T1): the
# folder as USGS delivers it has no suffix, only its name says it is one product.
LANDSAT_PRODUCT_ID = re.compile(
    r"^L[CEOTM]0\d_L[12][A-Z]{2}_\d{6}_\d{8}_\d{8}_\d{2}_(T1|T2|RT)$", re.IGNORECASE
)


def is_product_dir(name: str) -> bool:
    return name.lower().endswith(PRODUCT_DIR_SUFFIXES) or bool(LANDSAT_PRODUCT_ID.match(name))


def split_ext(name: str) -> tuple[str, str]:
    """('S1A_x', '.SAFE'), ('scene', '.tar.gz'), ('scene', '.tif'), ('scene', '')."""
    lower = name.lower()
    for suffix in (".tar.gz", *PRODUCT_DIR_SUFFIXES):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], name[-len(suffix) :]
    stem, ext = os.path.splitext(name)
    return (stem, ext) if stem else (name, "")


@dataclass(frozen=True)
class Layout:
    """How one watch maps paths under its inbox to units."""

    inbox: Path
    recursive: bool
    pattern: str

    def excluded_top(self, name: str) -> bool:
        return name in (PROCESSED_DIR, FAILED_DIR)

    def unit_of(self, path: Path) -> Path | None:
        """The unit an event at `path` concerns, or None when it concerns no unit."""
        try:
            rel = path.relative_to(self.inbox)
        except ValueError:
            return None
        parts = rel.parts
        if not parts or self.excluded_top(parts[0]):
            return None
        if any(is_ignored_name(p) for p in parts):
            return None
        if not self.recursive:
            parts = parts[:1]
        else:
            for i, part in enumerate(parts[:-1]):
                if is_product_dir(part):
                    parts = parts[: i + 1]
                    break
        name = parts[-1]
        if is_companion_name(name):
            # NAME.tif.done -> NAME.tif; STEM.hdr -> the data file is found by a scan.
            base = _strip_companion(name)
            if base is None:
                return None
            parts = (*parts[:-1], base)
            name = base
        if not fnmatch.fnmatch(name, self.pattern):
            return None
        return self.inbox.joinpath(*parts)

    def is_subfolder(self, path: Path) -> bool:
        """A folder a recursive watch descends into (not a product, not ours)."""
        if not self.recursive:
            return False
        try:
            parts = path.relative_to(self.inbox).parts
        except ValueError:
            return False
        return (
            bool(parts)
            and not self.excluded_top(parts[0])
            and not any(is_ignored_name(p) or is_product_dir(p) for p in parts)
        )

    def scan(self) -> Iterator[Path]:
        """Every unit now in the inbox (for the start scan and periodic rescans)."""
        yield from self._scan_dir(self.inbox, top=True)

    def scan_under(self, folder: Path) -> Iterator[Path]:
        """Every unit below a sub-folder of a recursive watch."""
        yield from self._scan_dir(folder, top=folder == self.inbox)

    def _scan_dir(self, folder: Path, top: bool) -> Iterator[Path]:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            name = entry.name
            if is_ignored_name(name) or (top and self.excluded_top(name)):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir and self.recursive and not is_product_dir(name):
                yield from self._scan_dir(Path(entry.path), top=False)
                continue
            if is_companion_name(name) or not fnmatch.fnmatch(name, self.pattern):
                continue
            yield Path(entry.path)

    def relative(self, unit: Path) -> Path:
        return unit.relative_to(self.inbox)


def _strip_companion(name: str) -> str | None:
    lower = name.lower()
    for suffix in (*SENTINEL_SUFFIXES, *GDAL_SIDECAR_SUFFIXES, ".tfw", ".md5", ".sha256"):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def companions(unit: Path) -> list[Path]:
    """Existing sentinels and sidecars of a unit: NAME.done, NAME.aux.xml, STEM.hdr, ..."""
    stem, _ = split_ext(unit.name)
    names = [unit.name + s for s in (*SENTINEL_SUFFIXES, *SIDECAR_SUFFIXES)]
    names += [stem + s for s in (*SENTINEL_SUFFIXES, ".hdr", ".prj", ".tfw", ".wld")]
    found = []
    for name in dict.fromkeys(names):
        p = unit.with_name(name)
        if p != unit and p.exists():
            found.append(p)
    return found


def has_sentinel(unit: Path, data_mtime_ns: int = 0) -> bool:
    """NAME.done / NAME.ready (or STEM.done / STEM.ready) at least as new as the data: a
    sentinel older than the data is left from an earlier version and says nothing."""
    stem, _ = split_ext(unit.name)
    names = [unit.name + s for s in SENTINEL_SUFFIXES] + [stem + s for s in SENTINEL_SUFFIXES]
    for name in dict.fromkeys(names):
        if name == unit.name:
            continue
        try:
            st = unit.with_name(name).stat()
        except OSError:
            continue
        if st.st_mtime_ns >= data_mtime_ns:
            return True
    return False


Signature = tuple[int, int, int]


def signature(unit: Path) -> Signature | None:
    """(bytes, newest mtime in ns, file count) of a unit with its sidecars; None when gone.

    Sentinels are left out: their arrival must not look like a change.
    """
    try:
        st = unit.stat()
    except OSError:
        return None
    size, mtime, count = 0, st.st_mtime_ns, 1
    if unit.is_dir():
        for root, _dirs, files in os.walk(unit):
            for name in files:
                try:
                    fs = os.stat(os.path.join(root, name))
                except OSError:
                    continue
                size += fs.st_size
                mtime = max(mtime, fs.st_mtime_ns)
                count += 1
    else:
        size = st.st_size
    for extra in companions(unit):
        if extra.name.lower().endswith(SENTINEL_SUFFIXES):
            continue
        try:
            es = extra.stat()
        except OSError:
            continue
        size += es.st_size
        mtime = max(mtime, es.st_mtime_ns)
        count += 1
    return size, mtime, count


# Units whose output set is named by their stem alone (the names sipd always gave):
# GeoTIFFs and multi-file products. Any other file keeps its extension in the name.
_BARE_STEM_SUFFIXES = (".tif", ".tiff", ".zip", ".tar.gz", ".tgz", ".tar", *PRODUCT_DIR_SUFFIXES)


def output_base(layout: Layout, unit: Path) -> Path:
    """Relative output stem: sub/scene.tif -> sub/scene; S1A.SAFE -> S1A; x.tar.gz -> x;
    dup.jp2 -> dup.jp2 (outputs dup.jp2.tif, dup.jp2.json, ...).

    One name per input, decided from the input's name alone: the dispatcher computes it
    again when the job ends, and the inbox may have changed by then (a sibling moved,
    deleted or just arrived), so a rule that looked at siblings could name the outputs
    differently from what the job wrote. Keeping the extension of every other format
    gives `dup.tif` and `dup.jp2` in one folder an output set each, while GeoTIFF and
    product names stay as they were (a plain folder has no extension to keep). Not
    `unit.is_dir()`: a moved or deleted input must get the same name as before.
    Units that still share a name: one stem as GeoTIFFs and products (x.tif,
    x.tiff, x.zip, x.SAFE) in one folder.
    """
    rel = layout.relative(unit)
    if rel.name.lower().endswith(_BARE_STEM_SUFFIXES):
        stem, _ = split_ext(rel.name)
        return rel.with_name(stem)
    return rel


# Names atomic_path and scratch_path give temporaries (sipd.raster).
_LEFTOVER = re.compile(r"^\..+\.[0-9a-f]{8}\.(tmp|scratch\..+)$")


def is_leftover_temporary(name: str) -> bool:
    return bool(_LEFTOVER.match(name))
