"""`forest-ref`: the quality benchmark's independent reference, an ilastik-style pixel
classifier computed in-process (none of sipd's model code).

Features: ilastik's default pixel-classification filter bank (Sommer, Straehle, Koethe,
Hamprecht, "ilastik: Interactive learning and segmentation toolkit", IEEE ISBI 2011;
ilastik documentation, "Pixel Classification" -> "Selecting good features",
https://www.ilastik.org/documentation/pixelclassification/pixelclassification), per band
at the sigmas (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0):
- Gaussian smoothing,
- Laplacian of Gaussian,
- Gaussian gradient magnitude,
- difference of Gaussians (sigma minus 0.66 sigma, as ilastik),
- Hessian-of-Gaussian eigenvalues (2),
- structure-tensor eigenvalues (2; inner scale sigma, outer scale sigma / 2, as ilastik),
with scipy.ndimage (ilastik uses vigra; the filters are the same, the border handling and
the kernel windows differ slightly). 7 sigmas x 8 features = 56 features per band.

Classifier: sklearn RandomForestClassifier(n_estimators=100, n_jobs=-1, random_state=seed)
on the train + val clicks' feature vectors (ilastik trains on every labelled pixel too).
Prediction goes through row blocks with a halo that covers every filter's support, so
memory stays bounded on large images and the blocks join without seams.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

SIGMAS = (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
FEATURES = ("gauss", "log", "gradmag", "dog", "hessian1", "hessian2", "st1", "st2")
TRUNCATE = 4.0
# Rows above and below a block that every filter's support fits in: structure tensor at
# sigma 10 reads 4 * 10 rows for the gradients and 4 * 5 more for the outer smoothing.
HALO = int(np.ceil(TRUNCATE * max(SIGMAS) * 1.5)) + 2
BLOCK_ROWS = 256


def feature_names(bands: int) -> list[str]:
    return [f"b{b + 1}_{f}_{s}" for b in range(bands) for s in SIGMAS for f in FEATURES]


def _eig2(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (larger, smaller) of the symmetric 2x2 matrices [[a, b], [b, c]]."""
    mean = (a + c) / 2
    root = np.sqrt(((a - c) / 2) ** 2 + b * b)
    return mean + root, mean - root


def band_features(x: np.ndarray) -> np.ndarray:
    """(56, rows, cols) float32 features of one band (float32 rows x cols)."""
    g = ndimage.gaussian_filter
    out = np.empty((len(SIGMAS) * len(FEATURES), *x.shape), np.float32)
    i = 0
    for s in SIGMAS:
        smooth = g(x, s, truncate=TRUNCATE)
        out[i] = smooth
        out[i + 1] = ndimage.gaussian_laplace(x, s, truncate=TRUNCATE)
        out[i + 2] = ndimage.gaussian_gradient_magnitude(x, s, truncate=TRUNCATE)
        out[i + 3] = smooth - g(x, 0.66 * s, truncate=TRUNCATE)
        hrr = g(x, s, order=(2, 0), truncate=TRUNCATE)
        hcc = g(x, s, order=(0, 2), truncate=TRUNCATE)
        hrc = g(x, s, order=(1, 1), truncate=TRUNCATE)
        out[i + 4], out[i + 5] = _eig2(hrr, hrc, hcc)
        dr = g(x, s, order=(1, 0), truncate=TRUNCATE)
        dc = g(x, s, order=(0, 1), truncate=TRUNCATE)
        outer = s / 2
        trr = g(dr * dr, outer, truncate=TRUNCATE)
        tcc = g(dc * dc, outer, truncate=TRUNCATE)
        trc = g(dr * dc, outer, truncate=TRUNCATE)
        out[i + 6], out[i + 7] = _eig2(trr, trc, tcc)
        i += len(FEATURES)
    return out


def feature_blocks(
    image: np.ndarray, block_rows: int = BLOCK_ROWS
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(r0, r1, features (n, r1 - r0, cols)) over row blocks of `image` (bands, rows, cols);
    each block is computed with HALO rows around it, so blocks equal the whole image's
    features (the image border is the same mirror border as on the whole image)."""
    bands, rows, cols = image.shape
    for r0 in range(0, rows, block_rows):
        r1 = min(rows, r0 + block_rows)
        h0, h1 = max(0, r0 - HALO), min(rows, r1 + HALO)
        feats = [band_features(image[b, h0:h1].astype(np.float32)) for b in range(bands)]
        yield r0, r1, np.concatenate(feats)[:, r0 - h0 : r1 - h0]


def features_at(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(len(rows), n) features of the pixels (rows, cols) of `image`."""
    out = None
    for r0, r1, f in feature_blocks(image):
        hit = np.flatnonzero((rows >= r0) & (rows < r1))
        if out is None:
            out = np.empty((rows.size, f.shape[0]), np.float32)
        if hit.size:
            out[hit] = f[:, rows[hit] - r0, cols[hit]].T
    assert out is not None
    return out


class ForestReference:
    """Fit on clicks of train images, predict whole test images; times kept per step."""

    def __init__(self, seed: int = 0, n_estimators: int = 100) -> None:
        from sklearn.ensemble import RandomForestClassifier

        self.model = RandomForestClassifier(n_estimators=n_estimators, n_jobs=-1, random_state=seed)
        self.seconds: dict[str, float] = {"features": 0.0, "fit": 0.0}

    def fit(self, samples: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """`samples`: per train image (image, rows, cols, class values) of its clicks."""
        t0 = time.perf_counter()
        xs, ys = [], []
        for image, rows, cols, values in samples:
            if rows.size:
                xs.append(features_at(image, rows, cols))
                ys.append(values)
        t1 = time.perf_counter()
        self.model.fit(np.concatenate(xs), np.concatenate(ys))
        self.seconds["features"] += t1 - t0
        self.seconds["fit"] += time.perf_counter() - t1

    def predict(self, image: np.ndarray) -> np.ndarray:
        """uint8 (rows, cols) class values for `image` (bands, rows, cols)."""
        out = np.zeros(image.shape[1:], np.uint8)
        for r0, r1, f in feature_blocks(image):
            flat = f.reshape(f.shape[0], -1).T
            out[r0:r1] = self.model.predict(flat).reshape(r1 - r0, -1)
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "features": "ilastik default filter bank (scipy.ndimage), sigmas "
            + ", ".join(map(str, SIGMAS)),
            "features_per_band": len(SIGMAS) * len(FEATURES),
            "classifier": "sklearn RandomForestClassifier(n_estimators=100, n_jobs=-1)",
        }
