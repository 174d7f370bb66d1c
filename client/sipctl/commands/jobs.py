"""sipctl jobs list | show | watch | cancel | wait."""

from __future__ import annotations

import argparse
import time
from typing import Any

from sipapi.v1 import common_pb2, job_pb2

from sipctl.app import FINAL, App
from sipctl.render import duration, table, to_plain

STATE = common_pb2.Job.State


def register(sub: Any, job_options: argparse.ArgumentParser) -> None:
    jobs = sub.add_parser("jobs", help="list, show, follow and cancel jobs")
    jsub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="COMMAND")

    p = jsub.add_parser("list", help="jobs, newest first")
    p.add_argument("--state", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    p.add_argument("--type", default="", help="only this job type, e.g. train")
    p.add_argument("--project", default="", help="only this project")
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    p.set_defaults(func=list_jobs)

    for name, func, text in (
        ("show", show, "one job with its progress and result"),
        ("watch", watch, "follow a job's progress until it ends"),
        ("wait", wait, "wait quietly until a job ends; exit 0 only if it succeeded"),
        ("cancel", cancel, "ask a job to stop"),
    ):
        p = jsub.add_parser(name, help=text)
        p.add_argument("job", help="job name (jobs/42) or number")
        p.set_defaults(func=func)


def _name(job: str) -> str:
    return job if job.startswith("jobs/") else f"jobs/{job}"


def _plain(job: common_pb2.Job) -> dict[str, Any]:
    data = to_plain(job)
    data["state"] = STATE.Name(job.state)
    return data


def list_jobs(app: App) -> int:
    req = job_pb2.ListJobsRequest(
        page_size=app.args.limit,
        state=STATE.Value(app.args.state.upper()) if app.args.state else 0,
        type=app.args.type,
        project=f"projects/{app.args.project}" if app.args.project else "",
    )
    resp = app.client.call(app.client.jobs.ListJobs, req)

    def human() -> None:
        rows = []
        for j in resp.jobs:
            end = j.end_time.ToSeconds() if j.HasField("end_time") else time.time()
            took = duration(end - j.start_time.ToSeconds()) if j.HasField("start_time") else "-"
            progress = f"{j.progress.fraction * 100:.0f}%" if j.state == STATE.RUNNING else ""
            rows.append(
                [
                    j.name,
                    j.type,
                    STATE.Name(j.state).lower(),
                    progress,
                    took,
                    j.project.removeprefix("projects/"),
                    j.error[:60],
                ]
            )
        table(rows, ["JOB", "TYPE", "STATE", "DONE", "TIME", "PROJECT", "ERROR"])

    app.emit({"jobs": [_plain(j) for j in resp.jobs]}, human)
    return 0


def show(app: App) -> int:
    job = app.client.call(app.client.jobs.GetJob, job_pb2.GetJobRequest(name=_name(app.args.job)))

    def human() -> None:
        print(f"{job.name}: {job.type} {STATE.Name(job.state).lower()}")
        if job.project:
            print(f"project:  {job.project}")
        if job.state == STATE.RUNNING:
            p = job.progress
            print(f"progress: {p.stage} {p.fraction * 100:.0f}% {p.message}")
        if job.error:
            print(f"error:    {job.error}")
        kind = job.WhichOneof("result")
        if kind:
            import json

            print(
                "result:   "
                + json.dumps(to_plain(getattr(job, kind)), indent=2).replace("\n", "\n          ")
            )

    app.emit(_plain(job), human)
    return 0


def watch(app: App) -> int:
    final = app.follow(_name(app.args.job))
    return _report(app, final)


def wait(app: App) -> int:
    final = app.follow(_name(app.args.job), progress=False)
    return _report(app, final)


def _report(app: App, job: common_pb2.Job) -> int:
    app.emit(
        _plain(job),
        lambda: print(
            f"{job.name}: {STATE.Name(job.state).lower()}" + (f": {job.error}" if job.error else "")
        ),
    )
    return 0 if job.state == STATE.SUCCEEDED else 1


def cancel(app: App) -> int:
    job = app.client.call(
        app.client.jobs.CancelJob, job_pb2.CancelJobRequest(name=_name(app.args.job))
    )
    state = STATE.Name(job.state).lower()
    note = "" if job.state in FINAL else " (cancel requested; it stops at its next safe point)"
    app.emit(_plain(job), lambda: print(f"{job.name}: {state}{note}"))
    return 0
