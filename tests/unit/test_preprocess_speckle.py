"""Multilook and speckle filters against naive per-pixel implementations.

The references below are written from the papers (Lee 1980, Lee 1981 / Lee &
Pottier 2009 sec. 5.3), one pixel at a time, sharing no code with
sipd.preprocess.speckle; windows are defined geometrically (a half plane
through the centre) rather than by the module's column-run construction.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sipd.errors import InvalidArgument
from sipd.preprocess.speckle import (
    FILTERS,
    halo,
    speckle_filter,
    to_db,
)

# --------------------------------------------------------------- references


def window_values(z: np.ndarray, i: int, j: int, r: int, keep=lambda di, dj: True) -> list:
    """Valid values of the (2r+1)^2 window at (i, j) that `keep` selects; outside = nodata."""
    vals = []
    for di in range(-r, r + 1):
        for dj in range(-r, r + 1):
            y, x = i + di, j + dj
            if 0 <= y < z.shape[0] and 0 <= x < z.shape[1] and keep(di, dj):
                v = float(z[y, x])
                if not math.isnan(v):
                    vals.append(v)
    return vals


def lee_estimate(zc: float, vals: list, looks: float) -> float:
    n = len(vals)
    m = sum(vals) / n
    var_z = max(sum((v - m) ** 2 for v in vals) / n, 0.0)
    sv2 = 1.0 / looks
    var_x = max((var_z - m * m * sv2) / (1 + sv2), 0.0)
    b = var_x / var_z if var_z > 0 else 0.0
    return m + b * (zc - m)


def naive_filter(z: np.ndarray, kind: str, size: int, looks: float = 1.0) -> np.ndarray:
    r = size // 2
    out = np.full(z.shape, np.nan)
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            if math.isnan(z[i, j]):
                continue
            vals = window_values(z, i, j, r)
            if kind == "boxcar":
                out[i, j] = sum(vals) / len(vals)
            elif kind == "lee":
                out[i, j] = lee_estimate(float(z[i, j]), vals, looks)
            else:
                out[i, j] = naive_refined_lee_pixel(z, i, j, size, looks)
    return out


# Gradient masks over the 3x3 subwindow means (Lee & Pottier 2009, sec. 5.3),
# each with its two side subwindows: (negative-side, positive-side).
GRADIENT_MASKS = [
    (np.array([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]]), ((1, 0), (1, 2))),
    (np.array([[0, 1, 1], [-1, 0, 1], [-1, -1, 0]]), ((2, 0), (0, 2))),
    (np.array([[1, 1, 1], [0, 0, 0], [-1, -1, -1]]), ((0, 1), (2, 1))),
    (np.array([[1, 1, 0], [1, 0, -1], [0, -1, -1]]), ((0, 0), (2, 2))),
]


def naive_refined_lee_pixel(z: np.ndarray, i: int, j: int, size: int, looks: float) -> float:
    r = size // 2
    s = (size - 3) // 2
    means = np.full((3, 3), np.nan)
    for a in range(3):
        for b in range(3):
            vals = window_values(z, i + (a - 1) * s, j + (b - 1) * s, 1)
            # The subwindow itself must lie in the big window; it always does.
            if vals:
                means[a, b] = sum(vals) / len(vals)
    centre = means[1, 1]
    filled = np.where(np.isnan(means), centre, means)
    grads = [abs(float((mask * filled).sum())) for mask, _ in GRADIENT_MASKS]
    d = grads.index(max(grads))
    side_a, side_b = GRADIENT_MASKS[d][1]
    dist_a = abs(means[side_a] - centre)
    dist_b = abs(means[side_b] - centre)
    dist_a = math.inf if math.isnan(dist_a) else dist_a
    dist_b = math.inf if math.isnan(dist_b) else dist_b
    side = side_a if dist_a < dist_b else side_b
    # The edge-aligned window: the half plane (centre line included) towards
    # the chosen side subwindow.
    v = (side[0] - 1, side[1] - 1)
    vals = window_values(z, i, j, r, keep=lambda di, dj: di * v[0] + dj * v[1] >= 0)
    return lee_estimate(float(z[i, j]), vals, looks)


# ------------------------------------------------------------------ images


def speckled(shape: tuple[int, int], looks: float, seed: int, mean=1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (mean * rng.gamma(looks, 1.0 / looks, size=shape)).astype(np.float32)


def with_nodata(z: np.ndarray, seed: int) -> np.ndarray:
    z = z.copy()
    rng = np.random.default_rng(seed)
    z[rng.random(z.shape) < 0.08] = np.nan  # scattered nodata
    z[:5, :7] = np.nan  # a corner outside the swath
    z[-9:, 20:23] = np.nan  # a strip touching the border
    return z


def edge_image(seed: int) -> np.ndarray:
    """40 x 40: step edge (x5) at column 17, a diagonal bright region, nodata."""
    z = speckled((40, 40), 2.0, seed)
    z[:, 17:] *= 5.0
    yy, xx = np.mgrid[:40, :40]
    z[(yy - xx > 12)] *= 0.2
    return with_nodata(z, seed + 1)


# ------------------------------------------------------------------- tests


@pytest.mark.parametrize("kind", ["boxcar", "lee"])
@pytest.mark.parametrize("size", [3, 5])
def test_box_filters_match_naive(kind: str, size: int) -> None:
    z = with_nodata(speckled((26, 33), 1.0, 3), 4)
    z[10:14, 10:20] *= 8.0
    got = speckle_filter(z, kind, size, looks=1.0)
    want = naive_filter(z, kind, size, looks=1.0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=0, equal_nan=True)
    assert np.array_equal(np.isnan(got), np.isnan(z))


def test_lee_uses_looks() -> None:
    z = with_nodata(speckled((20, 20), 4.0, 5), 6)
    got = speckle_filter(z, "lee", 7, looks=4.0)
    want = naive_filter(z, "lee", 7, looks=4.0)
    np.testing.assert_allclose(got, want, rtol=2e-6, equal_nan=True)


@pytest.mark.parametrize("size", [5, 7, 9])
def test_refined_lee_matches_naive(size: int) -> None:
    z = edge_image(7)
    got = speckle_filter(z, "refined-lee", size, looks=2.0)
    want = naive_filter(z, "refined-lee", size, looks=2.0)
    assert got.dtype == np.float32
    assert np.array_equal(np.isnan(got), np.isnan(z))
    # Window sums are float32 (<= 81 non-negative terms): < 1e-6 relative here.
    np.testing.assert_allclose(got, want, rtol=5e-6, equal_nan=True)


def enl(x: np.ndarray) -> float:
    v = x[~np.isnan(x)].astype(np.float64)
    return float(v.mean() ** 2 / v.var())


@pytest.mark.parametrize("kind", ["boxcar", "lee", "refined-lee"])
def test_filters_raise_enl_on_homogeneous_speckle(kind: str) -> None:
    z = speckled((120, 120), 1.0, 8)
    assert 0.8 < enl(z) < 1.2
    out = speckle_filter(z, kind, 7, looks=1.0)
    # Interior only: the border windows are smaller.
    assert enl(out[10:-10, 10:-10]) > 6.0
    # Unbiased: the mean is kept.
    assert abs(float(np.mean(out)) / float(np.mean(z)) - 1) < 0.03


def test_refined_lee_keeps_edges_sharper_than_boxcar() -> None:
    z = speckled((120, 120), 4.0, 9)
    z[:, 60:] *= 10.0

    def contrast(out: np.ndarray) -> float:
        # Mean of the first bright column over the last dark one.
        return float(out[5:-5, 60].mean() / out[5:-5, 59].mean())

    box = contrast(speckle_filter(z, "boxcar", 7))
    refined = contrast(speckle_filter(z, "refined-lee", 7, looks=4.0))
    assert box < 1.5
    assert refined > 5.0


@pytest.mark.parametrize(
    ("kind", "size"), [("boxcar", 3), ("lee", 7), ("refined-lee", 5), ("refined-lee", 7)]
)
def test_row_blocks_with_halo_equal_whole_image(kind: str, size: int) -> None:
    z = with_nodata(speckled((97, 75), 1.0, 10), 11)
    z[40:, 30:] *= 6.0
    whole = speckle_filter(z, kind, size, looks=1.0)
    k = halo(kind, size)
    assert k == size // 2
    pieces = []
    for r0, r1 in [(0, 1), (1, 23), (23, 24), (24, 61), (61, 97)]:
        a0, a1 = max(r0 - k, 0), min(r1 + k, z.shape[0])
        block = speckle_filter(z[a0:a1], kind, size, looks=1.0)
        pieces.append(block[r0 - a0 : r1 - a0])
    assert np.array_equal(np.concatenate(pieces), whole, equal_nan=True)


def test_none_passes_through() -> None:
    z = with_nodata(speckled((9, 9), 1.0, 12), 13)
    assert np.array_equal(speckle_filter(z, "none", 0), z, equal_nan=True)
    assert halo("none", 0) == 0


def test_bad_filter_arguments_name_what_is_accepted() -> None:
    z = speckled((9, 9), 1.0, 0)
    with pytest.raises(InvalidArgument, match="boxcar, lee, refined-lee"):
        speckle_filter(z, "median", 7)
    with pytest.raises(InvalidArgument, match="odd sizes 3"):
        speckle_filter(z, "lee", 4)
    with pytest.raises(InvalidArgument, match="odd sizes 5"):
        speckle_filter(z, "refined-lee", 3)
    with pytest.raises(InvalidArgument, match="odd sizes"):
        halo("boxcar", 1)
    with pytest.raises(InvalidArgument, match="looks"):
        speckle_filter(z, "lee", 7, looks=0)
    assert FILTERS == ("none", "boxcar", "lee", "refined-lee")


def test_to_db_keeps_nan() -> None:
    x = np.array([[1.0, 10.0, np.nan, 0.01]], dtype=np.float32)
    got = to_db(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [[0.0, 10.0, np.nan, -20.0]], atol=1e-5, equal_nan=True)


def test_option_forms_parse_to_what_the_filters_accept() -> None:
    from sipd.contracts.jobs import build
    from sipd.contracts.preprocessing import SPECKLE_KINDS, SarOptions

    assert SPECKLE_KINDS == FILTERS
    for text, want in [
        ("refined-lee:7", ("refined-lee", 7)),
        ("lee:5", ("lee", 5)),
        ("boxcar:3", ("boxcar", 3)),
        (" Lee ", ("lee", 7)),
        ("none", ("none", 0)),
    ]:
        kind, size = build(SarOptions, speckle=text).speckle_filter
        assert (kind, size) == want
        if kind != "none":
            speckle_filter(np.ones((9, 9), np.float32), kind, size)  # accepted there too
    for bad in ["", "median:5", "lee:4", "lee:", "refined-lee:3", "lee:7:7", "lee:33", "lee:x"]:
        with pytest.raises(InvalidArgument, match="speckle"):
            build(SarOptions, speckle=bad)
    assert build(SarOptions, multilook="4X1").looks == (4, 1)
    assert build(SarOptions, multilook="3").looks == (3, 3)
    for bad in ["", "0x2", "2x0", "2x", "x2", "2*2", "-1", "1.5", "2x2x2"]:
        with pytest.raises(InvalidArgument, match="multilook"):
            build(SarOptions, multilook=bad)


def test_refined_lee_interior_tiles_match_naive(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small tiles, so that some lie wholly inside a nodata-free image and take
    # the path that skips summing valid counts.
    import sipd.preprocess.speckle as speckle

    z = speckled((40, 40), 2.0, 14)
    z[:, 17:] *= 5.0
    want = naive_filter(z, "refined-lee", 7, looks=2.0)
    monkeypatch.setattr(speckle, "_TILE", (8, 8))
    small = speckle_filter(z, "refined-lee", 7, looks=2.0)
    np.testing.assert_allclose(small, want, rtol=5e-6)
    monkeypatch.undo()
    assert np.array_equal(speckle_filter(z, "refined-lee", 7, looks=2.0), small)
