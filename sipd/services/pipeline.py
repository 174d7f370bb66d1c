"""DatasetService, TrainingService and PredictionService: proto <-> sipd.pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import empty_pb2, json_format

from sipd.api.sip.v1 import (
    common_pb2,
    dataset_pb2,
    dataset_pb2_grpc,
    prediction_pb2,
    prediction_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)
from sipd.errors import InvalidArgument
from sipd.modelrepo import parse_model_name
from sipd.pipeline import StreamHeader, job_error
from sipd.services.common import (
    accuracy_report,
    job_to_proto,
    page,
    parse_name,
    project_id,
    rpc,
    timestamp,
)

if TYPE_CHECKING:
    from sipd.server import Daemon


class DatasetServicer(dataset_pb2_grpc.DatasetServiceServicer):
    def __init__(self, daemon: Daemon) -> None:
        self.pipeline = daemon.pipeline

    @rpc
    def PrepareDataset(
        self, request: dataset_pb2.PrepareDatasetRequest, context: grpc.ServicerContext
    ) -> Any:
        return job_to_proto(self.pipeline.prepare(project_id(request.parent), request.chip_size))

    @rpc
    def GetDataset(
        self, request: dataset_pb2.GetDatasetRequest, context: grpc.ServicerContext
    ) -> Any:
        (pid,) = parse_name(request.name, "projects/{}/dataset", "dataset name")
        d = self.pipeline.dataset(pid)
        names = {int(c["value"]): c["name"] for c in d["classes"]}
        counts = [
            common_pb2.LabelCount(
                class_name=names.get(int(v), str(v)),
                split=common_pb2.Split.Value(f"SPLIT_{split.upper()}"),
                pixels=int(n),
            )
            for split, per_class in d["labeled_pixels"].items()
            for v, n in per_class.items()
        ]
        msg = dataset_pb2.Dataset(
            name=request.name,
            chips=d["chips"],
            chip_size=d["chip_size"],
            labeled_pixels=counts,
            normalization_mean=d["normalization"]["mean"],
            normalization_std=d["normalization"]["std"],
            scenes=[
                f"projects/{pid}/scenes/{s['name'] if isinstance(s, dict) else s}"
                for s in d["scenes"]
            ],
            stale=d["stale"],
        )
        msg.create_time.CopyFrom(timestamp(d["create_time"]))
        return msg


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


class PredictionServicer(prediction_pb2_grpc.PredictionServiceServicer):
    def __init__(self, daemon: Daemon) -> None:
        self.pipeline = daemon.pipeline
        self.chunk_bytes = daemon.config.inference.stream_chunk_bytes

    @rpc
    def Predict(self, request: prediction_pb2.PredictRequest, context: grpc.ServicerContext) -> Any:
        pid, version = parse_model_name(request.model)
        options = {
            "confidence": request.confidence or bool(request.confidence_path),
            "confidence_path": request.confidence_path,
            "probabilities": request.probabilities,
            "quicklook": request.quicklook,
            "background_mask": request.background_mask,
            "tile_size": request.tile_size,
            "batch_size": request.batch_size,
            "overwrite": request.overwrite,
        }
        if request.tile_size < 0 or request.batch_size < 0:
            raise InvalidArgument("tile_size and batch_size must not be negative")
        job = self.pipeline.predict(pid, version, list(request.inputs), request.output, options)
        return job_to_proto(job)

    @rpc
    def PredictStream(self, request_iterator: Any, context: grpc.ServicerContext) -> Any:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument(
                "the first PredictStream message must be a header (model, encoding, total_bytes)"
            )
        upload = self.pipeline.open_stream(_stream_header(first.header))
        job_id = None
        try:
            for message in request_iterator:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidArgument("only the first PredictStream message may be a header")
                upload.write(message.chunk)
            job = self.pipeline.predict_upload(upload)
            job_id = job["id"]
            job = self.pipeline.wait_for(job_id, context.is_active)
            if job["state"] != "SUCCEEDED":
                raise job_error(job)
            scene = dict(job["result"]["scenes"][0])
            # Paths inside the daemon's spool mean nothing to a remote client.
            for key in ("input", "output", "confidence", "probabilities", "quicklook"):
                scene.pop(key, None)
            label_bytes, confidence_bytes, chunks = upload.outputs(self.chunk_bytes)
            result = prediction_pb2.PredictStreamResult(
                label_bytes=label_bytes, confidence_bytes=confidence_bytes
            )
            json_format.ParseDict(scene, result.prediction, ignore_unknown_fields=True)
            yield prediction_pb2.PredictStreamResponse(result=result)
            for chunk in chunks:
                yield prediction_pb2.PredictStreamResponse(chunk=chunk)
        finally:
            if job_id is not None and context.is_active() is False:
                # The client left while the job ran or its bytes were sent back:
                # nothing may write into the spool once it is removed.
                self.pipeline.wait_for(job_id, lambda: False)
            upload.cleanup()


def _stream_header(h: prediction_pb2.PredictStreamHeader) -> StreamHeader:
    encodings = {
        prediction_pb2.RASTER_ENCODING_GEOTIFF: "geotiff",
        prediction_pb2.RASTER_ENCODING_RAW: "raw",
    }
    return StreamHeader(
        model=h.model,
        encoding=encodings.get(h.encoding, "unspecified"),
        total_bytes=h.total_bytes,
        shape=tuple(h.shape),
        dtype=h.dtype,
        nodata=h.nodata if h.HasField("nodata") else None,
        confidence=h.confidence,
    )
