"""Landsat 8 Collection 2 products in the real layout with generated pixels, for the
preprocessing benchmark and tests (nothing here is used by the daemon).

The MTL is written here group by group in the Collection 2 ODL layout (LSDS-1822):
PRODUCT_CONTENTS, IMAGE_ATTRIBUTES, PROJECTION_ATTRIBUTES and, for Level-2, both
LEVEL2_SURFACE_REFLECTANCE_PARAMETERS and LEVEL1_RADIOMETRIC_RESCALING, so that
REFLECTANCE_MULT_BAND_n appears twice as in a real Level-2 MTL. Coefficients are
those of a real LC08 scene (path 8, row 59, 2019-12-01). Band files are tiled
GeoTIFFs (256 x 256, like USGS's COGs), uncompressed unless asked, with smooth
DN plus noise; QA_PIXEL has a fill border, clouds (with dilation and high
confidence), their shadows and clear land, all as Collection 2 bit fields.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

UL_X, UL_Y = 378300.0, 275700.0  # the real scene's upper-left corner, UTM 18N
PIXEL = 30.0
EPSG = 32618
SUN_ELEVATION = 57.08727307
SUN_AZIMUTH = 136.31696044
# Level-1 rescaling of the real scene (LEVEL1_RADIOMETRIC_RESCALING), bands 1-11.
RADIANCE_MULT = [1.2913e-02, 1.3223e-02, 1.2185e-02, 1.0275e-02, 6.2877e-03, 1.5637e-03,
                 5.2705e-04, 1.1628e-02, 2.4574e-03, 3.3420e-04, 3.3420e-04]  # fmt: skip
RADIANCE_ADD = [-64.56431, -66.11464, -60.92407, -51.37461, -31.43870, -7.81852, -2.63526,
                -58.14192, -12.28696, 0.10000, 0.10000]  # fmt: skip
K1 = {10: 774.8853, 11: 480.8883}
K2 = {10: 1321.0789, 11: 1201.1442}
SR_MULT, SR_ADD = 2.75e-05, -0.2
ST_MULT, ST_ADD = 0.00341802, 149.0
# QA_PIXEL values (Collection 2 bits: 0 fill, 1 dilated cloud, 3 cloud, 4 shadow,
# 6 clear, 8-9 cloud, 10-11 shadow, 12-13 snow, 14-15 cirrus confidence).
_LOW = (1 << 8) | (1 << 10) | (1 << 12) | (1 << 14)
QA_FILL = 1
QA_CLEAR = (1 << 6) | _LOW
QA_CLOUD = (1 << 3) | (3 << 8) | (1 << 10) | (1 << 12) | (1 << 14)
QA_DILATED = (1 << 1) | _LOW
QA_SHADOW = (1 << 4) | (1 << 6) | (1 << 8) | (3 << 10) | (1 << 12) | (1 << 14)
BLOCK = 512


def product_id(level: str) -> str:
    return f"LC08_{level}_008059_20191201_20200825_02_T1"


def make_landsat_product(
    folder: Path,
    width: int = 7800,
    height: int = 7700,
    bands: int = 7,
    level: str = "L2SP",
    *,
    thermal: bool = True,
    compress: str | None = None,
    seed: int = 0,
) -> Path:
    """Write a product folder under `folder`; returns it. `bands` reflective bands
    (B1..Bn, 1-7), plus the thermal band B10 (ST_B10 at Level-2) when `thermal`;
    `level` L2SP (surface reflectance DN) or L1TP (Level-1 DN)."""
    if level not in ("L2SP", "L1TP"):
        raise ValueError(f"level {level!r}: L2SP or L1TP")
    if not 1 <= bands <= 7:
        raise ValueError("bands: 1 to 7 reflective bands")
    pid = product_id(level)
    out = folder / pid
    out.mkdir(parents=True, exist_ok=True)
    files = _band_files(pid, level, bands, thermal)
    (out / f"{pid}_MTL.txt").write_text(_mtl(pid, level, files, width, height))
    rng = np.random.default_rng(seed)
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": "uint16",
        "crs": CRS.from_epsg(EPSG),
        "transform": Affine(PIXEL, 0, UL_X, 0, -PIXEL, UL_Y),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        **({"compress": compress} if compress else {}),
    }
    noise = rng.integers(0, 600, size=(BLOCK, width), dtype=np.uint16)
    with contextlib.ExitStack() as stack:
        outputs = {
            key: stack.enter_context(rasterio.open(out / name, "w", **profile))
            for key, name in files.items()
        }
        for r0 in range(0, height, BLOCK):
            rows = min(BLOCK, height - r0)
            qa = _qa(r0, rows, width, height)  # once per block, for every band's clouds
            for key, dst in outputs.items():
                dn = _pixels(key, level, qa, r0, width, noise[:rows])
                dst.write(dn, 1, window=Window(0, r0, width, rows))
    return out


def _band_files(pid: str, level: str, bands: int, thermal: bool) -> dict[str, str]:
    sr = "SR_" if level.startswith("L2") else ""
    files = {str(b): f"{pid}_{sr}B{b}.TIF" for b in range(1, bands + 1)}
    if thermal:
        files["10"] = f"{pid}_ST_B10.TIF" if level.startswith("L2") else f"{pid}_B10.TIF"
    files["QA_PIXEL"] = f"{pid}_QA_PIXEL.TIF"
    return files


def _qa(r0: int, rows: int, width: int, height: int) -> np.ndarray:
    """Collection 2 QA_PIXEL values for rows r0..r0+rows: a slanted fill border (scenes
    are rotated in their UTM frame), round clouds with a dilation ring, and each
    cloud's shadow offset to the north-west."""
    y = np.arange(r0, r0 + rows, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    qa = np.full((rows, width), QA_CLEAR, dtype=np.uint16)

    def field(dx: float, dy: float) -> np.ndarray:
        return np.sin((x + dx) / 290.0) * np.sin((y + dy) / 230.0)

    qa[field(-60, -60) > 0.75] = QA_SHADOW
    cloud = field(0, 0)
    qa[cloud > 0.6] = QA_DILATED
    qa[cloud > 0.7] = QA_CLOUD
    left = 0.12 * width - 0.1 * y
    right = 0.88 * width + 0.1 * (y - height)
    qa[(x < left) | (x > right)] = QA_FILL
    return qa


def _pixels(
    key: str, level: str, qa: np.ndarray, r0: int, width: int, noise: np.ndarray
) -> np.ndarray:
    if key == "QA_PIXEL":
        return qa
    rows = qa.shape[0]
    y = np.arange(r0, r0 + rows, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    smooth = np.sin(x / 700.0) * np.cos(y / 900.0)  # fields and slopes
    cloud = (qa & (1 << 3)) != 0
    if key == "10":
        # Surface/brightness temperature around 295 K, 270 K on clouds.
        kelvin = 295 + 8 * smooth + noise / 300.0
        kelvin = np.where(cloud, 270.0, kelvin)
        if level.startswith("L2"):
            dn = (kelvin - ST_ADD) / ST_MULT
        else:
            radiance = K1[10] / (np.exp(K2[10] / kelvin) - 1)
            dn = (radiance - RADIANCE_ADD[9]) / RADIANCE_MULT[9]
    else:
        band = int(key)
        rho = 0.04 + 0.03 * band + 0.05 * smooth + noise / 40000.0
        rho = np.where(cloud, 0.6, rho)
        if level.startswith("L2"):
            dn = (rho - SR_ADD) / SR_MULT
        else:
            dn = (rho * np.sin(np.radians(SUN_ELEVATION)) + 0.1) / 2.0e-05
    out = np.clip(np.rint(dn), 1, 65535).astype(np.uint16)
    out[qa == QA_FILL] = 0
    return out


def _mtl(pid: str, level: str, files: dict[str, str], width: int, height: int) -> str:
    l2 = level.startswith("L2")
    groups: list[tuple[str, list[tuple[str, str]]]] = []
    contents = [
        ("ORIGIN", '"Image courtesy of the U.S. Geological Survey"'),
        ("LANDSAT_PRODUCT_ID", f'"{pid}"'),
        ("PROCESSING_LEVEL", f'"{level}"'),
        ("COLLECTION_NUMBER", "02"),
        ("COLLECTION_CATEGORY", '"T1"'),
        ("OUTPUT_FORMAT", '"GEOTIFF"'),
    ]
    for key, name in files.items():
        if key == "QA_PIXEL":
            contents.append(("FILE_NAME_QUALITY_L1_PIXEL", f'"{name}"'))
        elif key == "10" and l2:
            contents.append(("FILE_NAME_BAND_ST_B10", f'"{name}"'))
        else:
            contents.append((f"FILE_NAME_BAND_{key}", f'"{name}"'))
    contents.append(("FILE_NAME_METADATA_ODL", f'"{pid}_MTL.txt"'))
    groups.append(("PRODUCT_CONTENTS", contents))
    groups.append(
        (
            "IMAGE_ATTRIBUTES",
            [
                ("SPACECRAFT_ID", '"LANDSAT_8"'),
                ("SENSOR_ID", '"OLI_TIRS"'),
                ("WRS_TYPE", "2"),
                ("WRS_PATH", "8"),
                ("WRS_ROW", "59"),
                ("DATE_ACQUIRED", "2019-12-01"),
                ("SCENE_CENTER_TIME", '"15:13:51.8610990Z"'),
                ("CLOUD_COVER", "24.00"),
                ("CLOUD_COVER_LAND", "24.00"),
                ("SUN_AZIMUTH", f"{SUN_AZIMUTH}"),
                ("SUN_ELEVATION", f"{SUN_ELEVATION}"),
                ("EARTH_SUN_DISTANCE", "0.9860755"),
            ],
        )
    )
    groups.append(
        (
            "PROJECTION_ATTRIBUTES",
            [
                ("MAP_PROJECTION", '"UTM"'),
                ("DATUM", '"WGS84"'),
                ("UTM_ZONE", "18"),
                ("GRID_CELL_SIZE_REFLECTIVE", "30.00"),
                ("REFLECTIVE_LINES", str(height)),
                ("REFLECTIVE_SAMPLES", str(width)),
                ("CORNER_UL_PROJECTION_X_PRODUCT", f"{UL_X:.3f}"),
                ("CORNER_UL_PROJECTION_Y_PRODUCT", f"{UL_Y:.3f}"),
            ],
        )
    )
    if l2:
        sr = [(f"REFLECTANCE_MULT_BAND_{b}", f"{SR_MULT}") for b in range(1, 8)]
        sr += [(f"REFLECTANCE_ADD_BAND_{b}", f"{SR_ADD}") for b in range(1, 8)]
        groups.append(("LEVEL2_SURFACE_REFLECTANCE_PARAMETERS", sr))
        groups.append(
            (
                "LEVEL2_SURFACE_TEMPERATURE_PARAMETERS",
                [
                    ("TEMPERATURE_MULT_BAND_ST_B10", f"{ST_MULT}"),
                    ("TEMPERATURE_ADD_BAND_ST_B10", f"{ST_ADD}"),
                ],
            )
        )
    rescaling = [(f"RADIANCE_MULT_BAND_{b}", f"{RADIANCE_MULT[b - 1]:.4E}") for b in range(1, 12)]
    rescaling += [(f"RADIANCE_ADD_BAND_{b}", f"{RADIANCE_ADD[b - 1]:.5f}") for b in range(1, 12)]
    rescaling += [(f"REFLECTANCE_MULT_BAND_{b}", "2.0000E-05") for b in range(1, 10)]
    rescaling += [(f"REFLECTANCE_ADD_BAND_{b}", "-0.100000") for b in range(1, 10)]
    groups.append(("LEVEL1_RADIOMETRIC_RESCALING", rescaling))
    groups.append(
        (
            "LEVEL1_THERMAL_CONSTANTS",
            [
                (f"K{k}_CONSTANT_BAND_{b}", f"{c[b]:.4f}")
                for b in (10, 11)
                for k, c in ((1, K1), (2, K2))
            ],  # fmt: skip
        )
    )
    lines = ["GROUP = LANDSAT_METADATA_FILE"]
    for name, items in groups:
        lines.append(f"  GROUP = {name}")
        lines += [f"    {k} = {v}" for k, v in items]
        lines.append(f"  END_GROUP = {name}")
    lines += ["END_GROUP = LANDSAT_METADATA_FILE", "END", ""]
    return "\n".join(lines)
