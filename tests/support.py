"""Test harness: a real sipd process on an ephemeral port, real gRPC, sipctl as a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
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
        studio: bool = False,
        listen: str = "127.0.0.1:0",
        tls_ca: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.listen = listen
        # With TLS on (extra_args --tls-cert/--tls-key), the CA the harness's client trusts.
        self.tls_ca = tls_ca
        # The owner's token (DATA_DIR/sipd.token), read after the start; the harness's client
        # sends it. sipctl subprocesses are not given it: they find it by themselves.
        self.token = ""
        # (certificate, key) the harness's client presents when the daemon wants mTLS.
        self.client_cert: tuple[Path, Path] | None = None
        # Prometheus endpoint on a free port (its address in `metrics_address`); off by default.
        self.metrics = metrics
        self.metrics_address = ""
        # The studio (web page) on a free port (its address in `studio_address`); off by default.
        self.studio = studio
        self.studio_address = ""
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
            self.listen,
            "--data-dir",
            str(self.data_dir),
            "--metrics-listen",
            "127.0.0.1:0" if self.metrics else "",
            "--studio-listen",
            "127.0.0.1:0" if self.studio else "",
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
        host, _, port = address_file.read_text().strip().rpartition(":")
        # A wildcard listen is dialed on loopback (a TLS certificate names 127.0.0.1, not 0.0.0.0).
        wildcard = host in ("0.0.0.0", "[::]", "::")
        self.address = f"127.0.0.1:{port}" if wildcard else f"{host}:{port}"
        self.token = (self.data_dir / "sipd.token").read_text().strip()
        if self.metrics:
            self.metrics_address = (self.data_dir / "sipd.metrics_address").read_text().strip()
        if self.studio:
            self.studio_address = (self.data_dir / "sipd.studio_address").read_text().strip()
        self._client = None
        self.wait_worker()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(
                self.address,
                timeout=30,
                token=self.token,
                tls_ca=str(self.tls_ca) if self.tls_ca else None,
                tls_cert=str(self.client_cert[0]) if self.client_cert else None,
                tls_key=str(self.client_cert[1]) if self.client_cert else None,
            )
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
        # No SIPCTL_TOKEN: the owner's sipctl must find the token with no flags.
        env = {k: v for k, v in os.environ.items() if k not in ("SIPCTL_ADDRESS", "SIPCTL_TOKEN")}
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


# The shared trained model (see `train_tiny_model`): project, bands and classes.
MODEL_PROJECT = "wp"
MODEL_BANDS = ["B1", "B2", "B3", "B4"]
MODEL_CLASSES = [
    {"value": 1, "name": "forest", "color": "#228b22"},
    {"value": 2, "name": "water", "color": "#1e90ff"},
    {"value": 3, "name": "urban", "color": "#808080"},
]
MODEL_TILE = 64  # the folder's default tile edge: one tile per 64x64 scene of the watch tests


def train_tiny_model(folder: Path) -> Path:
    """A real model version trained on one synthetic scene (seconds on one CPU thread).

    Tests that only need *a* trained model get it once per session from the `trained_model`
    fixture (tests/conftest.py) and a copy of their own through `install_model`; tests of
    training itself train their own.
    """
    import torch

    from sipd.dataset import prepare_dataset
    from sipd.progress import JobContext
    from sipd.synthetic import burn_rois, make_scene, sample_rois, write_mask
    from sipd.training import train_model

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        path = folder / "train.tif"
        truth = make_scene(path, width=128, height=128, seed=11)
        rois = sample_rois(
            truth, seed=11, n_lines_per_class=2, n_points_per_class=4,
            splits={"train": 0.8, "val": 0.2},
        )  # fmt: skip
        masks = {}
        for split in ("train", "val"):
            masks[split] = str(folder / f"train_{split}.tif")
            write_mask(masks[split], burn_rois(rois, truth.shape, split=split), like=path)
        scenes = [{"name": "train", "path": str(path), "masks": masks}]
        prepare_dataset(
            scenes, out_dir=folder / "ds", bands=MODEL_BANDS, chip_size=32, ctx=JobContext()
        )
        result = train_model(
            dataset_dir=folder / "ds", models_root=folder / "models", project=MODEL_PROJECT,
            classes=MODEL_CLASSES, bands=MODEL_BANDS, epochs=2, seed=0, tile_size=MODEL_TILE,
            # Without the filter bank: its 21 px would push the halo (44) past what
            # one 64 px tile per scene allows; serving is what these tests check.
            arch="unet", arch_params={"base_channels": 4, "depth": 2, "bank_sigmas": ()},
            batch_size=8,
            ctx=JobContext(),
        )  # fmt: skip
    finally:
        torch.set_num_threads(before)
    return Path(result["model_dir"])


def import_sampled_rois(
    d: Sipd, project: str, scene: str, rois: list[dict[str, Any]], classes: list[str]
) -> None:
    """ROIs from sipd.synthetic.sample_rois as one GeoJSON file in pixel coordinates,
    imported in one `sipctl roi import` call (class k is classes[k - 1])."""
    features = [
        {
            "type": "Feature",
            "properties": {"class": classes[r["class_value"] - 1], "split": r["split"]},
            "geometry": {"type": "Point", "coordinates": list(r["coords"][0])}
            if r["kind"] == "point"
            else {"type": "LineString", "coordinates": [list(c) for c in r["coords"]]},
        }
        for r in rois
    ]
    path = d.roots[0] / f"{project}_{scene}.geojson"
    path.write_text(
        json.dumps({"type": "FeatureCollection", "sipd:coordinates": "pixel", "features": features})
    )
    d.sipctl("roi", "import", project, str(path), "--scene", scene)


def install_model(model: Path, data_dir: Path, project: str, version: int = 1) -> Path:
    """A fresh copy of a model folder as version `version` of `project` in a daemon's data dir
    (models/README.md: a copied folder is a model version there at once). The source stays
    untouched, so tests that re-export or delete versions cannot disturb each other."""
    dest = data_dir / "models" / project / str(version)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(model, dest)
    return dest


def assert_cog(path: Path | str) -> None:
    """A Cloud Optimized GeoTIFF by rio-cogeo's validator (tiling, overviews, IFD and data
    order), not by the LAYOUT tag, which only says which driver wrote the file."""
    from rio_cogeo.cogeo import cog_validate

    is_valid, errors, warnings = cog_validate(str(path), quiet=True)
    assert is_valid and not errors, f"{path} is not a valid COG: {errors} {warnings}"


def wait_job(d: Sipd, name: str, timeout: float = 300) -> Any:
    """The job `name` once final (SUCCEEDED, FAILED or CANCELLED), as GetJob returns it."""
    from sipapi.v1 import common_pb2, job_pb2

    final = (common_pb2.Job.SUCCEEDED, common_pb2.Job.FAILED, common_pb2.Job.CANCELLED)

    def finished() -> Any:
        job = d.client.jobs.GetJob(job_pb2.GetJobRequest(name=name))
        return job if job.state in final else None

    return wait_for(finished, timeout, interval=0.1, what=f"job {name}")


def preprocess_attempt(d: Sipd, **request: Any) -> tuple[str, str]:
    """(status code name, message) of a Preprocess (PreprocessRequest fields) refused by
    the RPC or failed as a job; a job that succeeds fails the test."""
    from sipapi.v1 import common_pb2, preprocess_pb2

    try:
        job = d.client.preprocess.Preprocess(preprocess_pb2.PreprocessRequest(**request))
    except grpc.RpcError as exc:
        return exc.code().name, exc.details() or ""
    done = wait_job(d, job.name)
    assert done.state == common_pb2.Job.FAILED, (
        f"expected a failure, got {common_pb2.Job.State.Name(done.state)}"
    )
    return done.error_code, done.error


def refusal_problems(
    d: Sipd,
    folder: Path,
    words: str,
    codes: tuple[str, ...] = ("INVALID_ARGUMENT",),
    **request: Any,
) -> list[str]:
    """What is wrong with how one bad Preprocess (PreprocessRequest fields, output in
    `folder`) was refused: it must fail with one of `codes`, its message naming `words`,
    and leave nothing in `folder`. Empty when all is right."""
    folder.mkdir(parents=True)
    code, message = preprocess_attempt(d, output=str(folder / "out.tif"), **request)
    problems = []
    if code not in codes or words not in message:
        problems.append(f"{folder.name}: {code} {message!r} (wanted {codes} naming {words!r})")
    left = sorted(p.name for p in folder.iterdir())
    if left:
        problems.append(f"{folder.name}: left {left}")
    return problems


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


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder`, by relative path (what "unchanged" means)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ../shared/fixtures beside the checkout: real sensor product metadata (see its
# SOURCES.md). CI always has it; a checkout without it skips those tests, saying so.
SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def shared_fixture(rel: str) -> Path:
    """A path under ../shared/fixtures; skips the calling test when it is missing."""
    import pytest

    path = SHARED_FIXTURES / rel
    if not path.exists():
        pytest.skip(f"needs ../shared/fixtures/{rel} (real product metadata); not found at {path}")
    return path
