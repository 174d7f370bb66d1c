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


class UNet(nn.Module):
    """U-Net-style FCN: `depth` 2x poolings, skip connections, BatchNorm.

    Params (defaults): base_channels=16 (channels double per level),
    depth=3 (input H and W must be multiples of 2**depth).
    Receptive margin for depth 3 is 51 pixels.
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
