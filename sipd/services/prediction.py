"""PredictionService: Predict, PredictStream and Suggest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from sipapi.v1 import (
    prediction_pb2,
    prediction_pb2_grpc,
)

from sipd.contracts.job_record import JobState
from sipd.contracts.jobs import PredictResult
from sipd.errors import InvalidArgument
from sipd.job_requests import PredictOptions
from sipd.modelrepo import parse_model_name
from sipd.services.common import rpc
from sipd.services.job_results import job_to_proto, scene_prediction
from sipd.stream_upload import StreamHeader

if TYPE_CHECKING:
    from sipd.server import Daemon


class PredictionServicer(prediction_pb2_grpc.PredictionServiceServicer):
    def __init__(self, daemon: Daemon) -> None:
        self.requests = daemon.requests
        self.streams = daemon.streams
        self.chunk_bytes = daemon.config.inference.stream_chunk_bytes
        self.stream_limits = daemon.stream_limits

    @rpc
    def Predict(self, request: prediction_pb2.PredictRequest, context: grpc.ServicerContext) -> Any:
        pid, version = parse_model_name(request.model)
        if request.tile_size < 0 or request.batch_size < 0:
            raise InvalidArgument("tile_size and batch_size must not be negative")
        options = PredictOptions(
            confidence=request.confidence or bool(request.confidence_path),
            confidence_path=request.confidence_path,
            probabilities=request.probabilities,
            quicklook=request.quicklook,
            background_mask=request.background_mask,
            tile_size=request.tile_size,
            batch_size=request.batch_size,
            overwrite=request.overwrite,
            recipe=request.recipe,
            uncertainty=request.uncertainty or bool(request.uncertainty_path),
            uncertainty_path=request.uncertainty_path,
        )
        job = self.requests.predict(pid, version, list(request.inputs), request.output, options)
        return job_to_proto(job)

    @rpc
    def Suggest(self, request: prediction_pb2.SuggestRequest, context: grpc.ServicerContext) -> Any:
        pid, version = parse_model_name(request.model)
        job = self.requests.suggest(
            pid,
            version,
            [_scene_id(pid, s) for s in request.scenes],
            n=request.n if request.HasField("n") else 10,
            size=request.size if request.HasField("size") else 64,
            min_distance=request.min_distance,
            tile_size=request.tile_size,
            batch_size=request.batch_size,
        )
        return job_to_proto(job)

    @rpc
    def PredictStream(self, request_iterator: Any, context: grpc.ServicerContext) -> Any:
        with self.stream_limits.hold(context, "PredictStream"):
            yield from self._predict_stream(request_iterator, context)

    def _predict_stream(self, request_iterator: Any, context: grpc.ServicerContext) -> Any:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidArgument(
                "the first PredictStream message must be a header (model, encoding, total_bytes)"
            )
        upload = self.streams.open(_stream_header(first.header))
        job_id = None
        try:
            for message in request_iterator:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidArgument("only the first PredictStream message may be a header")
                upload.write(message.chunk)
            job = self.streams.submit(upload)
            job_id = job.id
            job = self.streams.wait_for(job_id, context.is_active)
            if job.state != JobState.SUCCEEDED or not isinstance(job.result, PredictResult):
                raise job.failure()
            label_bytes, confidence_bytes, chunks = upload.outputs(self.chunk_bytes)
            result = prediction_pb2.PredictStreamResult(
                label_bytes=label_bytes,
                confidence_bytes=confidence_bytes,
                # Paths inside the daemon's spool mean nothing to a remote client.
                prediction=scene_prediction(job.result.scenes[0], with_paths=False),
            )
            yield prediction_pb2.PredictStreamResponse(result=result)
            for chunk in chunks:
                yield prediction_pb2.PredictStreamResponse(chunk=chunk)
        finally:
            if job_id is not None and context.is_active() is False:
                # The client left while the job ran or its bytes were sent back:
                # nothing may write into the spool once it is removed.
                self.streams.wait_for(job_id, lambda: False)
            upload.cleanup()


def _scene_id(project: str, scene: str) -> str:
    """A scene id from "s" or "projects/{project}/scenes/s"."""
    if scene.startswith("projects/"):
        prefix = f"projects/{project}/scenes/"
        if not scene.startswith(prefix) or "/" in scene[len(prefix) :]:
            raise InvalidArgument(f"scene {scene!r} is not a scene of project {project!r}")
        return scene[len(prefix) :]
    return scene


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
