"""Multilooking and speckle filters on calibrated SAR intensity blocks.

Inputs are float32 linear intensities (sigma0, gamma0, beta0) with NaN as
nodata (outside the swath). Every function keeps NaN pixels NaN and takes
its statistics from the valid pixels only; outside the image counts as
nodata too, so a pixel near the border is filtered with the valid part of
its window (no reflection, no padding with made-up values).

Filters (`speckle_filter`):

- "boxcar": mean of the valid pixels of a size x size window.
- "lee": J.-S. Lee, "Digital image enhancement and noise filtering by use of
  local statistics", IEEE TPAMI 2(2):165-168, 1980. Multiplicative noise
  model with unit mean and variance sv^2 = 1 / looks (ENL = looks):

      out = m + b (z - m),  b = var_x / var_z,
      var_x = max((var_z - m^2 sv^2) / (1 + sv^2), 0)

  with m, var_z the mean and (population) variance of the window; b = 0 where
  var_z = 0.
- "refined-lee": J.-S. Lee, "Refined filtering of image noise using local
  statistics", Computer Graphics and Image Processing 15:380-389, 1981; as
  described in J.-S. Lee and E. Pottier, "Polarimetric Radar Imaging: From
  Basics to Applications", CRC Press 2009, sec. 5.3 (refined Lee filter).
  For a size N window (odd, N >= 5; N = 7 is the classic one) the window is
  covered by 3 x 3 subwindows of 3 x 3 pixels whose centres are `s` =
  (N - 3) / 2 pixels apart (N = 7: stride 2, overlapping by one pixel). With
  m[a][b] their means (a: row, down positive; b: column) the four gradients
  are

      0 deg:   (m02 + m12 + m22) - (m00 + m10 + m20)   edge runs vertically
      45 deg:  (m01 + m02 + m12) - (m10 + m20 + m21)   edge along the main diagonal
      90 deg:  (m00 + m01 + m02) - (m20 + m21 + m22)   edge runs horizontally
      135 deg: (m00 + m01 + m10) - (m12 + m21 + m22)   edge along the anti-diagonal

  The largest |gradient| picks the direction (first in this order on a tie).
  Of the two edge-aligned half windows of that direction (each includes the
  centre line, N (N + 1) / 2 pixels: 28 for N = 7) the one whose side
  subwindow mean is closer to the centre subwindow mean m11 is used:

      0 deg:   left (dj <= 0, side m10)        or right (dj >= 0, side m12)
      45 deg:  bottom-left (di >= dj, m20)      or top-right (dj >= di, m02)
      90 deg:  up (di <= 0, m01)                or down (di >= 0, m21)
      135 deg: top-left (di + dj <= 0, m00)     or bottom-right (di + dj >= 0, m22)

  (the second of each pair on a tie). The output is the Lee estimate above
  with m and var_z of that half window.

  Nodata in refined Lee: a subwindow with no valid pixel takes the centre
  subwindow mean in the gradients (it shows no edge), and it loses the side
  choice (its distance counts as infinite), so the filter never leans on the
  empty side.

Implementation: all window statistics are sums of (valid count, value, value^2)
over shifted slices, in cache-sized tiles: float64 for boxcar and Lee,
float32 for refined Lee's eight half windows (its dominant cost; sums of at
most size^2 non-negative terms, ~1e-6 relative). No running or prefix sums
are used, so a pixel's result does not depend on where its tile or block
starts (block-wise processing with `halo` rows of context is bit-identical
to filtering the whole image), and dark pixels next to bright targets keep
their precision (variances are not differences of large cumulative sums).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sipd.errors import InvalidArgument

# Filter kinds `speckle_filter` accepts; "none" passes the image through.
FILTERS: tuple[str, ...] = ("none", "boxcar", "lee", "refined-lee")
DEFAULT_SIZE = 7
# Smallest window per kind: the refined filter needs room for 3 x 3
# subwindows at distinct positions (size 3 would make all nine coincide).
_MIN_SIZE = {"boxcar": 3, "lee": 3, "refined-lee": 5}
# Larger windows smear more than they help and cost O(size) per pixel.
_MAX_SIZE = 31
# Output tile (rows, columns): small enough that the (3, rows + 2r, cols + 2r)
# float64 work arrays stay in cache, large enough that Python overhead is noise.
_TILE = (32, 1024)


def _accepted_sizes(kind: str) -> str:
    return f"odd sizes {_MIN_SIZE[kind]}..{_MAX_SIZE}"


def _check(kind: str, size: int) -> None:
    if kind not in FILTERS:
        raise InvalidArgument(
            f"unknown speckle filter {kind!r}: accepted kinds are {', '.join(FILTERS)}"
        )
    if kind == "none":
        return
    if (
        isinstance(size, bool)
        or not isinstance(size, int | np.integer)
        or size % 2 == 0
        or not _MIN_SIZE[kind] <= size <= _MAX_SIZE
    ):
        raise InvalidArgument(
            f"speckle filter {kind!r} cannot use window size {size!r}: "
            f"accepted are {_accepted_sizes(kind)}"
        )


def halo(kind: str, size: int) -> int:
    """Rows (and columns) of context a block needs on each side.

    Every filter here reads at most size // 2 pixels away (refined Lee: its
    subwindows reach s + 1 = size // 2 as well), so filtering a row block
    extended by this many rows above and below and cropping them off gives
    the same pixels as filtering the whole image.
    """
    _check(kind, size)
    return 0 if kind == "none" else size // 2


def block_sum(x: np.ndarray, az: int, rg: int) -> np.ndarray:
    """Sums over az x rg cells (trailing partial cells dropped), by strided adds: one
    pass per look over ever smaller arrays, no reshape copies (measured ~10x faster
    than a reshape-and-sum on IW-wide blocks)."""
    h, w = x.shape[0] // az * az, x.shape[1] // rg * rg
    cols = x[:h, 0:w:rg].copy()
    for j in range(1, rg):
        cols += x[:h, j:w:rg]
    rows = cols[0::az].copy()
    for i in range(1, az):
        rows += cols[i::az]
    return rows


def to_db(x: np.ndarray) -> np.ndarray:
    """10 log10(x) in float32, NaN kept.

    The pipeline floors intensities before this, so no clipping here; a zero
    gives -inf and a negative NaN, silently.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.float32(10) * np.log10(np.asarray(x, dtype=np.float32))).astype(
            np.float32, copy=False
        )


