"""A channel to sipd and one stub per service."""

from __future__ import annotations

from typing import Any

import grpc
from sipapi.v1 import (
    dataset_pb2_grpc,
    job_pb2_grpc,
    labeling_pb2_grpc,
    prediction_pb2_grpc,
    preprocess_pb2_grpc,
    project_pb2_grpc,
    system_pb2_grpc,
    training_pb2_grpc,
    watch_pb2_grpc,
)

DEFAULT_ADDRESS = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class CliError(Exception):
    """An error already phrased for the user: printed as one line, exit status 1."""


class Client:
    def __init__(self, address: str, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self.channel = grpc.insecure_channel(
            address,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self.projects = project_pb2_grpc.ProjectServiceStub(self.channel)
        self.labeling = labeling_pb2_grpc.LabelingServiceStub(self.channel)
        self.datasets = dataset_pb2_grpc.DatasetServiceStub(self.channel)
        self.training = training_pb2_grpc.TrainingServiceStub(self.channel)
        self.prediction = prediction_pb2_grpc.PredictionServiceStub(self.channel)
        self.preprocess = preprocess_pb2_grpc.PreprocessServiceStub(self.channel)
        self.watches = watch_pb2_grpc.WatchServiceStub(self.channel)
        self.jobs = job_pb2_grpc.JobServiceStub(self.channel)
        self.system = system_pb2_grpc.SystemServiceStub(self.channel)

    def call(self, method: Any, request: Any) -> Any:
        """A unary call with the client's deadline; errors become CliError."""
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise self.error(exc) from None

    def error(self, exc: grpc.RpcError) -> CliError:
        code = exc.code() if hasattr(exc, "code") else None
        details = exc.details() if hasattr(exc, "details") else str(exc)
        if code == grpc.StatusCode.UNAVAILABLE:
            return CliError(
                f"cannot reach sipd at {self.address} ({details}); start it with `sipd` "
                f"(or `sipd --listen {self.address}`), or point --address / SIPCTL_ADDRESS at it"
            )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return CliError(
                f"sipd at {self.address} did not answer within {self.timeout:g} s (--timeout)"
            )
        name = code.name if code is not None else "ERROR"
        return CliError(f"{name}: {details}")

    def close(self) -> None:
        self.channel.close()
