"""The ray executor against the local one, side by side (`sipctl bench ray`).

On this machine it starts a local Ray cluster (one node, `--cpus` CPUs, on
127.0.0.1, stopped at the end) and, through daemons of its own, predicts the
same N scenes (generated, SIZE x SIZE, 4 bands; the default architecture with
random weights, as `sipctl bench`) four ways, one thread per worker or actor:
the local executor; Ray with 1 actor; Ray with 2 actors; and, for reference,
the local executor with every core. Each is warmed up with one scene first
(sessions loaded, actors started), then timed over the N scenes from the
job's own start and end. Reported: seconds, scenes per minute, seconds per
scene, the Ray path's overhead per scene against the local executor (1 actor
vs the 1-thread worker), and the scaling efficiency T1 / (2 T2).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sipd.bench.quality_daemon import BenchDaemon
from sipd.bench.run_record import load_average, machine, write_report
from sipd.bench.throughput import MODEL_DIR, prepare

PROJECT = "bench"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sipd.bench.ray_scaling", description=__doc__)
    p.add_argument("--work", default="bench-data/ray", help="scenes, model and daemon state")
    p.add_argument("--scenes", type=int, default=4, help="scenes per run (default 4)")
    p.add_argument("--size", type=int, default=2000, help="scene edge (default 2000)")
    p.add_argument("--cpus", type=int, default=2, help="CPUs the Ray node offers (default 2)")
    p.add_argument("--json", dest="json_path", default="", help="where to write the figures")
    a = p.parse_args(argv)
    if a.scenes < 2:
        p.error("--scenes must be at least 2 (the 2-actor run needs two)")
    work = Path(a.work).resolve()
    made = prepare(work, a.size, 4, 4)
    scenes = []
    for i in range(a.scenes + 1):  # one more: the warm-up scene
        path = work / f"s{i}_{a.size}.tif"
        if not path.exists():
            shutil.copyfile(made["scene"], path)
        scenes.append(path)
    load_before = load_average()
    runs: dict[str, dict[str, Any]] = {}
    with LocalRayCluster(a.cpus) as address:
        plans = [
            ("local, 1 thread", {"SIPD_JOBS__THREADS": "1"}),
            ("ray, 1 actor", _ray_env(address, 1)),
            ("ray, 2 actors", _ray_env(address, 2)),
            (f"local, {a.cpus} threads", {"SIPD_JOBS__THREADS": str(a.cpus)}),
        ]
        for name, env in plans:
            runs[name] = _run(work, name, env, scenes)
            print(f"{name}: {runs[name]['seconds']:.1f} s", file=sys.stderr)
    local1, ray1, ray2 = (runs[k]["seconds"] for k in ("local, 1 thread", "ray, 1 actor",
                                                        "ray, 2 actors"))  # fmt: skip
    n = a.scenes
    report = {
        "command": shlex.join(["sipctl bench ray", *(argv or sys.argv[1:])]),
        "scenes": n, "size": a.size, "bands": 4, "ray_node_cpus": a.cpus,
        "machine": machine(), "load_average_before": load_before,
        "load_average_after": load_average(),
        "runs": runs,
        "overhead_per_scene_s": round((ray1 - local1) / n, 3),
        "overhead_pct": round(100 * (ray1 - local1) / local1, 1),
        "scaling_efficiency": round(ray1 / (2 * ray2), 3),
    }  # fmt: skip
    path = write_report(report, a.json_path, work, "ray")
    _print(report)
    print(f"JSON: {path}")
    return 0


def _ray_env(address: str, actors: int) -> dict[str, str]:
    return {"SIPD_JOBS__THREADS": "1", "SIPD_EXECUTOR": "ray", "SIPD_RAY__ADDRESS": address,
            "SIPD_RAY__ACTORS": str(actors), "SIPD_RAY__CPUS_PER_ACTOR": "1"}  # fmt: skip


def _run(work: Path, name: str, env: dict[str, str], scenes: list[Path]) -> dict[str, Any]:
    state = work / "state" / name.replace(" ", "").replace(",", "-")
    shutil.rmtree(state, ignore_errors=True)
    out = work / "out" / state.name
    shutil.rmtree(out, ignore_errors=True)
    (out / "warm").mkdir(parents=True)
    (out / "timed").mkdir()
    with BenchDaemon(state, [work], env=env) as d:
        target = state / "models" / PROJECT / "1"
        shutil.copytree(work / MODEL_DIR, target)
        # Warm: the session loaded, the actors started and their sessions loaded.
        d.job("predict", PROJECT, *[str(s) for s in scenes[:2]], "-o", str(out / "warm"))
        job = d.job("predict", PROJECT, *[str(s) for s in scenes[1:]], "-o", str(out / "timed"))
    seconds = _seconds(job)
    n = len(scenes) - 1
    return {
        "seconds": round(seconds, 2),
        "scenes_per_minute": round(60 * n / seconds, 2),
        "seconds_per_scene": round(seconds / n, 2),
        "provider": job.get("predict", {}).get("provider", ""),
    }


def _seconds(job: dict[str, Any]) -> float:
    from datetime import datetime

    def when(text: str) -> float:
        # RFC 3339 with nanoseconds (protobuf's JSON); fromisoformat takes microseconds.
        head, _, frac = text.rstrip("Z").partition(".")
        return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()

    return when(job["end_time"]) - when(job["start_time"])


class LocalRayCluster:
    """A Ray cluster on 127.0.0.1 for a benchmark or a test: a head and `nodes - 1` worker
    nodes of `cpus` CPUs each (`ray start`), stopped by `stop()` without touching any
    other Ray process of this machine (`ray stop` would end them all)."""

    MARK = "SIPD_LOCAL_RAY"

    def __init__(self, cpus: int, nodes: int = 1) -> None:
        self.cpus = cpus
        self.nodes = nodes
        self.ray = str(Path(sys.executable).with_name("ray"))
        self.temp = ""
        self.address = ""

    def start(self) -> str:
        # Short: Ray's sockets live in the temp dir. The mark in the environment is
        # inherited by every process of the cluster, renamed agents and workers too.
        self.temp = tempfile.mkdtemp(prefix="sipd-ray-", dir="/tmp")
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", self.MARK: self.temp}
        port = _free_port()
        common = [f"--num-cpus={self.cpus}", "--node-ip-address=127.0.0.1",
                  "--disable-usage-stats", f"--temp-dir={self.temp}"]  # fmt: skip
        try:
            for i in range(self.nodes):
                where = (["--head", f"--port={port}", "--include-dashboard=false"] if i == 0
                         else [f"--address=127.0.0.1:{port}"])  # fmt: skip
                subprocess.run([self.ray, "start", *where, *common, *_fixed_ports()],
                               check=True, capture_output=True, env=env, timeout=180)  # fmt: skip
        except BaseException:
            self.stop()
            raise
        self.address = f"127.0.0.1:{port}"
        return self.address

    def stop(self, timeout: float = 6.0) -> None:
        """End every process of this cluster, the TERM then the KILL signal."""
        if not self.temp:
            return
        mark = f"{self.MARK}={self.temp}".encode()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            # Looked up again before each signal: a pid that ended may be someone else's now.
            pids = _marked(mark, self.temp)
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + timeout / 2
            while time.monotonic() < deadline and _marked(mark, self.temp):
                time.sleep(0.2)
        if self.temp:
            shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _fixed_ports() -> list[str]:
    # Every port a node otherwise opens at a fixed number, so two clusters never meet.
    return [
        f"--ray-client-server-port={_free_port()}",
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
    ]


def _marked(mark: bytes, folder: str) -> list[int]:
    """Ray processes of this user whose environment holds `mark` or that hold a file open
    in `folder` (the agents a node starts get a fresh environment, but log into it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if b"ray" not in (entry / "cmdline").read_bytes():
                continue  # not a Ray process (a shell in the folder, a log reader)
            environ = (entry / "environ").read_bytes()
            ours = mark in environ.split(b"\0") or any(
                os.readlink(fd).startswith(folder + "/") for fd in (entry / "fd").iterdir()
            )
        except OSError:
            continue  # gone, or another user's
        if ours:
            pids.append(int(entry.name))
    return pids


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _print(report: dict[str, Any]) -> None:
    print("| run | seconds | scenes/min | s/scene |")
    print("|---|---|---|---|")
    for name, r in report["runs"].items():
        print(f"| {name} | {r['seconds']} | {r['scenes_per_minute']} | {r['seconds_per_scene']} |")
    m = report["machine"]
    print(f"\n{report['scenes']} scenes of {report['size']} x {report['size']} x 4 bands, the "
          f"default net (random weights); Ray path overhead {report['overhead_pct']}% "
          f"({report['overhead_per_scene_s']} s per scene, 1 actor vs the 1-thread worker); "
          f"scaling efficiency 1 -> 2 actors {report['scaling_efficiency']}; "
          f"{m['cores']} core(s) {m['cpu_model']}, load {report['load_average_before'][0]:.2f}"
          f" -> {report['load_average_after'][0]:.2f}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