def speckle_filter(image: np.ndarray, kind: str, size: int, looks: float = 1.0) -> np.ndarray:
    """Filter a float32 intensity image (NaN = nodata); returns float32.

    `looks` is the equivalent number of looks of the input (after any
    multilooking), used by the Lee filters for the noise variance 1 / looks.
    """
    _check(kind, size)
    z = np.asarray(image, dtype=np.float32)
    if z.ndim != 2:
        raise InvalidArgument(f"speckle filter needs a 2-D image, got shape {z.shape}")
    if kind == "none":
        return z.copy()
    if not (isinstance(looks, int | float | np.number) and np.isfinite(looks) and looks > 0):
        raise InvalidArgument(f"looks (ENL) must be a positive number, got {looks!r}")
    r = size // 2
    sv2 = 1.0 / float(looks)
    tile_fn: Callable[[np.ndarray, int, int, int], np.ndarray]
    if kind == "boxcar":
        tile_fn = _boxcar_tile
    elif kind == "lee":

        def tile_fn(q: np.ndarray, r: int, h: int, w: int) -> np.ndarray:
            return _lee_tile(q, r, h, w, sv2)

    else:

        def tile_fn(q: np.ndarray, r: int, h: int, w: int) -> np.ndarray:
            return _refined_lee_tile(q, r, h, w, sv2)

    # Refined Lee sums its eight half windows in float32: half the memory
    # traffic of its dominant cost, and sums of <= size^2 non-negative terms
    # lose at most ~size^2 * 6e-8 relative (count stays exact).
    return _tiled(z, r, tile_fn, np.float32 if kind == "refined-lee" else np.float64)


def _tiled(
    z: np.ndarray,
    r: int,
    tile_fn: Callable[[np.ndarray, int, int, int], np.ndarray],
    dtype: type[np.floating] = np.float64,
) -> np.ndarray:
    """Run `tile_fn` over output tiles, each given its (count, sum, sum^2) stack.

    The stack q has shape (3, h + 2r, w + 2r): the tile plus r pixels of
    context, with nodata and outside-the-image pixels as zeros (count 0), so
    they drop out of every window sum.
    """
    _settle_allocator()
    rows, cols = z.shape
    out = np.full((rows, cols), np.nan, dtype=np.float32)
    th, tw = _TILE
    for i0 in range(0, rows, th):
        h = min(th, rows - i0)
        for j0 in range(0, cols, tw):
            w = min(tw, cols - j0)
            q = np.zeros((3, h + 2 * r, w + 2 * r), dtype=dtype)
            # Part of the extended tile inside the image.
            a0, a1 = max(i0 - r, 0), min(i0 + h + r, rows)
            b0, b1 = max(j0 - r, 0), min(j0 + w + r, cols)
            src = z[a0:a1, b0:b1]
            valid = ~np.isnan(src)
            dst = (slice(a0 - (i0 - r), a1 - (i0 - r)), slice(b0 - (j0 - r), b1 - (j0 - r)))
            q[0][dst] = valid
            q[1][dst] = np.where(valid, src, 0.0)
            np.multiply(q[1][dst], q[1][dst], out=q[2][dst])
            with np.errstate(invalid="ignore", divide="ignore"):
                out[i0 : i0 + h, j0 : j0 + w] = tile_fn(q, r, h, w)
    out[np.isnan(z)] = np.nan
    return out


