"""Submitting the learning pipeline's jobs: checks that can fail fast, and the
parameter snapshots the worker runs on (prepare, train, test, predict)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sipd.config import Config
from sipd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from sipd.jobs.engine import JobEngine
from sipd.modelrepo import ModelRepository
from sipd.paths import PathPolicy
from sipd.projects import Projects
from sipd.raster import check_readable, raster_info

# The nets of sipd.nets.NETS, named here so the daemon never imports torch
# (only the worker touches the device); a unit test keeps the two in step.
ARCHS = ("unet", "patchcnn", "spectral")


class Pipeline:
    def __init__(
        self,
        config: Config,
        projects: Projects,
        models: ModelRepository,
        engine: JobEngine,
        policy: PathPolicy,
    ) -> None:
        self.config = config
        self.projects = projects
        self.models = models
        self.engine = engine
        self.policy = policy

    # -- dataset ----------------------------------------------------------------------

    def dataset_dir(self, project: str) -> Path:
        return self.projects.project_dir(project) / "dataset"

    def dataset(self, project: str) -> dict[str, Any]:
        p = self.projects.get(project)
        folder = self.dataset_dir(project)
        try:
            summary = json.loads((folder / "dataset.json").read_text())
            source = json.loads((folder / "source.json").read_text())
        except (OSError, ValueError):
            raise NotFound(
                f"project {project!r} has no prepared dataset; "
                f"run `sipctl dataset prepare {project}`"
            ) from None
        summary["stale"] = source.get("revision") != p["revision"]
        summary["create_time"] = (folder / "source.json").stat().st_mtime
        summary["classes"] = p["classes"]
        return summary

    def _needs_prepare(self, project: dict[str, Any], chip_size: int) -> bool:
        try:
            source = json.loads((self.dataset_dir(project["id"]) / "source.json").read_text())
        except (OSError, ValueError):
            return True
        return source.get("revision") != project["revision"] or source.get("chip_size") != chip_size

    def _train_snapshot(self, project: str, chip_size: int) -> dict[str, Any]:
        if not 32 <= chip_size <= 1024 or chip_size % 8:
            raise InvalidArgument(f"chip_size must be a multiple of 8 in 32..1024, got {chip_size}")
        if self.projects.count_rois(project, "train") == 0:
            self.projects.get(project)
            raise FailedPrecondition(
                f"project {project!r} has no train ROIs; add some with `sipctl roi add` or "
                "`sipctl roi import` (split train) before preparing or training"
            )
        snap = self.projects.snapshot(project, ("train", "val"))
        snap["dataset_dir"] = str(self.dataset_dir(project))
        snap["chip_size"] = chip_size
        return snap

    def prepare(self, project: str, chip_size: int) -> dict[str, Any]:
        params = self._train_snapshot(project, chip_size or self.config.training.chip_size)
        return self.engine.submit("prepare", params, project=project)

    # -- training ---------------------------------------------------------------------

    def train(self, project: str, options: dict[str, Any]) -> dict[str, Any]:
        t = self.config.training
        chip_size = options.get("chip_size") or t.chip_size
        params = self._train_snapshot(project, chip_size)
        arch = options.get("arch") or t.arch
        if arch not in ARCHS:
            raise InvalidArgument(f"arch {arch!r} is not known; choose one of: {', '.join(ARCHS)}")
        epochs = options.get("epochs") or t.epochs
        if not 1 <= epochs <= 1000:
            raise InvalidArgument(f"epochs must be 1..1000, got {epochs}")
        classes = params["classes"]
        weights: Any = options.get("class_weights") or None
        if options.get("balanced"):
            weights = "balanced"
        elif weights is not None and len(weights) != len(classes):
            raise InvalidArgument(
                f"class_weights has {len(weights)} value(s) for {len(classes)} classes"
            )
        patience = options.get("patience")
        if patience is None:
            patience = t.patience
        project_row = self.projects.get(project)
        params.update(
            {
                "prepare": self._needs_prepare(project_row, chip_size),
                "models_root": str(self.models.project_dir(project)),
                "arch": arch,
                "epochs": epochs,
                "batch_size": options.get("batch_size") or t.batch_size,
                "learning_rate": options.get("learning_rate") or t.learning_rate,
                "seed": options.get("seed", 0),
                "class_weights": weights,
                "augment": not options.get("no_augment", False),
                # 0 means "never stop early" to the user; the trainer takes None for that.
                "patience": patience or None,
            }
        )
        return self.engine.submit("train", params, project=project)

    # -- testing and prediction ---------------------------------------------------------

    def model(self, project: str, version: str) -> dict[str, Any]:
        return self.models.get(project, self.models.resolve(project, version))

    def test(self, project: str, version: str, scene_ids: list[str]) -> dict[str, Any]:
        model = self.model(project, version)
        snap = self.projects.snapshot(project, ("test",))
        if scene_ids:
            wanted = set(scene_ids)
            for sid in wanted:
                self.projects.get_scene(project, sid)
            snap["scenes"] = [s for s in snap["scenes"] if s["name"] in wanted]
        if not snap["scenes"]:
            raise FailedPrecondition(
                f"project {project!r} has no test ROIs{' on those scenes' if scene_ids else ''}; "
                "add ROIs with split test (e.g. `sipctl roi add ... --split test`)"
            )
        snap.update({"model": model["name"], "model_dir": model["path"]})
        return self.engine.submit("test", snap, project=project)

    def predict(
        self,
        project: str,
        version: str,
        inputs: list[str],
        output: str,
        options: dict[str, Any],
        source: str = "api",
    ) -> dict[str, Any]:
        model = self.model(project, version)
        if not inputs:
            raise InvalidArgument("inputs is empty; give at least one raster to classify")
        if not output:
            raise InvalidArgument("output is empty; give a file (one input) or a folder (several)")
        resolved = [self.policy.check(p, "input raster") for p in inputs]
        bands = model["meta"].get("bands", [])
        for path in resolved:
            check_readable(path)
            count = raster_info(path)["band_count"]
            if count != len(bands):
                raise InvalidArgument(
                    f"{path} has {count} band(s) but {model['name']} expects {len(bands)}: "
                    f"{', '.join(bands)}"
                )
        out = self.policy.check(output, "output path")
        if len(resolved) > 1 or out.is_dir():
            if not out.is_dir():
                raise InvalidArgument(f"output {out} must be an existing folder for several inputs")
            targets = [out / f"{p.stem}_labels.tif" for p in resolved]
        else:
            targets = [out if out.suffix.lower() in (".tif", ".tiff") else out.with_suffix(".tif")]
        if len(set(targets)) != len(targets):
            raise InvalidArgument("two inputs have the same file name; their outputs would collide")
        confidence_path = options.get("confidence_path") or ""
        if confidence_path and len(resolved) > 1:
            raise InvalidArgument(
                "confidence_path names one file; with several inputs leave it empty"
            )
        items = []
        for src, dst in zip(resolved, targets, strict=True):
            if src == dst:
                raise InvalidArgument(f"output {dst} would overwrite its input")
            extra = {
                "confidence": (
                    self.policy.check(confidence_path, "confidence path")
                    if confidence_path
                    else dst.with_name(f"{dst.stem}_confidence.tif")
                )
                if options.get("confidence")
                else None,
                "probabilities": dst.with_name(f"{dst.stem}_probabilities.tif")
                if options.get("probabilities")
                else None,
                "quicklook": dst.with_suffix(".png") if options.get("quicklook") else None,
            }
            for path in [dst, *[p for p in extra.values() if p]]:
                if path.exists() and not options.get("overwrite"):
                    raise AlreadyExists(
                        f"{path} exists; pass overwrite (sipctl --overwrite) to replace it"
                    )
            items.append(
                {
                    "path": str(src),
                    "output": str(dst),
                    **{k: str(v) if v else "" for k, v in extra.items()},
                }
            )
        mask = options.get("background_mask") or ""
        params = {
            "model": model["name"],
            "model_dir": model["path"],
            "inputs": items,
            "background_mask": str(self.policy.check(mask, "background mask")) if mask else "",
            "tile_size": options.get("tile_size") or self.config.inference.tile_size,
            "batch_size": options.get("batch_size") or self.config.inference.batch_size,
            "overwrite": bool(options.get("overwrite")),
        }
        return self.engine.submit("predict", params, project=project, source=source)
