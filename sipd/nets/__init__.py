"""Network architectures: pure torch, all ONNX-exportable (opset 17).

Every net maps normalized input [N, C, H, W] to logits [N, K, H, W] and
exposes `receptive_margin`, `size_multiple` and `hparams`.

- "unet" (default): base_channels=16, depth=3; margin 51, multiple 8.
- "patchcnn": width=32, blocks=3; margin 7 (15x15 patch), multiple 1.
- "spectral": hidden=64, layers=2, dropout=0.1; margin 0, multiple 1.
"""

from sipd.nets.registry import DEFAULT_NET, NETS, build_net, default_params

__all__ = ["DEFAULT_NET", "NETS", "build_net", "default_params"]
