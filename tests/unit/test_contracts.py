"""The job contracts: complete, strict, stored and read back unchanged, mapped to protos."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from sipapi.v1 import common_pb2

from sipd.contracts.job_record import JobRecord
from sipd.contracts.jobs import (
    PARAMS,
    RESULTS,
    AccuracyReport,
    ClassAccuracy,
    ExportResult,
    JobType,
    LabelCount,
    MasksResult,
    ModelRef,
    PredictItem,
    PredictParams,
    PredictResult,
    PrepareResult,
    SceneMasks,
    ScenePrediction,
    Split,
    TestResult,
    TrainParams,
    build,
    job_type_of,
    parse_params,
    upgrade_params,
)
from sipd.errors import Code, InvalidArgument
from sipd.jobs.handlers import HANDLERS
from sipd.services.job_results import _RESULTS, job_to_proto

REF = ModelRef(project="p", version=3, path="/data/models/p/3")
SCENE = ScenePrediction(
    input="/in/a.tif",
    output="/out/a.tif",
    width=10,
    height=20,
    pixels=150,
    class_pixels={"ice": 100, "water": 50},
    class_area_m2={"ice": 1e4, "water": 5e3},
    pixel_area_m2=100.0,
    seconds=1.5,
    mpx_per_s=0.2,
)


def _row(job_type: str, params: dict, result: dict | None, state: str = "SUCCEEDED") -> dict:
    return {
        "id": 7,
        "type": job_type,
        "project": "p",
        "state": state,
        "params": params,
        "result": result,
        "error": "",
        "error_code": "",
        "source": "api",
        "create_time": 1.0,
        "start_time": 2.0,
        "end_time": 3.0,
        "progress": None,
    }


def test_every_job_type_has_params_a_result_a_handler_and_a_proto_mapping() -> None:
    assert set(PARAMS) == set(RESULTS) == set(JobType) == set(_RESULTS)
    assert set(HANDLERS) == set(PARAMS.values())
    assert {job_type_of(cls.model_construct()) for cls in PARAMS.values()} == set(JobType)
    # Every result type has a field of the same name in the proto Job's result oneof.
    oneof = {f.name for f in common_pb2.Job.DESCRIPTOR.oneofs_by_name["result"].fields}
    assert {str(t) for t in JobType} <= oneof


def test_a_misspelled_field_is_an_error_not_a_silent_drop() -> None:
    with pytest.raises(ValidationError, match="provder"):
        PredictResult(project="p", version=1, scenes=[], provder="cpu", seconds=1.0)
    with pytest.raises(ValidationError, match="tile_sise"):
        PredictParams(model=REF, items=[PredictItem(input="a", output="b")], tile_sise=5)
    with pytest.raises(ValidationError):
        # Frozen: a contract is not edited after it was built.
        REF.version = 4  # type: ignore[misc]


def test_request_values_are_checked_when_built_with_every_problem_named() -> None:
    with pytest.raises(InvalidArgument) as err:
        build(PredictParams, model=REF, items=[], tile_size=-1)
    assert "items" in str(err.value) and "tile_size" in str(err.value)


def test_params_survive_the_store_and_the_pipe_unchanged() -> None:
    params = PredictParams(
        model=REF, items=[PredictItem(input="/in/a.tif", output="/out/a.tif", quicklook="q.png")]
    )
    stored = json.loads(params.model_dump_json())
    assert stored["schema_version"] == 1
    assert parse_params("predict", stored) == params


def test_predict_params_of_an_older_sipd_are_upgraded() -> None:
    legacy = {
        "model": "projects/p/models/3",
        "model_dir": "/data/models/p/3",
        "inputs": [
            {"path": "/in/a.tif", "output": "/out/a.tif", "confidence": "", "quicklook": ""}
        ],
        "background_mask": "",
        "tile_size": 0,
        "batch_size": 0,
        "overwrite": True,
    }
    params = parse_params("predict", legacy)
    assert isinstance(params, PredictParams)
    assert params.model == REF and params.items[0].input == "/in/a.tif" and params.overwrite
    # Other types are not guessed at: they fail validation (and the engine fails that job).
    assert upgrade_params(JobType.TRAIN, {"arch": "unet"}) == {"arch": "unet"}
    record = JobRecord.from_row(_row("train", {"arch": "unet"}, None, state="QUEUED"))
    assert record.params is None


def test_train_params_check_the_architecture_and_the_weights() -> None:
    with pytest.raises(ValidationError, match="arch 'resnet' is not known"):
        TrainParams.model_validate({"arch": "resnet"})
    snapshot = {
        "project": "p",
        "classes": [{"value": 1, "name": "a"}, {"value": 2, "name": "b"}],
        "bands": ["B1"],
        "revision": 1,
        "scenes": [],
    }
    fields = dict(
        snapshot=snapshot,
        dataset_dir="/d",
        chip_size=64,
        prepare=True,
        models_root="/m",
        arch="unet",
        epochs=1,
        batch_size=1,
        learning_rate=0.01,
    )
    with pytest.raises(ValidationError, match="1 value"):
        TrainParams(**fields, class_weights=[1.0])
    assert TrainParams(**fields, class_weights="balanced").class_weights == "balanced"


def test_results_become_protos_with_the_names_made_by_the_servicer() -> None:
    predict = PredictResult(project="p", version=3, scenes=[SCENE], provider="CPU", seconds=2.0)
    row = _row("predict", PredictParams(model=REF, items=[PredictItem(input="a", output="b")])
               .model_dump(mode="json"), predict.model_dump(mode="json"))  # fmt: skip
    msg = job_to_proto(JobRecord.from_row(row))
    assert msg.name == "jobs/7" and msg.project == "projects/p"
    assert msg.predict.model == "projects/p/models/3" and msg.predict.provider == "CPU"
    scene = msg.predict.scenes[0]
    assert (scene.input, scene.output, scene.width, scene.height) == (
        "/in/a.tif",
        "/out/a.tif",
        10,
        20,
    )
    assert dict(scene.class_pixels) == SCENE.class_pixels
    assert dict(scene.class_area_m2) == SCENE.class_area_m2
    assert msg.params.fields["model"].struct_value.fields["version"].number_value == 3

    report = AccuracyReport(
        overall_accuracy=0.9,
        kappa=0.8,
        per_class=[
            ClassAccuracy(
                value=1, name="ice", precision=1, recall=0.9, f1=0.95, iou=0.9, support=10
            )
        ],  # fmt: skip
        confusion_matrix=[[9]],
        class_names=["ice"],
        pixels=10,
    )
    test = TestResult(project="p", version=3, report=report, scenes=["c"], evaluation="/e.json")
    msg = job_to_proto(JobRecord.from_row(_row("test", {}, test.model_dump(mode="json"))))
    assert msg.test.model == "projects/p/models/3" and list(msg.test.scenes) == [
        "projects/p/scenes/c"
    ]
    assert msg.test.per_class[0].f1 == 0.95 and list(msg.test.confusion_matrix[0].counts) == [9]

    counts = [LabelCount(class_name="ice", split=Split.TRAIN, pixels=4)]
    prepare = PrepareResult(
        chips=2,
        chip_size=64,
        labeled_pixels=counts,
        normalization_mean=[1.0],
        normalization_std=[2.0],
        scenes=["a"],
    )
    msg = job_to_proto(JobRecord.from_row(_row("prepare", {}, prepare.model_dump(mode="json"))))
    assert msg.prepare.labeled_pixels[0].split == common_pb2.SPLIT_TRAIN
    assert list(msg.prepare.scenes) == ["projects/p/scenes/a"]

    masks = MasksResult(scenes=[SceneMasks(scene="a", paths={Split.TEST: "/m/test.tif"},
                                           counts=counts * 2, conflicting_pixels=1,
                                           pixels_in_several_splits=0)])  # fmt: skip
    msg = job_to_proto(JobRecord.from_row(_row("masks", {}, masks.model_dump(mode="json"))))
    assert msg.masks.scenes[0].scene == "projects/p/scenes/a"
    assert dict(msg.masks.scenes[0].paths) == {"test": "/m/test.tif"}
    assert msg.masks.totals[0].pixels == 8

    export = ExportResult(project="p", version=4, source_version=3, files=["f"], max_abs_diff=0.0)
    msg = job_to_proto(JobRecord.from_row(_row("export", {}, export.model_dump(mode="json"))))
    assert msg.export.model == "projects/p/models/4"
    assert msg.export.source_model == "projects/p/models/3"


def test_a_failed_job_keeps_its_typed_code() -> None:
    row = _row("predict", {}, None, state="FAILED")
    row["error_code"], row["error"] = "UNAVAILABLE", "the worker died"
    record = JobRecord.from_row(row)
    assert record.error_code is Code.UNAVAILABLE and record.failure().code is Code.UNAVAILABLE
    assert job_to_proto(record).error_code == "UNAVAILABLE"
