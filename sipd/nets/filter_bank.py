"""A fixed filter bank: per-pixel features for the instant `forest` model kind.

The feature set is ilastik's pixel classification features (Sommer, Straehle,
Koethe, Hamprecht, "ilastik: Interactive Learning and Segmentation Toolkit",
ISBI 2011; https://www.ilastik.org/documentation/pixelclassification): per
band and scale sigma, Gaussian smoothing, Laplacian of Gaussian, Gaussian
gradient magnitude, the two eigenvalues of the Hessian of Gaussian, and the two
eigenvalues of the structure tensor (inner scale sigma, outer scale sigma/2,
as ilastik computes it with vigra), plus the raw (normalized) band.

It is a torch module with fixed weights, so it exports to ONNX with
`torch.onnx.export` and the whole model (bank + trees) is one graph. Every
filter is a separable Gaussian (derivative) kernel run as depthwise 1-D
convolutions, with the kernel of scipy.ndimage (truncated at 4 sigma) and
replicate padding (scipy's mode "nearest"), so the features equal
scipy.ndimage's gaussian_filter / gaussian_laplace /
gaussian_gradient_magnitude on the same array. 2x2 symmetric eigenvalues are
closed-form (no eigen solver op in ONNX).

Replicate padding only acts at the scene border: the predictor shifts tiles
inwards there (sipd.inference.tiling), so with a halo of `seamless_margin`
(the deepest chain of kernels: the structure tensor's inner plus outer
radius) a tiled prediction equals a whole-image pass exactly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sipd.errors import InvalidArgument

DEFAULT_SIGMAS: tuple[float, ...] = (0.7, 1.6, 3.5, 5.0)
# scipy.ndimage's default truncation: the kernel radius is int(4 * sigma + 0.5).
TRUNCATE = 4.0
# Features per band and scale, in output order (after the raw band).
SCALE_FEATURES: tuple[str, ...] = (
    "gaussian",
    "laplacian",
    "gradient_magnitude",
    "hessian_eig1",
    "hessian_eig2",
    "structure_eig1",
    "structure_eig2",
)
MAX_SIGMA = 20.0
# Within float16's largest finite value (65504): squared gradients of an outlier
# scene may exceed it, and an inf feature turns into NaN after normalization.
FLOAT16_LIMIT = 6e4


def to_float16(features: torch.Tensor) -> torch.Tensor:
    """Features as float16, clamped to its range (see FLOAT16_LIMIT)."""
    return features.clamp(-FLOAT16_LIMIT, FLOAT16_LIMIT).to(torch.float16)


def kernel_radius(sigma: float) -> int:
    return int(TRUNCATE * sigma + 0.5)


def gaussian_kernel1d(sigma: float, order: int) -> np.ndarray:
    """scipy.ndimage's Gaussian (derivative) kernel of `order`, radius int(4 sigma + 0.5).

    The same formula as scipy.ndimage._filters._gaussian_kernel1d, returned
    ready for correlation (scipy flips it and correlates, i.e. convolves).
    """
    radius = kernel_radius(sigma)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    sigma2 = sigma * sigma
    phi = np.exp(-0.5 / sigma2 * x**2)
    phi /= phi.sum()
    if order == 0:
        kernel = phi
    else:
        # q(x) * phi(x) is the order-th derivative of phi; q's coefficients by recursion.
        exponents = np.arange(order + 1)
        q = np.zeros(order + 1)
        q[0] = 1.0
        d = np.diag(exponents[1:], 1)
        p = np.diag(np.ones(order) / -sigma2, -1)
        for _ in range(order):
            q = (d + p) @ q
        kernel = (x[:, None] ** exponents) @ q * phi
    return kernel[::-1].copy()


def feature_names(bands: list[str] | tuple[str, ...], sigmas: tuple[float, ...]) -> list[str]:
    """Names of the output channels in order: band-major, raw first, then per scale."""
    names = []
    for band in bands:
        names.append(f"{band}:raw")
        for s in sigmas:
            names += [f"{band}:{f}@{s:g}" for f in SCALE_FEATURES]
    return names


def features_per_band(sigmas: tuple[float, ...]) -> int:
    return 1 + len(SCALE_FEATURES) * len(sigmas)


class FilterBank(nn.Module):
    """Normalized bands [N, C, H, W] -> features [N, C * (1 + 7 * len(sigmas)), H, W].

    Any H, W >= 1 (replicate padding needs no minimum size). `seamless_margin`
    is the context per side a tile needs for its core to equal a whole-image
    pass; `size_multiple` is 1.
    """

    def __init__(self, in_channels: int, sigmas: tuple[float, ...] = DEFAULT_SIGMAS) -> None:
        super().__init__()
        sigmas = tuple(float(s) for s in sigmas)
        if in_channels < 1:
            raise InvalidArgument(f"the filter bank needs >= 1 band, got {in_channels}")
        if not sigmas or any(not 0.3 <= s <= MAX_SIGMA for s in sigmas):
            raise InvalidArgument(
                f"filter bank sigmas must be 1+ values in 0.3..{MAX_SIGMA:g}, got {list(sigmas)}"
            )
        self.in_channels = in_channels
        self.sigmas = sigmas
        self.num_features = in_channels * features_per_band(sigmas)
        self.size_multiple = 1
        # Structure tensor: gradients (radius of sigma) then smoothing (radius of sigma/2);
        # every other feature is one separable pass of radius(sigma).
        self.receptive_margin = max(kernel_radius(s) + kernel_radius(s / 2) for s in sigmas)
        self.seamless_margin = self.receptive_margin
        for i, s in enumerate(sigmas):
            for order in (0, 1, 2):
                self.register_buffer(f"k{i}_{order}", self._kernel(s, order), persistent=False)
            self.register_buffer(f"k{i}_outer", self._kernel(s / 2, 0), persistent=False)

    @staticmethod
    def _kernel(sigma: float, order: int) -> torch.Tensor:
        return torch.tensor(gaussian_kernel1d(sigma, order), dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        c = self.in_channels
        out: list[torch.Tensor] = [x.unsqueeze(2)]  # [N, C, 1, H, W] per feature group
        for i in range(len(self.sigmas)):
            k0, k1, k2 = (getattr(self, f"k{i}_{o}") for o in (0, 1, 2))
            # Along W (x) first, then along H (y), as scipy filters axis by axis.
            w0, w1, w2 = (_conv(x, k, 3, c) for k in (k0, k1, k2))
            smooth = _conv(w0, k0, 2, c)
            dx, dy = _conv(w1, k0, 2, c), _conv(w0, k1, 2, c)
            dxx, dyy, dxy = _conv(w2, k0, 2, c), _conv(w0, k2, 2, c), _conv(w1, k1, 2, c)
            laplacian = dxx + dyy
            magnitude = torch.sqrt(dx * dx + dy * dy)
            h1, h2 = _eig2(dxx, dxy, dyy)
            outer = getattr(self, f"k{i}_outer")
            # The three tensor entries smoothed together: one depthwise pass over 3C channels.
            products = torch.cat([dx * dx, dx * dy, dy * dy], dim=1)
            tensor = _conv(_conv(products, outer, 3, 3 * c), outer, 2, 3 * c)
            s1, s2 = _eig2(tensor[:, :c], tensor[:, c : 2 * c], tensor[:, 2 * c :])
            group = [smooth, laplacian, magnitude, h1, h2, s1, s2]
            out.append(torch.stack(group, dim=2))  # [N, C, 7, H, W]
        # Band-major channel order: band c's features are contiguous (feature_names).
        return torch.cat(out, dim=2).reshape(n, self.num_features, h, w)


def _conv(x: torch.Tensor, kernel: torch.Tensor, axis: int, channels: int) -> torch.Tensor:
    """Depthwise 1-D correlation of every channel along `axis` (2: H, 3: W), replicate edges.

    `channels` is a Python int (not x.shape[1]) so the exported weight is a constant.
    """
    r = (kernel.numel() - 1) // 2
    if axis == 3:
        weight = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
        padded = F.pad(x, (r, r, 0, 0), mode="replicate")
    else:
        weight = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
        padded = F.pad(x, (0, 0, r, r), mode="replicate")
    return F.conv2d(padded, weight, groups=channels)


def _eig2(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (larger, smaller) of the symmetric 2x2 matrices [[a, b], [b, c]]."""
    mean = 0.5 * (a + c)
    half = 0.5 * (a - c)
    root = torch.sqrt(half * half + b * b)
    return mean + root, mean - root


