"""MODIS HDF4-EOS grid products (tiles such as MOD09A1, MOD10A2, MOD11A2, MOD13Q1).

The daemon's GDAL has no HDF4 driver, so the file is read with pyhdf. Two
conventions differ from what GDAL users expect:
- calibration is HDF4's, value = scale_factor * (stored - add_offset) (HDF4 User's
  Guide, "Calibration attributes", SDsetcal; MODIS Land product user guides), not
  CF's stored * scale_factor + add_offset; but a scale_factor greater than 1 is a
  divisor, value = (stored - add_offset) / scale_factor. MODIS products scale stored
  integers down, never up: vegetation indices are documented as "scale factor 10000"
  for NDVI = stored / 10000 (MOD13 VI User's Guide; LP DAAC MOD13C1 v061 product page:
  valid range -2000..10000, fill -3000, NDVI = stored * 0.0001), and some files
  store that 10000 as the scale_factor attribute. The same rule is used by The HDF
  Group's HDF4 handler (OPeNDAP bes, modules/hdf4_handler/HDFEOS2Array_RealField.cc,
  MODIS_DIV_SCALE when scale > 1), including its two exceptions confirmed with the
  data producers: the Range* datasets of MOD09/MYD09 (scale_factor 25, metres, a true
  multiplier) and the MOD16A2/MOD16A3 (and MYD) products. Each band records the
  convention applied in its `calibration` tag;
- the grid is georeferenced from the HDF-EOS StructMetadata (UpperLeftPointMtrs,
  LowerRightMtrs are the outer corners of the corner pixels; HDF-EOS Library User's
  Guide vol. 2, GDcreate), in the MODIS sinusoidal projection on a sphere of radius
  6371007.181 m (MODIS Land grid: Wolfe, Roy & Vermote 1998, IEEE TGRS 36(4)).
Fill (_FillValue) and values outside valid_range become NaN. Categorical datasets
(no scale_factor, e.g. MOD10A2 snow codes) keep their codes as float values.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from sipd.contracts.options.modis import ModisOptions
from sipd.contracts.preprocessing import PreprocessStep
from sipd.errors import InvalidArgument
from sipd.paths import require_regular
from sipd.preprocess.band_stack import RunResult, StackGrid, write_stack
from sipd.progress import JobContext
from sipd.raster import check_files_read

HDF4_MAGIC = b"\x0e\x03\x13\x01"
# The MODIS sinusoidal sphere (MODIS Land grid, Wolfe et al. 1998).
MODIS_SPHERE_RADIUS = 6371007.181


@dataclass(frozen=True)
class Grid:
    """One HDF-EOS grid of the StructMetadata."""

    name: str
    width: int
    height: int
    upper_left: tuple[float, float]
    lower_right: tuple[float, float]
    projection: str
    proj_params: tuple[float, ...]
    fields: tuple[str, ...]

    def crs(self) -> CRS:
        if self.projection == "GCTP_SNSOID":
            radius = self.proj_params[0] if self.proj_params and self.proj_params[0] > 0 else 0.0
            return CRS.from_proj4(
                f"+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R={radius or MODIS_SPHERE_RADIUS} "
                "+units=m +no_defs"
            )
        if self.projection == "GCTP_GEO":
            return CRS.from_epsg(4326)
        raise InvalidArgument(
            f"grid {self.name} uses projection {self.projection}; accepted: GCTP_SNSOID "
            "(MODIS sinusoidal tiles) and GCTP_GEO (climate modelling grids)"
        )

    def transform(self) -> Affine:
        (x0, y0), (x1, y1) = self.upper_left, self.lower_right
        if self.projection == "GCTP_GEO":
            # GCTP_GEO corners are packed degrees-minutes-seconds (DDDMMMSSS.SS).
            x0, y0, x1, y1 = (_packed_dms(v) for v in (x0, y0, x1, y1))
        return Affine((x1 - x0) / self.width, 0.0, x0, 0.0, (y1 - y0) / self.height, y0)


@dataclass
class Dataset:
    """One SDS and its calibration attributes."""

    name: str
    scale: float | None
    offset: float
    fill: float | None
    valid: tuple[float, float] | None
    attrs: dict[str, Any] = field(default_factory=dict)


def accepts(path: Path) -> bool:
    """An HDF4 file (by its magic number); MODIS products are HDF4-EOS."""
    try:
        if not path.is_file():
            return False
        with path.open("rb") as f:
            return f.read(4) == HDF4_MAGIC
    except OSError:
        return False


def _packed_dms(value: float) -> float:
    sign = -1.0 if value < 0 else 1.0
    v = abs(value)
    degrees = int(v // 1_000_000)
    minutes = int((v - degrees * 1_000_000) // 1000)
    seconds = v - degrees * 1_000_000 - minutes * 1000
    return sign * (degrees + minutes / 60.0 + seconds / 3600.0)


def _pair(text: str, key: str, grid: str) -> tuple[float, float]:
    m = re.search(rf"\b{key}=\(\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*\)", text)
    if not m:
        raise InvalidArgument(f"StructMetadata grid {grid} has no {key}; the file is not HDF-EOS")
    return float(m.group(1)), float(m.group(2))


def parse_grids(struct: str) -> list[Grid]:
    """The grids of an HDF-EOS StructMetadata text (ODL)."""
    grids = []
    for m in re.finditer(r"GROUP=(GRID_\d+)\s(.*?)END_GROUP=\1\b", struct, re.S):
        body = m.group(2)
        name = re.search(r'GridName="([^"]*)"', body)
        xdim = re.search(r"\bXDim=(\d+)", body)
        ydim = re.search(r"\bYDim=(\d+)", body)
        proj = re.search(r"\bProjection=(\w+)", body)
        if not (name and xdim and ydim and proj):
            raise InvalidArgument(f"StructMetadata group {m.group(1)} is incomplete")
        params = re.search(r"\bProjParams=\(([^)]*)\)", body)
        grids.append(
            Grid(
                name=name.group(1),
                width=int(xdim.group(1)),
                height=int(ydim.group(1)),
                upper_left=_pair(body, "UpperLeftPointMtrs", name.group(1)),
                lower_right=_pair(body, "LowerRightMtrs", name.group(1)),
                projection=proj.group(1),
                proj_params=tuple(float(v) for v in params.group(1).split(",")) if params else (),
                fields=tuple(re.findall(r'DataFieldName="([^"]*)"', body)),
            )
        )
    return grids


def _ecs_value(core: str, name: str) -> str:
    """VALUE of OBJECT=name in ECS ODL CoreMetadata ("" when absent)."""
    m = re.search(rf"OBJECT\s*=\s*{name}\b.*?VALUE\s*=\s*(\"[^\"]*\"|[^\s]+)", core, re.S)
    return m.group(1).strip('"') if m else ""


def _ecs_psa(core: str, name: str) -> str:
    """PARAMETERVALUE of the AdditionalAttributes entry `name` (e.g. HORIZONTALTILENUMBER)."""
    m = re.search(
        rf'VALUE\s*=\s*"{name}".*?PARAMETERVALUE.*?VALUE\s*=\s*(\"[^\"]*\"|[^\s]+)', core, re.S
    )
    return m.group(1).strip('"') if m else ""


def core_tags(core: str) -> dict[str, str]:
    """MODIS_* dataset tags from the ECS CoreMetadata."""
    tags = {
        "MODIS_SHORT_NAME": _ecs_value(core, "SHORTNAME"),
        "MODIS_VERSION": _ecs_value(core, "VERSIONID"),
        "MODIS_RANGE_BEGINNING_DATE": _ecs_value(core, "RANGEBEGINNINGDATE"),
        "MODIS_RANGE_ENDING_DATE": _ecs_value(core, "RANGEENDINGDATE"),
        "MODIS_TILE_H": _ecs_psa(core, "HORIZONTALTILENUMBER"),
        "MODIS_TILE_V": _ecs_psa(core, "VERTICALTILENUMBER"),
        "MODIS_PLATFORM": _ecs_value(core, "ASSOCIATEDPLATFORMSHORTNAME"),
        "MODIS_GRANULE_ID": _ecs_value(core, "LOCALGRANULEID"),
        "MODIS_PRODUCTION_DATETIME": _ecs_value(core, "PRODUCTIONDATETIME"),
    }
    return {k: v for k, v in tags.items() if v}


def _numbered(attrs: dict[str, Any], stem: str) -> str:
    """An ODL attribute split by HDF-EOS into stem.0, stem.1, ... (each at most 32000
    characters), joined back."""
    parts = sorted(
        (int(k.rsplit(".", 1)[1]), str(v))
        for k, v in attrs.items()
        if k.startswith(stem + ".") and k.rsplit(".", 1)[1].isdigit()
    )
    return "".join(v for _, v in parts)


def _scalar(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return None if value is None else float(value)


def _dataset(name: str, attrs: dict[str, Any]) -> Dataset:
    valid = attrs.get("valid_range")
    if isinstance(valid, (list, tuple)) and len(valid) == 2:
        valid_range: tuple[float, float] | None = (float(valid[0]), float(valid[1]))
    else:
        lo, hi = _scalar(attrs.get("valid_min")), _scalar(attrs.get("valid_max"))
        valid_range = (lo, hi) if lo is not None and hi is not None else None
    return Dataset(
        name=name,
        scale=_scalar(attrs.get("scale_factor")),
        offset=_scalar(attrs.get("add_offset")) or 0.0,
        fill=_scalar(attrs.get("_FillValue")),
        valid=valid_range,
        attrs=attrs,
    )


MULTIPLY = "scale * (stored - offset)"
DIVIDE = "(stored - offset) / scale"


def convention(ds: Dataset, product: str) -> str | None:
    """How ds.scale applies (MULTIPLY or DIVIDE; None without a scale_factor).

    A scale_factor > 1 divides (MODIS stores scaled-up integers: MOD13 NDVI "scale
    factor 10000", NDVI = stored / 10000), as in The HDF Group's HDF4 handler
    (bes hdf4_handler HDFEOS2Array_RealField.cc, MODIS_DIV_SCALE), with that handler's
    exceptions that multiply: MOD09*/MYD09* Range* datasets (scale 25, metres; MOD09
    User's Guide) and the MOD16A2/MOD16A3/MYD16A2/MYD16A3 products. `product` is the
    short name (e.g. MOD13Q1) or the file name."""
    if ds.scale is None:
        return None
    if ds.scale <= 1:
        return MULTIPLY
    p = product.upper()
    if p.startswith(("MOD09", "MYD09")) and ds.name.startswith("Range"):
        return MULTIPLY
    if p.startswith(("MOD16A2", "MYD16A2", "MOD16A3", "MYD16A3")):
        return MULTIPLY
    return DIVIDE


def calibrate(
    stored: np.ndarray, ds: Dataset, apply_scale: bool, rule: str | None = MULTIPLY
) -> np.ndarray:
    """float32 values of `stored`: HDF4 calibration scale * (stored - offset), or
    (stored - offset) / scale when `rule` is DIVIDE (see `convention`), with fill
    and out-of-valid-range pixels NaN (compared on stored values, as the attributes are
    stored-type values)."""
    raw = stored.astype(np.float64)
    bad = np.zeros(raw.shape, dtype=bool)
    if ds.fill is not None:
        bad |= raw == ds.fill
    if ds.valid is not None:
        bad |= (raw < ds.valid[0]) | (raw > ds.valid[1])
    if apply_scale and ds.scale is not None:
        divide = rule == DIVIDE
        raw = (raw - ds.offset) / ds.scale if divide else ds.scale * (raw - ds.offset)
    out = raw.astype(np.float32)
    out[bad] = np.nan
    return out


class ModisFile:
    """An open HDF4-EOS file. pyhdf (the HDF4 library) is not thread-safe: every read
    goes through one lock."""

    def __init__(self, path: Path) -> None:
        from pyhdf.error import HDF4Error
        from pyhdf.SD import SD, SDC

        require_regular(path, "MODIS product")
        check_files_read([str(path)])
        if not accepts(path):
            raise InvalidArgument(
                f"{path} is not an HDF4 file; accepted: a MODIS HDF4-EOS product (.hdf) "
                "as delivered by LP DAAC/NSIDC"
            )
        try:
            self._sd = SD(str(path), SDC.READ)
            self.attrs: dict[str, Any] = self._sd.attributes()
            self.datasets = self._sd.datasets()
        except HDF4Error as exc:
            raise InvalidArgument(
                f"cannot read {path} as HDF4: {exc}; the file is corrupt "
                "or truncated: download or copy it again"
            ) from exc
        self._lock = threading.Lock()
        self.path = path

    def close(self) -> None:
        self._sd.end()

    def dataset(self, name: str) -> Dataset:
        sds = self._sd.select(name)
        try:
            return _dataset(name, sds.attributes())
        finally:
            sds.endaccess()

    def read(self, name: str, row0: int, row1: int, width: int) -> np.ndarray:
        from pyhdf.error import HDF4Error

        with self._lock:
            sds = self._sd.select(name)
            try:
                return np.asarray(sds.get(start=(row0, 0), count=(row1 - row0, width)))
            except HDF4Error as exc:
                raise InvalidArgument(
                    f"cannot read rows {row0}-{row1} of {name} in {self.path}: {exc}; the "
                    "file is corrupt or truncated"
                ) from exc
            finally:
                sds.endaccess()


def _grid_of(dims: tuple[str, ...], grids: list[Grid], name: str) -> Grid | None:
    # pyhdf names grid dimensions "YDim:<GridName>"; DataFieldName lists are the fallback.
    for g in grids:
        if any(d.endswith(":" + g.name) for d in dims) or name in g.fields:
            return g
    return None


def select(mf: ModisFile, grids: list[Grid], wanted: list[str]) -> tuple[Grid, list[str]]:
    """The grid and dataset names to stack."""
    two_d = {n: v for n, v in mf.datasets.items() if len(v[1]) == 2}
    if wanted:
        missing = [n for n in wanted if n not in mf.datasets]
        if missing:
            raise InvalidArgument(
                f"{mf.path.name} has no dataset {', '.join(missing)}; accepted sds: "
                + ", ".join(two_d)
            )
        not_2d = [n for n in wanted if n not in two_d]
        if not_2d:
            raise InvalidArgument(
                f"dataset {', '.join(not_2d)} is not 2-D (rows x columns); accepted sds: "
                + ", ".join(two_d)
            )
        names = wanted
    else:
        first = grids[0]
        names = [n for n, v in two_d.items() if _grid_of(v[0], [first], n) is first]
    by_grid: dict[str, list[str]] = {}
    for n in names:
        g = _grid_of(two_d[n][0], grids, n)
        by_grid.setdefault(g.name if g else "?", []).append(n)
    if len(by_grid) != 1 or "?" in by_grid:
        raise InvalidArgument(
            "the datasets must share one grid; got "
            + "; ".join(f"{g}: {','.join(ns)}" for g, ns in by_grid.items())
            + ". Make one scene per grid (e.g. the 500 m and the 1 km datasets apart)"
        )
    grid = next(g for g in grids if g.name in by_grid)
    for n in names:
        if tuple(two_d[n][1]) != (grid.height, grid.width):
            raise InvalidArgument(
                f"dataset {n} is {two_d[n][1][0]} x {two_d[n][1][1]} but grid {grid.name} "
                f"is {grid.height} x {grid.width}; the file is inconsistent"
            )
    return grid, names


def run(
    source: Path,
    step: PreprocessStep,
    output: Path,
    ctx: JobContext,
    tags: dict[str, str],
    threads: int,
) -> RunResult:
    options = step.options
    assert isinstance(options, ModisOptions)
    started = time.perf_counter()
    mf = ModisFile(Path(source))
    try:
        struct = _numbered(mf.attrs, "StructMetadata")
        if not struct:
            raise InvalidArgument(
                f"{source} has no StructMetadata.0: it is HDF4 but not HDF-EOS; accepted: "
                "MODIS HDF4-EOS products"
            )
        grids = parse_grids(struct)
        if not grids:
            kind = "a swath product" if re.search(r"GROUP=SWATH_\d+", struct) else "no grid"
            raise InvalidArgument(
                f"{source} is {kind}; accepted: MODIS gridded (tile or CMG) products such "
                "as MOD09A1, MOD10A2, MOD11A2, MOD13Q1 (swaths are not supported yet)"
            )
        grid, names = select(mf, grids, list(options.sds))
        crs, transform = grid.crs(), grid.transform()
        datasets = [mf.dataset(n) for n in names]
        core = _numbered(mf.attrs, "CoreMetadata")
        meta = core_tags(core)
        meta["MODIS_GRID"] = grid.name
        product = meta.get("MODIS_SHORT_NAME") or Path(source).name
        rules = [convention(ds, product) for ds in datasets]
        ctx.check_cancelled()
        opened = time.perf_counter() - started

        def read_block(row0: int, row1: int) -> np.ndarray:
            out = np.empty((len(datasets), row1 - row0, grid.width), dtype=np.float32)
            for i, ds in enumerate(datasets):
                stored = mf.read(ds.name, row0, row1, grid.width)
                out[i] = calibrate(stored, ds, options.calibrate, rules[i])
            return out

        band_tags = [
            _band_tags(ds, options.calibrate, rule)
            for ds, rule in zip(datasets, rules, strict=True)
        ]
        seconds = write_stack(
            output,
            StackGrid(grid.width, grid.height, crs, transform),
            names,
            read_block,
            ctx,
            {**meta, **tags},
            threads=threads,
            band_tags=band_tags,
        )
    finally:
        mf.close()
    seconds["open"] = opened
    sensor = f"MODIS {meta.get('MODIS_PLATFORM', '')} {meta.get('MODIS_SHORT_NAME', '')}".split()
    return RunResult(" ".join(sensor), {**meta, "sds": ",".join(names)}, seconds)


def _band_tags(ds: Dataset, calibrated: bool, rule: str | None = MULTIPLY) -> dict[str, str]:
    tags = {"sds": ds.name}
    for key in ("long_name", "units"):
        if key in ds.attrs:
            tags[key] = str(ds.attrs[key])
    if ds.scale is not None:
        tags["scale_factor"] = repr(ds.scale)
        tags["add_offset"] = repr(ds.offset)
        tags["calibrated"] = "true" if calibrated else "false"
        if calibrated and rule:
            tags["calibration"] = rule
    else:
        # No scale_factor: a categorical or bit-field dataset; its Key tells the codes.
        key = ds.attrs.get("Key")
        if key:
            tags["key"] = str(key)[:1000]
    return tags
