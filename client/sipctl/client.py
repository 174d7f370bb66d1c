"""A channel to sipd and one stub per service."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
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


class _BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds 'authorization: Bearer TOKEN' to every call. An interceptor rather than call
    credentials: those gRPC sends only over TLS, and a loopback sipd runs without."""

    def __init__(self, token: str) -> None:
        self.header = ("authorization", f"Bearer {token}")

    def _with_token(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), self.header]
        return _CallDetails(
            details.method, details.timeout, metadata, details.credentials,
            getattr(details, "wait_for_ready", None), getattr(details, "compression", None),
        )  # fmt: skip

    def intercept_unary_unary(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation: Callable, details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation: Callable, details: Any, requests: Any) -> Any:
        return continuation(self._with_token(details), requests)

    def intercept_stream_stream(self, continuation: Callable, details: Any, requests: Any) -> Any:
        return continuation(self._with_token(details), requests)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(
        self, method: str, timeout: Any, metadata: Any, credentials: Any,
        wait_for_ready: Any, compression: Any,
    ) -> None:  # fmt: skip
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read the {what} {path}: {exc.strerror}") from None


def open_channel(
    address: str,
    token: str | None = None,
    *,
    tls: bool = False,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    options: list[tuple[str, Any]] | None = None,
) -> grpc.Channel:
    """A channel to sipd: TLS when asked (tls_ca, or tls with the system's roots), the
    client certificate for mTLS, and the bearer token on every call when there is one."""
    if bool(tls_cert) != bool(tls_key):
        raise CliError("--tls-cert and --tls-key go together (the client certificate and key)")
    if tls or tls_ca or tls_cert:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(tls_ca, "CA bundle (--tls-ca)") if tls_ca else None,
            private_key=_read(tls_key, "client key (--tls-key)") if tls_key else None,
            certificate_chain=_read(tls_cert, "client certificate (--tls-cert)")
            if tls_cert
            else None,
        )
        channel = grpc.secure_channel(address, credentials, options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    if token:
        channel = grpc.intercept_channel(channel, _BearerToken(token))
    return channel


class Client:
    def __init__(
        self,
        address: str,
        timeout: float,
        token: str | None = None,
        *,
        tls: bool = False,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.has_token = bool(token)
        self.channel = open_channel(
            address, token, tls=tls, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )  # fmt: skip
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
        if code == grpc.StatusCode.UNAUTHENTICATED and not self.has_token:
            return CliError(
                f"UNAUTHENTICATED: {details}. No token was found for {self.address}: pass "
                "--token or SIPCTL_TOKEN (sipd's owner finds it by itself when sipd runs as "
                "the same user)"
            )
        name = code.name if code is not None else "ERROR"
        return CliError(f"{name}: {details}")

    def close(self) -> None:
        self.channel.close()
