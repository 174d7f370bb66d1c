"""What every command gets: parsed arguments, the client, output helpers and job following."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from sipapi.v1 import common_pb2, job_pb2

from sipctl.client import Client, CliError
from sipctl.render import ProgressBar, print_json, to_plain

SUCCEEDED = common_pb2.Job.State.SUCCEEDED
FINAL = {
    common_pb2.Job.State.SUCCEEDED,
    common_pb2.Job.State.FAILED,
    common_pb2.Job.State.CANCELLED,
}


@dataclass
class App:
    args: argparse.Namespace
    client: Client

    @property
    def json(self) -> bool:
        return bool(self.args.json)

    def emit(self, data: Any, human: Callable[[], None]) -> None:
        """Print `data` as JSON with --json, else call `human` to print for people."""
        if self.json:
            print_json(data)
        else:
            human()

    def follow(self, name: str, progress: bool = True) -> common_pb2.Job:
        """Stream a job's events until it is final; draw progress on stderr."""
        bar = ProgressBar() if progress and not self.args.quiet else None
        job: common_pb2.Job | None = None
        try:
            for event in self.client.jobs.WatchJob(job_pb2.WatchJobRequest(name=name)):
                job = event.job
                if bar is not None and job.state == common_pb2.Job.State.RUNNING:
                    bar.update(job)
        except grpc.RpcError as exc:
            if bar is not None:
                bar.close()
            raise self.client.error(exc) from None
        except KeyboardInterrupt:
            if bar is not None:
                bar.close()
            print(
                f"detached from {name}; it goes on. Follow it with `sipctl jobs watch {name}`, "
                f"stop it with `sipctl jobs cancel {name}`",
                file=sys.stderr,
            )
            raise SystemExit(130) from None
        if bar is not None:
            bar.close()
        if job is None or job.state not in FINAL:
            raise CliError(
                f"the event stream of {name} ended before the job did; "
                f"see `sipctl jobs show {name}`"
            )
        return job

    def run_job(self, job: common_pb2.Job, human: Callable[[Any], None]) -> int:
        """The common end of every command that starts a job: --detach, or wait and show."""
        if self.args.detach:
            self.emit(
                {"job": job.name, "state": common_pb2.Job.State.Name(job.state)},
                lambda: print(job.name),
            )
            return 0
        final = self.follow(job.name)
        return self.finish(final, human)

    def finish(self, job: common_pb2.Job, human: Callable[[Any], None]) -> int:
        if job.state != SUCCEEDED:
            state = common_pb2.Job.State.Name(job.state)
            raise CliError(f"{job.name} ({job.type}) {state}: {job.error or 'no reason given'}")
        result = getattr(job, job.WhichOneof("result")) if job.WhichOneof("result") else None
        if self.json:
            print_json(to_plain(result) if result is not None else {})
        elif result is not None:
            human(result)
        return 0


def absolute(path: str) -> str:
    """The daemon needs absolute paths; resolve the user's relative ones here."""
    return os.path.abspath(os.path.expanduser(path)) if path else path
