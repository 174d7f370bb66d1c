"""Pixel validity (sipd.validity) follows GDAL's dataset mask, in every reader that uses it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from sipd.dataset.stats import read_valid
from sipd.inference.tiling import Tile, TileReader
from sipd.labeling.rasterize import background_mask
from sipd.validity import Validity, invalid_pixels

H, W = 12, 16


def _write(path: Path, data: np.ndarray, **profile: object) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs="EPSG:32618",
        transform=from_origin(500000, 100000, 30, 30),
        **profile,
    ) as ds:
        ds.write(data)
    return path


def _rgb(dtype: str = "uint16") -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(10, 1000, size=(3, H, W)).astype(dtype)


def _agrees_with_gdal(path: Path) -> np.ndarray:
    """sipd's invalid pixels, checked equal to rasterio's dataset mask."""
    with rasterio.open(path) as ds:
        ours = invalid_pixels(ds)
        assert np.array_equal(ours, ds.dataset_mask() == 0)
    assert np.array_equal(background_mask(path), ours)
    return ours


def test_all_bands_nodata_is_invalid_one_band_is_valid(tmp_path: Path) -> None:
    data = _rgb()
    data[:, 0, :] = 0  # collar row: every band nodata
    data[1, 5, 5] = 0  # a dark real pixel: one band at the nodata value
    data[0:2, 6, 6] = 0  # two of three bands
    path = _write(tmp_path / "s.tif", data, nodata=0)
    invalid = _agrees_with_gdal(path)
    assert invalid[0].all() and invalid.sum() == W
    assert not invalid[5, 5] and not invalid[6, 6]


def test_alpha_band(tmp_path: Path) -> None:
    data = np.concatenate([_rgb(), np.full((1, H, W), 65535, dtype=np.uint16)])
    data[3, 2:4, 3:9] = 0
    data[0, 7, 7] = 0  # a value 0 means nothing without a nodata tag
    path = _write(tmp_path / "a.tif", data, photometric="RGB", alpha="YES")
    with rasterio.open(path) as ds:
        assert ds.colorinterp[3] == rasterio.enums.ColorInterp.alpha
    invalid = _agrees_with_gdal(path)
    assert invalid[2:4, 3:9].all() and invalid.sum() == 12


def test_internal_mask(tmp_path: Path) -> None:
    path = tmp_path / "m.tif"
    mask = np.full((H, W), 255, dtype=np.uint8)
    mask[:, :3] = 0
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        _write(path, _rgb())
        with rasterio.open(path, "r+") as ds:
            ds.write_mask(mask)
    invalid = _agrees_with_gdal(path)
    assert invalid[:, :3].all() and invalid.sum() == 3 * H


def test_nan_in_float_data(tmp_path: Path) -> None:
    data = _rgb(dtype="float32")
    data[:, 1, 1] = np.nan  # every band NaN: invalid, with or without a nodata tag
    data[2, 4, 4] = np.nan  # one band NaN: valid, that band filled like a nodata value
    path = _write(tmp_path / "f.tif", data)
    with rasterio.open(path) as ds:
        invalid = invalid_pixels(ds)
        win = Window(0, 0, W, H)
        band_bad = Validity(ds).band_invalid(ds.read(), win)
    assert np.argwhere(invalid).tolist() == [[1, 1]]
    assert band_bad is not None and band_bad[2, 4, 4] and not band_bad[:2, 4, 4].any()
    # With nodata=NaN GDAL's dataset mask says the same.
    tagged = _write(tmp_path / "fn.tif", data, nodata=float("nan"))
    assert np.argwhere(_agrees_with_gdal(tagged)).tolist() == [[1, 1]]


def test_decimated_reads_and_reordered_bands(tmp_path: Path) -> None:
    """The studio reads levels decimated (out_shape) and bands in display order."""
    data = np.concatenate([_rgb(), np.full((1, H, W), 65535, dtype=np.uint16)])
    data[3, :4, :8] = 0
    alpha = _write(tmp_path / "a.tif", data, photometric="RGB", alpha="YES")
    with rasterio.open(alpha) as ds:
        win = Window(0, 0, W, H)
        half = ds.read([3, 1, 2], out_shape=(3, H // 2, W // 2))
        ours = Validity(ds, [3, 1, 2]).invalid(half, win)
        assert ours is not None and ours.shape == (H // 2, W // 2)
        assert np.array_equal(ours, ds.dataset_mask(out_shape=(H // 2, W // 2)) == 0)
    tagged = _rgb()
    tagged[:, 2, :] = 0  # every band nodata
    tagged[0, 3, 3] = 0  # one band: a real pixel
    path = _write(tmp_path / "n.tif", tagged, nodata=0)
    with rasterio.open(path) as ds:
        validity = Validity(ds, [3, 1, 2])
        assert validity.mode == "nodata"  # every band read: values decide, no mask reads
        invalid = validity.invalid(ds.read([3, 1, 2]), Window(0, 0, W, H))
        assert np.array_equal(invalid, ds.dataset_mask() == 0) and not invalid[3, 3]


def test_statistics_and_chips_use_the_dataset_mask(tmp_path: Path) -> None:
    data = _rgb()
    data[:, 0, :] = 0
    data[1, 5, 5] = 0
    path = _write(tmp_path / "s.tif", data, nodata=0)
    with rasterio.open(path) as ds:
        values, band_valid, pixel_valid = read_valid(ds, [1, 2, 3], Window(0, 0, W, H))
    assert not pixel_valid[0].any() and pixel_valid[1:].all()
    # Band 2's nodata value in a valid pixel is no measurement: not in band 2's statistics.
    assert not band_valid[1, 5, 5] and band_valid[[0, 2], 5, 5].all()
    assert band_valid.sum() == 3 * W * (H - 1) - 1
    assert values.dtype == np.float32


def test_tile_reader_fills_per_band_and_masks_per_pixel(tmp_path: Path) -> None:
    data = _rgb()
    data[:, 0, :] = 0
    data[1, 5, 5] = 0
    path = _write(tmp_path / "s.tif", data, nodata=0)
    fill = np.array([-1.0, -2.0, -3.0], dtype=np.float32)
    tile = Tile(
        index=0, row=0, col=0, height=H, width=W, offset=(0, 0), read=Window(0, 0, W, H), pad=(0, 0)
    )
    out = np.empty((3, H, W), dtype=np.float32)
    with TileReader(path, fill) as reader:
        invalid = reader.read_into(tile, out)
    assert invalid is not None and invalid[0].all() and invalid.sum() == W
    assert out[1, 5, 5] == -2.0 and out[0, 5, 5] == data[0, 5, 5]
    assert (out[:, 0, :] == fill[:, None]).all()
