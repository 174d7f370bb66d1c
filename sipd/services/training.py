"""TrainingService: train, test, export and the model repository over gRPC."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import empty_pb2, json_format
from sipapi.v1 import (
    common_pb2,
    training_pb2,
    training_pb2_grpc,
)

from sipd.errors import InvalidArgument
from sipd.modelrepo import parse_model_name
from sipd.services.common import (
    accuracy_report,
    job_to_proto,
    page,
    project_id,
    rpc,
    timestamp,
)

if TYPE_CHECKING:
    from sipd.server import Daemon


def model_to_proto(m: dict[str, Any]) -> training_pb2.Model:
    meta = m["meta"]
    tile = meta.get("tile", {})
    msg = training_pb2.Model(
        name=m["name"],
        version=m["version"],
        path=m["path"],
        arch=meta.get("architecture", {}).get("name", ""),
        classes=[
            common_pb2.ClassDef(value=c["value"], name=c["name"], color=c.get("color", ""))
            for c in meta.get("classes", [])
        ],
        bands=meta.get("bands", []),
        tile_size=int(tile.get("size", 0)),
        tile_halo=int(tile.get("halo", 0)),
        model_yaml=m["yaml"],
    )
    msg.create_time.CopyFrom(timestamp(m["mtime"]))
    train = m["metrics"].get("train")
    if train:
        msg.training.model = m["name"]
        msg.training.version = m["version"]
        msg.training.best_epoch = int(train.get("best_epoch", 0))
        msg.training.best_val_accuracy = float(train.get("best_val_accuracy", 0.0))
        msg.training.epochs_run = len(train.get("history", []))
        msg.training.seconds = float(train.get("seconds", 0.0))
        msg.training.onnx_max_abs_diff = float(meta.get("onnx_check", {}).get("max_abs_diff", 0.0))
        for h in train.get("history", []):
            json_format.ParseDict(h, msg.training.history.add(), ignore_unknown_fields=True)
    test = m["metrics"].get("test")
    if test:
        json_format.ParseDict(accuracy_report(test), msg.test, ignore_unknown_fields=True)
    return msg


class TrainingServicer(training_pb2_grpc.TrainingServiceServicer):
    def __init__(self, daemon: Daemon) -> None:
        self.pipeline = daemon.pipeline
        self.models = daemon.models
        self.projects = daemon.projects

    @rpc
    def Train(self, request: training_pb2.TrainRequest, context: grpc.ServicerContext) -> Any:
        if request.epochs < 0 or request.batch_size < 0 or request.learning_rate < 0:
            raise InvalidArgument("epochs, batch_size and learning_rate must not be negative")
        options: dict[str, Any] = {
            "arch": request.arch,
            "epochs": request.epochs,
            "batch_size": request.batch_size,
            "learning_rate": request.learning_rate,
            "class_weights": list(request.class_weights),
            "balanced": request.balanced_class_weights,
            "no_augment": request.no_augment,
            "chip_size": request.chip_size,
        }
        if request.HasField("seed"):
            options["seed"] = request.seed
        if request.HasField("patience"):
            options["patience"] = request.patience
        return job_to_proto(self.pipeline.train(project_id(request.parent), options))

    @rpc
    def Test(self, request: training_pb2.TestRequest, context: grpc.ServicerContext) -> Any:
        pid, version = parse_model_name(request.model)
        scenes = [s.rsplit("/", 1)[-1] for s in request.scenes]
        return job_to_proto(self.pipeline.test(pid, version, scenes))

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
        return model_to_proto(self.pipeline.model(pid, version))

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
        return job_to_proto(self.pipeline.export(pid, version, request.fp16))

