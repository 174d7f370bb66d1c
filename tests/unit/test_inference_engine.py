"""Model folders and sessions: validation, provider fallback, the LRU session cache."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import yaml

from sipd.errors import FailedPrecondition, InvalidArgument
from sipd.inference import SessionCache, load_model, read_model_spec
from sipd.inference import sessions as engine
from sipd.inference.tiling import make_grid
from sipd.modelrepo import dump_card, read_card, record_evaluation
from tests.unit.test_inference_support import make_tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("models") / "1")


def _copy(model_dir: Path, dest: Path) -> Path:
    shutil.copytree(model_dir, dest)
    return dest


def _edit_yaml(folder: Path, **changes) -> None:
    doc = yaml.safe_load((folder / "model.yaml").read_text())
    doc.update(changes)
    (folder / "model.yaml").write_text(yaml.safe_dump(doc))


def test_spec_reads_model_yaml(model_dir):
    spec = read_model_spec(model_dir)
    assert spec.class_names == ["ice", "water", "land"]
    assert spec.class_values == [1, 2, 3]
    assert spec.classes[0].rgb == (0xFF, 0xA5, 0x00)
    assert spec.bands == ("B1", "B2", "B3", "B4")
    assert (spec.tile.size, spec.tile.halo, spec.tile.multiple) == (256, 8, 8)
    assert spec.outputs["confidence"] == "confidence"


def test_load_model_reports_what_is_missing(model_dir, tmp_path):
    with pytest.raises(FailedPrecondition, match="does not exist"):
        load_model(tmp_path / "nope")
    broken = _copy(model_dir, tmp_path / "no_onnx")
    (broken / "model.onnx").unlink()
    with pytest.raises(FailedPrecondition, match=r"missing model\.onnx"):
        load_model(broken)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"classes": [{"value": 2, "name": "a", "color": "#000000"}]}, "must be 1..K"),
        ({"bands": []}, "bands"),
        ({"outputs": {"confidence": "confidence"}}, "labels"),
        ({"tile": {"size": 100, "halo": 8, "multiple": 8}}, "multiple of 8"),
        ({"normalization": {"mean": [1, 2], "std": [1, 2]}}, "normalization: mean has 2"),
        ({"classes": [{"value": 1, "name": "a", "color": "red"}]}, r"classes\[0\]\.color"),
        ({"tile": {"size": 256, "halo": 8, "multiple": 8, "overlap": 3}}, "tile.overlap"),
    ],
)
@pytest.mark.parametrize("card_format", [1, 2])
def test_bad_model_yaml_is_invalid_argument(model_dir, tmp_path, change, needle, card_format):
    folder = _copy(model_dir, tmp_path / "bad")
    if card_format == 2:  # the tiny model's card is format 1, as older sipd wrote it
        (folder / "model.yaml").write_text(dump_card(read_card(folder)))
    _edit_yaml(folder, **change)
    with pytest.raises(InvalidArgument, match=needle) as err:
        load_model(folder)
    assert str(folder / "model.yaml") in str(err.value)


def test_unparsable_yaml_and_mismatched_graph(model_dir, tmp_path):
    folder = _copy(model_dir, tmp_path / "garbled")
    (folder / "model.yaml").write_text("classes: [unclosed\n")
    with pytest.raises(InvalidArgument, match="YAML"):
        load_model(folder)
    folder = _copy(model_dir, tmp_path / "renamed")
    _edit_yaml(folder, outputs={"labels": "argmax"})
    with pytest.raises(FailedPrecondition, match="labels=argmax"):
        load_model(folder)


def test_cuda_request_falls_back_to_cpu_with_one_log_line(model_dir, caplog):
    engine._failed_devices.discard("cuda:0")
    caplog.set_level(logging.INFO, logger="sipd.inference")
    first = load_model(model_dir, device="cuda:0")
    if first.provider != engine.CPU:
        pytest.skip(f"a GPU works here ({first.provider})")
    second = load_model(model_dir, device="cuda:0")
    assert second.provider == engine.CPU
    lines = [r for r in caplog.records if r.name == "sipd.inference"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "cuda:0" in lines[0].getMessage() and "CPU" in lines[0].getMessage()


def test_bad_device_name(model_dir):
    with pytest.raises(InvalidArgument, match="cuda:N"):
        load_model(model_dir, device="gpu0")
    with pytest.raises(InvalidArgument):
        SessionCache(device="tpu")


def test_session_cache_reuses_and_evicts_lru(model_dir, tmp_path):
    dirs = [_copy(model_dir, tmp_path / f"v{i}") for i in range(3)]
    cache = SessionCache(max_sessions=2)
    a = cache.get(dirs[0])
    assert cache.get(dirs[0]) is a
    assert cache.get(str(dirs[0]) + "/") is a  # same folder, another spelling
    b = cache.get(dirs[1])
    assert cache.get(dirs[0]) is a  # a is now the most recently used
    cache.get(dirs[2])  # evicts b, the least recently used
    assert len(cache) == 2
    assert dirs[0] in cache and dirs[2] in cache and dirs[1] not in cache
    assert cache.get(dirs[1]) is not b


def test_session_cache_notices_another_folder_under_the_same_name(model_dir, tmp_path):
    # Published folders never change; only a folder replaced as a whole (a version
    # deleted by hand and another copied in under its number) is another model.
    folder = _copy(model_dir, tmp_path / "v")
    cache = SessionCache()
    first = cache.get(folder)
    assert cache.get(folder) is first
    shutil.rmtree(folder)
    _copy(model_dir, folder)
    second = cache.get(folder)
    assert second is not first and len(cache) == 1
    assert cache.get(folder) is second


def test_grid_shifts_border_tiles_inwards():
    grid = make_grid(width=1000, height=777, tile_size=256, halo=5, multiple=8)
    # Balanced cores: 777 rows in 4 cores of 200 (not 3 of 256 and one of 9).
    assert (grid.core_h, grid.core_w) == (200, 256)
    assert grid.halo == 8 and grid.tile_shape == (216, 272)
    th, tw = grid.tile_shape
    tiles = grid.tiles()
    assert len(tiles) == 16
    covered = sum(t.width * t.height for t in tiles)
    assert covered == 1000 * 777  # cores partition the scene
    for t in tiles:
        top, left = t.row - t.offset[0], t.col - t.offset[1]
        assert top % 8 == 0 and left % 8 == 0  # on the pooling grid
        assert top >= 0 and left >= 0
        assert t.read.row_off == top and t.read.col_off == left
        assert int(t.read.height) + t.pad[0] == th and int(t.read.width) + t.pad[1] == tw
        # Context on every side that is not the scene border.
        assert t.offset[0] >= 8 or t.row == 0
        assert t.offset[1] >= 8 or t.col == 0
        assert top + th - (t.row + t.height) >= 8 or t.row + t.height >= 777
        assert left + tw - (t.col + t.width) >= 8 or t.col + t.width >= 1000
    # Only the rows/columns past the last multiple of 8 are mirrored.
    assert max(t.pad[0] for t in tiles) == 784 - 777
    assert max(t.pad[1] for t in tiles) == 0


@pytest.mark.parametrize(
    ("extent", "size", "core", "count"),
    [(5000, 1024, 1000, 5), (10000, 1024, 1000, 10), (2000, 1024, 1000, 2), (1024, 1024, 1024, 1),
     (300, 1024, 304, 1), (1025, 1024, 520, 2)],
)
def test_cores_are_spread_evenly(extent, size, core, count):
    grid = make_grid(width=extent, height=64, tile_size=size, halo=48, multiple=8)
    assert grid.core_w == core and grid.cols == count
    assert grid.core_w <= size and grid.core_w % 8 == 0


def test_io_binding_runner_matches_a_plain_run(model_dir):
    import numpy as np

    plain = load_model(model_dir)
    bound = load_model(model_dir, io_binding=True)
    assert plain.runner(["labels"]).bind is False  # CPU: plain runs unless asked
    run = bound.runner(["labels", "confidence"])
    assert run.bind is True
    rng = np.random.default_rng(0)
    batches = [
        (1000 + 300 * rng.standard_normal(shape)).astype(np.float32)
        for shape in [(2, 4, 64, 64), (2, 4, 64, 64), (1, 4, 48, 80), (2, 4, 64, 64)]
    ]
    results = [run(x) for x in batches]  # the input buffer is refilled, then reallocated
    for x, got in zip(batches, results, strict=True):
        labels, conf = plain.session.run(["labels", "confidence"], {"input": x})
        # Earlier results stay valid after later runs (they are copies, not views).
        assert np.array_equal(got["labels"], labels)
        np.testing.assert_allclose(got["confidence"], conf, atol=1e-6)


def test_fp16_variant_runs_only_on_a_gpu(model_dir, tmp_path):
    folder = _copy(model_dir, tmp_path / "v")
    shutil.copy(folder / "model.onnx", folder / "model.fp16.onnx")
    assert load_model(folder, fp16=True).graph_file == "model.onnx"
    # A GPU that is not there: the CPU runs the float32 graph, not the fp16 one.
    fallback = load_model(folder, device="cuda:0", fp16=True)
    assert fallback.provider == "CPUExecutionProvider" and fallback.graph_file == "model.onnx"


def test_usable_providers_always_include_the_cpu():
    assert engine.usable_providers("cpu") == ["CPUExecutionProvider"]
    assert engine.usable_providers("cuda:0")[-1] == "CPUExecutionProvider"


def test_session_cache_keeps_the_session_when_an_evaluation_is_recorded(model_dir, tmp_path):
    # Evaluations are additions beside a version, not a change of its model.
    folder = _copy(model_dir, tmp_path / "v")
    cache = SessionCache()
    first = cache.get(folder)
    record_evaluation(folder, {"overall_accuracy": 1.0})
    assert cache.get(folder) is first
