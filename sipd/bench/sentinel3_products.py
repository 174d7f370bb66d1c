"""A synthetic Sentinel-3 OLCI Level-1 EFR product of real size, for benchmarks and tests.

The layout is the real one (a .SEN3 folder: xfdumanifest.xml and one netCDF file per
band or annotation). With the real manifest of ../shared/fixtures/sentinel3 beside a
source checkout, it is copied (image size rewritten) with the fixture's other members
(stubs) so every file the manifest lists is there; without it a minimal manifest in the
same schema is written. The variables are netCDF-3 (scipy), packed as the real ones:

- geo_coordinates.nc: latitude/longitude int32, scale 1e-6, of a tilted descending swath
  (heading 193 degrees, row 0 north, column 0 west) whose across-track sampling grows from
  220 m at the nadir column to about 440 m at the west edge, 1,350 km in all, rows
  sheared 2.5 degrees (so the swath is curved and non-uniform in any map projection, as
  a real one);
- tie_geo_coordinates.nc: the same every 64 columns, every row;
- OaNN_radiance.nc: uint16 (scale 0.01, fill 65535), a smooth field plus noise;
- instrument_data.nc: detector_index (740 detectors per camera, 5 cameras) and
  solar_flux [21, 3700]; tie_geometries.nc: SZA every 64 columns, every row;
- qualityFlags.nc: quality_flags with the real flag names (a few invalid pixels).

Nothing here is used by the daemon.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
from pyproj import Transformer
from scipy.io import netcdf_file

NAME = "S3A_OL_1_EFR____20211021T073827_20211021T074112_20211021T091357_0164_077_334_4320_LN1_O_NR_002.SEN3"  # noqa: E501
TIE_AC = 64
DETECTORS = 3700
CENTRE = (10.0, 45.0)  # lon, lat of the scene centre
HEADING = 193.0  # degrees from north, descending pass
AL_STEP = 294.0  # metres along track (the real manifest's)
NADIR_STEP = 220.0  # metres across track at the nadir column
WAVELENGTHS = (
    400, 412.5, 442.5, 490, 510, 560, 620, 665, 673.75, 681.25, 708.75, 753.75, 761.25,
    764.375, 767.5, 778.75, 865, 885, 900, 940, 1020,
)  # fmt: skip
FLAG_NAMES = (
    ["land", "coastline", "fresh_inland_water", "tidal_region", "bright", "straylight_risk",
     "invalid", "cosmetic", "duplicated", "sun-glint_risk", "dubious"]
    + [f"saturated@Oa{i:02d}" for i in range(1, 22)]
)  # fmt: skip
FLAG_BITS = [1 << b for b in range(31, 20, -1)] + [1 << b for b in range(21)]


def default_template() -> Path | None:
    """The real OLCI EFR .SEN3 (manifest and stub members) in ../shared/fixtures."""
    root = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "sentinel3"
    found = sorted(root.glob("S3*_OL_1_EFR*.SEN3")) if root.is_dir() else []
    return found[0] if found else None


def write_nc(path: Path, variables: dict[str, tuple[np.ndarray, dict]], **globals_: object) -> None:
    """A netCDF-3 file of 2-D variables; unsigned data is stored signed with
    _Unsigned = "true" (netCDF-3 has no unsigned types)."""
    path.unlink(missing_ok=True)
    f = netcdf_file(str(path), "w", version=2)
    try:
        for key, value in globals_.items():
            setattr(f, key, value)
        for name, (data, attrs) in variables.items():
            dims = []
            for axis, n in enumerate(data.shape):
                dim = f"{name}_d{axis}"
                f.createDimension(dim, n)
                dims.append(dim)
            unsigned = data.dtype.kind == "u"
            stored = data.view(data.dtype.str.replace("u", "i")) if unsigned else data
            v = f.createVariable(name, stored.dtype, tuple(dims))
            v[:] = stored
            if unsigned:
                v._Unsigned = "true"
            for key, value in attrs.items():
                setattr(v, key, value)
    finally:
        f.close()


def across_track(cols: np.ndarray, columns: int) -> np.ndarray:
    """Ground distance (m) from the nadir column, positive east: 220 m steps at nadir
    (column 0.75 * columns: OLCI looks mostly west) growing to about 440 m at the west
    edge; 1,350 km in all for 4,865 columns."""
    nadir = 0.75 * (columns - 1)
    u = (cols - nadir) / columns
    return NADIR_STEP * (cols - nadir) * (1.0 + 0.6 * u * u)


def swath_latlon(r0: int, r1: int, lines: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Latitude, longitude of rows r0..r1 (float64 degrees)."""
    lon0, lat0 = CENTRE
    aeqd = Transformer.from_crs(
        f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +datum=WGS84", "EPSG:4326", always_xy=True
    )
    h = np.radians(HEADING)
    along = np.array([np.sin(h), np.cos(h)])  # x east, y north
    across = np.array([np.cos(h), -np.sin(h)])  # 90 degrees left of the heading: east-ish
    skew = np.radians(2.5)  # Earth rotation under the orbit shears the rows
    rows = np.arange(r0, r1, dtype=np.float64)[:, None] - (lines - 1) / 2
    d = across_track(np.arange(columns, dtype=np.float64), columns)[None, :]
    a = rows * AL_STEP + d * np.sin(skew)
    x = a * along[0] + d * across[0]
    y = a * along[1] + d * across[1]
    lon, lat = aeqd.transform(x, y)
    return np.asarray(lat), np.asarray(lon)


