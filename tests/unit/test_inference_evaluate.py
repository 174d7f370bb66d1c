"""evaluate_model: the test report agrees with the label map predict writes."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from sipd.accuracy import accuracy_report, confusion_counts
from sipd.errors import FailedPrecondition, InvalidArgument
from sipd.inference import evaluate_model, load_model, predict_scene
from sipd.progress import JobContext
from tests.unit.test_inference_support import make_tiny_model, scene_array, write_scene


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):
    return load_model(make_tiny_model(tmp_path_factory.mktemp("models") / "1", tile_size=128))


def _mask(path, array):
    return write_scene(path, array[None].astype(np.uint8), tiled=False)


def test_report_matches_the_predicted_map(model, tmp_path):
    data = scene_array(512, 640, seed=7)
    data[:, 300:310, 20:40] = 0  # nodata under some test pixels
    src = write_scene(tmp_path / "s.tif", data, nodata=0)
    labels_path = tmp_path / "labels.tif"
    predict_scene(model, src, labels_path)
    with rasterio.open(labels_path) as ds:
        predicted = ds.read(1)

    rng = np.random.default_rng(0)
    truth = np.zeros((512, 640), dtype=np.uint8)
    # Test ROIs in two corners only: most tiles hold no test pixel.
    truth[10:60, 10:90] = rng.integers(1, 4, (50, 80))
    truth[290:320, 15:45] = 2
    truth[480:500, 600:630] = rng.integers(1, 4, (20, 30))
    truth[480:485, 600:630] = 255  # background in the mask: ignored
    mask = _mask(tmp_path / "test.tif", truth)

    events = []
    report = evaluate_model(
        model,
        [{"name": "s", "path": str(src), "test_mask": str(mask)}],
        ctx=JobContext(emit=events.append),
        batch_size=2,
    )
    expected = accuracy_report(
        confusion_counts(truth, predicted, 3), ["ice", "water", "land"], [1, 2, 3]
    )
    assert report == expected
    assert report["pixels"] == int(((truth >= 1) & (truth <= 3)).sum())
    assert report["unclassified"] == 10 * 20  # the nodata block under test pixels
    assert set(report) >= {"overall_accuracy", "kappa", "per_class", "confusion_matrix"}
    # Only the tiles holding test pixels ran (3 of 4 x 5 = 20).
    assert events[-2].message.endswith("/3 tiles")


def test_background_in_scene_dict_counts_as_unclassified(model, tmp_path):
    src = write_scene(tmp_path / "s.tif", scene_array(256, 256, seed=8))
    truth = np.zeros((256, 256), dtype=np.uint8)
    truth[100:120, 100:120] = 1
    mask = _mask(tmp_path / "test.tif", truth)
    background = np.zeros((256, 256), dtype=bool)
    background[100:105, 100:120] = True
    report = evaluate_model(
        model, [{"name": "s", "path": src, "test_mask": mask, "background": background}]
    )
    assert report["pixels"] == 400 and report["unclassified"] == 100


def test_no_test_pixels_is_failed_precondition(model, tmp_path):
    src = write_scene(tmp_path / "s.tif", scene_array(128, 128))
    mask = _mask(tmp_path / "test.tif", np.where(np.eye(128, dtype=bool), 255, 0))
    with pytest.raises(FailedPrecondition, match="no test pixels"):
        evaluate_model(model, [{"name": "s", "path": src, "test_mask": mask}])


def test_mask_of_another_size_is_invalid_argument(model, tmp_path):
    src = write_scene(tmp_path / "s.tif", scene_array(128, 128))
    mask = _mask(tmp_path / "test.tif", np.ones((100, 128)))
    with pytest.raises(InvalidArgument, match="test mask"):
        evaluate_model(model, [{"name": "s", "path": src, "test_mask": mask}])
