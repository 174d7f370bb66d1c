"""A small U-Net: the default architecture for few-label scene classification."""

from __future__ import annotations

import torch
from torch import nn

from sipd.errors import InvalidArgument
from sipd.nets.blocks import conv_bn_relu, double_conv
from sipd.nets.filter_bank import FilterBank, to_float16

# Scales of the fixed filter bank in front of the default U-Net. Measured with
# `sipctl bench quality` (docs/quality.md): on sparse clicks the bank's
# smoothed, edge and texture features at two scales lift held-out accuracy far
# more than a wider, deeper or longer-trained net, because 180 optimizer steps
# on a few thousand labeled pixels are too few to learn such filters; a third,
# coarser scale (10) cost accuracy and time.
DEFAULT_BANK_SIGMAS: tuple[float, ...] = (1.0, 3.5)


def unet_margin(depth: int) -> int:
    """Receptive-field margin (pixels each side) of `UNet` with this depth.

    Two 3x3 convs at level l reach 2 * 2**l full-resolution pixels further.
    The encoder does so at levels 0..depth, the decoder at depth-1..0; max
    pooling and nearest upsampling add no reach of their own but make the
    field depend on where a pixel sits inside its 2**depth block, which
    costs up to 2**depth - 1 more pixels on one side.
    """
    encoder = sum(2 * 2**level for level in range(depth + 1))
    decoder = sum(2 * 2**level for level in range(depth))
    return encoder + decoder + 2**depth - 1


def unet_edge_reach(depth: int) -> int:
    """Farthest input pixel beyond a tile edge that a core pixel of a grid-aligned U-Net sees.

    `unet_margin` holds for a pixel anywhere; the predictor aligns tiles to
    the pooling grid (`size_multiple`), so a core starts and ends on cell
    borders, and the reach across a tile edge is smaller: 46 px instead of
    51 at depth 3, i.e. a 48 px halo instead of 56 (3% less work with 1024
    px tiles). Checked against whole-image passes by the tests.

    Follows, in 1-D (rows and columns alike), the interval of input pixels an
    output pixel depends on: two 3x3 convs widen it by 2 cells per block, a 2x
    max pool maps cell c to pixels 2c and 2c+1 below it, nearest upsampling
    maps pixel p to cell p // 2 of the level above. A core pixel at offset j
    of its pooling cell (of `m` pixels) lies j pixels inside the core's left
    edge and m - 1 - j inside its right edge.
    """

    def encoder(level: int, lo: int, hi: int) -> tuple[int, int]:
        lo, hi = lo - 2, hi + 2
        return (lo, hi) if level == 0 else encoder(level - 1, 2 * lo, 2 * hi + 1)

    def decoder(level: int, lo: int, hi: int) -> tuple[int, int]:
        lo, hi = lo - 2, hi + 2
        skip = encoder(level, lo, hi)
        if level + 1 == depth:
            below = encoder(depth, lo // 2, hi // 2)
        else:
            below = decoder(level + 1, lo // 2, hi // 2)
        return min(skip[0], below[0]), max(skip[1], below[1])

    m = 2**depth
    origin = 16 * m  # any cell border away from the scene edge
    reach = 0
    for j in range(m):
        lo, hi = decoder(0, origin + j, origin + j)
        reach = max(reach, origin + j - lo - j, hi - (origin + j) - (m - 1 - j))
    return reach


class UNet(nn.Module):
    """U-Net-style FCN: `depth` 2x poolings, skip connections, BatchNorm.

    Params (defaults): base_channels=16 (channels double per level),
    depth=3 (input H and W must be multiples of 2**depth), bank_sigmas=(1.0,
    3.5): the scales of a fixed ilastik-style filter bank (sipd.nets.filter_bank)
    whose features, batch-normalized, are the U-Net's input; () feeds the bands
    directly (every model trained before the bank existed).
    Receptive margin without the bank for depth 3 is 51 pixels; across the
    edge of a tile aligned to the pooling grid, 46 (`seamless_margin`). The
    bank adds its own margin (21 px at sigma 3.5) to both.
    """

    def __init__(
        self, in_channels: int, num_classes: int, base_channels: int = 16, depth: int = 3,
        bank_sigmas: tuple[float, ...] = DEFAULT_BANK_SIGMAS,
    ) -> None:
        super().__init__()
        if not 1 <= depth <= 6:
            raise InvalidArgument(f"unet depth must be 1..6, got {depth}")
        if base_channels < 1:
            raise InvalidArgument(f"unet base_channels must be >= 1, got {base_channels}")
        bank_sigmas = tuple(float(s) for s in bank_sigmas)
        self.hparams = {"base_channels": base_channels, "depth": depth,
                        "bank_sigmas": bank_sigmas}
        # Fixed filters: no parameters to learn, so they cost no labels. The
        # BatchNorm puts their very different ranges on one scale; a 1x1 conv
        # mixes them down to the first level's width, so the first 3x3 conv
        # costs what it costs without the bank (training time is a goal).
        self.bank = FilterBank(in_channels, bank_sigmas) if bank_sigmas else None
        self.bank_mix = nn.Sequential(
            nn.BatchNorm2d(self.bank.num_features),
            conv_bn_relu(self.bank.num_features, base_channels, kernel_size=1),
        ) if self.bank else None
        bank_margin = self.bank.seamless_margin if self.bank else 0
        # The bank's features are exact where a tile holds its margin of context,
        # and the U-Net reads them up to its own reach: the two margins add.
        self.receptive_margin = unet_margin(depth) + bank_margin
        self.seamless_margin = unet_edge_reach(depth) + bank_margin
        self.size_multiple = 2**depth
        widths = [base_channels * 2**level for level in range(depth + 1)]
        first = base_channels if self.bank else in_channels
        self.down = nn.ModuleList([double_conv(first, widths[0])])
        for level in range(1, depth + 1):
            self.down.append(double_conv(widths[level - 1], widths[level]))
        self.pool = nn.MaxPool2d(2)
        # Nearest upsampling + conv rather than transposed convs: no
        # checkerboard artefacts and a plain Resize op in ONNX.
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.up = nn.ModuleList(
            [double_conv(widths[level + 1] + widths[level], widths[level])
             for level in reversed(range(depth))]
        )
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_features(self.fixed_features(x))

    def fixed_features(self, x: torch.Tensor) -> torch.Tensor:
        """The part of the net with no parameters (the filter bank): training may
        compute it once per chip (sipd.training.loop) instead of once per step."""
        if self.bank is None:
            return x
        # The half-precision variant (model.fp16.onnx) keeps the bank in float32
        # (sipd.training.onnx_export): squared gradients can leave float16's range.
        dtype = next(self.bank.buffers()).dtype
        if x.dtype == dtype:
            return self.bank(x)
        features = self.bank(x.to(dtype))
        return to_float16(features) if x.dtype == torch.float16 else features.to(x.dtype)

    def from_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.bank is not None:
            x = self.bank_mix(x)
        skips = []
        for level, block in enumerate(self.down):
            if level > 0:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            x = block(torch.cat([self.upsample(x), skips.pop()], dim=1))
        return self.head(x)
