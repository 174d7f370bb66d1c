"""The studio's HTTP/JSON routes (docs/studio.md), over the daemon's domain code.

Each route names the gRPC method it stands for: its scope is that method's
scope (sipd.access.policy), and it calls what that method's servicer calls
(sipd.projects, sipd.job_requests, the job engine, the model repository),
so the page and sipctl see and change the same state.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sipd import __version__
from sipd.contracts.job_record import JobState
from sipd.contracts.jobs import PredictParams
from sipd.errors import FailedPrecondition, InvalidArgument, NotFound
from sipd.job_requests import PredictOptions, TrainOptions
from sipd.paths import PathPolicy
from sipd.services.common import job_id, row_number
from sipd.studio.live import LiveModels
from sipd.studio.png import encode_png
from sipd.studio.tiles import SceneTiles

if TYPE_CHECKING:
    from sipd.server import Daemon


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any]
    who: str
    scope: str


@dataclass
class Response:
    status: int
    body: dict[str, Any] | None = None
    png: bytes | None = None


Handler = Callable[..., Response]
_ID = r"([A-Za-z0-9][A-Za-z0-9._-]{0,62})"


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    rpc: str  # the gRPC method whose scope this route needs
    handler: str


def _route(method: str, path: str, rpc: str, handler: str) -> Route:
    regex = path.replace("{id}", _ID).replace("{n}", r"(-?[0-9]{1,19})")
    return Route(method, re.compile(f"^{regex}$"), rpc, handler)


ROUTES = [
    _route("GET", "/api/session", "/sip.v1.SystemService/GetStatus", "session"),
    _route("GET", "/api/projects", "/sip.v1.ProjectService/ListProjects", "list_projects"),
    _route("GET", "/api/projects/{id}", "/sip.v1.ProjectService/GetProject", "get_project"),
    _route("GET", "/api/projects/{id}/scenes", "/sip.v1.LabelingService/ListScenes", "list_scenes"),
    _route("GET", "/api/projects/{id}/scenes/{id}/stats", "/sip.v1.LabelingService/GetScene",
           "scene_stats"),
    _route("GET", "/api/projects/{id}/scenes/{id}/tiles/{n}/{n}/{n}.png",
           "/sip.v1.LabelingService/GetScene", "tile"),
    _route("GET", "/api/projects/{id}/scenes/{id}/rois", "/sip.v1.LabelingService/ListRois",
           "list_rois"),
    _route("POST", "/api/projects/{id}/scenes/{id}/rois", "/sip.v1.LabelingService/CreateRoi",
           "create_roi"),
    _route("DELETE", "/api/projects/{id}/scenes/{id}/rois/{n}",
           "/sip.v1.LabelingService/DeleteRoi", "delete_roi"),
    # Trains a model (in memory) and predicts: the scope of Train.
    _route("POST", "/api/projects/{id}/scenes/{id}/live", "/sip.v1.TrainingService/Train", "live"),
    _route("POST", "/api/projects/{id}/train", "/sip.v1.TrainingService/Train", "train"),
    _route("GET", "/api/jobs/{n}", "/sip.v1.JobService/GetJob", "get_job"),
    _route("POST", "/api/jobs/{n}/cancel", "/sip.v1.JobService/CancelJob", "cancel_job"),
    _route("GET", "/api/projects/{id}/models", "/sip.v1.TrainingService/ListModels", "list_models"),
    _route("POST", "/api/projects/{id}/models/{n}/test", "/sip.v1.TrainingService/Test",
           "test_model"),
    _route("POST", "/api/projects/{id}/scenes/{id}/predict", "/sip.v1.PredictionService/Predict",
           "predict_scene"),
    # A finished predict job's label map K, as tiles: reading it is reading the job.
    _route("GET", "/api/jobs/{n}/outputs/{n}/tiles/{n}/{n}/{n}.png", "/sip.v1.JobService/GetJob",
           "output_tile"),
]  # fmt: skip


def match(method: str, path: str) -> tuple[Route, tuple[str, ...]] | None:
    """The route for (method, path) and its captured ids; None when no route has the path."""
    allowed = []
    for route in ROUTES:
        found = route.pattern.match(path)
        if found:
            if route.method == method:
                return route, found.groups()
            allowed.append(route.method)
    if allowed:
        raise MethodNotAllowed(allowed)
    return None


class MethodNotAllowed(Exception):
    def __init__(self, allowed: list[str]) -> None:
        super().__init__(f"allowed: {', '.join(allowed)}")
        self.allowed = allowed


class StudioApi:
    def __init__(self, daemon: Daemon, threads: int = 0) -> None:
        self.daemon = daemon
        self.projects = daemon.projects
        # What jobs may read: the allowed roots, and the data dir (preprocessed scenes).
        readable = PathPolicy([str(r) for r in daemon.policy.roots] + [str(daemon.data_dir)])
        self.tiles = SceneTiles(
            daemon.data_dir / "studio" / "overviews",
            functools.partial(readable.check_opened, what="the scene"),
        )
        self.live_models = LiveModels(self.projects, self.tiles, threads)

    def call(self, route: Route, args: tuple[str, ...], request: Request) -> Response:
        handler: Handler = getattr(self, route.handler)
        return handler(request, *args)

    # -- read ------------------------------------------------------------------

    def session(self, request: Request) -> Response:
        return Response(200, {"who": request.who, "scope": request.scope,
                              "version": __version__})  # fmt: skip

    def list_projects(self, request: Request) -> Response:
        return Response(200, {"projects": [_project(p) for p in self.projects.list()]})

    def get_project(self, request: Request, pid: str) -> Response:
        return Response(200, _project(self.projects.get(pid)))

    def list_scenes(self, request: Request, pid: str) -> Response:
        return Response(200, {"scenes": [_scene(s) for s in self.projects.list_scenes(pid)]})

    def scene_stats(self, request: Request, pid: str, sid: str) -> Response:
        scene = self.projects.get_scene(pid, sid)
        bands = self.tiles.stats(scene["path"], scene["info"]["band_names"])
        return Response(200, {"bands": [b.as_dict() for b in bands]})

    def tile(self, request: Request, pid: str, sid: str, z: str, x: str, y: str) -> Response:
        scene = self.projects.get_scene(pid, sid)
        info = scene["info"]
        count = info["band_count"]
        bands = _numbers(request.query.get("bands", ""), int, "bands") or (
            [1, 2, 3] if count >= 3 else [1]
        )
        lo = _numbers(request.query.get("lo", ""), float, "lo")
        hi = _numbers(request.query.get("hi", ""), float, "hi")
        if not lo or not hi:  # the page sends both; the scene's statistics only otherwise
            stats = {s.index: s for s in self.tiles.stats(scene["path"], info["band_names"])}
            lo = lo or [stats[b].p2 if b in stats else 0.0 for b in bands]
            hi = hi or [stats[b].p98 if b in stats else 1.0 for b in bands]
        rgba = self.tiles.render(scene["path"], int(z), int(x), int(y), bands, lo, hi)
        return Response(200, png=encode_png(rgba))

    def list_rois(self, request: Request, pid: str, sid: str) -> Response:
        return Response(200, {"rois": [_roi(r) for r in self.projects.list_rois(pid, sid)]})

    def get_job(self, request: Request, number: str) -> Response:
        return Response(200, _job(self.daemon.engine.get(_job_number(number))))

    def list_models(self, request: Request, pid: str) -> Response:
        self.projects.get(pid)
        return Response(200, {"models": [_model(m) for m in self.daemon.models.list(pid)]})

    # -- label and train ------------------------------------------------------

    def create_roi(self, request: Request, pid: str, sid: str) -> Response:
        body = request.body
        wkt = body.get("wkt")
        if not isinstance(wkt, str) or not wkt:
            raise InvalidArgument("wkt must be a WKT geometry in pixel coordinates, "
                                  "e.g. 'LINESTRING (10 10, 200 40)'")  # fmt: skip
        split = body.get("split") or "train"
        width = body.get("width") or 0
        if not isinstance(width, int | float) or isinstance(width, bool):
            raise InvalidArgument(f"width must be a number of pixels, got {width!r}")
        roi = self.projects.add_roi(
            pid, sid, class_name=str(body.get("class_name") or ""), split=str(split), wkt=wkt,
            coordinates="pixel", width=float(width), source="studio",
        )  # fmt: skip
        return Response(201, _roi(roi))

    def delete_roi(self, request: Request, pid: str, sid: str, rid: str) -> Response:
        number = row_number(rid)
        if number is None:
            raise InvalidArgument(f"ROI id {rid!r} is not a number of an ROI")
        self.projects.delete_roi(pid, sid, number)
        return Response(200, {})

    def live(self, request: Request, pid: str, sid: str) -> Response:
        return Response(200, self.live_models.run(pid, sid, request.body))

    def train(self, request: Request, pid: str) -> Response:
        body = request.body
        arch = body.get("arch") or ""
        epochs = body.get("epochs") or 0
        if not isinstance(arch, str):
            raise InvalidArgument(f"arch must be a model kind name, got {arch!r}")
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
            raise InvalidArgument(f"epochs must be a positive whole number, got {epochs!r}")
        job = self.daemon.requests.train(pid, TrainOptions(arch=arch, epochs=epochs))
        return Response(202, _job(job))

    def test_model(self, request: Request, pid: str, version: str) -> Response:
        scenes = request.body.get("scenes") or []
        if not isinstance(scenes, list) or not all(isinstance(s, str) for s in scenes):
            raise InvalidArgument("scenes must be a list of scene ids (empty: every test scene)")
        return Response(202, _job(self.daemon.requests.test(pid, version, scenes)))

    def predict_scene(self, request: Request, pid: str, sid: str) -> Response:
        """Label a scene with a model version; the map goes beside the scene unless `output`."""
        body = request.body
        scene = self.projects.get_scene(pid, sid)
        version = str(self.daemon.models.resolve(pid, str(body.get("version") or "latest")))
        output = body.get("output") or ""
        overwrite = body.get("overwrite")
        if not isinstance(output, str):
            raise InvalidArgument(f"output must be a file path, got {output!r}")
        if overwrite is not None and not isinstance(overwrite, bool):
            raise InvalidArgument(f"overwrite must be true or false, got {overwrite!r}")
        if not output:
            source = Path(scene["path"])
            output = str(source.with_name(f"{source.stem}_{pid}_v{version}_labels.tif"))
            # The studio's own name for this scene and version: predicting again replaces it.
            overwrite = True if overwrite is None else overwrite
        job = self.daemon.requests.predict(
            pid, version, [scene["path"]], output, PredictOptions(overwrite=bool(overwrite)),
        )  # fmt: skip
        return Response(202, _job(job))

    def output_tile(
        self, request: Request, number: str, item: str, z: str, x: str, y: str
    ) -> Response:
        job = self.daemon.engine.get(_job_number(number))
        if not isinstance(job.params, PredictParams):
            raise InvalidArgument(f"jobs/{job.id} is a {job.type} job, not a predict job")
        if job.state != JobState.SUCCEEDED:
            raise FailedPrecondition(
                f"jobs/{job.id} is {job.state}; its label maps are shown once it succeeded"
            )
        index = int(item)
        if not 0 <= index < len(job.params.items):
            raise InvalidArgument(
                f"jobs/{job.id} wrote {len(job.params.items)} label map(s); output {index} is none"
            )
        path = job.params.items[index].output
        rgba = self.tiles.render_labels(path, int(z), int(x), int(y))
        return Response(200, png=encode_png(rgba))

    def cancel_job(self, request: Request, number: str) -> Response:
        job = self.daemon.engine.cancel(_job_number(number), "cancelled from the studio")
        return Response(200, _job(job))


def _job_number(text: str) -> int:
    return job_id(f"jobs/{text}")


def _numbers(text: str, kind: type, name: str) -> list[Any]:
    if not text:
        return []
    try:
        return [kind(v) for v in text.split(",")]
    except ValueError:
        raise InvalidArgument(
            f"{name} {text[:80]!r} must be comma-separated numbers, e.g. {name}=1,2,3"
        ) from None


def _project(p: dict[str, Any]) -> dict[str, Any]:
    return {k: p[k] for k in ("id", "description", "classes", "bands", "scene_count",
                              "roi_count")}  # fmt: skip


def _scene(s: dict[str, Any]) -> dict[str, Any]:
    info = s["info"]
    return {
        "id": s["id"],
        "width": info["width"],
        "height": info["height"],
        "band_count": info["band_count"],
        "band_names": info["band_names"],
        "dtype": info["dtype"],
        "nodata": info["nodata"],
        "crs": info["crs"],
        # GDAL's order (x = a + col*b + row*c), what a web page's map code expects.
        "transform": _gdal_order(info["transform"]),
        "roi_count": s["roi_count"],
    }


def _gdal_order(affine: list[float]) -> list[float]:
    a, b, c, d, e, f = list(affine)[:6]
    return [c, a, b, f, d, e]


def _roi(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in ("id", "class_name", "split", "wkt", "width", "source",
                              "create_time")}  # fmt: skip


def _job(job: Any) -> dict[str, Any]:
    if job is None:
        raise NotFound("no such job")
    return {
        "id": job.id,
        "type": str(job.type),
        "project": job.project,
        "state": str(job.state),
        "progress": job.progress.model_dump(mode="json") if job.progress else None,
        "error": job.error,
        "error_code": job.error_code.value if job.error_code else "",
        "result": job.result.model_dump(mode="json") if job.result else None,
        "create_time": job.create_time,
        "start_time": job.start_time,
        "end_time": job.end_time,
    }


def _model(m: Any) -> dict[str, Any]:
    training = m.training or {}
    latest = m.latest_evaluation
    report = latest.report if latest else None
    return {
        "version": m.version,
        "name": m.name,
        "arch": m.card.architecture.name,
        "created": m.create_time,
        "classes": [c.name for c in m.card.classes],
        "best_val_accuracy": training.get("best_val_accuracy"),
        "evaluation": report,
    }
