"""Watched inbox folders end to end: a real daemon, real writers, real jobs, /metrics over HTTP."""

from __future__ import annotations

import json
import os
import random
import signal
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.watch_support import (
    after_a_rescan,
    awaiting_sentinel,
    check_output_set,
    copy_like,
    make_scenes,
    metric,
    output_sets,
    scanner_passes,
    scrape,
    start_daemon,
    succeeded_inputs,
    watch_show,
)
from tests.support import wait_for


@pytest.fixture
def model(trained_model: Path) -> Path:
    """The session's trained model (tests/conftest.py); start_daemon installs a copy."""
    return trained_model


@pytest.mark.slow  # 200 scenes
def test_200_scenes_from_concurrent_writers_each_give_one_complete_output_set(
    tmp_path: Path, model: Path
) -> None:
    staging = tmp_path / "staging"
    sources = make_scenes(staging, 200)
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    # A small queue limit: backpressure is part of the run, not a special case.
    d = start_daemon(tmp_path, model, env={"SIPD_WATCH__QUEUE_LIMIT": "24"})
    try:
        d.sipctl("watch", "add", str(inbox), "--project", "wp", "--out", str(outbox),
                 "--name", "bulk")  # fmt: skip
        rng = random.Random(7)
        ways = ["plain", "rsync", "part"] * 30 + ["slow"] * 20  # ~18% written slowly
        plan = [(src, rng.choice(ways)) for src in sources]
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=12) as pool:
            futures = [
                pool.submit(copy_like, src, inbox, how, random.Random(i))
                for i, (src, how) in enumerate(plan)
            ]
            scrapes = []
            while not all(f.done() for f in futures):
                samples = scrape(d)
                jsons = len(list(outbox.glob("*.json"))) if outbox.exists() else 0
                scrapes.append((samples, jsons))
                time.sleep(0.3)
            for f in futures:
                f.result()

        def finished() -> bool:
            samples = scrape(d)
            scrapes.append((samples, len(list(outbox.glob("*.json")))))
            return metric(samples, "sipd_watch_scenes_total", watch="bulk", outcome="done") >= 200

        wait_for(finished, timeout=150, interval=0.5, what="200 scenes done")
        took = time.monotonic() - started

        sets = output_sets(outbox)
        assert sorted(sets) == sorted(src.stem for src in sources)  # nothing else, no temporaries
        for stem, names in sets.items():
            assert names == [f"{stem}.json", f"{stem}.png", f"{stem}.tif"]
            check_output_set(outbox, stem)
        w = watch_show(d, "bulk")
        assert (w["done"], w["failed"], w["queued"], w["running"]) == (200, 0, 0, 0)
        assert sorted(p.name for p in inbox.iterdir()) == sorted(s.name for s in sources)  # keep
        # During the run: never more done than complete output sets, never over the limit.
        for samples, jsons in scrapes:
            assert metric(samples, "sipd_watch_scenes_total", watch="bulk", outcome="done") <= jsons
            assert metric(samples, "sipd_watch_queue_depth", watch="bulk") <= 24
        final = scrape(d)
        assert metric(final, "sipd_watch_scenes_total", watch="bulk", outcome="failed") == 0
        assert metric(final, "sipd_watch_queue_depth", watch="bulk") == 0
        assert metric(final, "sipd_watch_scene_processing_seconds_count", watch="bulk") == 200
        assert metric(final, "sipd_pixels_classified_total", project="wp") == 200 * 64 * 64
        jobs = metric(final, "sipd_jobs", type="predict", state="SUCCEEDED")
        assert metric(final, "sipd_job_duration_seconds_count", type="predict",
                      state="SUCCEEDED") == jobs  # fmt: skip
        assert jobs < 200  # ready scenes were batched
        print(f"\n200 scenes: {took:.1f} s from the first write to the last output set, "
              f"{jobs:.0f} predict jobs")  # fmt: skip
    finally:
        d.stop()
    # Each scene classified exactly once: no job ran any of them a second time.
    done = succeeded_inputs(d.data_dir / "sipd.db")
    assert sorted(done) == sorted(str(inbox / s.name) for s in sources)
    assert set(done.values()) == {1}


