"""TrainingService: train, test, export and the model repository over gRPC."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import empty_pb2
from sipapi.v1 import (
    common_pb2,
    training_pb2,
    training_pb2_grpc,
)

from sipd.contracts.jobs import AccuracyReport, EpochMetrics, TrainResult
from sipd.errors import InvalidArgument
from sipd.job_requests import TrainOptions
from sipd.modelrepo import ModelVersion, parse_model_name
from sipd.services.common import (
    page,
    project_id,
    rpc,
    timestamp,
)
from sipd.services.job_results import accuracy_report, job_to_proto, scene_name, train_result

if TYPE_CHECKING:
    from sipd.server import Daemon


def model_to_proto(m: ModelVersion) -> training_pb2.Model:
    card = m.card
    msg = training_pb2.Model(
        name=m.name,
        version=m.version,
        path=str(m.path),
        arch=card.architecture.name,
        classes=[
            common_pb2.ClassDef(value=c.value, name=c.name, color=c.color) for c in card.classes
        ],
        bands=list(card.bands),
        tile_size=card.tile.size,
        tile_halo=card.tile.halo,
        model_yaml=m.card_yaml,
        derived_from=card.derived_from or "",
        recipe=card.preprocessing.recipe_label if card.preprocessing else "",
    )
    msg.create_time.CopyFrom(timestamp(m.create_time))
    if m.training is not None:
        msg.training.CopyFrom(train_result(_training_of(m)))
    for evaluation in m.evaluations:
        report = AccuracyReport.model_validate(
            {k: v for k, v in evaluation.report.items() if k in AccuracyReport.model_fields}
        )
        scenes = [scene_name(m.project, s) for s in evaluation.scenes]
        msg.evaluations.append(accuracy_report(report, m.name, scenes))
    if m.evaluations:
        msg.test.CopyFrom(msg.evaluations[-1])
    return msg


def _training_of(m: ModelVersion) -> TrainResult:
    """The version's metrics.json "train" section in the train job's result shape."""
    train = m.training or {}
    history = [EpochMetrics(**h) for h in train.get("history", [])]
    check = m.card.onnx_check
    return TrainResult(
        project=m.project,
        version=m.version,
        epochs_run=len(history),
        best_epoch=int(train.get("best_epoch", 0)),
        best_val_accuracy=train.get("best_val_accuracy"),
        history=history,
        onnx_max_abs_diff=check.max_abs_diff if check is not None else 0.0,
        seconds=float(train.get("seconds", 0.0)),
    )


class TrainingServicer(training_pb2_grpc.TrainingServiceServicer):
    def __init__(self, daemon: Daemon) -> None:
        self.requests = daemon.requests
        self.models = daemon.models

    @rpc
    def Train(self, request: training_pb2.TrainRequest, context: grpc.ServicerContext) -> Any:
        if request.epochs < 0 or request.batch_size < 0 or request.learning_rate < 0:
            raise InvalidArgument("epochs, batch_size and learning_rate must not be negative")
        if request.chip_size < 0:
            raise InvalidArgument("chip_size must not be negative (0: the configured default)")
        options = TrainOptions(
            arch=request.arch,
            epochs=request.epochs,
            batch_size=request.batch_size,
            learning_rate=request.learning_rate,
            chip_size=request.chip_size,
            seed=request.seed if request.HasField("seed") else 0,
            class_weights=tuple(request.class_weights),
            balanced=request.balanced_class_weights,
            augment=not request.no_augment,
            patience=request.patience if request.HasField("patience") else None,
            steps_per_epoch=request.steps_per_epoch
            if request.HasField("steps_per_epoch") else None,
            prior_correction=False if request.no_prior_correction else None,
        )
        return job_to_proto(self.requests.train(project_id(request.parent), options))

    @rpc
    def Test(self, request: training_pb2.TestRequest, context: grpc.ServicerContext) -> Any:
        pid, version = parse_model_name(request.model)
        scenes = [s.rsplit("/", 1)[-1] for s in request.scenes]
        return job_to_proto(self.requests.test(pid, version, scenes))

    @rpc
    def ListModels(
        self, request: training_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> Any:
        pid = project_id(request.parent)
        items, token = page(self.models.list(pid), request.page_size, request.page_token)
        return training_pb2.ListModelsResponse(
            models=[model_to_proto(m) for m in items], next_page_token=token
        )

    @rpc
    def GetModel(self, request: training_pb2.GetModelRequest, context: grpc.ServicerContext) -> Any:
        pid, version = parse_model_name(request.name)
        return model_to_proto(self.requests.model(pid, version))

    @rpc
    def DeleteModel(
        self, request: training_pb2.DeleteModelRequest, context: grpc.ServicerContext
    ) -> Any:
        pid, version = parse_model_name(request.name)
        if version == "latest":
            raise InvalidArgument("name the version to delete explicitly, not 'latest'")
        self.models.delete(pid, self.models.resolve(pid, version))
        return empty_pb2.Empty()

    @rpc
    def ExportModel(
        self, request: training_pb2.ExportModelRequest, context: grpc.ServicerContext
    ) -> Any:
        pid, version = parse_model_name(request.name)
        return job_to_proto(self.requests.export(pid, version, request.fp16))
