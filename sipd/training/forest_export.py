"""The forest model kind as ONE ONNX graph: normalization + filter bank (torch) + trees (skl2onnx).

Layout (names are the nets' outputs, sipd.training.onnx_export.OUTPUTS, so the
predictor, tiling and watches need no change):

    input [N, C, H, W] raw bands
      -> (x - mean) / std -> FilterBank            features [N, F, H, W]   (torch.onnx.export)
      -> Transpose(0, 2, 3, 1) -> Reshape [-1, F]   one row per pixel
      -> TreeEnsembleClassifier                      [N*H*W, K'] (skl2onnx, zipmap off)
      -> MatMul one-hot [K', K]                      all K project classes (absent ones: 0)
      -> ArgMax + 1 -> uint8 -> Reshape [N, H, W]    labels
      -> ReduceMax -> Reshape [N, H, W]              confidence
      -> Reshape [N, H, W, K] -> Transpose           probabilities [N, K, H, W]

The one-hot MatMul multiplies by exactly 1 or 0, so the probabilities are the
forest's own; RF's `classes_` holds only the classes present in training.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from sipd.nets.filter_bank import FilterBank
from sipd.raster import atomic_path
from sipd.training.onnx_export import INPUT, OUTPUTS, ExportCheckFailed

OPSET = 17
ML_OPSET = 3
FEATURES = "features"
TOLERANCE = 1e-4


class FeatureGraph(nn.Module):
    """Raw bands -> normalized -> filter bank features (the torch half of the graph)."""

    def __init__(self, bank: FilterBank, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.bank = bank
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bank((x - self.mean) / self.std)


def feature_model(bank: FilterBank, mean: list[float], std: list[float]) -> onnx.ModelProto:
    graph = FeatureGraph(bank, mean, std).eval()
    example = (
        torch.tensor(mean, dtype=torch.float32)
        .view(1, -1, 1, 1)
        .expand(1, len(mean), 48, 48)
        .contiguous()
    )
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's "legacy" notice
        torch.onnx.export(
            graph, (example,), buffer, dynamo=False, input_names=[INPUT],
            output_names=[FEATURES], opset_version=OPSET, do_constant_folding=True,
            dynamic_axes={INPUT: {0: "N", 2: "H", 3: "W"}, FEATURES: {0: "N", 2: "H", 3: "W"}},
        )  # fmt: skip
    return onnx.load_from_string(buffer.getvalue())


def forest_model(forest: Any, num_features: int) -> onnx.ModelProto:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    return convert_sklearn(
        forest,
        initial_types=[("X", FloatTensorType([None, num_features]))],
        options={id(forest): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
    )


def build_graph(
    bank: FilterBank, forest: Any, mean: list[float], std: list[float], num_classes: int
) -> onnx.ModelProto:
    """The composed model (module docstring); dynamic N, H, W."""
    features = feature_model(bank, mean, std)
    trees = forest_model(forest, bank.num_features)
    g = features.graph
    # Pixels as rows: [N, F, H, W] -> [N, H, W, F] -> [N*H*W, F].
    g.initializer.append(numpy_helper.from_array(
        np.array([-1, bank.num_features], dtype=np.int64), "fx_flat_shape"))  # fmt: skip
    g.node.extend([
        helper.make_node("Transpose", [FEATURES], ["fx_nhwf"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["fx_nhwf", "fx_flat_shape"], ["fx_rows"]),
    ])  # fmt: skip
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("fx_rows", TensorProto.FLOAT, None))
    trees.ir_version = features.ir_version
    tree_probs = [o.name for o in trees.graph.output if o.name != "label"][0]
    merged = onnx.compose.merge_models(
        features, trees, io_map=[("fx_rows", "X")], prefix2="rf_",
        outputs=["rf_" + tree_probs],
    )  # fmt: skip
    _append_head(merged.graph, "rf_" + tree_probs, forest.classes_, num_classes)
    onnx.checker.check_model(merged)
    return merged


def _append_head(g: onnx.GraphProto, probs: str, present: np.ndarray, num_classes: int) -> None:
    onehot = np.zeros((len(present), num_classes), dtype=np.float32)
    for row, value in enumerate(present):
        onehot[row, int(value) - 1] = 1.0  # class values are 1..K (the card checks it)
    g.initializer.extend([
        numpy_helper.from_array(onehot, "hd_onehot"),
        numpy_helper.from_array(np.array([0, 2, 3], dtype=np.int64), "hd_nhw_idx"),
        numpy_helper.from_array(np.array([num_classes], dtype=np.int64), "hd_k"),
        numpy_helper.from_array(np.array(1, dtype=np.int64), "hd_one"),
    ])  # fmt: skip
    labels, confidence, probabilities = OUTPUTS
    g.node.extend([
        helper.make_node("MatMul", [probs, "hd_onehot"], ["hd_probs"]),
        helper.make_node("Shape", [INPUT], ["hd_shape"]),
        helper.make_node("Gather", ["hd_shape", "hd_nhw_idx"], ["hd_nhw"], axis=0),
        helper.make_node("Concat", ["hd_nhw", "hd_k"], ["hd_nhwk"], axis=0),
        helper.make_node("ArgMax", ["hd_probs"], ["hd_arg"], axis=1, keepdims=0),
        helper.make_node("Add", ["hd_arg", "hd_one"], ["hd_label64"]),
        helper.make_node("Cast", ["hd_label64"], ["hd_label8"], to=TensorProto.UINT8),
        helper.make_node("Reshape", ["hd_label8", "hd_nhw"], [labels]),
        helper.make_node("ReduceMax", ["hd_probs"], ["hd_max"], axes=[1], keepdims=0),
        helper.make_node("Reshape", ["hd_max", "hd_nhw"], [confidence]),
        helper.make_node("Reshape", ["hd_probs", "hd_nhwk"], ["hd_nhwk_probs"]),
        helper.make_node("Transpose", ["hd_nhwk_probs"], [probabilities], perm=[0, 3, 1, 2]),
    ])  # fmt: skip
    del g.output[:]
    g.output.extend([
        helper.make_tensor_value_info(labels, TensorProto.UINT8, ["N", "H", "W"]),
        helper.make_tensor_value_info(confidence, TensorProto.FLOAT, ["N", "H", "W"]),
        helper.make_tensor_value_info(
            probabilities, TensorProto.FLOAT, ["N", num_classes, "H", "W"]),
    ])  # fmt: skip


def export_forest(
    bank: FilterBank,
    forest: Any,
    mean: list[float],
    std: list[float],
    num_classes: int,
    path: str | Path,
) -> Path:
    """Write the composed graph to `path` atomically."""
    model = build_graph(bank, forest, mean, std, num_classes)
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    return path


def _session(model: onnx.ModelProto | str | Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # a small check; threads on busy shared cores only spin
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def check_forest_export(
    bank: FilterBank,
    forest: Any,
    mean: list[float],
    std: list[float],
    num_classes: int,
    path: str | Path,
    *,
    seed: int = 0,
    size: int = 40,
) -> dict[str, Any]:
    """onnxruntime's probabilities against sklearn's predict_proba on the same features.

    The features come from the graph's own first half (run by onnxruntime), so
    this checks the trees and the head; the filter bank is checked against
    scipy in the tests. Input: 2 x C x size x (size + 8) drawn around the means
    (a non-square shape catches an H/W mix-up). Raises ExportCheckFailed.
    """
    rng = np.random.default_rng(seed)
    m = np.asarray(mean, dtype=np.float32)[None, :, None, None]
    s = np.asarray(std, dtype=np.float32)[None, :, None, None]
    x = (m + s * rng.standard_normal((2, len(mean), size, size + 8))).astype(np.float32)
    feats = _session(feature_model(bank, mean, std)).run([FEATURES], {INPUT: x})[0]
    rows = feats.transpose(0, 2, 3, 1).reshape(-1, feats.shape[1])
    expected = np.zeros((rows.shape[0], num_classes), dtype=np.float64)
    expected[:, np.asarray(forest.classes_, dtype=int) - 1] = forest.predict_proba(rows)
    labels_o, conf_o, probs_o = _session(path).run(list(OUTPUTS), {INPUT: x})
    probs_rows = probs_o.transpose(0, 2, 3, 1).reshape(-1, num_classes)
    diff = float(np.abs(probs_rows - expected).max())
    top2 = np.sort(expected, axis=1)[:, -2:]
    decisive = (top2[:, 1] - top2[:, 0]) > 2 * TOLERANCE
    mismatch = int(((labels_o.reshape(-1) != expected.argmax(1) + 1) & decisive).sum())
    if not diff <= TOLERANCE or mismatch or labels_o.dtype != np.uint8:
        raise ExportCheckFailed(
            f"the forest graph {path} disagrees with sklearn: max |probability difference| "
            f"{diff:.3g} (tolerance {TOLERANCE:g}), {mismatch} label(s) differ, labels "
            f"{labels_o.dtype}; this is a bug in the forest export, please report it"
        )
    if not np.allclose(conf_o, probs_o.max(axis=1), atol=1e-6):
        raise ExportCheckFailed(f"the forest graph {path}: confidence is not the top probability")
    return {"max_abs_diff": diff, "tolerance": TOLERANCE}
