"""The exported graph: lean outputs, the fp16 variant, re-export of a model folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml

from sipd.inference.spec import FP16_FILE
from sipd.inference.throughput_bench import make_model, synthetic_statistics
from sipd.nets import build_net
from sipd.training.onnx_export import check_onnx_export, export_onnx, reexport_model

MEAN, STD = synthetic_statistics(4)


@pytest.fixture(scope="module")
def small_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_net("unet", 4, 3, base_channels=8, depth=2).eval()


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_graph_head_has_no_softmax_and_outputs_agree(small_net, tmp_path):
    path = export_onnx(small_net, MEAN, STD, tmp_path / "model.onnx")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    # Softmax over the class axis makes onnxruntime transpose the whole tensor.
    assert "Softmax" not in ops and {"ArgMax", "ReduceMax", "ReduceSum", "Exp"} <= ops
    rng = np.random.default_rng(1)
    m = np.asarray(MEAN, np.float32)[None, :, None, None]
    s = np.asarray(STD, np.float32)[None, :, None, None]
    x = (m + s * rng.standard_normal((2, 4, 64, 96))).astype(np.float32)
    labels, conf, probs = _session(path).run(["labels", "confidence", "probabilities"],
                                             {"input": x})
    assert labels.dtype == np.uint8 and labels.shape == (2, 64, 96)
    assert conf.dtype == np.float32 and conf.shape == (2, 64, 96)
    assert probs.shape == (2, 3, 64, 96)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(conf, probs.max(axis=1), atol=1e-6)
    assert np.array_equal(labels, probs.argmax(axis=1) + 1)
    with torch.no_grad():
        logits = small_net((torch.from_numpy(x) - torch.tensor(m)) / torch.tensor(s))
    np.testing.assert_allclose(probs, torch.softmax(logits, 1).numpy(), atol=1e-5)
    # Asking for labels alone is allowed (the predictor asks only for what it writes).
    (only,) = _session(path).run(["labels"], {"input": x})
    assert np.array_equal(only, labels)


def test_fp16_variant_is_checked_against_float32_torch(small_net, tmp_path):
    path = export_onnx(small_net, MEAN, STD, tmp_path / FP16_FILE, fp16=True)
    check = check_onnx_export(small_net, MEAN, STD, path, fp16=True)
    assert check["tolerance"] == 2e-2 and check["max_abs_diff"] < 2e-2
    graph = onnx.load(str(path)).graph
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in graph.initializer)
    # Same interface as model.onnx: float32 raw bands in, the same outputs out.
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in graph.output] == ["labels", "confidence", "probabilities"]


def test_reexport_rewrites_model_onnx_and_adds_fp16(tmp_path):
    folder = make_model(tmp_path / "model", bands=4, classes=3)
    rng = np.random.default_rng(2)
    x = (np.asarray(MEAN, np.float32)[None, :, None, None] + 300 * rng.standard_normal(
        (1, 4, 128, 128))).astype(np.float32)
    before = _session(folder / "model.onnx").run(["labels"], {"input": x})[0]
    result = reexport_model(folder, fp16=True)
    assert sorted(Path(f).name for f in result["files"]) == sorted(
        ["model.onnx", FP16_FILE, "model.yaml"]
    )
    after = _session(folder / "model.onnx").run(["labels"], {"input": x})[0]
    assert np.array_equal(before, after)
    half = _session(folder / FP16_FILE).run(["labels"], {"input": x})[0]
    assert (half == after).mean() > 0.99
    card = yaml.safe_load((folder / "model.yaml").read_text())
    assert card["fp16"]["file"] == FP16_FILE and card["fp16"]["onnx_check"]["tolerance"] == 2e-2
    assert card["onnx_check"]["max_abs_diff"] == result["max_abs_diff"] < 1e-3
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []
