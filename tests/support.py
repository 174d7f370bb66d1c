"""Test harness: a real sipd process on an ephemeral port, real gRPC, sipctl as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import rasterio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rasterio.transform import from_origin
from sipctl.client import Client


class Sipd:
    """One daemon process with its own data dir, reachable at `address`."""

    def __init__(
        self,
        data_dir: Path,
        roots: list[Path],
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        metrics: bool = False,
    ) -> None:
        self.data_dir = data_dir
        # Prometheus endpoint on a free port (its address in `metrics_address`); off by default.
        self.metrics = metrics
        self.metrics_address = ""
        self.roots = roots
        self.extra_args = extra_args or []
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.address = ""
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self._client: Client | None = None

    def start(self, timeout: float = 30.0) -> Sipd:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        address_file = self.data_dir / "sipd.address"
        address_file.unlink(missing_ok=True)
        args = [
            sys.executable,
            "-m",
            "sipd",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(self.data_dir),
            "--metrics-listen",
            "127.0.0.1:0" if self.metrics else "",
        ]
        for root in self.roots:
            args += ["--allowed-root", str(root)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPD_")}
        env.update({"SIPD_JOBS__THREADS": "2", **self.env})
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(args + self.extra_args, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + timeout
        while not address_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"sipd exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"sipd did not start:\n{self.log()}")
            time.sleep(0.05)
        self.address = address_file.read_text().strip()
        if self.metrics:
            self.metrics_address = (self.data_dir / "sipd.metrics_address").read_text().strip()
        self._client = None
        self.wait_worker()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.address, timeout=30)
        return self._client

    def channel(self) -> grpc.Channel:
        return self.client.channel

    def health(self, service: str = "") -> int:
        stub = health_pb2_grpc.HealthStub(self.channel())
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status

    def wait_worker(self, timeout: float = 60.0) -> None:
        from sipapi.v1 import system_pb2

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.client.system.GetStatus(system_pb2.GetStatusRequest(), timeout=10)
            if status.worker.state == system_pb2.WorkerStatus.State.IDLE:
                return
            time.sleep(0.1)
        raise RuntimeError("the worker did not become idle")

    def sipctl(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "SIPCTL_ADDRESS"}
        result = subprocess.run(
            [sys.executable, "-m", "sipctl", "--address", self.address, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"sipctl {' '.join(args)} exited {result.returncode}\nstdout: {result.stdout}\n"
                f"stderr: {result.stderr}\ndaemon log tail:\n{self.log()[-3000:]}"
            )
        return result

    def sipctl_json(self, *args: str) -> Any:
        return json.loads(self.sipctl("--json", *args).stdout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self._client is not None:
            self._client.close()
            self._client = None
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def write_raster(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = "EPSG:32633",
    nodata: float | None = None,
    descriptions: list[str] | None = None,
    pixel_size: float = 10.0,
) -> Path:
    """A tiled GeoTIFF of `data` (bands, rows, cols)."""
    bands, height, width = data.shape
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": bands,
        "dtype": data.dtype.name,
        "transform": from_origin(500000, 7000000, pixel_size, pixel_size),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    if crs:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        for i, name in enumerate(descriptions or []):
            ds.set_band_description(i + 1, name)
    return path


def wait_for(
    predicate: Any, timeout: float = 60.0, interval: float = 0.1, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")