@pytest.mark.slow  # 52 scenes, two daemon starts
def test_sigkill_mid_batch_then_restart_gives_exactly_one_output_set_each(
    tmp_path: Path, model: Path
) -> None:
    sources = make_scenes(tmp_path / "staging", 48)
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    d = start_daemon(tmp_path, model)
    d.sipctl("watch", "add", str(inbox), "--project", "wp", "--out", str(outbox),
             "--name", "crash", "--on-success", "move")  # fmt: skip
    for src in sources:
        copy_like(src, inbox, "rsync", random.Random(0))

    def mid_batch() -> bool:
        w = watch_show(d, "crash")
        return w["done"] >= 8 and w["running"] > 0

    wait_for(mid_batch, timeout=60, interval=0.05, what="a batch running after some done")
    worker = d.sipctl_json("status")["worker"]["pid"]
    assert d.stop(signal.SIGKILL) == -signal.SIGKILL
    wait_for(lambda: not os.path.exists(f"/proc/{worker}") or _zombie(worker), 10,
             what="the orphaned worker to exit")  # fmt: skip

    # Scenes that arrive while sipd is down are found by the start scan.
    late = make_scenes(tmp_path / "late", 4, prefix="late")
    for src in late:
        copy_like(src, inbox, "plain", random.Random(1))
    d = start_daemon(tmp_path, model)
    try:
        assert watch_show(d, "crash")["done"] >= 8  # survived the restart

        def all_done() -> bool:
            w = watch_show(d, "crash")
            return w["queued"] == 0 and w["running"] == 0 and w["done"] + w["failed"] == 52

        wait_for(all_done, timeout=120, interval=0.3, what="every scene finished")
        recovered = [line for line in d.log().splitlines() if "was running when" in line
                     or "retry in" in line or "leftover" in line]  # fmt: skip
        print("\nafter the restart:\n" + "\n".join(recovered))
        w = watch_show(d, "crash")
        assert (w["done"], w["failed"]) == (52, 0)
        stems = sorted(s.stem for s in sources + late)
        sets = output_sets(outbox)
        assert sorted(sets) == stems
        for stem, names in sets.items():
            assert names == [f"{stem}.json", f"{stem}.png", f"{stem}.tif"]
            summary = check_output_set(outbox, stem)
            assert summary["moved_to"] == str(inbox / "processed" / f"{stem}.tif")
        # Every input moved once, to its own name: no second move of a finished scene.
        assert sorted(p.name for p in inbox.iterdir()) == ["processed"]
        assert sorted(p.stem for p in (inbox / "processed").iterdir()) == stems
        samples = scrape(d)
        assert metric(samples, "sipd_watch_scenes_total", watch="crash", outcome="done") == 52
        assert metric(samples, "sipd_watch_scenes_total", watch="crash", outcome="failed") == 0
        assert metric(samples, "sipd_watch_queue_depth", watch="crash") == 0
    finally:
        d.stop()
    done = succeeded_inputs(d.data_dir / "sipd.db")
    assert sorted(done) == sorted(str(inbox / s.name) for s in sources + late)
    assert set(done.values()) == {1}  # a scene whose job had finished was not run again


