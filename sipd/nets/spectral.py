"""Per-pixel spectral classifier for hyperspectral data (no spatial context)."""

from __future__ import annotations

import torch
from torch import nn

from sipd.errors import InvalidArgument
from sipd.nets.blocks import conv_bn_relu


class SpectralMLP(nn.Module):
    """An MLP over each pixel's band vector, as 1x1 convolutions.

    Params (defaults): hidden=64 units, layers=2 hidden layers,
    dropout=0.1. Receptive margin 0, any H, W.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden: int = 64,
        layers: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if hidden < 1 or layers < 1 or not 0.0 <= dropout < 1.0:
            raise InvalidArgument(
                f"spectral needs hidden >= 1, layers >= 1, 0 <= dropout < 1; "
                f"got {hidden}, {layers}, {dropout}"
            )
        self.hparams = {"hidden": hidden, "layers": layers, "dropout": dropout}
        self.receptive_margin = 0
        self.size_multiple = 1
        # No pooling: every pixel sits alike, so a tile edge needs the full margin.
        self.seamless_margin = self.receptive_margin
        mods: list[nn.Module] = []
        channels = in_channels
        for _ in range(layers):
            mods.append(conv_bn_relu(channels, hidden, kernel_size=1))
            if dropout > 0:
                # Plain (element-wise) dropout: Dropout2d would drop whole
                # feature maps, i.e. the same unit for every pixel of a chip.
                mods.append(nn.Dropout(dropout))
            channels = hidden
        mods.append(nn.Conv2d(channels, num_classes, 1))
        self.body = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
