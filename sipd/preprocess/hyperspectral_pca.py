"""Principal components of hyperspectral cubes, fitted once on training cubes and stored
with the recipe, so that every cube preprocessed with it (training and prediction)
is projected the same way.

The fit (Jolliffe, "Principal Component Analysis", 2nd ed., Springer 2002, ch. 1-3):
the components are the eigenvectors of the sample covariance matrix of the spectra,
in decreasing order of eigenvalue; a spectrum x is projected as (x - mean) @ basis.T.
The covariance is accumulated block by block on a random sample of the valid pixels
(pairwise update of mean and scatter matrix, Chan, Golub & LeVeque 1979, "Updating
formulae and a pairwise algorithm for computing sample variances"), so memory stays
at one block and a [bands x bands] matrix whatever the number of cubes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sipd.contracts.options.hyperspectral import HyperspectralOptions
from sipd.errors import InvalidArgument
from sipd.preprocess.hyperspectral import Prepared, band_tolerance, block_rows, prepare
from sipd.preprocess.product_files import open_measurement
from sipd.preprocess.streaming import DatasetsPerThread

# The sample is drawn with a fixed seed: the same cubes and options give the same
# projection (a recipe made twice is the same recipe).
SEED = 20260101


class _Moments:
    """Running count, mean and scatter matrix sum((x - mean)(x - mean)^T)."""

    def __init__(self, bands: int) -> None:
        self.n = 0
        self.mean = np.zeros(bands)
        self.scatter = np.zeros((bands, bands))

    def add(self, x: np.ndarray) -> None:
        """Merge the rows of x [pixels, bands] (Chan et al. 1979, pairwise update)."""
        m = x.shape[0]
        if m == 0:
            return
        mean_b = x.mean(axis=0)
        centred = x - mean_b
        scatter_b = centred.T @ centred
        delta = mean_b - self.mean
        total = self.n + m
        self.scatter += scatter_b + np.outer(delta, delta) * (self.n * m / total)
        self.mean += delta * (m / total)
        self.n = total


def fit_projection(
    paths: list[Path], options: HyperspectralOptions, max_pixels: int = 200_000
) -> dict[str, object]:
    """{"pca_mean", "pca_basis", "pca_wavelengths"} of `options.components` principal
    components of the training cubes `paths`, after their calibration and band selection
    (the recipe's options), on about `max_pixels` valid pixels drawn at random."""
    k = options.components
    if k < 1:
        raise InvalidArgument("fitting a projection needs components of at least 1, e.g. 8")
    if not paths:
        raise InvalidArgument("fitting a projection needs at least one training cube (--fit-on)")
    if max_pixels < 1:
        raise ValueError("max_pixels must be positive")
    # The selection must not depend on an earlier fit: drop any stored projection.
    opts = options.model_copy(update={"pca_mean": [], "pca_basis": [], "pca_wavelengths": []})
    averaged: dict = {}  # the references, read once for all the cubes
    cubes = [prepare(Path(p), opts, averaged=averaged) for p in paths]
    _check_same_bands(cubes, paths, opts)
    total = sum(c.cube.width * c.cube.height for c in cubes)
    rate = min(1.0, max_pixels / total)
    rng = np.random.default_rng(SEED)
    moments = _Moments(cubes[0].selection.indexes.size)
    for prepared in cubes:
        _sample(prepared, rate, rng, moments)
    bands = moments.mean.size
    if moments.n <= k:
        raise InvalidArgument(
            f"the training cubes give {moments.n} valid pixels (no NaN in any band) for "
            f"{k} components; fit on more or larger cubes, or ask fewer components"
        )
    if k > bands:
        raise InvalidArgument(
            f"components={k} but the options keep {bands} bands; ask at most {bands}"
        )
    covariance = moments.scatter / (moments.n - 1)
    _, vectors = np.linalg.eigh(covariance)  # ascending eigenvalues
    basis = vectors[:, ::-1][:, :k].T.copy()
    # Eigenvectors have no sign of their own: make each one's largest weight positive so
    # that a fit repeated on the same data gives the same bands.
    rows = np.arange(k)
    signs = np.sign(basis[rows, np.argmax(np.abs(basis), axis=1)])
    basis *= np.where(signs == 0, 1.0, signs)[:, None]
    wavelengths = cubes[0].selection.wavelengths
    return {
        "pca_mean": [float(v) for v in moments.mean],
        "pca_basis": [[float(v) for v in row] for row in basis],
        "pca_wavelengths": [] if wavelengths is None else [float(w) for w in wavelengths],
    }


def _check_same_bands(
    cubes: list[Prepared], paths: list[Path], options: HyperspectralOptions
) -> None:
    first = cubes[0].selection
    for prepared, path in zip(cubes[1:], paths[1:], strict=True):
        sel = prepared.selection
        if sel.indexes.size != first.indexes.size:
            raise InvalidArgument(
                f"wrong wavelengths: training cube {path} gives {sel.indexes.size} bands with "
                f"these options, {paths[0]} {first.indexes.size}; fit on cubes of one camera"
            )
        if sel.wavelengths is None or first.wavelengths is None:
            continue
        for i, (a, b) in enumerate(zip(first.wavelengths, sel.wavelengths, strict=True)):
            if abs(a - b) > band_tolerance(prepared.cube, int(sel.indexes[i]), options):
                raise InvalidArgument(
                    f"wrong wavelengths: training cube {path} band {i + 1} is at {b:.3f} nm, "
                    f"{paths[0]}'s at {a:.3f} nm; fit on cubes of one camera"
                )


def _sample(prepared: Prepared, rate: float, rng: np.random.Generator, moments: _Moments) -> None:
    """Add a Bernoulli(rate) sample of the cube's valid pixels to `moments`."""
    cube = prepared.cube
    step = block_rows(cube, prepared.selection.indexes.size)
    datasets = DatasetsPerThread(opener=open_measurement)
    try:
        for r0 in range(0, cube.height, step):
            x = prepared.block(datasets, r0, min(r0 + step, cube.height))
            pixels = x.reshape(x.shape[0], -1).T
            take = rng.random(pixels.shape[0]) < rate
            chosen = pixels[take].astype(np.float64)
            moments.add(chosen[np.isfinite(chosen).all(axis=1)])
    finally:
        datasets.close()