@pytest.mark.slow  # two 1024x1024 scenes, two daemon starts
def test_sigterm_mid_job_requeues_its_scenes_without_counting_an_attempt(
    tmp_path: Path, model: Path
) -> None:
    from sipd.synthetic import make_scene

    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    d = start_daemon(tmp_path, model)
    d.sipctl("watch", "add", str(inbox), "--project", "wp", "--out", str(outbox), "--name", "t")
    for i in range(2):  # large enough that the job is still tiling when SIGTERM arrives
        make_scene(tmp_path / f"big{i}.tif", width=1024, height=1024, seed=i)
        os.rename(tmp_path / f"big{i}.tif", inbox / f"big{i}.tif")
    wait_for(lambda: d.sipctl_json("status")["worker"]["state"] == "BUSY", 60, what="busy")
    assert d.stop(signal.SIGTERM) == 0
    assert "cancelled: the daemon was stopped" in d.log()
    d = start_daemon(tmp_path, model)
    try:
        wait_for(lambda: watch_show(d, "t")["done"] == 2, 120, what="both scenes done")
        assert watch_show(d, "t")["failed"] == 0
        for i in range(2):
            assert json.loads((outbox / f"big{i}.json").read_text())["attempts"] == 1
    finally:
        d.stop()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_bad_files_end_in_failed_with_a_reason_and_the_others_go_on(
    tmp_path: Path, model: Path
) -> None:
    from sipd.synthetic import make_scene

    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    good = make_scenes(tmp_path / "staging", 10)
    d = start_daemon(tmp_path, model)
    try:
        d.sipctl("watch", "add", str(inbox), "--project", "wp", "--out", str(outbox),
                 "--name", "mixed", "--on-success", "delete")  # fmt: skip
        # Bad files among good ones, so that they share batches.
        for i, src in enumerate(good):
            copy_like(src, inbox, "plain", random.Random(i))
            if i == 3:
                (inbox / "corrupt.tif").write_bytes(os.urandom(5000))
            if i == 6:
                make_scene(inbox / "three_bands.tif", width=64, height=64, bands=3, seed=5)
        truncated = good[0].read_bytes()
        (inbox / "truncated.tif").write_bytes(truncated[: len(truncated) // 3])

        def settled() -> bool:
            w = watch_show(d, "mixed")
            return w["done"] + w["failed"] == 13 and w["queued"] + w["running"] == 0

        wait_for(settled, timeout=90, interval=0.3, what="all 13 scenes finished")
        w = watch_show(d, "mixed")
        assert (w["done"], w["failed"]) == (10, 3)
        assert w["last_error"]
        human = d.sipctl("watch", "show", "mixed").stdout
        assert "10 done, 3 failed, 0 queued" in human and "last error:" in human
        assert sorted(output_sets(outbox)) == sorted(s.stem for s in good)
        failed = inbox / "failed"
        assert sorted(p.name for p in failed.iterdir()) == sorted(
            f"{n}{e}" for n in ("corrupt.tif", "three_bands.tif", "truncated.tif")
            for e in ("", ".error.txt")
        )  # fmt: skip
        reason = (failed / "three_bands.tif.error.txt").read_text()
        assert "3 bands" in reason and "expects 4" in reason
        for name in ("corrupt.tif", "truncated.tif"):
            reason = (failed / f"{name}.error.txt").read_text()
            assert name in reason and f"input: {inbox / name}" in reason
        assert sorted(p.name for p in inbox.iterdir()) == ["failed"]  # the good ones deleted
        samples = scrape(d)
        assert metric(samples, "sipd_watch_scenes_total", watch="mixed", outcome="failed") == 3
        assert metric(samples, "sipd_watch_scenes_total", watch="mixed", outcome="done") == 10
    finally:
        d.stop()


@pytest.mark.slow  # seven scenes, two daemon starts, a rescan to wait for
def test_config_watch_sentinels_products_pause_latest_and_restart(
    tmp_path: Path, model: Path
) -> None:
    inbox, outbox = tmp_path / "ground", tmp_path / "labels"
    config = tmp_path / "sipd.yaml"
    config.write_text(
        "watch:\n  watches:\n"
        f"    - {{id: station, inbox: {inbox}, outbox: {outbox}, project: wp,\n"
        "       require_sentinel: true, recursive: true, confidence: true}\n"
    )
    scenes = make_scenes(tmp_path / "staging", 7)
    d = start_daemon(tmp_path, model, config=config)
    try:
        w = watch_show(d, "station")
        assert w["from_config"] and w["state"] == "ACTIVE" and w["require_sentinel"]
        refused = d.sipctl("watch", "remove", "station", check=False)
        assert refused.returncode == 1 and "FAILED_PRECONDITION" in refused.stderr
        # Without its sentinel a complete file waits; NAME.done releases it.
        copy_like(scenes[0], inbox, "plain", random.Random(0))
        awaiting_sentinel(d, "station")  # quiet long enough, and held
        w = watch_show(d, "station")
        assert w["queued"] + w["running"] + w["done"] == 0
        (inbox / f"{scenes[0].name}.done").write_text("")
        # A zip and a SAFE-style folder are one scene each; sub-folders are watched.
        (inbox / "pass2").mkdir(parents=True)
        with zipfile.ZipFile(inbox / "pass2" / "zipped.zip", "w") as zf:
            zf.write(scenes[1], "inner/zipped.tif")
        (inbox / "pass2" / "zipped.zip.ready").write_text("")
        safe = inbox / "S1A_TEST.SAFE"
        (safe / "measurement").mkdir(parents=True)
        (safe / "measurement" / "s.tif").write_bytes(scenes[2].read_bytes())
        (inbox / "S1A_TEST.SAFE.done").write_text("")
        wait_for(lambda: watch_show(d, "station")["done"] == 3, 60, what="3 scenes done")
        assert (outbox / "s000_confidence.tif").exists()
        assert (outbox / "pass2" / "zipped.json").exists() and (outbox / "S1A_TEST.json").exists()
        # A whole folder moved in at once.
        batch = tmp_path / "batch3"
        batch.mkdir()
        (batch / scenes[6].name).write_bytes(scenes[6].read_bytes())
        (batch / f"{scenes[6].name}.done").write_text("")
        os.rename(batch, inbox / "batch3")
        wait_for(lambda: watch_show(d, "station")["done"] == 4, 60, what="the moved-in folder")
        assert (outbox / "batch3" / f"{scenes[6].stem}.json").exists()

        # Paused: arrivals wait; resumed: they are taken, following the newest model.
        d.sipctl("watch", "pause", "station")
        copy_like(scenes[3], inbox, "plain", random.Random(0))
        (inbox / f"{scenes[3].name}.done").write_text("")
        # Passes enough to settle and queue it several times over (quiet 1 s = 4 passes),
        # had the pause not held it.
        scanner_passes(d, "station", 8)
        w = watch_show(d, "station")
        assert (w["done"], w["queued"], w["running"]) == (4, 0, 0)
        models = d.data_dir / "models" / "wp"
        (models / "2").mkdir()
        for f in (models / "1").iterdir():
            (models / "2" / f.name).write_bytes(f.read_bytes())
        d.sipctl("watch", "resume", "station")
        wait_for(lambda: watch_show(d, "station")["done"] == 5, 60, what="the paused scene")
        assert json.loads((outbox / "s003.json").read_text())["model"] == "projects/wp/models/2"
    finally:
        d.stop()

    # Stored across restarts; a file changed in place is processed again, once.
    copy_like(scenes[4], inbox, "plain", random.Random(0))
    (inbox / f"{scenes[4].name}.done").write_text("")
    d = start_daemon(tmp_path, model, config=config)
    try:
        wait_for(lambda: watch_show(d, "station")["done"] == 6, 60, what="the scene from downtime")
        (inbox / scenes[0].name).write_bytes(scenes[5].read_bytes())  # same name, new content
        awaiting_sentinel(d, "station")  # its old sentinel is older than the new data: it waits
        w = watch_show(d, "station")
        assert (w["done"], w["queued"], w["running"]) == (6, 0, 0)
        (inbox / f"{scenes[0].name}.done").write_text("again")
        wait_for(lambda: watch_show(d, "station")["done"] == 7, 60, what="the changed scene")
        # A full rescan after that finds nothing left to take: processed once.
        samples = after_a_rescan(d, "station")
        assert metric(samples, "sipd_watch_files_pending", watch="station") == 0
        w = watch_show(d, "station")
        assert (w["done"], w["failed"], w["queued"], w["running"]) == (7, 0, 0, 0)
        listed = d.sipctl_json("watch", "list")["watches"]
        assert [x["name"] for x in listed] == ["watches/station"]
        status = d.sipctl_json("status")
        assert status["active_watches"] == 1 and status["metrics_listen"] == d.metrics_address
    finally:
        d.stop()


@pytest.mark.slow  # a daemon and nine sipctl processes (~5 s); bad_files covers the API fast
def test_watch_add_checks_its_arguments(tmp_path: Path, model: Path) -> None:
    d = start_daemon(tmp_path, model)
    try:
        inbox = tmp_path / "in"

        def add(*args: str) -> str:
            result = d.sipctl("watch", "add", *args, check=False)
            assert result.returncode == 1, result.stdout
            return result.stderr

        assert "PERMISSION_DENIED" in add("/etc", "--project", "wp", "--out", str(tmp_path / "o"))
        assert "INVALID_ARGUMENT" in add(str(inbox), "--project", "wp", "--out", str(inbox / "o"))
        assert "NOT_FOUND" in add(str(inbox), "--project", "nope", "--out", str(tmp_path / "o"))
        assert "NOT_FOUND" in add(str(inbox), "--project", "wp", "--out", str(tmp_path / "o"),
                                  "--model", "7")  # fmt: skip
        d.sipctl("watch", "add", str(inbox), "--project", "wp", "--out", str(tmp_path / "o"))
        assert "ALREADY_EXISTS" in add(str(tmp_path / "x"), "--project", "wp",
                                       "--out", str(tmp_path / "o2"), "--name", "in")  # fmt: skip
        nested = add(str(inbox / "sub"), "--project", "wp", "--out", str(tmp_path / "o3"),
                     "--name", "sub")  # fmt: skip
        assert "INVALID_ARGUMENT" in nested and "overlaps" in nested
        d.sipctl("watch", "remove", "in")
        assert "NOT_FOUND" in d.sipctl("watch", "show", "in", check=False).stderr
    finally:
        d.stop()
