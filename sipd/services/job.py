"""JobService: get, list, cancel and watch jobs."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc
from sipapi.v1 import common_pb2, job_pb2, job_pb2_grpc

from sipd.errors import InvalidArgument
from sipd.services.common import _page_size, job_id, project_id, rpc
from sipd.services.job_results import job_to_proto

if TYPE_CHECKING:
    from sipd.server import Daemon


class JobServicer(job_pb2_grpc.JobServiceServicer):
    def __init__(self, daemon: Daemon) -> None:
        self.engine = daemon.engine

    @rpc
    def GetJob(
        self, request: job_pb2.GetJobRequest, context: grpc.ServicerContext
    ) -> common_pb2.Job:
        return job_to_proto(self.engine.get(job_id(request.name)))

    @rpc
    def ListJobs(
        self, request: job_pb2.ListJobsRequest, context: grpc.ServicerContext
    ) -> job_pb2.ListJobsResponse:
        size = _page_size(request.page_size)
        before = None
        if request.page_token:
            if not request.page_token.isdigit():
                raise InvalidArgument(
                    f"page_token {request.page_token!r} was not returned by ListJobs"
                )
            before = int(request.page_token)
        state = common_pb2.Job.State.Name(request.state) if request.state else ""
        project = project_id(request.project) if request.project else ""
        jobs = self.engine.list(
            state=state, type_=request.type, project=project, before_id=before, limit=size + 1
        )
        more = len(jobs) > size
        jobs = jobs[:size]
        return job_pb2.ListJobsResponse(
            jobs=[job_to_proto(j) for j in jobs],
            next_page_token=str(jobs[-1].id) if more else "",
        )

    @rpc
    def CancelJob(
        self, request: job_pb2.CancelJobRequest, context: grpc.ServicerContext
    ) -> common_pb2.Job:
        return job_to_proto(self.engine.cancel(job_id(request.name)))

    @rpc
    def WatchJob(
        self, request: job_pb2.WatchJobRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.JobEvent]:
        jid = job_id(request.name)
        events = self.engine.subscribe(jid)
        try:
            job = self.engine.get(jid)
            sequence = 1
            yield common_pb2.JobEvent(job=job_to_proto(job), sequence=sequence)
            while not job.final and context.is_active():
                try:
                    job = events.get(timeout=1.0)
                except queue.Empty:
                    # A missed event (full queue) never leaves a stream hanging.
                    job = self.engine.get(jid)
                    if not job.final:
                        continue
                sequence += 1
                yield common_pb2.JobEvent(job=job_to_proto(job), sequence=sequence)
        finally:
            self.engine.unsubscribe(jid, events)
