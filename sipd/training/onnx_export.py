"""ONNX export of a trained net with normalization and a lean decision head inside the graph.

The graph returns what the predictor writes: uint8 labels and a float32
confidence per pixel. Full per-class probabilities are a third output that
onnxruntime computes only when a caller asks for it (`--probabilities`), so
K float planes per pixel never cross the device boundary otherwise.

An optional fp16 variant (model.fp16.onnx, for CUDA) runs the net in half
precision with the same inputs, outputs and head (normalization and the
head stay float32).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sipd.errors import SipError
from sipd.inference.spec import FP16_FILE
from sipd.raster import atomic_path

OPSET = 17
INPUT = "input"
OUTPUTS = ("labels", "confidence", "probabilities")
TOLERANCE = 1e-3
# Half precision keeps ~3 significant digits; probabilities of an fp16 net
# differ from the float32 net's by up to a few 1e-3 on a typical input.
FP16_TOLERANCE = 2e-2


class ExportCheckFailed(SipError):
    """onnxruntime disagrees with torch on the exported graph: a bug, not bad input."""


class InferenceGraph(nn.Module):
    """Raw band values in; labels (uint8, 1..K), confidence, probabilities out.

    Normalization lives in the graph so any onnxruntime user gets the same
    labels from raw pixels. The head avoids Softmax over the class axis
    (which onnxruntime implements by transposing the whole NCHW tensor):
    labels come from ArgMax of the logits, and the confidence (the largest
    softmax probability) is 1 / sum(exp(logits - max)). Probabilities reuse
    those terms with one multiply, and only when asked for.

    The net may run in a lower precision (fp16 variant): the normalized input
    is cast to the net's dtype and the logits back to float32.
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
        logits = self.net(x)
        if logits.dtype != torch.float32:
            logits = logits.float()
        labels = (torch.argmax(logits, dim=1) + 1).to(torch.uint8)
        top = torch.amax(logits, dim=1, keepdim=True)
        exp = torch.exp(logits - top)
        inverse_sum = torch.reciprocal(torch.sum(exp, dim=1, keepdim=True))
        confidence = inverse_sum.squeeze(1)
        probabilities = exp * inverse_sum
        return labels, confidence, probabilities


def _example_size(net: nn.Module) -> int:
    multiple = int(getattr(net, "size_multiple", 1))
    return max(64, multiple) // multiple * multiple


def _graph(net: nn.Module, mean: list[float], std: list[float], fp16: bool) -> InferenceGraph:
    copy_ = copy.deepcopy(net).to("cpu").eval()
    if fp16:
        copy_ = copy_.half()
    return InferenceGraph(copy_, mean, std).eval()


