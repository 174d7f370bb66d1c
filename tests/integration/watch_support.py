"""Shared pieces of the watched-folder tests: a daemon with a project and the session's trained
model, writers that behave like scp/rsync/slow downloaders, and a /metrics scrape."""

from __future__ import annotations

import json
import os
import random
import re
import sqlite3
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from sipd.synthetic import make_scene
from tests.support import (
    MODEL_BANDS,
    MODEL_CLASSES,
    MODEL_PROJECT,
    MODEL_TILE,
    Sipd,
    assert_cog,
    install_model,
    wait_for,
)

# The shared trained model's project, bands and classes (tests/conftest.py: trained_model).
BANDS = MODEL_BANDS
CLASSES = MODEL_CLASSES
SIZE = MODEL_TILE  # scene edge: one tile per scene keeps 200 scenes quick on a shared CPU


def start_daemon(
    root: Path, model: Path, env: dict[str, str] | None = None, config: Path | None = None
) -> Sipd:
    """A daemon with metrics on, project `wp` and model version 1 in its repository."""
    state = root / "state"
    if not (state / "models" / MODEL_PROJECT / "1").exists():  # a restart keeps its models
        install_model(model, state, MODEL_PROJECT)
    settings = {
        "SIPD_WATCH__QUIET_SECONDS": "1.0",
        "SIPD_WATCH__RESCAN_SECONDS": "5",
        "SIPD_WATCH__RETRY_BACKOFF_SECONDS": "0.2",
        **(env or {}),
    }
    extra = ["--config", str(config)] if config else []
    d = Sipd(state, roots=[root], extra_args=extra, env=settings, metrics=True).start()
    if "wp" not in d.sipctl("project", "list").stdout:
        d.sipctl("project", "create", "wp", "--classes", "forest,water,urban",
                 "--bands", ",".join(BANDS))  # fmt: skip
    return d


def make_scenes(folder: Path, n: int, prefix: str = "s") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{prefix}{i:03d}.tif"
        make_scene(path, width=SIZE, height=SIZE, seed=i, blocksize=SIZE)
        paths.append(path)
    return paths


def copy_like(src: Path, inbox: Path, how: str, rng: random.Random) -> None:
    """Deliver `src` into `inbox` the way a real writer would."""
    data = src.read_bytes()
    final = inbox / src.name
    if how == "plain":  # cp: the final name from the first byte
        final.write_bytes(data)
    elif how == "rsync":  # rsync: a hidden temporary, then a rename
        tmp = inbox / f".{src.name}.{rng.randrange(16**6):06x}"
        tmp.write_bytes(data)
        os.rename(tmp, final)
    elif how == "part":  # browsers, downloaders: NAME.part, then a rename
        tmp = inbox / f"{src.name}.part"
        tmp.write_bytes(data)
        os.rename(tmp, final)
    elif how == "slow":  # a slow link: chunks under the final name, pauses shorter than quiet
        chunk = max(1, len(data) // 8)
        with open(final, "wb") as out:
            for i in range(0, len(data), chunk):
                out.write(data[i : i + chunk])
                out.flush()
                time.sleep(rng.uniform(0.05, 0.2))
    else:
        raise ValueError(how)


def scrape(d: Sipd) -> dict[str, float]:
    """/metrics over real HTTP, as {'name{labels}': value} (labels sorted as exposed)."""
    with urllib.request.urlopen(f"http://{d.metrics_address}/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def metric(samples: dict[str, float], name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return samples.get(f"{name}{{{want}}}" if labels else name, 0.0)


def scanner_passes(d: Sipd, watch_id: str, n: int) -> None:
    """Return once the scanner has completed `n` more passes over the watch (paused or not):
    "nothing was taken" is then observed over passes that really ran, not assumed after a
    sleep (a loaded machine may run none in that time). Passes are TICK (0.25 s) apart."""
    name = "sipd_watch_scanner_passes_total"
    start = metric(scrape(d), name, watch=watch_id)
    wait_for(lambda: metric(scrape(d), name, watch=watch_id) >= start + n, 60, interval=0.05,
             what=f"{n} scanner passes over watch {watch_id}")  # fmt: skip


def awaiting_sentinel(d: Sipd, watch_id: str, n: int = 1) -> None:
    """Return once `n` units of the watch are still for the quiet period and held only for
    lack of a fresh sentinel (the settler looked at them and said no)."""
    name = "sipd_watch_files_awaiting_sentinel"
    wait_for(lambda: metric(scrape(d), name, watch=watch_id) == n, 60, interval=0.05,
             what=f"{n} unit(s) of watch {watch_id} held for a sentinel")  # fmt: skip


def after_a_rescan(d: Sipd, watch_id: str) -> dict[str, float]:
    """/metrics once a full rescan of the watch's inbox has completed after this call began.

    Rescans and offers run one after the other on the scanner thread, so that rescan knew
    every scene queued before the call; one it would take again shows as a pending unit.
    """
    name = "sipd_watch_rescans_total"
    start = metric(scrape(d), name, watch=watch_id)

    def rescanned() -> dict[str, float] | None:
        samples = scrape(d)
        return samples if metric(samples, name, watch=watch_id) >= start + 1 else None

    return wait_for(rescanned, 60, interval=0.1, what=f"a rescan of watch {watch_id}")


def watch_show(d: Sipd, watch_id: str) -> dict[str, Any]:
    """GetWatch over gRPC (quicker than sipctl when polling)."""
    from sipapi.v1 import watch_pb2
    from sipctl.render import to_plain

    w = d.client.watches.GetWatch(watch_pb2.GetWatchRequest(name=f"watches/{watch_id}"))
    return to_plain(w)


def output_sets(outbox: Path) -> dict[str, list[str]]:
    """{scene stem: sorted output file names}; temporaries would show up under their own key."""
    sets: dict[str, list[str]] = {}
    for p in outbox.iterdir():
        stem = re.sub(r"(_confidence)?\.(tif|png|json)$", "", p.name)
        sets.setdefault(stem, []).append(p.name)
    return {k: sorted(v) for k, v in sets.items()}


def check_output_set(outbox: Path, stem: str) -> dict[str, Any]:
    """A complete set: a readable 64x64 label map, a PNG, a summary that matches them."""
    import rasterio

    with rasterio.open(outbox / f"{stem}.tif") as ds:
        labels = ds.read(1)
        assert ds.width == ds.height == SIZE
    assert_cog(outbox / f"{stem}.tif")
    assert (outbox / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((outbox / f"{stem}.json").read_text())
    counts = {c["name"]: int((labels == c["value"]).sum()) for c in CLASSES}
    assert summary["class_pixels"] == counts
    assert summary["pixels"] == SIZE * SIZE
    assert summary["model"].startswith("projects/wp/models/")
    return summary


def succeeded_inputs(db: Path) -> Counter[str]:
    """How often each input appears in a SUCCEEDED predict job: the work actually done."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT result FROM jobs WHERE type = 'predict' AND state = 'SUCCEEDED'"
        ).fetchall()
    return Counter(s["input"] for (r,) in rows for s in json.loads(r)["scenes"])
