"""What a multichannel image holds: its channels, each a grid of 2-D planes over (Z, T),
and where every plane's pixels are (a GDAL path and band).

The structure comes from tifffile (OME-XML, ImageJ and plain TIFF series, with their
axes), the pixels from GDAL: GDAL reads any TIFF compression (LZW, JPEG, ...) by
windows of rows, so a plane of any size streams in bounded memory. A page of a TIFF is
the GDAL dataset "GTIFF_DIR:<n>:<file>" (n 1-based); its samples are GDAL bands.
PNG/JPEG (and TIFF) images in a folder are read by GDAL directly, one image per channel.
"""

from __future__ import annotations

import math
import os
import re
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import tifffile

from sipd.errors import InvalidArgument
from sipd.paths import require_regular
from sipd.raster import check_files_read, open_raster

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
OTHER_SUFFIXES = (".png", ".jpg", ".jpeg")
IMAGE_SUFFIXES = TIFF_SUFFIXES + OTHER_SUFFIXES
# tifffile axis codes that select a plane; every other non-image axis (C, S, I, Q, ...)
# is a channel axis.
Z_AXIS, T_AXIS, PAGE_AXES = "Z", "T", "YXS"
# Microns per unit of the TIFF ResolutionUnit tag (2 = inch, 3 = centimetre; TIFF 6.0).
_MICRONS_PER_RESOLUTION_UNIT = {2: 25400.0, 3: 10000.0}
_IMAGEJ_UNITS = {"micron": "µm", "um": "µm", "µm": "µm", "nm": "nm", "mm": "mm", "cm": "cm"}


@dataclass(frozen=True)
class Plane:
    """One 2-D plane: a GDAL path and a 1-based band of it."""

    path: str
    band: int


@dataclass
class Channel:
    """A channel and its planes, planes[z][t]."""

    name: str
    planes: list[list[Plane]]
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class ImageSource:
    """An opened image: size, channels, where the pixels are, and what to tag the output
    with. `files` are every file its planes read (checked against the allowed roots)."""

    format: str
    name: str
    width: int
    height: int
    dtype: str
    axes: str
    shape: tuple[int, ...]
    size_z: int
    size_t: int
    channels: list[Channel]
    files: list[str]
    # (size x, size y, unit, where it came from) when the file says it.
    physical: tuple[float, float, str, str] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    series_count: int = 1


def open_image(path: Path, series: int) -> ImageSource:
    """Open what the user named: a TIFF (OME, ImageJ, multi-page, multi-sample), a PNG or
    JPEG, or a folder of images, one per channel (or an OME multi-file set)."""
    require_regular(path, "image")
    check_files_read([str(path)])
    if path.is_dir():
        return _open_folder(path, series)
    magic = image_magic(path)
    if magic == "tiff":
        return _open_tiff(path, series)
    if magic in ("png", "jpeg"):
        _no_series(series, path, 1)
        return _open_images([path], magic.upper(), path.name)
    raise InvalidArgument(
        f"{path} is not an image this preprocessor reads; accepted: an OME-TIFF or TIFF "
        "(multi-page or multi-sample), a PNG or JPEG, or a folder of PNG/JPEG/TIFF images "
        "with one image per channel"
    )