def export_onnx(
    net: nn.Module,
    mean: list[float],
    std: list[float],
    path: str | Path,
    *,
    opset: int = OPSET,
    fp16: bool = False,
) -> Path:
    """Write `net` wrapped in InferenceGraph to `path` (atomically); N, H, W dynamic.

    The net is copied to the CPU in eval mode (BatchNorm is then folded into
    the convolutions by the exporter), so the caller's module (maybe on a
    GPU, maybe in train mode) is left as it was. `fp16` writes the half
    precision variant (float32 input and outputs, fp16 weights inside).
    """
    graph = _graph(net, mean, std, fp16)
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
    tolerance: float | None = None,
    seed: int = 0,
    fp16: bool = False,
) -> dict[str, Any]:
    """Run the ONNX graph (onnxruntime, CPU) and the float32 torch net on the same input.

    Input: 2 x C x S x S drawn around the normalization means (S = 64 rounded
    to the net's size multiple). Raises ExportCheckFailed when probabilities
    differ by more than `tolerance` (default 1e-3, or 2e-2 for the fp16
    variant), labels differ where torch's top two classes are more than
    2 * tolerance apart, or the confidence is not the largest probability.
    Returns {"max_abs_diff", "tolerance"}.
    """
    import onnxruntime as ort

    tol = tolerance if tolerance is not None else (FP16_TOLERANCE if fp16 else TOLERANCE)
    size = _example_size(net)
    rng = np.random.default_rng(seed)
    m = np.asarray(mean, dtype=np.float32)[None, :, None, None]
    s = np.asarray(std, dtype=np.float32)[None, :, None, None]
    x = (m + s * rng.standard_normal((2, len(mean), size, size))).astype(np.float32)

    # The reference is always the float32 net: the fp16 variant is checked
    # against what the model folder's model.onnx computes.
    graph = _graph(net, mean, std, fp16=False)
    with torch.no_grad():
        labels_t, _, probs_t = (t.numpy() for t in graph(torch.from_numpy(x)))

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # a tiny check; leave the cores to the job
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    labels_o, conf_o, probs_o = session.run(list(OUTPUTS), {INPUT: x})

    diff = float(np.abs(probs_o - probs_t).max())
    top2 = np.sort(probs_t, axis=1)[:, -2:]
    decisive = (top2[:, 1] - top2[:, 0]) > 2 * tol
    mismatch = int(((labels_o != labels_t) & decisive).sum())
    conf_diff = float(np.abs(conf_o - probs_o.max(axis=1)).max())
    if not diff <= tol or mismatch or not conf_diff <= 1e-5:
        raise ExportCheckFailed(
            f"the exported ONNX graph {path} disagrees with torch: max |probability "
            f"difference| {diff:.3g} (tolerance {tol:g}), {mismatch} label(s) differ, "
            f"confidence off by {conf_diff:.3g}; this is a bug in the export of this "
            "architecture, please report it"
        )
    if labels_o.dtype != np.uint8:
        raise ExportCheckFailed(f"ONNX labels have dtype {labels_o.dtype}, expected uint8")
    return {"max_abs_diff": diff, "tolerance": tol}


def reexport_model(model_dir: str | Path, *, fp16: bool = False) -> dict[str, Any]:
    """Export a model folder's checkpoint again with this sipd's exporter (lean head).

    Rewrites model.onnx (and, with `fp16`, writes model.fp16.onnx for CUDA),
    each checked against torch before it replaces anything; model.yaml
    records the checks. Labels do not change: the weights are the same.
    Returns {"files", "max_abs_diff"} (the float32 graph's check).
    """
    import yaml

    from sipd.training.checkpoint import load_checkpoint

    folder = Path(model_dir)
    net, payload = load_checkpoint(folder)
    norm = payload.get("normalization") or {}
    mean, std = norm.get("mean"), norm.get("std")
    if not mean or not std:
        raise ExportCheckFailed(f"{folder / 'checkpoint.pt'} holds no normalization to export")
    written = []
    checks: dict[str, dict[str, Any]] = {}
    for variant, name in ((False, "model.onnx"), (True, FP16_FILE)):
        if variant and not fp16:
            continue
        # Exported and checked beside the folder's graph, then renamed over
        # it: a failed check leaves the working model.onnx untouched.
        with atomic_path(folder / name) as tmp:
            export_onnx(net, mean, std, tmp, fp16=variant)
            checks[name] = check_onnx_export(net, mean, std, tmp, fp16=variant)
        written.append(str(folder / name))
    card_path = folder / "model.yaml"
    card = yaml.safe_load(card_path.read_text()) or {}
    card["outputs"] = {name: name for name in OUTPUTS}
    card["onnx_check"] = checks["model.onnx"]
    if fp16:
        card["fp16"] = {"file": FP16_FILE, "onnx_check": checks[FP16_FILE]}
    with atomic_path(card_path) as tmp:
        tmp.write_text(yaml.safe_dump(card, sort_keys=False, default_flow_style=None, width=100))
    written.append(str(card_path))
    return {"files": written, "max_abs_diff": checks["model.onnx"]["max_abs_diff"]}
