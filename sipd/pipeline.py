"""Submitting the learning pipeline's jobs: checks that can fail fast, and the
parameter snapshots the worker runs on (prepare, train, test, predict, export).

Also the daemon's side of PredictStream (StreamUpload): the daemon never runs
a model itself (only the worker touches the device), so a streamed raster is
spooled to DATA_DIR/tmp/stream-*/, predicted by an ordinary "predict" job, and
the spool is removed whatever happens.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sipd.config import Config
from sipd.errors import (
    AlreadyExists,
    Code,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SipError,
    Unavailable,
)
from sipd.jobs.engine import JobEngine
from sipd.modelrepo import ModelRepository, parse_model_name
from sipd.paths import PathPolicy
from sipd.projects import Projects
from sipd.raster import check_readable, raster_info
from sipd.store import FINAL_STATES

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
        self.spool_root = Path(config.data_dir) / "tmp"
        # No stream can be in flight before this daemon serves: what is there
        # was left by one that died mid-stream.
        for stale in self.spool_root.glob("stream-*"):
            shutil.rmtree(stale, ignore_errors=True)

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

    # -- export -----------------------------------------------------------------------

    def export(self, project: str, version: str, fp16: bool) -> dict[str, Any]:
        if version in ("", "latest"):
            raise InvalidArgument("name the version to export explicitly, not 'latest'")
        model = self.model(project, version)
        if not (Path(model["path"]) / "checkpoint.pt").is_file():
            raise FailedPrecondition(
                f"{model['name']} has no checkpoint.pt to export from (a folder copied "
                "without it can predict, but not be re-exported)"
            )
        params = {"model": model["name"], "model_dir": model["path"], "fp16": bool(fp16)}
        return self.engine.submit("export", params, project=project)

    # -- PredictStream ----------------------------------------------------------------

    def open_stream(self, header: StreamHeader) -> StreamUpload:
        """Check a PredictStream header before any data is accepted; make the spool."""
        project, version = parse_model_name(header.model)
        model = self.model(project, version)
        bands = model["meta"].get("bands", [])
        limit = self.config.inference.max_stream_bytes
        if header.encoding not in ("geotiff", "raw"):
            raise InvalidArgument(
                "header.encoding must be RASTER_ENCODING_GEOTIFF (a whole GeoTIFF file) or "
                "RASTER_ENCODING_RAW (band-sequential pixels with shape and dtype)"
            )
        if header.total_bytes <= 0:
            raise InvalidArgument("header.total_bytes must be the positive number of bytes sent")
        if header.total_bytes > limit:
            raise ResourceExhausted(
                f"header.total_bytes {header.total_bytes} exceeds the limit of {limit} bytes "
                "(inference.max_stream_bytes); send a smaller raster or raise the limit"
            )
        if header.encoding == "raw":
            _check_raw(header, len(bands))
        self.spool_root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="stream-", dir=self.spool_root))
        return StreamUpload(folder, header, model)

    def predict_upload(self, upload: StreamUpload) -> dict[str, Any]:
        """Submit the "predict" job for a complete upload (source "stream")."""
        raster = upload.finish()
        try:
            check_readable(raster)
        except InvalidArgument as exc:
            raise InvalidArgument(
                f"the streamed bytes are not a readable {upload.header.encoding} raster ({exc})"
            ) from exc
        model = upload.model
        bands = model["meta"].get("bands", [])
        count = raster_info(raster)["band_count"]
        if count != len(bands):
            raise InvalidArgument(
                f"the streamed raster has {count} band(s) but {model['name']} expects "
                f"{len(bands)}: {', '.join(bands)}"
            )
        item = {
            "path": str(raster),
            "output": str(upload.labels_path),
            "confidence": str(upload.confidence_path) if upload.header.confidence else "",
            "probabilities": "",
            "quicklook": "",
        }
        params = {
            "model": model["name"],
            "model_dir": model["path"],
            "inputs": [item],
            "background_mask": "",
            "tile_size": self.config.inference.tile_size,
            "batch_size": self.config.inference.batch_size,
            "overwrite": False,
        }
        project = parse_model_name(model["name"])[0]
        return self.engine.submit("predict", params, project=project, source="stream")

    def wait_for(self, job_id: int, alive: Callable[[], bool]) -> dict[str, Any]:
        """Wait until the job ends; cancel it (and still wait for it) once `alive()` is False.

        Waiting after the cancel matters: the job writes into the spool, which
        the caller removes only once nothing writes there any more.
        """
        while True:
            job = self.engine.wait(job_id, timeout=0.5)
            if job["state"] in FINAL_STATES:
                return job
            if not alive():
                self.engine.cancel(job_id, "cancelled: the PredictStream client went away")
                grace = self.config.jobs.cancel_grace_seconds + 10
                return self.engine.wait(job_id, timeout=grace)


@dataclass(frozen=True)
class StreamHeader:
    """The first message of a PredictStream call, as plain data."""

    model: str
    encoding: str  # "geotiff" | "raw" | anything else (refused)
    total_bytes: int
    shape: tuple[int, ...] = ()
    dtype: str = ""
    nodata: float | None = None
    confidence: bool = False


# PredictStream RAW dtypes (the scene dtypes) -> ENVI "data type" codes.
_ENVI_TYPES = {"uint8": 1, "int16": 2, "float32": 4, "uint16": 12}
_ITEMSIZE = {"uint8": 1, "int16": 2, "uint16": 2, "float32": 4}


def _check_raw(header: StreamHeader, bands: int) -> None:
    if header.dtype not in _ENVI_TYPES:
        raise InvalidArgument(
            f"header.dtype {header.dtype!r} is not accepted; RAW takes one of: "
            f"{', '.join(_ENVI_TYPES)}"
        )
    if len(header.shape) != 3 or min(header.shape) < 1:
        raise InvalidArgument(
            f"header.shape {list(header.shape)} must be [bands, height, width] with "
            "positive sizes for RAW"
        )
    expected = math.prod(header.shape) * _ITEMSIZE[header.dtype]
    if header.total_bytes != expected:
        raise InvalidArgument(
            f"header.total_bytes {header.total_bytes} does not match shape "
            f"{list(header.shape)} of {header.dtype} ({expected} bytes)"
        )
    if header.shape[0] != bands:
        raise InvalidArgument(
            f"header.shape has {header.shape[0]} band(s) but the model expects {bands}"
        )


class StreamUpload:
    """A raster arriving in chunks, spooled in its own folder until the stream ends.

    RAW pixels are kept as they arrive and described by an ENVI header, which
    GDAL reads in place (no conversion, no copy). `cleanup` removes the folder.
    """

    def __init__(self, folder: Path, header: StreamHeader, model: dict[str, Any]) -> None:
        self.folder = folder
        self.header = header
        self.model = model
        self.received = 0
        name = "scene.bsq" if header.encoding == "raw" else "scene.tif"
        self.raster_path = folder / name
        self.labels_path = folder / "labels.tif"
        self.confidence_path = folder / "confidence.tif"
        self._file: Any = open(self.raster_path, "wb")  # noqa: SIM115 - closed in finish/cleanup

    def write(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.header.total_bytes:
            raise InvalidArgument(
                f"received more than the {self.header.total_bytes} bytes the header announced"
            )
        self._file.write(chunk)

    def finish(self) -> Path:
        """The spooled raster, once every announced byte has arrived."""
        self._file.close()
        if self.received != self.header.total_bytes:
            raise InvalidArgument(
                f"the stream ended after {self.received} of the {self.header.total_bytes} "
                "bytes the header announced"
            )
        h = self.header
        if h.encoding == "raw":
            lines = [
                "ENVI",
                f"samples = {h.shape[2]}",
                f"lines = {h.shape[1]}",
                f"bands = {h.shape[0]}",
                "header offset = 0",
                "file type = ENVI Standard",
                f"data type = {_ENVI_TYPES[h.dtype]}",
                "interleave = bsq",
                "byte order = 0",  # little endian, as PredictStream specifies
            ]
            if h.nodata is not None:
                lines.append(f"data ignore value = {h.nodata!r}")
            (self.folder / "scene.hdr").write_text("\n".join(lines) + "\n")
        return self.raster_path

    def outputs(self, chunk_bytes: int) -> tuple[int, int, Iterator[bytes]]:
        """(label bytes, confidence bytes, chunks of the label map then the confidence map)."""
        files = [self.labels_path]
        if self.header.confidence:
            files.append(self.confidence_path)
        sizes = [p.stat().st_size for p in files]

        def chunks() -> Iterator[bytes]:
            for path in files:
                with open(path, "rb") as f:
                    while block := f.read(chunk_bytes):
                        yield block

        return sizes[0], sizes[1] if len(sizes) > 1 else 0, chunks()

    def cleanup(self) -> None:
        self._file.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def job_error(job: dict[str, Any]) -> SipError:
    """The error a caller waiting on a failed or cancelled job should see."""
    if job["state"] == "CANCELLED":
        return Unavailable(f"the prediction job jobs/{job['id']} was cancelled: {job['error']}")
    if job["state"] not in FINAL_STATES:
        return Unavailable(f"the prediction job jobs/{job['id']} did not end in time")
    return SipError(job["error"] or "the prediction job failed", Code.parse(job["error_code"]))