def image_magic(path: Path) -> str:
    """ "tiff", "png" or "jpeg" from a file's first bytes; "" for anything else."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return ""
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    return ""


def folder_images(folder: Path, limit: int | None = None) -> list[Path]:
    """The images directly in `folder` (no walk into subfolders), sorted by name; hidden
    files (a half-copied ".name.tmp") are skipped."""
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.lower().endswith(IMAGE_SUFFIXES):
                continue
            if entry.is_file():
                found.append(Path(entry.path))
                if limit is not None and len(found) >= limit:
                    break
    return sorted(found, key=lambda p: p.name)


def _no_series(series: int, path: Path, count: int) -> None:
    if series >= count:
        raise InvalidArgument(
            f"series {series} is not in {path}: it holds {count} series (0 to {count - 1})"
        )


# ---------------------------------------------------------------- folders


def _open_folder(folder: Path, series: int) -> ImageSource:
    images = folder_images(folder)
    if not images:
        raise InvalidArgument(
            f"folder {folder} holds no image; accepted: PNG, JPEG or TIFF files (one per "
            "channel, sorted by name) directly in the folder"
        )
    ome = [p for p in images if p.name.lower().endswith((".ome.tif", ".ome.tiff"))]
    if ome and len(ome) == len(images):
        # A folder of an OME multi-file set: read it through the file with the full XML.
        head = _metadata_file(ome[0])
        try:
            with tifffile.TiffFile(head) as tif:
                xml = tif.ome_metadata or ""
        except (tifffile.TiffFileError, OSError, ValueError, struct.error) as exc:
            # As _open_tiff says it for the file named directly.
            raise InvalidArgument(
                f"{head} is not a readable TIFF (truncated or corrupt): {exc}; copy or "
                "download it again"
            ) from exc
        if _ome_other_files(xml):
            return _open_tiff(head, series)
    _no_series(series, folder, 1)
    return _open_images(images, "image folder", folder.name)


def _open_images(images: list[Path], kind: str, name: str) -> ImageSource:
    """One channel per band of each image (alpha bands dropped): a grey image gives one
    channel named by its file, an RGB one three ("name_1".."name_3")."""
    check_files_read([str(p) for p in images])
    channels: list[Channel] = []
    sizes: dict[str, tuple[int, int]] = {}
    dtypes: set[str] = set()
    physical = None
    for path in images:
        with open_raster(str(path)) as ds:
            sizes[path.name] = (ds.width, ds.height)
            bands = [b for b in range(1, ds.count + 1) if ds.colorinterp[b - 1].name != "alpha"]
            dtypes.update(ds.dtypes[b - 1] for b in bands)
            stem = path.name.rsplit(".", 1)[0]
            for b in bands:
                label = stem if len(bands) == 1 else f"{stem}_{b}"
                channels.append(Channel(label, [[Plane(str(path), b)]], {"file": path.name}))
            if physical is None:
                physical = _gdal_resolution(ds.tags())
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{n} {w}x{h}" for n, (w, h) in sizes.items())
        raise InvalidArgument(
            f"the images of {name} differ in size ({listed}); every channel image must have "
            "the same width and height"
        )
    width, height = next(iter(sizes.values()))
    fmt = kind if kind != "image folder" else _folder_kind(images)
    return ImageSource(
        format=fmt,
        name=name,
        width=width,
        height=height,
        dtype=",".join(sorted(dtypes)),
        axes="CYX",
        shape=(len(channels), height, width),
        size_z=1,
        size_t=1,
        channels=_unique_names(channels),
        files=[str(p) for p in images],
        physical=physical,
    )


def _folder_kind(images: list[Path]) -> str:
    kinds = sorted({p.suffix.lower().lstrip(".").replace("jpg", "jpeg") for p in images})
    return f"image folder ({'/'.join(k.upper() for k in kinds)})"


def _gdal_resolution(tags: dict[str, str]) -> tuple[float, float, str, str] | None:
    """Pixel size in µm from the TIFFTAG_X/YRESOLUTION GDAL reports (TIFF tags, PNG pHYs)."""
    try:
        xres = float(tags["TIFFTAG_XRESOLUTION"])
        yres = float(tags.get("TIFFTAG_YRESOLUTION", xres))
        unit = int(tags.get("TIFFTAG_RESOLUTIONUNIT", "2").split()[0])
    except (KeyError, ValueError):
        return None
    return _resolution_to_size(xres, yres, unit)


def _resolution_to_size(
    xres: float, yres: float, unit: int
) -> tuple[float, float, str, str] | None:
    # TIFF 6.0: X/YResolution are pixels per ResolutionUnit; unit 1 (none) says nothing
    # physical, and 0 (Bio-Formats writes 0/1000 when it has no size) neither.
    per = _MICRONS_PER_RESOLUTION_UNIT.get(unit)
    if per is None or not (xres > 0 and yres > 0) or not math.isfinite(xres + yres):
        return None
    return per / xres, per / yres, "µm", "TIFF resolution"


def _unique_names(channels: list[Channel]) -> list[Channel]:
    """Band names must differ: a repeated name gets its channel index appended."""
    names = [c.name for c in channels]
    for i, c in enumerate(channels):
        if names.count(c.name) > 1:
            c.name = f"{c.name}_{i}"
    return channels


# ---------------------------------------------------------------- TIFF


def _metadata_file(path: Path) -> Path:
    """The file holding an OME set's full XML: a file of a multi-file set that holds only
    pixels says so with <BinaryOnly MetadataFile=...>."""
    try:
        with tifffile.TiffFile(path) as tif:
            xml = tif.ome_metadata or ""
    except (tifffile.TiffFileError, OSError, ValueError, struct.error):
        return path  # _open_tiff says what is wrong with it
    m = re.search(r"<(?:\w+:)?BinaryOnly\b[^>]*\bMetadataFile=\"([^\"]+)\"", xml)
    if not m:
        return path
    target = path.parent / _safe_member(m.group(1), path)
    check_files_read([str(target)])
    require_regular(target, "OME metadata file")
    return target


def _safe_member(name: str, path: Path) -> str:
    # OME names the files of a set by name, in the same folder; a path would let a
    # file point anywhere.
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        raise InvalidArgument(
            f"{path} names the OME file {name!r}; accepted: files of a set in the same folder"
        )
    return name


def _ome_other_files(xml: str) -> list[str]:
    """The other files of an OME multi-file set: the TiffData UUIDs whose UUID is not this
    file's own (OME@UUID). A file's own entry is matched by UUID, not name, so a renamed
    single-file OME-TIFF still reads (as Bio-Formats and tifffile do)."""
    own = re.search(r"<(?:\w+:)?OME\b[^>]*\bUUID=\"([^\"]+)\"", xml)
    names = set()
    for m in re.finditer(r"<(?:\w+:)?UUID\b([^>]*)>([^<]*)<", xml):
        file = re.search(r"\bFileName=\"([^\"]+)\"", m.group(1))
        if file and (own is None or m.group(2).strip() != own.group(1)):
            names.add(file.group(1))
    return sorted(names)


def _open_tiff(path: Path, series: int) -> ImageSource:
    path = _metadata_file(path)
    try:
        tif = tifffile.TiffFile(path)
    except (tifffile.TiffFileError, OSError, ValueError, struct.error) as exc:
        raise InvalidArgument(
            f"{path} is not a readable TIFF (truncated or corrupt): {exc}; copy or "
            "download it again"
        ) from exc
    try:
        xml = tif.ome_metadata if tif.is_ome else None
        if xml:
            # tifffile opens the other files of a multi-file set when it builds the series:
            # check them against the allowed roots first.
            others = [path.parent / _safe_member(n, path) for n in _ome_other_files(xml)]
            check_files_read([str(p) for p in others if p != path])
            missing = [p.name for p in others if not p.is_file()]
            if missing:
                raise InvalidArgument(
                    f"OME set {path.name} is incomplete: {', '.join(missing)} missing; "
                    "accepted: every file its OME-XML names, in the same folder"
                )
        try:
            all_series = tif.series
        except Exception as exc:  # tifffile raises many kinds on broken structures
            raise InvalidArgument(
                f"{path} is not a readable TIFF (truncated or corrupt): {exc}; copy or "
                "download it again"
            ) from exc
        _no_series(series, path, len(all_series))
        return _tiff_source(tif, path, all_series[series], series, len(all_series), xml)
    finally:
        tif.close()


def _tiff_source(
    tif: tifffile.TiffFile,
    path: Path,
    s: tifffile.TiffPageSeries,
    index: int,
    count: int,
    xml: str | None,
) -> ImageSource:
    axes, shape = s.get_axes(False), s.get_shape(False)
    key = s.keyframe
    if key.shaped[1] != 1:
        raise InvalidArgument(f"{path}: volumetric TIFF pages (ImageDepth) are not supported")
    height, width = key.imagelength, key.imagewidth
    samples = key.shaped[0] * key.shaped[4]
    outer = [(a, n) for a, n in zip(axes, shape, strict=True) if a not in PAGE_AXES]
    pages = list(s.pages)
    if math.prod(n for _, n in outer) != len(pages):
        raise InvalidArgument(
            f"{path}: series {index} ({axes} {shape}) does not map onto its {len(pages)} pages"
        )
    files = _check_pages(path, pages)
    size_z = dict(outer).get(Z_AXIS, 1)
    size_t = dict(outer).get(T_AXIS, 1)
    chan_axes = [(a, n) for a, n in outer if a not in (Z_AXIS, T_AXIS)]
    n_chan = math.prod(n for _, n in chan_axes) * samples
    grid: list[list[list[Plane | None]]] = [
        [[None] * size_t for _ in range(size_z)] for _ in range(n_chan)
    ]
    for i, page in enumerate(pages):
        idx = _unravel(i, [n for _, n in outer])
        pos = dict(zip([a for a, _ in outer], idx, strict=True))
        c0 = 0
        for a, n in chan_axes:
            c0 = c0 * n + pos[a]
        gdal = f"GTIFF_DIR:{page.index + 1}:{page.parent.filehandle.path}"
        for sample in range(samples):
            grid[c0 * samples + sample][pos.get(Z_AXIS, 0)][pos.get(T_AXIS, 0)] = Plane(
                gdal, sample + 1
            )
    ome = _ome_image(xml, index) if xml else {}
    names = ome.get("channels", [])
    channels = []
    for c in range(n_chan):
        info = names[c] if len(names) == n_chan else {}
        channels.append(Channel(info.get("Name") or f"ch{c}", grid[c], _channel_tags(c, info)))  # type: ignore[arg-type]
    physical = ome.get("physical") or _tiff_resolution(tif, key)
    metadata = {k: v for k, v in (("IMAGE_NAME", ome.get("name")),
                                  ("ACQUISITION_DATE", ome.get("date"))) if v}  # fmt: skip
    fmt = "OME-TIFF" if xml else ("ImageJ TIFF" if tif.is_imagej else "TIFF")
    return ImageSource(
        format=fmt,
        name=path.name,
        width=width,
        height=height,
        dtype=str(key.dtype),
        # The squeezed axes tifffile reports (CYX, ZCYX, ...): what the user knows the file by.
        axes=s.axes,
        shape=tuple(s.shape),
        size_z=size_z,
        size_t=size_t,
        channels=_unique_names(channels),
        files=files,
        physical=physical,
        metadata=metadata,
        series_count=count,
    )


def _unravel(i: int, dims: list[int]) -> list[int]:
    out = []
    for n in reversed(dims):
        out.append(i % n)
        i //= n
    return out[::-1]


def _check_pages(path: Path, pages: list[object]) -> list[str]:
    """Every page present and whole: a file cut short (a copy still running, a truncated
    download) is refused here, before any output, rather than read as zeros."""
    sizes: dict[str, int] = {}
    for i, page in enumerate(pages):
        if page is None:
            raise InvalidArgument(f"{path}: plane {i} of the series is missing from the file(s)")
        file = str(page.parent.filehandle.path)  # type: ignore[attr-defined]
        if file not in sizes:
            sizes[file] = os.stat(file).st_size
        offsets = page.dataoffsets  # type: ignore[attr-defined]
        counts = page.databytecounts  # type: ignore[attr-defined]
        end = max((o + n for o, n in zip(offsets, counts, strict=False)), default=0)
        if end > sizes[file] or not offsets:
            raise InvalidArgument(
                f"{Path(file).name} is truncated: plane {i} needs {end} bytes, the file has "
                f"{sizes[file]}; copy or download it again"
            )
    files = sorted(sizes)
    check_files_read(files)
    return files


def _channel_tags(index: int, info: dict[str, str]) -> dict[str, str]:
    tags = {"channel_index": str(index)}
    for src, dst in (
        ("Name", "channel_name"),
        ("Fluor", "fluor"),
        ("EmissionWavelength", "emission_wavelength"),
        ("ExcitationWavelength", "excitation_wavelength"),
        ("EmissionWavelengthUnit", "emission_wavelength_unit"),
    ):
        if info.get(src):
            tags[dst] = info[src]
    return tags


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _ome_image(xml: str, index: int) -> dict[str, object]:
    """Name, acquisition date, channels (attributes) and physical pixel size of the
    series' <Image> (OME data model: Pixels@PhysicalSizeX/Y, default unit µm)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise InvalidArgument(f"the OME-XML of the file is not well formed: {exc}") from exc
    images = [e for e in root if _local(e.tag) == "Image"]
    if index >= len(images):
        return {}
    image = images[index]
    pixels = next((e for e in image if _local(e.tag) == "Pixels"), None)
    date = next((e.text for e in image if _local(e.tag) == "AcquisitionDate"), None)
    out: dict[str, object] = {"name": image.get("Name", ""), "date": (date or "").strip()}
    if pixels is None:
        return out
    out["channels"] = [dict(e.attrib) for e in pixels if _local(e.tag) == "Channel"]
    try:
        sx, sy = float(pixels.get("PhysicalSizeX", "")), float(pixels.get("PhysicalSizeY", ""))
    except ValueError:
        return out
    if sx > 0 and sy > 0:
        unit = pixels.get("PhysicalSizeXUnit", "µm")
        if pixels.get("PhysicalSizeYUnit", unit) != unit:
            # Rare; keep one unit by converting Y's size to X's through metres.
            sy = sy * _metres(pixels.get("PhysicalSizeYUnit", "µm")) / _metres(unit)
        out["physical"] = (sx, sy, unit, "OME")
    return out


