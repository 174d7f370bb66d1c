"""A small U-Net: the default architecture for few-label scene classification."""

from __future__ import annotations

import torch
from torch import nn

from sipd.errors import InvalidArgument
from sipd.nets.blocks import double_conv


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
    depth=3 (input H and W must be multiples of 2**depth).
    Receptive margin for depth 3 is 51 pixels; across the edge of a tile
    aligned to the pooling grid, 46 (`seamless_margin`).
    """

    def __init__(
        self, in_channels: int, num_classes: int, base_channels: int = 16, depth: int = 3
    ) -> None:
        super().__init__()
        if not 1 <= depth <= 6:
            raise InvalidArgument(f"unet depth must be 1..6, got {depth}")
        if base_channels < 1:
            raise InvalidArgument(f"unet base_channels must be >= 1, got {base_channels}")
        self.hparams = {"base_channels": base_channels, "depth": depth}
        self.receptive_margin = unet_margin(depth)
        self.seamless_margin = unet_edge_reach(depth)
        self.size_multiple = 2**depth
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList([double_conv(in_channels, widths[0])])
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
