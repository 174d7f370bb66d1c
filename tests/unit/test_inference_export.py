"""The exported graph: lean outputs, the fp16 variant, re-export as a new version."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from sipd.bench.throughput import make_model, synthetic_statistics
from sipd.errors import FailedPrecondition, InvalidArgument
from sipd.modelrepo import FP16_FILE, read_card
from sipd.nets import build_net
from sipd.training.onnx_export import check_onnx_export, export_onnx, reexport_model
from tests.support import file_hashes

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


def test_reexport_publishes_a_new_version_and_leaves_the_source_alone(tmp_path):
    project = tmp_path / "proj"
    source = make_model(project / "1", bands=4, classes=3)
    before = file_hashes(source)
    rng = np.random.default_rng(2)
    x = (np.asarray(MEAN, np.float32)[None, :, None, None] + 300 * rng.standard_normal(
        (1, 4, 128, 128))).astype(np.float32)
    labels_v1 = _session(source / "model.onnx").run(["labels"], {"input": x})[0]

    result = reexport_model(source, fp16=True)
    assert result["version"] == 2 and result["model"] == "projects/proj/models/2"
    assert result["derived_from"] == "projects/proj/models/1"
    assert file_hashes(source) == before  # nothing under version 1 changed
    target = project / "2"
    assert result["model_dir"] == str(target)
    assert sorted(Path(f).name for f in result["files"]) == sorted(
        ["model.onnx", FP16_FILE, "model.yaml", "checkpoint.pt"]
    )
    labels_v2 = _session(target / "model.onnx").run(["labels"], {"input": x})[0]
    assert np.array_equal(labels_v1, labels_v2)
    half = _session(target / FP16_FILE).run(["labels"], {"input": x})[0]
    assert (half == labels_v1).mean() > 0.99
    card, source_card = read_card(target), read_card(source)
    assert card.format == "sipd-model/2" and card.derived_from == "projects/proj/models/1"
    assert (card.name, card.project, card.version) == ("projects/proj/models/2", "proj", 2)
    assert card.fp16 is not None and card.fp16.file == FP16_FILE
    assert card.fp16.onnx_check.tolerance == 2e-2
    assert card.onnx_check is not None and card.onnx_check.max_abs_diff == result["max_abs_diff"]
    assert result["max_abs_diff"] < 1e-3
    # The same model otherwise: classes, bands, normalization, tile, architecture.
    same = ("classes", "bands", "normalization", "tile", "architecture", "training")
    assert all(getattr(card, k) == getattr(source_card, k) for k in same)
    assert (target / "checkpoint.pt").read_bytes() == (source / "checkpoint.pt").read_bytes()
    assert sorted(p.name for p in project.iterdir()) == ["1", "2"]  # no staging left

    # A re-export of the re-export: the next number, derived from version 2.
    again = reexport_model(target)
    assert again["version"] == 3 and again["derived_from"] == "projects/proj/models/2"
    assert read_card(project / "3").fp16 is None  # asked without --fp16


def test_reexport_needs_a_published_version_with_a_checkpoint(tmp_path):
    folder = make_model(tmp_path / "loose", bands=4, classes=3)
    with pytest.raises(InvalidArgument, match="not a published model version"):
        reexport_model(folder)
    published = tmp_path / "proj" / "1"
    shutil.copytree(folder, published)
    (published / "checkpoint.pt").unlink()
    with pytest.raises(FailedPrecondition, match="checkpoint.pt"):
        reexport_model(published)
    assert sorted(p.name for p in (tmp_path / "proj").iterdir()) == ["1"]
