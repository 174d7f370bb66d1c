"""A daemon SIGKILLed while its worker predicts: the orphaned worker stops at once, so the job
the next daemon marks FAILED "interrupted" left no output behind (none half done, none whole)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from sipapi.v1 import common_pb2, job_pb2, prediction_pb2

from sipd.synthetic import make_scene
from tests.support import MODEL_BANDS, MODEL_CLASSES, MODEL_PROJECT, Sipd, install_model, wait_for

STATE = common_pb2.Job.State


def _job(d: Sipd, name: str) -> common_pb2.Job:
    return d.client.jobs.GetJob(job_pb2.GetJobRequest(name=name), timeout=10)


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.slow  # two daemon starts around a multi-second prediction
def test_orphaned_worker_stops_before_publishing_outputs(
    tmp_path: Path, trained_model: Path
) -> None:
    install_model(trained_model, tmp_path / "state", MODEL_PROJECT)
    scene = tmp_path / "big.tif"
    make_scene(scene, width=2048, height=2048, seed=1)
    out = tmp_path / "big_labels.tif"
    d = Sipd(tmp_path / "state", roots=[tmp_path]).start()
    classes = ",".join(c["name"] for c in MODEL_CLASSES)
    d.sipctl("project", "create", MODEL_PROJECT, "--classes", classes,
             "--bands", ",".join(MODEL_BANDS))  # fmt: skip
    job = d.client.prediction.Predict(
        prediction_pb2.PredictRequest(
            model=f"projects/{MODEL_PROJECT}/models/1", inputs=[str(scene)], output=str(out),
            confidence=True, quicklook=True, batch_size=1,
        ),
        timeout=30,
    )  # fmt: skip
    # Mid-prediction: tiles are being written into the scratch file beside the output.
    wait_for(lambda: 0 < _job(d, job.name).progress.fraction < 0.5, 120, interval=0.02,
             what="the prediction under way")  # fmt: skip
    worker = d.sipctl_json("status")["worker"]["pid"]
    assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    # What the killed job was writing: its scratch files, beside the outputs.
    scratch = [p for p in tmp_path.iterdir() if p.name.startswith(".big_") and "scratch" in p.name]
    killed = time.monotonic()
    wait_for(lambda: _gone(worker), 10, interval=0.01, what="the orphaned worker's exit")
    # A pidfd wakes the worker when the daemon dies: well under the old 0.5 s poll, with
    # slack for a loaded machine.
    assert time.monotonic() - killed < 2.0
    d.start()
    try:
        final = _job(d, job.name)
        assert final.state == STATE.FAILED and "interrupted" in final.error
        # "interrupted" is true: nothing was published, and nothing appears later.
        time.sleep(1.0)
        published = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("big_"))
        assert published == [], published
        # The restarted daemon removed what the interrupted job left half-written.
        assert scratch and not any(p.exists() for p in scratch), scratch
        leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".big_"))
        assert leftovers == [], leftovers
    finally:
        d.stop()
