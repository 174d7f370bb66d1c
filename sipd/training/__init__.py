"""Training: prepared dataset -> model version folder (checkpoint, ONNX, model card).

`train_model` runs the whole job; `export_onnx`, `check_onnx_export` and
`load_checkpoint` are reusable on their own (e.g. re-export of a model).
"""

from sipd.training.checkpoint import load_checkpoint
from sipd.training.onnx_export import (
    ExportCheckFailed,
    InferenceGraph,
    check_onnx_export,
    export_onnx,
)
from sipd.training.train import train_model

__all__ = [
    "ExportCheckFailed",
    "InferenceGraph",
    "check_onnx_export",
    "export_onnx",
    "load_checkpoint",
    "train_model",
]
