"""The studio's pure parts: strip-parallel features, tile windows, PNG encoding."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from sipd.errors import InvalidArgument
from sipd.nets.filter_bank import FilterBank
from sipd.studio.live import LIVE_SIGMAS, bank_rows
from sipd.studio.png import encode_png
from sipd.studio.tiles import max_level, tile_window


@pytest.mark.parametrize("threads", [1, 3])
def test_strip_parallel_features_equal_the_whole_image_pass(threads: int) -> None:
    bank = FilterBank(2, LIVE_SIGMAS).eval()
    image = np.random.default_rng(0).normal(size=(2, 300, 170)).astype(np.float32)
    inner = (21, 5, 250, 160)  # a box with a halo above and left, none below or right
    with torch.no_grad():
        whole = bank(torch.from_numpy(image)[None])[0].numpy()
    r0, c0, h, w = inner
    expected = whole[:, r0 : r0 + h, c0 : c0 + w].reshape(whole.shape[0], -1).T
    rows = bank_rows(bank, image, inner, threads)
    assert rows.shape == (h * w, bank.num_features)
    np.testing.assert_allclose(rows, expected, rtol=1e-5, atol=1e-5)


def test_tile_windows_cover_the_scene_level_by_level() -> None:
    assert max_level(256, 100) == 0 and max_level(257, 10) == 1 and max_level(10000, 5) == 6
    window, shape = tile_window(600, 400, 0, 2, 1)
    assert (window.col_off, window.row_off, window.width, window.height) == (512, 256, 88, 144)
    assert shape == (144, 88)
    window, shape = tile_window(600, 400, 2, 0, 0)
    assert (window.width, window.height, shape) == (600, 400, (100, 150))
    with pytest.raises(InvalidArgument, match="outside"):
        tile_window(600, 400, 1, 2, 0)
    with pytest.raises(InvalidArgument, match="level 3"):
        tile_window(600, 400, 3, 0, 0)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_round_trips_through_gdal(channels: int) -> None:
    # GDAL's PNG driver is the independent decoder.
    pixels = np.random.default_rng(channels).integers(0, 256, (37, 53, channels), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a PNG has no georeference
        with MemoryFile(encode_png(pixels)) as mem, mem.open() as ds:
            assert ds.driver == "PNG"
            np.testing.assert_array_equal(np.moveaxis(ds.read(), 0, -1), pixels)
    with pytest.raises(ValueError, match="uint8"):
        encode_png(pixels.astype(np.uint16))