def _settle_allocator() -> None:
    """Let glibc keep the per-tile temporaries on its heap.

    glibc maps blocks above M_MMAP_THRESHOLD fresh from the kernel and hands
    freed heap above M_TRIM_THRESHOLD back; both start at 128/256 KiB and only
    grow once a large mapped block is freed. The tiles here allocate and free
    a few MiB of temporaries thousands of times per scene, so in a fresh
    process every tile page-faulted its memory in again: refined Lee on a
    4175 x 6250 image took 11 s (6 s of it in the kernel) instead of 4 s.
    Freeing one unused 16 MiB block raises the thresholds to 16/32 MiB for
    the process; elsewhere (other libcs) this is a no-op allocation.
    """
    np.empty(16 << 20, dtype=np.uint8)


def _box_sums(q: np.ndarray, r: int, h: int, w: int) -> np.ndarray:
    """(count, sum, sum^2) over the full (2r+1)^2 window of each tile pixel."""
    n = 2 * r + 1
    rowsum = q[:, :, 0:w].copy()
    for k in range(1, n):
        rowsum += q[:, :, k : k + w]
    full = rowsum[:, 0:h].copy()
    for k in range(1, n):
        full += rowsum[:, k : k + h]
    return full


def _boxcar_tile(q: np.ndarray, r: int, h: int, w: int) -> np.ndarray:
    count, total, _ = _box_sums(q, r, h, w)
    return total / count


def _lee(
    z: np.ndarray, count: np.ndarray, total: np.ndarray, total2: np.ndarray, sv2: float
) -> np.ndarray:
    """Lee (1980) estimate from window sums; multiplicative noise, var 1/looks."""
    m = total / count
    var_z = np.maximum(total2 / count - m * m, 0.0)
    var_x = np.maximum((var_z - m * m * sv2) / (1.0 + sv2), 0.0)
    # A flat window (var_z 0) is all noise-free mean: weight 0, not 0/0.
    b = np.divide(var_x, var_z, out=np.zeros_like(var_z), where=var_z > 0)
    return m + b * (z - m)


def _lee_tile(q: np.ndarray, r: int, h: int, w: int, sv2: float) -> np.ndarray:
    count, total, total2 = _box_sums(q, r, h, w)
    z = q[1, r : r + h, r : r + w]
    return _lee(z, count, total, total2, sv2)


