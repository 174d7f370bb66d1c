"""Centre-pixel patch classifier, written fully convolutionally.

SIP's patch networks (ss-res) classify a pixel from the square patch around
it. Stacking stride-1 3x3 convolutions without pooling gives every output
pixel exactly such a patch as its receptive field, so one dense forward pass
equals classifying every pixel's patch, with no per-pixel patch extraction.
"""

from __future__ import annotations

import torch
from torch import nn

from sipd.errors import InvalidArgument
from sipd.nets.blocks import conv_bn_relu


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(channels, channels),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class PatchCNN(nn.Module):
    """Residual stride-1 CNN; the patch seen per pixel is (2*margin+1)^2.

    Params (defaults): width=32 channels, blocks=3 residual blocks (two
    3x3 convs each) after a 3x3 stem: margin 1 + 2*blocks = 7, i.e. a
    15x15 patch. Any H, W (size_multiple 1).
    """

    def __init__(
        self, in_channels: int, num_classes: int, width: int = 32, blocks: int = 3
    ) -> None:
        super().__init__()
        if width < 1 or blocks < 0:
            raise InvalidArgument(
                f"patchcnn needs width >= 1 and blocks >= 0, got {width}, {blocks}"
            )
        self.hparams = {"width": width, "blocks": blocks}
        self.receptive_margin = 1 + 2 * blocks
        self.size_multiple = 1
        # No pooling: every pixel sits alike, so a tile edge needs the full margin.
        self.seamless_margin = self.receptive_margin
        self.body = nn.Sequential(
            conv_bn_relu(in_channels, width), *[_Residual(width) for _ in range(blocks)]
        )
        # 1x1 layers: the per-patch classifier head, applied at every pixel.
        self.head = nn.Sequential(
            nn.Conv2d(width, width, 1), nn.ReLU(inplace=True), nn.Conv2d(width, num_classes, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