def _toeplitz(kernel: torch.Tensor, length: int, outputs: int) -> torch.Tensor:
    """T [length, outputs] with (window @ T)[j] = correlation of the window with `kernel` at j.

    Output j (of `outputs`, centred in the window) reads window entries j .. j + 2r.
    """
    k = kernel.numel()
    t = torch.zeros(length, outputs, dtype=kernel.dtype)
    for j in range(outputs):
        t[j : j + k, j] = kernel
    return t


@torch.no_grad()
def sparse_features(
    bank: FilterBank,
    image: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    batch: int = 1024,
) -> torch.Tensor:
    """bank(image[None])[0, :, rows, cols].T, computed at those pixels only: [M, F].

    Training needs features at the labeled pixels alone, which are sparse (clicks,
    lines): the dense bank costs ~1 s per 4-band 512 x 512 scene on two cores,
    this ~0.6 ms per 4-band pixel on one thread. The arithmetic is the dense
    module's, windowed: the image is edge-padded by the bank's margin (replicate
    padding, as the dense passes do at the border), each pixel's window goes through the same 1-D
    kernels as matrix products, and the structure tensor's gradient grid is
    clamped to the image as the dense module's padding of the products is.
    Equal to the dense features up to float32 rounding.
    """
    c, h, w = image.shape
    if c != bank.in_channels:
        raise InvalidArgument(f"the filter bank takes {bank.in_channels} band(s), got {c}")
    margin = bank.seamless_margin
    padded = F.pad(image[None], (margin, margin, margin, margin), mode="replicate")[0]
    out = []
    for start in range(0, rows.numel(), batch):
        r = rows[start : start + batch].long()
        q = cols[start : start + batch].long()
        out.append(_sparse_batch(bank, padded, margin, (h, w), r, q))
    if not out:
        return torch.zeros(0, bank.num_features)
    return torch.cat(out)


