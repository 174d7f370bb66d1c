"""sipd.prometheus on a real store and job engine: names follow Prometheus conventions, values
come from events and the store, and deploy/ asks only for metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sipd.contracts.job_record import JobRecord
from sipd.contracts.jobs import (
    ModelRef,
    PredictItem,
    PredictParams,
    PredictResult,
    ScenePrediction,
)
from sipd.contracts.worker_settings import WorkerSettings
from sipd.jobs.engine import JobEngine
from sipd.prometheus import Metrics
from sipd.store import Store
from sipd.watch.queue import WatchQueue
from sipd.watch.spec import WatchSpec

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _metrics(tmp_path: Path) -> tuple[Metrics, Store]:
    store = Store(tmp_path / "sipd.db")
    engine = JobEngine(store, device="cpu", queue_limit=10, cancel_grace_seconds=1,
                       worker_settings=WorkerSettings())  # fmt: skip
    queue = WatchQueue(store)
    queue.create_watch(WatchSpec(id="w1", inbox="/in", outbox="/out", project="p"))
    queue.offer("w1", "/in/a.tif", 1, 1, limit=10)
    queue.offer("w1", "/in/b.tif", 1, 2, limit=10)
    rows = queue.claim("w1", 1, 1e12)
    queue.attach([rows[0]["id"]], job_id=1, model="m")
    queue.mark_done(rows[0]["id"], {})

    def stats() -> dict[str, dict[str, int]]:
        # The scanner's side (WatchManager.stats): settling units, held ones, passes, rescans.
        scanner = {"PENDING": 3, "AWAITING_SENTINEL": 2, "PASSES": 40, "RESCANS": 5}
        return {w: {**c, **scanner} for w, c in queue.counts().items()}

    m = Metrics(store, device="cpu", engine_status=engine.status, watch_stats=stats,
                watch_queue_limit=10)  # fmt: skip
    return m, store


def _predict_job(store: Store, source: str, pixels: list[int], finish: bool = True) -> JobRecord:
    """A real job row of type predict, typed as the engine hands it to listeners."""
    ref = ModelRef(project="p", version=1, path="/models/p/1")
    item = PredictItem(input="/in/a.tif", output="/out/a.tif")
    params = PredictParams(model=ref, items=[item] * max(1, len(pixels)))
    job_id = store.insert_job("predict", "p", params.model_dump(mode="json"), source)
    store.mark_running(job_id)
    if finish:
        scenes = [
            ScenePrediction(input="/in/a.tif", output="/out/a.tif", width=64, height=64,
                            pixels=n, class_pixels={}, class_area_m2={}, seconds=1.0,
                            mpx_per_s=1.0)  # fmt: skip
            for n in pixels
        ]
        result = PredictResult(project="p", version=1, scenes=scenes, provider="cpu", seconds=1.0)
        store.finish_job(job_id, "SUCCEEDED", result=result.model_dump(mode="json"))
    row = store.get_job(job_id)
    assert row is not None
    return JobRecord.from_row(row)


def _samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(m.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_values_come_from_the_store_and_from_job_events(tmp_path: Path) -> None:
    m, store = _metrics(tmp_path)
    m.on_job(_predict_job(store, "watches/w1", [4096, 100]))
    m.scene_done("w1", 0.25, 3.0)
    m.scene_retried("w1")
    s = _samples(m)
    assert s[("sipd_watch_scenes_total", (("outcome", "done"), ("watch", "w1")))] == 1
    assert s[("sipd_watch_scenes_total", (("outcome", "failed"), ("watch", "w1")))] == 0
    assert s[("sipd_watch_queue_depth", (("watch", "w1"),))] == 1
    assert s[("sipd_watch_files_pending", (("watch", "w1"),))] == 3
    assert s[("sipd_watch_files_awaiting_sentinel", (("watch", "w1"),))] == 2
    assert s[("sipd_watch_scanner_passes_total", (("watch", "w1"),))] == 40
    assert s[("sipd_watch_rescans_total", (("watch", "w1"),))] == 5
    assert s[("sipd_watch_queue_limit", ())] == 10
    assert s[("sipd_jobs", (("state", "SUCCEEDED"), ("type", "predict")))] == 1
    assert s[("sipd_pixels_classified_total", (("project", "p"),))] == 4196
    count = ("sipd_job_duration_seconds_count", (("state", "SUCCEEDED"), ("type", "predict")))
    assert s[count] == 1
    assert s[("sipd_watch_scene_processing_seconds_sum", (("watch", "w1"),))] == 0.25
    assert s[("sipd_watch_scene_retries_total", (("watch", "w1"),))] == 1
    assert s[("sipd_worker_restarts_total", ())] == 0


def test_names_follow_prometheus_conventions(tmp_path: Path) -> None:
    m, store = _metrics(tmp_path)
    m.on_job(_predict_job(store, "api", [10]))
    m.scene_done("w1", 1.0, 1.0)
    m.scene_retried("w1")
    text = generate_latest(m.registry).decode()
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("sipd_"), family.name
        if family.name.endswith("_created"):
            continue  # the client library's creation timestamps of counters and histograms
        if family.type == "counter" and family.samples:
            assert any(s.name == f"{family.name}_total" for s in family.samples), family.name
        if family.type == "histogram" or "seconds" in family.name:
            assert family.name.endswith("_seconds"), family.name  # base unit
        assert not re.search(r"_(ms|milliseconds|minutes|kb|mb)\b", family.name)


def test_deploy_files_use_only_metrics_sipd_exposes(tmp_path: Path) -> None:
    m, store = _metrics(tmp_path)
    m.on_job(_predict_job(store, "api", [], finish=False))
    m.on_job(_predict_job(store, "api", []))
    m.scene_done("w1", 1.0, 1.0)
    m.scene_retried("w1")
    exposed = {s.name for f in text_string_to_metric_families(generate_latest(m.registry).decode())
               for s in f.samples}  # fmt: skip
    exposed.add("sipd_device_memory_used_bytes")  # only on CUDA
    dashboard = json.loads((DEPLOY / "grafana" / "sipd-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "sipd-alerts.yml").read_text())
    exprs += [r["expr"] for g in alerts["groups"] for r in g["rules"]]
    used = {name for e in exprs for name in re.findall(r"\bsipd_[a-z_]+", e)}
    assert used and used <= exposed, used - exposed
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9464"]
