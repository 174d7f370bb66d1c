"""What a finished scene leaves behind: NAME.json in the outbox, the input kept, moved or
deleted, or moved to failed/ beside NAME.error.txt. Every step is safe to repeat, because
recovery after a crash repeats the steps of a scene whose end was not recorded."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from sipd.contracts.job_record import JobRecord
from sipd.contracts.jobs import ScenePrediction
from sipd.raster import atomic_path
from sipd.watch.files import companions, split_ext


def output_paths(outbox: Path, base: Path, confidence: bool) -> dict[str, str]:
    stem = outbox / base
    return {
        "output": f"{stem}.tif",
        "confidence": f"{stem}_confidence.tif" if confidence else "",
        "quicklook": f"{stem}.png",
        "summary": f"{stem}.json",
    }


def write_summary(path: str, summary: dict[str, Any]) -> None:
    """NAME.json is written last: its presence says the scene's output set is complete."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")


def summary_of(
    *,
    watch_id: str,
    unit: str,
    row: dict[str, Any],
    scene: ScenePrediction,
    job: JobRecord,
    paths: dict[str, str],
) -> dict[str, Any]:
    now = time.time()
    detected = row["detect_time"]
    result = job.result
    model = f"projects/{result.project}/models/{result.version}" if result is not None else ""
    return {
        "input": unit,
        "input_size": row["size"],
        "input_mtime": row["mtime_ns"] / 1e9,
        "watch": f"watches/{watch_id}",
        "model": model,
        "provider": getattr(result, "provider", ""),
        "job": job.name,
        "width": scene.width,
        "height": scene.height,
        "pixels": scene.pixels,
        "class_pixels": scene.class_pixels,
        "class_area_m2": scene.class_area_m2,
        "pixel_area_m2": scene.pixel_area_m2,
        "outputs": {
            "labels": paths["output"],
            "confidence": paths["confidence"] or None,
            "quicklook": paths["quicklook"] or None,
            "preprocessed": (scene.preprocessed or None) if scene.keep_preprocessed else None,
        },
        "recipe": scene.preprocess.recipe_label if scene.preprocess else None,
        "timings": {
            "detected": _iso(row["detect_time"]),
            "started": _iso(job.start_time or row.get("start_time")),
            "finished": _iso(now),
            # Seconds the predictor spent on this scene, and from detection to outputs.
            "predict_seconds": scene.seconds,
            "mpx_per_s": scene.mpx_per_s,
            "queued_seconds": round(max(0.0, (job.start_time or now) - detected), 3),
            "total_seconds": round(max(0.0, now - detected), 3),
        },
        "attempts": row["attempts"] + 1,
    }


def _iso(seconds: float | None) -> str | None:
    if not seconds:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def free_destination(folder: Path, rel: Path) -> Path:
    """folder/rel, or folder/STEM.N.EXT when an earlier scene of that name is there."""
    dest = folder / rel
    if not dest.exists() and not _error_file(dest).exists():
        return dest
    stem, ext = split_ext(dest.name)
    n = 1
    while True:
        candidate = dest.with_name(f"{stem}.{n}{ext}")
        if not candidate.exists() and not _error_file(candidate).exists():
            return candidate
        n += 1


def _error_file(dest: Path) -> Path:
    return dest.with_name(dest.name + ".error.txt")


def move_unit(unit: Path, dest: Path) -> None:
    """Move a unit and its sentinels/sidecars; a repeat after a crash finds them moved."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    extras = companions(unit)
    if unit.exists() or unit.is_symlink():
        _move(unit, dest)
    stem, _ = split_ext(unit.name)
    dest_stem, _ = split_ext(dest.name)
    for extra in extras:
        if extra.name.startswith(unit.name):
            target = dest.with_name(dest.name + extra.name[len(unit.name) :])
        else:
            target = dest.with_name(dest_stem + extra.name[len(stem) :])
        with contextlib.suppress(FileNotFoundError):
            _move(extra, target)


def _move(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.move(src, dst)  # processed/ or failed/ is a mount of its own


def delete_unit(unit: Path) -> None:
    for extra in companions(unit):
        with contextlib.suppress(FileNotFoundError):
            extra.unlink()
    if unit.is_dir() and not unit.is_symlink():
        shutil.rmtree(unit, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            unit.unlink()


def write_error(dest: Path, reason: str, details: dict[str, Any]) -> Path:
    path = _error_file(dest)
    lines = [reason, ""] + [f"{k}: {v}" for k, v in details.items()]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path
