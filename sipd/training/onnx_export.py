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
import datetime as dt
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sipd.errors import FailedPrecondition, SipError
from sipd.modelrepo import (
    FP16_FILE,
    name_of_folder,
    publish,
    read_card,
    read_training_metrics,
    staging_folder,
    version_name,
    write_card,
)
from sipd.modelrepo.card import Fp16Variant, OnnxCheck, Outputs
from sipd.modelrepo.layout import CHECKPOINT_FILE, GRAPH_FILE, METRICS_FILE, TRAIN_LOG
from sipd.nets.filter_bank import FilterBank
from sipd.raster import atomic_path
from sipd.training.checkpoint import load_checkpoint

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
        # Fixed filter banks stay float32 (see sipd.nets.unet.UNet.fixed_features):
        # they hold no weights worth halving, and their squared gradients could
        # overflow float16.
        for module in copy_.modules():
            if isinstance(module, FilterBank):
                module.float()
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
    """Export a published version's checkpoint again, as a NEW version (lean head, fp16 option).

    Version V is read, never written: the graph (and with `fp16` the
    half-precision variant for CUDA) is exported from V's checkpoint.pt,
    checked against torch, and published as the next free version N of the
    same project, whose card says `derived_from: projects/P/models/V`.
    N gets V's checkpoint.pt, train.log and training metrics (not V's
    evaluations: they were made on V's graph). The weights are the same,
    so the labels are too.

    Returns {"model": N's name, "version": N, "model_dir", "derived_from",
    "files" (N's files), "max_abs_diff" (the float32 graph's check)}.
    """
    source = Path(model_dir)
    source_name = name_of_folder(source)
    card = read_card(source)
    if not (source / CHECKPOINT_FILE).is_file():
        raise FailedPrecondition(
            f"{source_name} has no {CHECKPOINT_FILE} in {source}; only a version trained by "
            "sipd (which keeps its weights) can be exported again"
        )
    net, _ = load_checkpoint(source)
    mean, std = list(card.normalization.mean), list(card.normalization.std)
    project_root = source.parent
    project = project_root.name
    with staging_folder(project_root) as stage:
        check = _export_checked(net, mean, std, stage / GRAPH_FILE, fp16=False)
        variant = None
        if fp16:
            variant = Fp16Variant(
                file=FP16_FILE,
                onnx_check=_export_checked(net, mean, std, stage / FP16_FILE, fp16=True),
            )
        shutil.copyfile(source / CHECKPOINT_FILE, stage / CHECKPOINT_FILE)
        if (source / TRAIN_LOG).is_file():
            shutil.copyfile(source / TRAIN_LOG, stage / TRAIN_LOG)
        # Training metrics, not V's evaluations: those were made on V's graph.
        train = read_training_metrics(source)
        if train is not None:
            (stage / METRICS_FILE).write_text(json.dumps({"train": train}, indent=2) + "\n")
        outputs = Outputs(**{name: name for name in OUTPUTS})

        def write_versioned(folder: Path, version: int) -> None:
            write_card(
                folder,
                card.model_copy(
                    update={
                        "name": version_name(project, version),
                        "project": project,
                        "version": version,
                        "created": dt.datetime.now(dt.UTC).replace(microsecond=0),
                        "derived_from": source_name,
                        "outputs": outputs,
                        "onnx_check": check,
                        "fp16": variant,
                    }
                ),
            )

        version = publish(stage, project_root, write_versioned)
    return derived_version(project_root, version, source_name, check.max_abs_diff)


def derived_version(
    project_root: Path, version: int, source_name: str, max_abs_diff: float
) -> dict[str, Any]:
    """What a re-export returns: the new version, its folder and files, its source."""
    target = project_root / str(version)
    return {
        "model": version_name(project_root.name, version),
        "version": version,
        "model_dir": str(target),
        "derived_from": source_name,
        "files": sorted(str(p) for p in target.iterdir() if p.is_file()),
        "max_abs_diff": max_abs_diff,
    }


def _export_checked(
    net: nn.Module, mean: list[float], std: list[float], path: Path, *, fp16: bool
) -> OnnxCheck:
    export_onnx(net, mean, std, path, fp16=fp16)
    return OnnxCheck(**check_onnx_export(net, mean, std, path, fp16=fp16))
