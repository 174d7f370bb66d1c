"""sipctl status | studio | diagnostics | inspect."""

from __future__ import annotations

import argparse
import webbrowser
from typing import Any
from urllib.parse import quote

from sipapi.v1 import preprocess_pb2, system_pb2

from sipctl.app import App, CliError, absolute
from sipctl.render import duration, to_plain


def register(sub: Any, job_options: argparse.ArgumentParser) -> None:
    p = sub.add_parser("status", help="daemon version, device, queue and worker")
    p.set_defaults(func=status)

    p = sub.add_parser(
        "studio", help="open the labeling studio (the daemon's web page) in the browser"
    )
    p.add_argument(
        "--no-open", action="store_true", help="only print the address (it carries the token)"
    )
    p.set_defaults(func=studio)

    p = sub.add_parser(
        "diagnostics", parents=[job_options], help="measure the worker's device (a short job)"
    )
    p.add_argument("--seconds", type=float, default=2.0, help="how long to measure (default 2)")
    p.add_argument("--matrix-size", type=int, default=1024, help="matrix edge (default 1024)")
    p.set_defaults(func=diagnostics)

    p = sub.add_parser(
        "inspect", parents=[job_options], help="a raster's size, bands, type and CRS (a job)"
    )
    p.add_argument("path", help="raster file on the daemon's machine")
    p.add_argument("--stats", action="store_true", help="also compute exact per-band statistics")
    p.set_defaults(func=inspect)


def status(app: App) -> int:
    s = app.client.call(app.client.system.GetStatus, system_pb2.GetStatusRequest())
    data = to_plain(s)
    data["worker"]["state"] = system_pb2.WorkerStatus.State.Name(s.worker.state)

    def human() -> None:
        w = s.worker
        print(f"sipd {s.version} at {s.listen}, up {duration(s.uptime_seconds)}")
        print(f"device:   {s.device}")
        print(
            f"worker:   {system_pb2.WorkerStatus.State.Name(w.state).lower()} (pid {w.pid}, "
            f"restarts {w.restarts}){' running ' + w.current_job if w.current_job else ''}"
        )
        print(f"queue:    {s.queue_length} job(s) waiting")
        print(f"watches:  {s.active_watches} active")
        print(f"data dir: {s.data_dir}")
        print(f"metrics:  {s.metrics_listen or 'off'}")
        print(f"studio:   {s.studio_listen or 'off'}")
        print(f"roots:    {', '.join(s.allowed_roots)}")

    app.emit(data, human)
    return 0


def studio(app: App) -> int:
    s = app.client.call(app.client.system.GetStatus, system_pb2.GetStatusRequest())
    if not s.studio_listen:
        raise CliError(
            "the studio is off on this sipd; start it with --studio-listen 127.0.0.1:50052 "
            "(or studio_listen in sipd.yaml)"
        )
    host, _, port = s.studio_listen.rpartition(":")
    if host in ("0.0.0.0", "::", "[::]"):
        # A wildcard listener is reached at the host sipctl reaches the daemon at.
        host = app.args.address.rpartition(":")[0] or "127.0.0.1"
    tls = bool(app.args.tls or app.args.tls_ca)
    url = f"{'https' if tls else 'http'}://{host}:{port}/"
    signed_in = url + (f"?token={quote(app.args.token, safe='')}" if app.args.token else "")
    opened = False
    if not app.json and not app.args.no_open:
        opened = webbrowser.open(signed_in)

    def human() -> None:
        print(signed_in)
        if not opened:
            print("open that address in a browser on this machine; it carries your token")

    app.emit({"url": url, "signed_in_url": signed_in}, human)
    return 0


def diagnostics(app: App) -> int:
    req = system_pb2.RunDiagnosticsRequest(
        seconds=app.args.seconds, matrix_size=app.args.matrix_size
    )
    job = app.client.call(app.client.system.RunDiagnostics, req)

    def human(r: Any) -> None:
        print(
            f"device {r.device} ({r.device_name}): {r.gflops:.1f} GFLOP/s over {r.iterations} "
            f"multiplies in {r.seconds:.1f} s"
        )
        print(
            f"torch {r.torch_version}, onnxruntime {r.onnxruntime_version}: "
            f"{', '.join(r.onnxruntime_providers)}"
        )

    return app.run_job(job, human)


def inspect(app: App) -> int:
    req = preprocess_pb2.InspectRasterRequest(
        path=absolute(app.args.path), statistics=app.args.stats
    )
    job = app.client.call(app.client.preprocess.InspectRaster, req)

    def human(r: Any) -> None:
        i = r.info
        print(f"{i.path}: {i.driver} {i.width} x {i.height}, {i.band_count} band(s) {i.dtype}")
        print(f"crs: {i.crs or 'none'}; nodata: {i.nodata if i.HasField('nodata') else 'none'}")
        if any(i.band_names):
            print(f"bands: {', '.join(n or '-' for n in i.band_names)}")
        for s in r.statistics:
            print(
                f"band {s.band}: min {s.min:g} max {s.max:g} mean {s.mean:.4g} std {s.std:.4g} "
                f"({s.valid_pixels} valid)"
            )

    return app.run_job(job, human)
