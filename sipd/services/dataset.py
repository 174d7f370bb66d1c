"""DatasetService: proto <-> dataset preparation requests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from sipapi.v1 import (
    common_pb2,
    dataset_pb2,
    dataset_pb2_grpc,
)

from sipd.dataset.summary import read_summary
from sipd.services.common import (
    parse_name,
    project_id,
    rpc,
    timestamp,
)
from sipd.services.job_results import job_to_proto

if TYPE_CHECKING:
    from sipd.server import Daemon


class DatasetServicer(dataset_pb2_grpc.DatasetServiceServicer):
    def __init__(self, daemon: Daemon) -> None:
        self.requests = daemon.requests
        self.projects = daemon.projects

    @rpc
    def PrepareDataset(
        self, request: dataset_pb2.PrepareDatasetRequest, context: grpc.ServicerContext
    ) -> Any:
        return job_to_proto(self.requests.prepare(project_id(request.parent), request.chip_size))

    @rpc
    def GetDataset(
        self, request: dataset_pb2.GetDatasetRequest, context: grpc.ServicerContext
    ) -> Any:
        (pid,) = parse_name(request.name, "projects/{}/dataset", "dataset name")
        d = read_summary(self.projects, pid)
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
