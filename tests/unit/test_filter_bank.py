"""The forest's filter bank against an independent scipy.ndimage computation of each feature."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

from sipd.errors import InvalidArgument
from sipd.nets.filter_bank import (
    SCALE_FEATURES,
    FilterBank,
    feature_names,
    features_per_band,
    sparse_features,
)

SIGMAS = (0.7, 1.6, 3.5)


def _image(seed: int = 0, bands: int = 2, h: int = 70, w: int = 83) -> np.ndarray:
    """Smooth structure plus noise: features of every size are non-trivial."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((bands, h, w))
    return (ndimage.gaussian_filter(noise, (0, 3, 3)) * 4 + noise * 0.3).astype(np.float32)


def _eig(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """numpy.linalg.eigvalsh of [[a, b], [b, c]] per pixel, larger first: [2, H, W]."""
    mats = np.stack([np.stack([a, b], -1), np.stack([b, c], -1)], -2)
    return np.moveaxis(np.linalg.eigvalsh(mats.astype(np.float64))[..., ::-1], -1, 0)


def _scipy_features(band: np.ndarray, sigma: float) -> dict[str, np.ndarray]:
    """ilastik's features of one band at one scale, by scipy.ndimage (float64)."""
    x = band.astype(np.float64)
    kw = {"mode": "nearest"}
    dxx = ndimage.gaussian_filter(x, sigma, order=(0, 2), **kw)
    dyy = ndimage.gaussian_filter(x, sigma, order=(2, 0), **kw)
    dxy = ndimage.gaussian_filter(x, sigma, order=(1, 1), **kw)
    gx = ndimage.gaussian_filter(x, sigma, order=(0, 1), **kw)
    gy = ndimage.gaussian_filter(x, sigma, order=(1, 0), **kw)
    tensor = [ndimage.gaussian_filter(p, sigma / 2, **kw) for p in (gx * gx, gx * gy, gy * gy)]
    hess, struct = _eig(dxx, dxy, dyy), _eig(*tensor)
    return {
        "gaussian": ndimage.gaussian_filter(x, sigma, **kw),
        "laplacian": ndimage.gaussian_laplace(x, sigma, **kw),
        "gradient_magnitude": ndimage.gaussian_gradient_magnitude(x, sigma, **kw),
        "hessian_eig1": hess[0],
        "hessian_eig2": hess[1],
        "structure_eig1": struct[0],
        "structure_eig2": struct[1],
    }


def _dense(bank: FilterBank, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return bank(torch.from_numpy(image)[None])[0].numpy()


def test_features_equal_scipy_ndimage_everywhere() -> None:
    image = _image()
    bank = FilterBank(image.shape[0], SIGMAS).eval()
    out = _dense(bank, image)
    names = feature_names(["a", "b"], SIGMAS)
    assert out.shape == (bank.num_features, *image.shape[1:]) == (len(names), 70, 83)
    assert bank.num_features == 2 * features_per_band(SIGMAS) == 2 * (1 + 7 * 3)
    m = bank.seamless_margin
    for b, band in enumerate(image):
        np.testing.assert_array_equal(out[names.index(f"{'ab'[b]}:raw")], band)
        for sigma in SIGMAS:
            ref = _scipy_features(band, sigma)
            for feature in SCALE_FEATURES:
                got = out[names.index(f"{'ab'[b]}:{feature}@{sigma:g}")]
                scale = np.abs(ref[feature]).max() + 1e-6
                # Interior pixels and (replicate = scipy's "nearest") borders alike.
                err_inner = np.abs(got - ref[feature])[m:-m, m:-m].max() / scale
                err_all = np.abs(got - ref[feature]).max() / scale
                assert err_inner < 1e-5 and err_all < 1e-5, (b, sigma, feature, err_all)


def test_sparse_features_equal_the_dense_bank_at_any_pixel() -> None:
    image = _image(seed=3, bands=3, h=64, w=50)
    bank = FilterBank(3, SIGMAS).eval()
    dense = _dense(bank, image)
    rng = np.random.default_rng(1)
    rows = np.r_[0, 63, 0, 63, rng.integers(0, 64, 300)]
    cols = np.r_[0, 49, 49, 0, rng.integers(0, 50, 300)]
    got = sparse_features(
        bank, torch.from_numpy(image), torch.from_numpy(rows), torch.from_numpy(cols), batch=128
    ).numpy()
    ref = dense[:, rows, cols].T
    np.testing.assert_allclose(got, ref, atol=2e-5 * np.abs(ref).max())


def test_halo_makes_a_cropped_window_match_the_whole_image() -> None:
    """A window with `seamless_margin` of context has the whole-image features in its core."""
    image = _image(seed=5, bands=1, h=120, w=120)
    bank = FilterBank(1).eval()  # default scales, up to sigma 5
    m = bank.seamless_margin
    assert m == 20 + 10  # ceil(4 * 5) for the gradient + ceil(4 * 2.5) for the tensor smoothing
    whole = _dense(bank, image)
    window = _dense(
        bank, np.ascontiguousarray(image[:, 10 : 10 + 2 * m + 20, 15 : 15 + 2 * m + 20])
    )
    core = window[:, m : m + 20, m : m + 20]
    np.testing.assert_allclose(core, whole[:, 10 + m : 30 + m, 15 + m : 35 + m], atol=1e-5)


@pytest.mark.slow  # the TorchScript export of ~200 ops
def test_exports_to_onnx_with_dynamic_shapes() -> None:
    import onnxruntime as ort

    bank = FilterBank(2, SIGMAS).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            bank, (torch.zeros(1, 2, 32, 32),), buffer, dynamo=False, input_names=["x"],
            output_names=["f"], opset_version=17,
            dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}, "f": {0: "N", 2: "H", 3: "W"}},
        )  # fmt: skip
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for shape in ((1, 2, 5, 7), (3, 2, 41, 29)):  # smaller than a kernel, too
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        got = session.run(None, {"x": x})[0]
        with torch.no_grad():
            ref = bank(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, ref, atol=1e-5 * np.abs(ref).max())


def test_bad_scales_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="sigmas"):
        FilterBank(1, (0.1,))
    with pytest.raises(InvalidArgument, match="band"):
        FilterBank(0)
