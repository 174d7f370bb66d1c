"""Shared pieces of the watched-folder tests: a real trained model, a daemon with a project,
writers that behave like scp/rsync/slow downloaders, and a /metrics scrape."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

from sipd.synthetic import burn_rois, make_scene, sample_rois, write_mask
from tests.support import Sipd

BANDS = ["B1", "B2", "B3", "B4"]
CLASSES = [
    {"value": 1, "name": "forest", "color": "#228b22"},
    {"value": 2, "name": "water", "color": "#1e90ff"},
    {"value": 3, "name": "urban", "color": "#808080"},
]
SIZE = 64  # scene edge: one tile per scene keeps 200 scenes quick on a shared CPU


def train_tiny_model(folder: Path) -> Path:
    """A real model version trained on one synthetic scene (seconds on one CPU thread)."""
    import torch

    from sipd.dataset import prepare_dataset
    from sipd.progress import JobContext
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
        prepare_dataset(scenes, out_dir=folder / "ds", bands=BANDS, chip_size=32, ctx=JobContext())
        result = train_model(
            dataset_dir=folder / "ds", models_root=folder / "models", project="wp",
            classes=CLASSES, bands=BANDS, epochs=2, seed=0, tile_size=SIZE, arch="unet",
            arch_params={"base_channels": 4, "depth": 2}, batch_size=8, ctx=JobContext(),
        )  # fmt: skip
    finally:
        torch.set_num_threads(before)
    return Path(result["model_dir"])


def start_daemon(
    root: Path, model: Path, env: dict[str, str] | None = None, config: Path | None = None
) -> Sipd:
    """A daemon with metrics on, project `wp` and model version 1 in its repository."""
    state = root / "state"
    (state / "models" / "wp").mkdir(parents=True, exist_ok=True)
    if not (state / "models" / "wp" / "1").exists():
        shutil.copytree(model, state / "models" / "wp" / "1")
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
    assert (outbox / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((outbox / f"{stem}.json").read_text())
    counts = {c["name"]: int((labels == c["value"]).sum()) for c in CLASSES}
    assert summary["class_pixels"] == counts
    assert summary["pixels"] == SIZE * SIZE
    assert summary["model"].startswith("projects/wp/models/")
    return summary