def _manifest(template: Path | None, lines: int, columns: int, bands: tuple[str, ...]) -> str:
    if template is not None:
        text = (template / "xfdumanifest.xml").read_text(encoding="utf-8")
        text = re.sub(r"<sentinel3:rows>\d+<", f"<sentinel3:rows>{lines}<", text)
        return re.sub(r"<sentinel3:columns>\d+<", f"<sentinel3:columns>{columns}<", text)
    band_xml = "".join(
        f'<sentinel3:band name="Oa{i:02d}"><sentinel3:centralWavelength>{w}'
        "</sentinel3:centralWavelength><sentinel3:bandwidth>10</sentinel3:bandwidth>"
        "</sentinel3:band>"
        for i, w in enumerate(WAVELENGTHS, start=1)
        if f"Oa{i:02d}" in bands
    )
    files = [f"{b}_radiance.nc" for b in bands] + [
        "geo_coordinates.nc", "instrument_data.nc", "qualityFlags.nc",
        "tie_geo_coordinates.nc", "tie_geometries.nc",
    ]  # fmt: skip
    locations = "".join(
        f'<dataObject ID="{f[:-3]}"><byteStream><fileLocation locatorType="URL" '
        f'href="./{f}"/></byteStream></dataObject>'
        for f in files
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1" xmlns:sentinel-safe="http://www.esa.int/safe/sentinel/1.1"
 xmlns:sentinel3="http://www.esa.int/safe/sentinel/sentinel-3/1.0"
 xmlns:olci="http://www.esa.int/safe/sentinel/sentinel-3/olci/1.0">
<metadataSection>
<metadataObject ID="acquisitionPeriod"><metadataWrap><xmlData><sentinel-safe:acquisitionPeriod>
<sentinel-safe:startTime>2021-10-21T07:38:27.254946Z</sentinel-safe:startTime>
<sentinel-safe:stopTime>2021-10-21T07:41:12.254946Z</sentinel-safe:stopTime>
</sentinel-safe:acquisitionPeriod></xmlData></metadataWrap></metadataObject>
<metadataObject ID="platform"><metadataWrap><xmlData><sentinel-safe:platform>
<sentinel-safe:familyName>Sentinel-3</sentinel-safe:familyName><sentinel-safe:number>A</sentinel-safe:number>
</sentinel-safe:platform></xmlData></metadataWrap></metadataObject>
<metadataObject ID="generalProductInformation"><metadataWrap><xmlData><sentinel3:generalProductInformation>
<sentinel3:productName>{NAME}</sentinel3:productName>
<sentinel3:productType>OL_1_EFR___</sentinel3:productType>
</sentinel3:generalProductInformation></xmlData></metadataWrap></metadataObject>
<metadataObject ID="olciProductInformation"><metadataWrap><xmlData><olci:olciProductInformation>
<olci:imageSize><sentinel3:rows>{lines}</sentinel3:rows><sentinel3:columns>{columns}</sentinel3:columns></olci:imageSize>
<olci:samplingParameters><olci:rowsPerTiePoint>1</olci:rowsPerTiePoint>
<olci:columnsPerTiePoint>{TIE_AC}</olci:columnsPerTiePoint></olci:samplingParameters>
<olci:bandDescriptions>{band_xml}</olci:bandDescriptions>
</olci:olciProductInformation></xmlData></metadataWrap></metadataObject>
</metadataSection>
<dataObjectSection>{locations}</dataObjectSection>
</xfdu:XFDU>
"""  # noqa: E501


def make_s3_olci_product(
    folder: Path,
    lines: int = 4091,
    columns: int = 4865,
    bands: tuple[str, ...] = ("Oa04", "Oa06", "Oa08", "Oa17"),
    *,
    template: Path | None = None,
    minimal: bool = False,
    seed: int = 0,
) -> Path:
    """A synthetic EFR product of `lines` x `columns` holding `bands`; returns the .SEN3
    folder. `template` (default: the shared fixture when there is one) gives the
    manifest and the members not written here; `minimal` writes a minimal manifest
    listing only the files written here, whatever is available."""
    template = None if minimal else template if template is not None else default_template()
    dest = Path(folder) / NAME
    if dest.exists():
        shutil.rmtree(dest)
    if template is not None:
        shutil.copytree(template, dest)
        for f in dest.iterdir():
            f.chmod(0o644)
    else:
        dest.mkdir(parents=True)
    (dest / "xfdumanifest.xml").write_text(_manifest(template, lines, columns, bands))
    rng = np.random.default_rng(seed)
    tie_cols = -(-(columns - 1) // TIE_AC) + 1  # the last tie point at or past the last column
    tie_index = np.minimum(np.arange(tie_cols) * TIE_AC, columns - 1)

    lat = np.empty((lines, columns), np.int32)
    lon = np.empty((lines, columns), np.int32)
    step = 512
    for r0 in range(0, lines, step):
        r1 = min(lines, r0 + step)
        la, lo = swath_latlon(r0, r1, lines, columns)
        lat[r0:r1] = np.round(la * 1e6)
        lon[r0:r1] = np.round(lo * 1e6)
    geo = {"scale_factor": 1e-6, "_FillValue": np.int32(-2147483648)}
    write_nc(dest / "geo_coordinates.nc", {"latitude": (lat, geo), "longitude": (lon, geo)})
    write_nc(
        dest / "tie_geo_coordinates.nc",
        {"latitude": (lat[:, tie_index], geo), "longitude": (lon[:, tie_index], geo)},
        ac_subsampling_factor=TIE_AC, al_subsampling_factor=1,
    )  # fmt: skip
    lat_deg = lat[:, tie_index] * 1e-6
    del lat, lon

    # Solar zenith: grows northwards and westwards (a morning descending pass).
    sza = 90.0 - (90.0 - np.abs(lat_deg - 10.0)) * 0.9 + np.linspace(4, -4, tie_cols)[None]
    write_nc(
        dest / "tie_geometries.nc",
        {"SZA": (np.round(sza * 1e6).astype(np.uint32), {"scale_factor": 1e-6})},
        ac_subsampling_factor=TIE_AC, al_subsampling_factor=1,
    )  # fmt: skip
    # Five cameras of 740 detectors across the swath (duplicated at the camera seams).
    det = np.minimum(np.arange(columns) * DETECTORS // columns, DETECTORS - 1).astype(np.int16)
    flux = rng.uniform(900.0, 1900.0, size=(21, DETECTORS)).astype(np.float32)
    write_nc(
        dest / "instrument_data.nc",
        {
            "detector_index": (np.broadcast_to(det, (lines, columns)).copy(),
                               {"_FillValue": np.int16(-1)}),
            "solar_flux": (flux, {"_FillValue": np.float32(-1.0)}),
        },
        ac_subsampling_factor=TIE_AC, al_subsampling_factor=1,
    )  # fmt: skip
    flags = np.zeros((lines, columns), np.uint32)
    flags[rng.integers(0, lines, 2000), rng.integers(0, columns, 2000)] = 1 << 25  # invalid
    write_nc(
        dest / "qualityFlags.nc",
        {"quality_flags": (flags, {
            "flag_masks": np.array(FLAG_BITS, dtype=np.uint32).view(np.int32),
            "flag_meanings": " ".join(FLAG_NAMES)})},
    )  # fmt: skip
    del flags

    r = np.arange(lines, dtype=np.float32)[:, None]
    c = np.arange(columns, dtype=np.float32)[None, :]
    for i, band in enumerate(bands):
        field = 6000 + 2500 * np.sin(r / (173.0 + 11 * i)) * np.cos(c / (211.0 - 7 * i))
        dn = (field + rng.normal(0, 300, size=(lines, columns))).clip(0, 65000)
        dn = dn.astype(np.uint16)
        dn[rng.integers(0, lines, 500), rng.integers(0, columns, 500)] = 65535
        write_nc(
            dest / f"{band}_radiance.nc",
            {f"{band}_radiance": (dn, {"scale_factor": np.float32(0.01),
                                       "add_offset": np.float32(0.0),
                                       "_FillValue": np.int16(-1)})},
        )  # fmt: skip
        del dn, field
    return dest
