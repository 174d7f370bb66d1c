"""PreprocessService: raster inspection now; sensor preprocessors are planned."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import grpc
from sipapi.v1 import common_pb2, preprocess_pb2, preprocess_pb2_grpc

from sipd.contracts.jobs import InspectParams
from sipd.raster import check_readable
from sipd.services.common import rpc, unimplemented
from sipd.services.job_results import job_to_proto

if TYPE_CHECKING:
    from sipd.server import Daemon


class PreprocessServicer(preprocess_pb2_grpc.PreprocessServiceServicer):
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    @rpc
    def InspectRaster(
        self, request: preprocess_pb2.InspectRasterRequest, context: grpc.ServicerContext
    ) -> common_pb2.Job:
        policy = self.daemon.policy
        path = policy.check_input(request.path, "raster path")
        # Open once here so a missing or unreadable file is INVALID_ARGUMENT now, not a
        # failed job later; every file GDAL opens for it (VRT sources) must be in the roots.
        check_readable(path, functools.partial(policy.check_opened, what=f"raster {path}"))
        job = self.daemon.engine.submit(
            InspectParams(path=str(path), statistics=request.statistics)
        )
        return job_to_proto(job)

    @rpc
    def ListPreprocessors(
        self, request: preprocess_pb2.ListPreprocessorsRequest, context: grpc.ServicerContext
    ) -> preprocess_pb2.ListPreprocessorsResponse:
        return preprocess_pb2.ListPreprocessorsResponse()

    Preprocess = unimplemented(
        "PreprocessService",
        "Preprocess",
        "sensor preprocessors are planned; ListPreprocessors lists those present",
    )
