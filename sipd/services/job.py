"""JobService: get, list, cancel and watch jobs."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc
from sipapi.v1 import common_pb2, job_pb2, job_pb2_grpc

from sipd.services.common import _page_size, enum_name, job_id, page_start, project_id, rpc
from sipd.services.job_results import job_to_proto

if TYPE_CHECKING:
    from sipd.server import Daemon


class JobServicer(job_pb2_grpc.JobServiceServicer):
    def __init__(self, daemon: Daemon) -> None:
        self.engine = daemon.engine
        self.stream_limits = daemon.stream_limits

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
        before = page_start(request.page_token, "ListJobs") if request.page_token else None
        state = enum_name(common_pb2.Job.State, request.state, "state") if request.state else ""
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
        with self.stream_limits.hold(context, "WatchJob"):
            yield from self._watch(jid, context)

    def _watch(self, jid: int, context: grpc.ServicerContext) -> Iterator[common_pb2.JobEvent]:
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
