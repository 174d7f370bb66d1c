"""Band-to-band registration of a capture's frames: an affine map (or a translation) per
band onto the reference band.

The cameras of a MicaSense rig sit a few centimetres apart behind separate lenses, so
their frames of the same ground are offset (parallax: tens of pixels at 1 m, a few at
flight height) and slightly rotated and scaled (on the RedEdge fixtures: 0.4 degrees and
0.5 %, i.e. up to 8 pixels at the corners: a translation alone leaves that).

Offsets are measured by phase correlation (Kuglin & Hines 1975, "The phase correlation
image alignment method"): the peak of the inverse FFT of the normalised cross-power
spectrum, on gradient magnitudes rather than values (bands see different reflectances,
vegetation is dark in red and bright in NIR, but edges sit in the same places), with a
Hann window so that the frame borders do not correlate, and a parabola through the peak
and its neighbours for the sub-pixel part. `affine`: the offset is measured in a 4 x 4
grid of overlapping tiles (each searched around the whole frame's offset), and an affine
map is fitted to the tile centres by least squares, dropping tiles that disagree (low
texture, moving objects). Lens distortion and relief leave residuals of a pixel or less
at flight height (MicaSense's tutorials fit a homography with OpenCV's ECC instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft, ndimage

# Shifts beyond this fraction of the frame are refused as a failed estimate: the
# cameras of one rig always see mostly the same ground.
MAX_SHIFT_FRACTION = 0.25
TILE_GRID = 4  # tiles per axis for the affine fit
MIN_TILES = 6  # an affine fit needs this many agreeing tiles, else a translation is used
MIN_TILE_PEAK = 0.05  # a tile whose correlation peak is lower has too little texture
MAX_FIT_RMS = 2.0  # pixels: a worse affine fit is not trusted


@dataclass(frozen=True)
class Warp:
    """Where a band's pixel lies for a reference-band pixel (row r, column c):
    row = a0 + a1 r + a2 c, column = b0 + b1 r + b2 c."""

    coefficients: tuple[float, float, float, float, float, float]  # a0 a1 a2 b0 b1 b2
    kind: str = "none"  # "affine", "translation" or "none"
    tiles: int = 0  # tiles the affine fit used
    rms: float = 0.0  # residual of the fit, pixels

    @classmethod
    def identity(cls) -> Warp:
        return cls((0.0, 1.0, 0.0, 0.0, 0.0, 1.0))

    @classmethod
    def translation(cls, dy: float, dx: float) -> Warp:
        return cls((dy, 1.0, 0.0, dx, 0.0, 1.0), "translation")

    def source(self, r: np.ndarray | float, c: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        a0, a1, a2, b0, b1, b2 = self.coefficients
        return np.asarray(a0 + a1 * r + a2 * c), np.asarray(b0 + b1 * r + b2 * c)

    def rows_needed(self, row0: int, row1: int, width: int, height: int) -> tuple[int, int]:
        """The band rows (start, stop) that output rows row0..row1 sample from, with a
        row of margin each side, clipped to the frame."""
        rows, _ = self.source(
            np.array([row0, row0, row1 - 1, row1 - 1]), np.array([0, width - 1, 0, width - 1])
        )
        first = int(np.floor(rows.min())) - 1
        last = int(np.floor(rows.max())) + 2
        return min(max(0, first), height), min(height, max(0, last + 1))

    def sample(
        self, window: np.ndarray, window_row0: int, row0: int, row1: int, width: int
    ) -> np.ndarray:
        """Output rows row0..row1 (reference grid, `width` columns) sampled bilinearly from
        `window`, the band's rows window_row0..; NaN where a sample needs a pixel outside
        the window (outside the frame, or next to a NaN)."""
        a0, a1, a2, b0, b1, b2 = self.coefficients
        if window.shape[0] == 0:
            return np.full((row1 - row0, width), np.nan, dtype=np.float32)
        # scipy: input[matrix @ o + offset] for output index o = (r - row0, c).
        return ndimage.affine_transform(
            window,
            np.array([[a1, a2], [b1, b2]]),
            offset=(a0 + a1 * row0 - window_row0, b0 + b1 * row0),
            output_shape=(row1 - row0, width),
            order=1,
            mode="constant",
            cval=np.nan,
            prefilter=False,
        )

    def describe(self) -> str:
        if self.kind in ("none", "reference"):
            return self.kind
        a0, a1, a2, b0, b1, b2 = self.coefficients
        text = f"{self.kind}: row = {a0:.3f} + {a1:.6f} r + {a2:.6f} c, "
        text += f"col = {b0:.3f} + {b1:.6f} r + {b2:.6f} c"
        return text + (f"; {self.tiles} tiles, rms {self.rms:.2f} px" if self.tiles else "")


def gradient_magnitude(image: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of a lightly smoothed image, float32."""
    smooth = ndimage.gaussian_filter(np.nan_to_num(image.astype(np.float32)), 1.0)
    return np.hypot(ndimage.sobel(smooth, axis=0), ndimage.sobel(smooth, axis=1))


