"""ONNX export of a trained net with normalization and argmax inside the graph."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sipd.errors import SipError
from sipd.raster import atomic_path

OPSET = 17
INPUT = "input"
OUTPUTS = ("labels", "confidence", "probabilities")
TOLERANCE = 1e-3


class ExportCheckFailed(SipError):
    """onnxruntime disagrees with torch on the exported graph: a bug, not bad input."""


class InferenceGraph(nn.Module):
    """Raw band values in; labels (uint8, 1..K), confidence, probabilities out.

    Normalization lives in the graph so any onnxruntime user gets the same
    labels from raw pixels. The net may run in a lower precision (fp16
    re-export): input is cast to the net's dtype and logits back to float32.
    """

    def __init__(self, net: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.compute_dtype = next(net.parameters()).dtype

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = (x - self.mean) / self.std
        if self.compute_dtype != torch.float32:
            x = x.to(self.compute_dtype)
        logits = self.net(x).float()
        probabilities = torch.softmax(logits, dim=1)
        confidence, index = probabilities.max(dim=1)
        labels = (index + 1).to(torch.uint8)
        return labels, confidence, probabilities


def _example_size(net: nn.Module) -> int:
    multiple = int(getattr(net, "size_multiple", 1))
    return max(64, multiple) // multiple * multiple


def export_onnx(
    net: nn.Module,
    mean: list[float],
    std: list[float],
    path: str | Path,
    *,
    opset: int = OPSET,
) -> Path:
    """Write `net` wrapped in InferenceGraph to `path` (atomically); N, H, W dynamic.

    The net is copied to the CPU in eval mode, so the caller's module (maybe
    on a GPU, maybe in train mode) is left as it was.
    """
    graph = InferenceGraph(copy.deepcopy(net).to("cpu").eval(), mean, std).eval()
    size = _example_size(net)
    example = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1).expand(
        1, len(mean), size, size
    ).contiguous()
    axes = {INPUT: {0: "N", 2: "H", 3: "W"}}
    axes.update({"labels": {0: "N", 1: "H", 2: "W"}, "confidence": {0: "N", 1: "H", 2: "W"}})
    axes["probabilities"] = {0: "N", 2: "H", 3: "W"}
    path = Path(path)
    with atomic_path(path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter warns that it is legacy; it is the one
        # whose output we check below, and the check is what we rely on.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            (example,),
            str(tmp),
            dynamo=False,
            input_names=[INPUT],
            output_names=list(OUTPUTS),
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
        )
    return path


def check_onnx_export(
    net: nn.Module,
    mean: list[float],
    std: list[float],
    path: str | Path,
    *,
    tolerance: float = TOLERANCE,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the ONNX graph (onnxruntime, CPU) and torch on the same raw-scale input.

    Input: 2 x C x S x S drawn around the normalization means (S = 64 rounded
    to the net's size multiple). Raises ExportCheckFailed when probabilities
    differ by more than `tolerance` or labels differ where torch's top two
    classes are not within 2 * tolerance of each other.
    Returns {"max_abs_diff", "tolerance"}.
    """
    import onnxruntime as ort

    size = _example_size(net)
    rng = np.random.default_rng(seed)
    m = np.asarray(mean, dtype=np.float32)[None, :, None, None]
    s = np.asarray(std, dtype=np.float32)[None, :, None, None]
    x = (m + s * rng.standard_normal((2, len(mean), size, size))).astype(np.float32)

    graph = InferenceGraph(copy.deepcopy(net).to("cpu").eval(), mean, std).eval()
    with torch.no_grad():
        labels_t, _, probs_t = (t.numpy() for t in graph(torch.from_numpy(x)))

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # a tiny check; leave the cores to the job
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    labels_o, probs_o = session.run(["labels", "probabilities"], {INPUT: x})

    diff = float(np.abs(probs_o - probs_t).max())
    top2 = np.sort(probs_t, axis=1)[:, -2:]
    decisive = (top2[:, 1] - top2[:, 0]) > 2 * tolerance
    mismatch = int(((labels_o != labels_t) & decisive).sum())
    if not diff <= tolerance or mismatch:
        raise ExportCheckFailed(
            f"the exported ONNX graph {path} disagrees with torch: max |probability "
            f"difference| {diff:.3g} (tolerance {tolerance:g}), {mismatch} label(s) differ; "
            "this is a bug in the export of this architecture, please report it"
        )
    if labels_o.dtype != np.uint8:
        raise ExportCheckFailed(f"ONNX labels have dtype {labels_o.dtype}, expected uint8")
    return {"max_abs_diff": diff, "tolerance": tolerance}
