"""Network architectures: pure torch, all ONNX-exportable (opset 17).

Importing this package does not import torch (see catalog.py); building a
net does.

- "unet" (default): base_channels=16, depth=3, bank_sigmas=(1.0, 3.5) (a fixed
  filter bank as its input layer); margin 72 (67 across a grid-aligned tile
  edge; 51 and 46 without the bank), multiple 8.
- "patchcnn": width=32, blocks=3; margin 7 (15x15 patch), multiple 1.
- "spectral": hidden=64, layers=2, dropout=0.1; margin 0, multiple 1.
"""

from sipd.nets.catalog import ARCHS, DEFAULT_NET, build_net, check_arch, default_params

__all__ = ["ARCHS", "DEFAULT_NET", "build_net", "check_arch", "default_params"]