def estimate_shift(reference: np.ndarray, moving: np.ndarray) -> tuple[float, float, float]:
    """(dy, dx, peak): `moving` at (row + dy, col + dx) shows what `reference` shows at
    (row, col). `peak` is the correlation peak's height (0-1; near 0: no match)."""
    if reference.shape != moving.shape:
        raise ValueError(f"shapes differ: {reference.shape} and {moving.shape}")
    # Cropped (centred, the same for both) to sizes the FFT is fast at: 1544 = 8 x 193
    # is 3x slower than 1536.
    rows, cols = _smooth(reference.shape[0]), _smooth(reference.shape[1])
    top, left = (reference.shape[0] - rows) // 2, (reference.shape[1] - cols) // 2
    reference = reference[top : top + rows, left : left + cols]
    moving = moving[top : top + rows, left : left + cols]
    window = np.outer(np.hanning(rows), np.hanning(cols)).astype(np.float32)
    a = fft.rfft2((reference - reference.mean()) * window)
    b = fft.rfft2((moving - moving.mean()) * window)
    cross = b * np.conj(a)
    cross /= np.maximum(np.abs(cross), 1e-12)
    corr = fft.irfft2(cross, s=(rows, cols))
    py, px = np.unravel_index(int(np.argmax(corr)), corr.shape)
    dy = py + _subpixel(corr[(py - 1) % rows, px], corr[py, px], corr[(py + 1) % rows, px])
    dx = px + _subpixel(corr[py, (px - 1) % cols], corr[py, px], corr[py, (px + 1) % cols])
    # The correlation is circular: peaks past half the size are negative shifts.
    dy = dy - rows if dy > rows / 2 else dy
    dx = dx - cols if dx > cols / 2 else dx
    return float(dy), float(dx), float(corr[py, px])


def _smooth(n: int) -> int:
    """The largest size <= n with no prime factor above 5."""
    for m in range(n, 0, -1):
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
    return n


def _subpixel(left: float, centre: float, right: float) -> float:
    """Offset (-0.5..0.5) of the vertex of a parabola through three samples of a peak."""
    denominator = left - 2.0 * centre + right
    if denominator >= 0:
        return 0.0
    return float(np.clip(0.5 * (left - right) / denominator, -0.5, 0.5))


def plausible(dy: float, dx: float, shape: tuple[int, ...]) -> bool:
    return abs(dy) <= MAX_SHIFT_FRACTION * shape[0] and abs(dx) <= MAX_SHIFT_FRACTION * shape[1]


def estimate_warp(reference: np.ndarray, moving: np.ndarray, kind: str) -> Warp | None:
    """The warp of `moving` onto `reference` (gradient images of one shape), or None
    when no plausible offset is found. `kind`: "affine" or "translation"; an affine fit
    without enough agreeing tiles falls back to the whole frame's translation."""
    dy, dx, _ = estimate_shift(reference, moving)
    if not plausible(dy, dx, reference.shape):
        return None
    if kind == "translation":
        return Warp.translation(dy, dx)
    points = _tile_offsets(reference, moving, round(dy), round(dx))
    fitted = _fit_affine(points)
    return fitted if fitted is not None else Warp.translation(dy, dx)


def _tile_offsets(reference: np.ndarray, moving: np.ndarray, oy: int, ox: int) -> np.ndarray:
    """Rows (y, x, source y, source x) for tiles whose offset was measured with a
    clear peak; each tile is searched in `moving` around the frame's offset (oy, ox)."""
    height, width = reference.shape
    th, tw = height // 3, width // 3
    points = []
    for cy in np.linspace(th / 2, height - th / 2, TILE_GRID):
        for cx in np.linspace(tw / 2, width - tw / 2, TILE_GRID):
            y0, x0 = int(cy - th / 2), int(cx - tw / 2)
            my0 = min(max(y0 + oy, 0), height - th)
            mx0 = min(max(x0 + ox, 0), width - tw)
            dy, dx, peak = estimate_shift(
                reference[y0 : y0 + th, x0 : x0 + tw], moving[my0 : my0 + th, mx0 : mx0 + tw]
            )
            if peak >= MIN_TILE_PEAK and plausible(dy, dx, (th, tw)):
                # Tile centres in pixel-centre coordinates of each frame.
                ry, rx = y0 + (th - 1) / 2, x0 + (tw - 1) / 2
                points.append((ry, rx, ry + dy + my0 - y0, rx + dx + mx0 - x0))
    return np.array(points, dtype=np.float64).reshape(-1, 4)


def _fit_affine(points: np.ndarray) -> Warp | None:
    """Least-squares affine map from tile centres; tiles off by more than
    max(1 px, 3 x the median residual) are dropped once and the map refitted."""
    keep = np.ones(len(points), dtype=bool)
    for _ in range(2):
        if keep.sum() < MIN_TILES:
            return None
        p = points[keep]
        design = np.c_[np.ones(len(p)), p[:, 0], p[:, 1]]
        row_coef = np.linalg.lstsq(design, p[:, 2], rcond=None)[0]
        col_coef = np.linalg.lstsq(design, p[:, 3], rcond=None)[0]
        all_design = np.c_[np.ones(len(points)), points[:, 0], points[:, 1]]
        residual = np.hypot(
            all_design @ row_coef - points[:, 2], all_design @ col_coef - points[:, 3]
        )
        limit = max(1.0, 3.0 * float(np.median(residual[keep])))
        if np.array_equal(keep, keep & (residual <= limit)):
            break
        keep &= residual <= limit
    if keep.sum() < MIN_TILES:
        return None
    rms = float(np.sqrt(np.mean(residual[keep] ** 2)))
    if rms > MAX_FIT_RMS:
        return None
    coefficients = (*map(float, row_coef), *map(float, col_coef))
    return Warp(coefficients, "affine", int(keep.sum()), rms)  # type: ignore[arg-type]