def _refined_lee_tile(q: np.ndarray, r: int, h: int, w: int, sv2: float) -> np.ndarray:
    s = r - 1  # subwindow stride; subwindow radius 1, so s + 1 = r reaches the window edge
    big_h, big_w = h + 2 * r, w + 2 * r

    # 3 x 3 subwindow means at every padded position (index [rho - 1, c - 1]).
    # Sums in float64 (q may be float32), means rounded once to float32 for
    # the direction and side comparisons: those are ~70 elementwise passes,
    # twice as fast in float32, and a choice flipped by a 1e-7 near-tie still
    # picks an edge-aligned window as valid as the other.
    q2 = q[:2].astype(np.float64)
    rs3 = q2[:, :, 0 : big_w - 2] + q2[:, :, 1 : big_w - 1] + q2[:, :, 2:big_w]
    b3 = rs3[:, 0 : big_h - 2] + rs3[:, 1 : big_h - 1] + rs3[:, 2:big_h]
    m3 = np.divide(b3[1], b3[0], out=np.full_like(b3[1], np.nan), where=b3[0] > 0)
    m3 = m3.astype(np.float32)

    def sub(a: int, b: int) -> np.ndarray:
        # Subwindow centred (a s, b s) from each pixel: padded (i + r + a s, j + r + b s).
        return m3[s * (1 + a) : s * (1 + a) + h, s * (1 + b) : s * (1 + b) + w]

    m = [[sub(a, b) for b in (-1, 0, 1)] for a in (-1, 0, 1)]
    centre = m[1][1]
    # Most tiles lie inside the swath: skip the nodata handling there.
    empty_subwindows = bool((b3[0] == 0).any())
    f = m
    if empty_subwindows:
        # An empty subwindow shows no edge: it reads as the centre subwindow.
        f = [[np.where(np.isnan(v), centre, v) for v in row] for row in m]
    left = f[0][0] + f[1][0] + f[2][0]
    right = f[0][2] + f[1][2] + f[2][2]
    top = f[0][0] + f[0][1] + f[0][2]
    bottom = f[2][0] + f[2][1] + f[2][2]
    grads = (
        right - left,
        (f[0][1] + f[0][2] + f[1][2]) - (f[1][0] + f[2][0] + f[2][1]),
        top - bottom,
        (f[0][0] + f[0][1] + f[1][0]) - (f[1][2] + f[2][1] + f[2][2]),
    )
    # Elementwise running argmax (first maximum wins) in int8 arithmetic:
    # np.argmax over a stacked axis, np.where and masked copies are each
    # several times slower on these shapes.
    best = np.abs(grads[0])
    direction = np.zeros((h, w), dtype=np.int8)
    for d, g in enumerate(grads[1:], start=1):
        g = np.abs(g)
        better = g > best
        direction += better * (np.int8(d) - direction)
        best = np.maximum(best, g)
    # Side choice for every direction (True: the second window of the pair),
    # packed as bits and picked by the direction's bit.
    sides = np.zeros((h, w), dtype=np.uint8)
    pairs = ((m[1][0], m[1][2]), (m[2][0], m[0][2]), (m[0][1], m[2][1]), (m[0][0], m[2][2]))
    for d, (a, b) in enumerate(pairs):
        d_first = np.abs(a - centre)
        d_second = np.abs(b - centre)
        if empty_subwindows:
            # An empty side subwindow never wins the side choice.
            d_first = np.nan_to_num(d_first, nan=np.inf)
            d_second = np.nan_to_num(d_second, nan=np.inf)
        sides |= (d_first >= d_second).view(np.uint8) << np.uint8(d)
    side = (sides >> direction.view(np.uint8)) & np.uint8(1)
    window = (2 * direction + side.view(np.int8)).astype(np.intp)

    # A tile whose whole context is valid (inside the image and the swath,
    # i.e. most tiles) has every half window full: skip summing the counts.
    all_valid = bool(q[0].min() == 1)
    sums = q[1:] if all_valid else q
    nq = sums.shape[0]
    halves = _half_window_sums(sums, r, h, w)
    # Gather each pixel's window from the (8, nq, h * w) stack by flat index.
    plane = h * w
    idx = window.ravel() * (nq * plane) + np.arange(plane)
    flat = halves.reshape(-1)
    chosen = [flat[idx + k * plane].reshape(h, w).astype(np.float64) for k in range(nq)]
    if all_valid:
        n = 2 * r + 1
        chosen.insert(0, np.full((h, w), n * (n + 1) / 2))
    z = q[1, r : r + h, r : r + w]
    return _lee(z.astype(np.float64), chosen[0], chosen[1], chosen[2], sv2)


def _half_window_sums(q: np.ndarray, r: int, h: int, w: int) -> np.ndarray:
    """Sums of each q[k] over the 8 edge-aligned half windows: (8, len(q), h, w).

    Order: left, right, bottom-left, top-right, up, down, top-left,
    bottom-right (window index 2 * direction + side). Built from column
    segments: column dj of a triangle is a run of rows starting at -r or
    ending at +r, so growing those runs one row at a time and adding each
    at its column shift gives all four triangles in O(size) slice additions.
    """

    def cols(x: np.ndarray, dj: int) -> np.ndarray:
        # Value at output column j + dj (padded column j + r + dj).
        return x[:, :, r + dj : r + dj + w]

    def rows(k: int) -> np.ndarray:
        # Padded row i + r + k for every output row i.
        return q[:, r + k : r + k + h, :]

    out = np.zeros((8, q.shape[0], h, w), dtype=q.dtype)
    left, right, bl, tr, up, down, tl, br = out

    # Runs ending at +r: suffix[a] = rows a..r. Column dj of bottom-right
    # (di >= -dj) is suffix[-dj], of bottom-left (di >= dj) suffix[dj].
    run = rows(r).copy()
    for a in range(r, -r - 1, -1):
        if a < r:
            run += rows(a)
        br += cols(run, -a)
        bl += cols(run, a)
        if a == 0:
            for dj in range(-r, r + 1):
                down += cols(run, dj)
    full_col = run  # rows -r..r
    for dj in range(-r, 1):
        left += cols(full_col, dj)
    for dj in range(0, r + 1):
        right += cols(full_col, dj)

    # Runs starting at -r: prefix[b] = rows -r..b. Column dj of top-left
    # (di <= -dj) is prefix[-dj], of top-right (di <= dj) prefix[dj].
    run = rows(-r).copy()
    for b in range(-r, r + 1):
        if b > -r:
            run += rows(b)
        tl += cols(run, -b)
        tr += cols(run, b)
        if b == 0:
            for dj in range(-r, r + 1):
                up += cols(run, dj)
    return out