def _metres(unit: str) -> float:
    factors = {"m": 1.0, "cm": 1e-2, "mm": 1e-3, "µm": 1e-6, "um": 1e-6, "nm": 1e-9,
               "pm": 1e-12, "Å": 1e-10}  # fmt: skip
    if unit not in factors:
        raise InvalidArgument(f"OME PhysicalSize unit {unit!r} is not a length unit sipd knows")
    return factors[unit]


def _tiff_resolution(
    tif: tifffile.TiffFile, key: tifffile.TiffPage
) -> tuple[float, float, str, str] | None:
    """Pixel size from the TIFF resolution tags; ImageJ writes pixels per its own unit
    (unit=micron in its description) with ResolutionUnit 1."""
    tags = key.tags
    if "XResolution" not in tags:
        return None

    def rational(name: str) -> float:
        value = tags[name].value if name in tags else tags["XResolution"].value
        num, den = value if isinstance(value, tuple) else (value, 1)
        return num / den if den else 0.0

    xres, yres = rational("XResolution"), rational("YResolution")
    unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    ij_unit = (tif.imagej_metadata or {}).get("unit") if tif.is_imagej else None
    if unit == 1 and ij_unit in _IMAGEJ_UNITS and xres > 0 and yres > 0:
        return 1.0 / xres, 1.0 / yres, _IMAGEJ_UNITS[str(ij_unit)], "ImageJ resolution"
    return _resolution_to_size(xres, yres, unit)
