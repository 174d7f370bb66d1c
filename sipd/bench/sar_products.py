"""Sentinel-1 GRD products in the real layout with generated DN, for benchmarks and tests.

A template SAFE (real manifest, annotation, calibration and noise files, e.g. the
one in ../shared/fixtures) is copied; its measurement rasters are written with
DN made here. `scale` > 1 shrinks the product: image size, every LUT and noise
vector position, the azimuth noise blocks and the geolocation grid are divided
by it and the pixel spacings multiplied, so the small product has the real
product's radiometry and geometry at a coarser sampling. A missing second
polarisation (the fixture ships VV only) is made from the first one's files.
Nothing here is used by the daemon.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.windows import Window

DnFunction = Callable[[int, int, int, int], np.ndarray]  # (row0, col0, rows, cols) -> uint16

_SCALED_LISTS = re.compile(r"(<(line|pixel)( count=\"\d+\")?>)([^<]*)(</\2>)")
_SCALED_NUMBERS = re.compile(
    r"(<(firstAzimuthLine|lastAzimuthLine|firstRangeSample|lastRangeSample|"
    r"numberOfLines|numberOfSamples)>)([^<]*)(</\2>)"
)
_SPACING = re.compile(r"(<(rangePixelSpacing|azimuthPixelSpacing)>)([^<]*)(</\2>)")


def _scale_xml(text: str, scale: int, lines: int, samples: int) -> str:
    if scale == 1:
        return text

    def lists(m: re.Match[str]) -> str:
        values = " ".join(
            f"{float(v) / scale:.6f}".rstrip("0").rstrip(".") for v in m.group(4).split()
        )
        return f"{m.group(1)}{values}{m.group(5)}"

    def numbers(m: re.Match[str]) -> str:
        name, value = m.group(2), int(m.group(3))
        if name == "numberOfLines":
            new = lines
        elif name == "numberOfSamples":
            new = samples
        elif name.startswith("last"):
            limit = (lines if "Line" in name else samples) - 1
            new = min(limit, (value + 1) // scale - 1) if value else 0
        else:
            new = (value + scale - 1) // scale
        return f"{m.group(1)}{new}{m.group(4)}"

    def spacing(m: re.Match[str]) -> str:
        return f"{m.group(1)}{float(m.group(3)) * scale:.6f}{m.group(4)}"

    text = _SCALED_LISTS.sub(lists, text)
    text = _SCALED_NUMBERS.sub(numbers, text)
    return _SPACING.sub(spacing, text)


def speckle_dn(seed: int = 0) -> DnFunction:
    """DN of a plausible scene: a range gradient, a few bright and dark patches and
    fully developed speckle (exponential intensity), tiled from one random block so
    that a full-size product is made in seconds."""
    rng = np.random.default_rng(seed)
    tile = np.sqrt(rng.exponential(1.0, (1024, 1024))).astype(np.float32)

    def dn(row0: int, col0: int, rows: int, cols: int) -> np.ndarray:
        r = np.arange(row0, row0 + rows)[:, None]
        c = np.arange(col0, col0 + cols)[None, :]
        base = 150.0 + 90.0 * np.exp(-c / 9000.0)
        patches = 1.0 + 0.8 * ((r // 1500 + c // 2100) % 3 == 0) - 0.5 * ((r // 2300) % 4 == 1)
        ti = tile[np.ix_(np.arange(row0, row0 + rows) % 1024, (c[0] + 7 * (row0 // 1024)) % 1024)]
        return np.clip(base * patches * ti, 1, 65535).astype(np.uint16)

    return dn


def make_s1_product(
    template: Path,
    dest: Path,
    *,
    scale: int = 1,
    dn: DnFunction | None = None,
    polarisations: tuple[str, ...] = ("VV", "VH"),
    block_rows: int = 512,
) -> Path:
    """Copy `template` (a .SAFE folder) to `dest` (a .SAFE folder to create), scaled, with
    DN written for each of `polarisations` (each a polarisation the manifest lists; one
    whose files are missing is made from the first polarisation's)."""
    dn = dn or speckle_dn()
    dest.mkdir(parents=True)
    manifest = (template / "manifest.safe").read_text()
    (dest / "manifest.safe").write_text(manifest)
    hrefs = re.findall(r'href="\./([^"]+)"', manifest)
    first = polarisations[0].lower()
    annotation = next(h for h in hrefs if h.startswith("annotation/s1") and f"-{first}-" in h)
    info = (template / annotation).read_text()
    lines0 = int(re.search(r"<numberOfLines>(\d+)<", info).group(1))  # type: ignore[union-attr]
    samples0 = int(re.search(r"<numberOfSamples>(\d+)<", info).group(1))  # type: ignore[union-attr]
    lines, samples = lines0 // scale, samples0 // scale
    gcps = _grid_gcps(_scale_xml(info, scale, lines, samples))
    for pol in polarisations:
        p = pol.lower()
        for href in hrefs:
            if f"-{p}-" not in Path(href).name:
                continue
            source = template / href
            if not source.exists():
                # Made from the first polarisation's file of the same kind.
                kind = Path(href).name.split(f"-{p}-")[0]
                source = template / next(
                    h
                    for h in hrefs
                    if Path(h).name.startswith(kind + "-")
                    and f"-{first}-" in Path(h).name
                    and Path(h).parent == Path(href).parent
                )
            target = dest / href
            target.parent.mkdir(parents=True, exist_ok=True)
            if href.endswith(".xml"):
                text = source.read_text().replace(
                    f"<polarisation>{polarisations[0]}</polarisation>",
                    f"<polarisation>{pol}</polarisation>",
                )
                target.write_text(_scale_xml(text, scale, lines, samples))
            elif href.startswith("measurement/"):
                _write_measurement(target, lines, samples, dn, block_rows, gcps)
    return dest


_GRID_POINT = re.compile(
    r"<geolocationGridPoint>.*?<line>([^<]+)</line>\s*<pixel>([^<]+)</pixel>\s*"
    r"<latitude>([^<]+)</latitude>\s*<longitude>([^<]+)</longitude>\s*<height>([^<]+)</height>",
    re.S,
)


def _grid_gcps(annotation: str) -> list[GroundControlPoint]:
    return [
        GroundControlPoint(row=float(r), col=float(c), x=float(lon), y=float(lat), z=float(h))
        for r, c, lat, lon, h in _GRID_POINT.findall(annotation)
    ]


def _write_measurement(
    path: Path,
    lines: int,
    samples: int,
    dn: DnFunction,
    block_rows: int,
    gcps: list[GroundControlPoint],
) -> None:
    """Uncompressed, striped uint16 GeoTIFF with the grid as GCPs, as ESA delivers them."""
    profile = {
        "driver": "GTiff",
        "width": samples,
        "height": lines,
        "count": 1,
        "dtype": "uint16",
        "BIGTIFF": "IF_SAFER",
        "gcps": gcps,
        "crs": "EPSG:4326",
    }
    with rasterio.open(path, "w", **profile) as ds:
        for r0 in range(0, lines, block_rows):
            rows = min(block_rows, lines - r0)
            ds.write(dn(r0, 0, rows, samples), 1, window=Window(0, r0, samples, rows))


def zip_product(safe: Path, archive: Path) -> Path:
    """Zip a .SAFE folder as ESA delivers it: the .SAFE folder at the top of the archive."""
    shutil.make_archive(str(archive.with_suffix("")), "zip", safe.parent, safe.name)
    return archive.with_suffix(".zip")