def _sparse_batch(
    bank: FilterBank,
    padded: torch.Tensor,
    margin: int,
    shape: tuple[int, int],
    rows: torch.Tensor,
    cols: torch.Tensor,
) -> torch.Tensor:
    h, w = shape
    m, c = rows.numel(), padded.shape[0]
    big = 2 * margin + 1
    offsets = torch.arange(big)
    # Every pixel's (2 margin + 1)^2 window of the padded image: [M, C, big, big].
    wr = (rows[:, None] + offsets)[:, None, :, None]
    wc = (cols[:, None] + offsets)[:, None, None, :]
    windows = padded[torch.arange(c)[None, :, None, None], wr, wc]
    groups = [windows[:, :, margin, margin].unsqueeze(2)]  # the raw band
    for i, sigma in enumerate(bank.sigmas):
        k0, k1, k2 = (getattr(bank, f"k{i}_{o}") for o in (0, 1, 2))
        outer = getattr(bank, f"k{i}_outer")
        r, ro = kernel_radius(sigma), kernel_radius(sigma / 2)
        reach = r + ro
        n = 2 * reach + 1  # rows/cols of this scale's window
        g = 2 * ro + 1  # the structure tensor's gradient grid
        win = windows[
            :, :, margin - reach : margin + reach + 1, margin - reach : margin + reach + 1
        ]
        t0, t1 = _toeplitz(k0, n, g), _toeplitz(k1, n, g)
        # Along W (x) to the grid's columns, then along H (y) to the grid's rows.
        # One large matrix product per pass (batched small ones run ~10x slower).
        both = (win.reshape(-1, n) @ torch.cat([t0, t1], dim=1)).view(m, c, n, 2 * g)
        w0, w1 = both[..., :g], both[..., g:]  # [M, C, n, g]
        # Along H: [g, n] @ [n, g] per (pixel, band), as one product over the stacked columns.
        cols_h = torch.cat([w1, w0], dim=3).transpose(2, 3).reshape(-1, n)  # [M*C*2g, n]
        hy = (cols_h @ torch.cat([t0, t1], dim=1)).view(m, c, 2, g, 2 * g)
        # hy[:, :, 0, j, :g] = sum_a w1[a, j] t0[a, i] -> dx[i, j]; [..., 1, j, g:] -> dy.
        dx = hy[:, :, 0, :, :g].transpose(2, 3)
        dy = hy[:, :, 1, :, g:].transpose(2, 3)
        # Centre-only terms: the centre column of the W pass, rows centre +- r.
        band = slice(ro, ro + 2 * r + 1)
        w0c, w1c = w0[:, :, band, ro], w1[:, :, band, ro]
        w2c = win[:, :, band, ro : ro + 2 * r + 1] @ k2
        smooth = w0c @ k0
        dxx, dyy, dxy = w2c @ k0, w0c @ k2, w1c @ k1
        cx, cy = dx[:, :, ro, ro], dy[:, :, ro, ro]
        # Grid positions outside the image take the nearest inside one (the dense
        # module replicate-pads the gradient products).
        span = torch.arange(-ro, ro + 1)
        ir = (rows[:, None] + span).clamp(0, h - 1) - rows[:, None] + ro
        ic = (cols[:, None] + span).clamp(0, w - 1) - cols[:, None] + ro
        mi = torch.arange(m)[:, None, None, None]
        ci = torch.arange(c)[None, :, None, None]
        gx = dx[mi, ci, ir[:, None, :, None], ic[:, None, None, :]]
        gy = dy[mi, ci, ir[:, None, :, None], ic[:, None, None, :]]
        txx, txy, tyy = (
            torch.einsum("i,mcij,j->mc", outer, p, outer) for p in (gx * gx, gx * gy, gy * gy)
        )
        h1, h2 = _eig2(dxx, dxy, dyy)
        s1, s2 = _eig2(txx, txy, tyy)
        magnitude = torch.sqrt(cx * cx + cy * cy)
        groups.append(torch.stack([smooth, dxx + dyy, magnitude, h1, h2, s1, s2], dim=2))
    return torch.cat(groups, dim=2).reshape(m, bank.num_features)
