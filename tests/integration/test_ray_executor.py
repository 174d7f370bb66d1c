"""The ray executor end to end: a local Ray cluster (a head and a worker node, 1 CPU each,
on 127.0.0.1) started and stopped by the test, real daemons, real scenes, real kills."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from sipd.bench.ray_scaling import LocalRayCluster
from sipd.synthetic import make_scene, sample_rois
from tests.integration.watch_support import (
    check_output_set,
    copy_like,
    make_scenes,
    output_sets,
    start_daemon,
    succeeded_inputs,
    watch_show,
)
from tests.support import (
    MODEL_BANDS,
    MODEL_CLASSES,
    MODEL_PROJECT,
    Sipd,
    import_sampled_rois,
    install_model,
    wait_for,
    wait_job,
)

pytestmark = pytest.mark.slow  # a Ray cluster of two nodes and its actors


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    with LocalRayCluster(cpus=1, nodes=2) as address:
        yield address


def _ray_daemon(root: Path, address: str, model: Path, name: str = "ray", **kw: Any) -> Sipd:
    d = Sipd(root / f"state_{name}", roots=[root],
             extra_args=["--executor", "ray", "--ray-address", address], **kw).start()  # fmt: skip
    install_model(model, d.data_dir, MODEL_PROJECT)
    return d


def _actor_pids() -> list[int]:
    found = subprocess.run(["pgrep", "-f", "ray::PredictActor"], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def _writing_actor(folder: Path) -> int | None:
    """The actor process holding a scratch file in `folder` open (mid-scene), if any."""
    for pid in _actor_pids():
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
            targets = [os.readlink(fd) for fd in fds]
        except OSError:
            continue
        if any(t.startswith(f"{folder}/.") and ".scratch" in t for t in targets):
            return pid
    return None


def _scenes(folder: Path, prefix: str, n: int, size: tuple[int, int], seed: int) -> list[str]:
    paths = []
    for i in range(n):
        make_scene(folder / f"{prefix}{i}.tif", width=size[0], height=size[1], seed=seed + i)
        paths.append(str(folder / f"{prefix}{i}.tif"))
    return paths


def _daemon(kind: str, root: Path, cluster: str, model: Path) -> Sipd:
    """A daemon with the shared model: the ray executor on `cluster`, or the local one."""
    if kind == "ray":
        return _ray_daemon(root, cluster, model)
    d = Sipd(root / "state_local", roots=[root]).start()
    install_model(model, d.data_dir, MODEL_PROJECT)
    return d


def _labels(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def test_labels_on_ray_are_the_local_labels(
    cluster: str, trained_model: Path, tmp_path: Path
) -> None:
    scenes = _scenes(tmp_path, "s", 3, (700, 500), seed=30)
    outputs = {}
    for name in ("local", "ray"):
        out = tmp_path / f"out_{name}"
        out.mkdir()
        d = _daemon(name, tmp_path, cluster, trained_model)
        try:
            shown = json.loads(d.sipctl("--json", "predict", MODEL_PROJECT, *scenes, "-o",
                                        str(out), "--confidence").stdout)  # fmt: skip
            jobs = json.loads(d.sipctl("--json", "jobs", "list").stdout)["jobs"]
            assert [j["state"] for j in jobs] == ["SUCCEEDED"]
            outputs[name] = out
            assert len(shown["scenes"]) == 3
        finally:
            d.stop()
    for i in range(3):
        for kind in ("labels", "labels_confidence"):
            local = _labels(outputs["local"] / f"s{i}_{kind}.tif")
            assert np.array_equal(local, _labels(outputs["ray"] / f"s{i}_{kind}.tif")), (i, kind)


def test_a_test_job_on_ray_reports_what_the_local_worker_reports(
    cluster: str, trained_model: Path, tmp_path: Path
) -> None:
    truth = make_scene(tmp_path / "t.tif", width=400, height=300, seed=41)
    rois = sample_rois(truth, seed=41, n_lines_per_class=3, n_points_per_class=6,
                       splits={"test": 1.0})  # fmt: skip
    reports = {}
    for name in ("local", "ray"):
        d = _daemon(name, tmp_path, cluster, trained_model)
        try:
            d.sipctl("project", "create", MODEL_PROJECT, "--classes",
                     ",".join(c["name"] for c in MODEL_CLASSES), "--bands",
                     ",".join(MODEL_BANDS))  # fmt: skip
            d.sipctl("scene", "add", MODEL_PROJECT, str(tmp_path / "t.tif"), "--name", "t")
            import_sampled_rois(d, MODEL_PROJECT, "t", rois,
                                [c["name"] for c in MODEL_CLASSES])  # fmt: skip
            reports[name] = d.sipctl_json("test", MODEL_PROJECT, "--model", "1")
        finally:
            d.stop()
    local, ray = (reports[k] for k in ("local", "ray"))
    assert local["pixels"] > 0
    for key in ("confusion_matrix", "overall_accuracy", "kappa", "pixels"):
        assert ray[key] == local[key], key


def test_a_killed_actor_reruns_its_scene_and_every_output_is_written_once(
    cluster: str, trained_model: Path, tmp_path: Path
) -> None:
    scenes = _scenes(tmp_path, "k", 6, (1400, 1400), seed=50)
    out = tmp_path / "out"
    out.mkdir()
    d = _ray_daemon(tmp_path, cluster, trained_model)
    try:
        job = json.loads(d.sipctl("--json", "predict", MODEL_PROJECT, *scenes, "-o", str(out),
                                  "--detach").stdout)["job"]  # fmt: skip

        def one_done() -> bool:
            return any(out.glob("k*_labels.tif"))

        wait_for(one_done, timeout=120, interval=0.05, what="a first scene written")
        # An actor in the middle of a scene: it holds that scene's scratch file open.
        victim = wait_for(lambda: _writing_actor(out), timeout=60, interval=0.02,
                          what="an actor writing a scene")  # fmt: skip
        written = {p.name: p.stat().st_mtime_ns for p in out.glob("k*_labels.tif")}
        os.kill(victim, signal.SIGKILL)  # a worker process of the cluster, mid-scene
        wait_job(d, job, timeout=300)
        shown = json.loads(d.sipctl("--json", "jobs", "show", job).stdout)
        assert shown["state"] == "SUCCEEDED", shown.get("error")
    finally:
        d.stop()
    assert "its Ray actor died; running it again" in d.log()  # the scene did run again
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"k{i}_labels.tif" for i in range(6))  # no temporaries left
    for name, stamp in written.items():  # finished before the kill: never written again
        assert (out / name).stat().st_mtime_ns == stamp, name
    assert succeeded_inputs(d.data_dir / "sipd.db") == {s: 1 for s in scenes}


def test_cancel_stops_the_actors_work(cluster: str, trained_model: Path, tmp_path: Path) -> None:
    scenes = _scenes(tmp_path, "c", 6, (1400, 1400), seed=70)
    out = tmp_path / "out"
    out.mkdir()
    # A long grace: the job must end by the executor's own cancel, not by the engine
    # killing the worker once the grace is over.
    d = _ray_daemon(tmp_path, cluster, trained_model,
                    env={"SIPD_JOBS__CANCEL_GRACE_SECONDS": "120"})  # fmt: skip
    try:
        job = json.loads(d.sipctl("--json", "predict", MODEL_PROJECT, *scenes, "-o", str(out),
                                  "--detach").stdout)["job"]  # fmt: skip
        wait_for(lambda: any(out.glob("c*_labels.tif")), timeout=120, interval=0.05,
                 what="a first scene written")  # fmt: skip
        started = time.monotonic()
        d.sipctl("jobs", "cancel", job)
        wait_job(d, job, timeout=60)
        shown = json.loads(d.sipctl("--json", "jobs", "show", job).stdout)
        assert shown["state"] == "CANCELLED"
        assert time.monotonic() - started < 20  # well within the grace period
        wait_for(lambda: not _actor_pids(), timeout=30, what="the pool's actors gone")
        # The executor stopped the job itself: the engine did not have to kill the worker.
        assert json.loads(d.sipctl("--json", "status").stdout)["worker"]["restarts"] == 0
    finally:
        d.stop()
    labels = sorted(p.name for p in out.iterdir())
    assert labels and len(labels) < 6  # what finished stays; nothing half written
    assert all(n.endswith("_labels.tif") for n in labels)


def test_an_unreachable_cluster_fails_the_job_with_its_address(
    trained_model: Path, tmp_path: Path
) -> None:
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    make_scene(tmp_path / "u.tif", width=64, height=64, seed=1)
    d = _ray_daemon(tmp_path, address, trained_model, name="nowhere")
    try:
        result = d.sipctl("predict", MODEL_PROJECT, str(tmp_path / "u.tif"), "-o",
                          str(tmp_path / "u_labels.tif"), check=False)  # fmt: skip
        assert result.returncode != 0
        assert address in result.stderr and "does not answer" in result.stderr
        job = json.loads(d.sipctl("--json", "jobs", "list").stdout)["jobs"][0]
        assert job["state"] == "FAILED" and job["error_code"] == "UNAVAILABLE"
        assert not (tmp_path / "u_labels.tif").exists()
        assert d.sipctl("status").returncode == 0
    finally:
        d.stop()


def test_a_watched_inbox_of_50_scenes_on_ray_gives_each_output_once(
    cluster: str, trained_model: Path, tmp_path: Path
) -> None:
    sources = make_scenes(tmp_path / "staging", 50)
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    env = {"SIPD_EXECUTOR": "ray", "SIPD_RAY__ADDRESS": cluster}
    d = start_daemon(tmp_path, trained_model, env=env)
    try:
        d.sipctl("watch", "add", str(inbox), "--project", "wp", "--out", str(outbox),
                 "--name", "bulk")  # fmt: skip
        rng = random.Random(3)
        for src in sources:
            copy_like(src, inbox, rng.choice(["plain", "rsync", "part"]), rng)
        wait_for(lambda: watch_show(d, "bulk")["done"] == 50, timeout=300, interval=0.5,
                 what="50 scenes done")  # fmt: skip
        sets = output_sets(outbox)
        assert sorted(sets) == sorted(src.stem for src in sources)
        for stem in sets:
            check_output_set(outbox, stem)
    finally:
        d.stop()
    done = succeeded_inputs(d.data_dir / "sipd.db")
    assert sorted(done) == sorted(str(inbox / s.name) for s in sources)
    assert set(done.values()) == {1}
