"""Projects, scenes and ROIs: validation and storage (no gRPC here).

A project fixes the classes (values 1..K, 0 = background) and the bands a
scene must carry. Scenes are rasters read in place. ROIs are stored in pixel
coordinates of their scene. Every change to scenes or ROIs bumps the
project's revision, which tells whether a prepared dataset is stale.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from sipd.config import LimitsConfig
from sipd.contracts.jobs import ProjectSnapshot, RoiSnapshot, SceneSnapshot
from sipd.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    bounded,
)
from sipd.labeling import (
    SPLITS,
    RoiSpec,
    background_mask,
    export_geojson,
    import_rois,
    parse_wkt,
    scene_to_pixel,
    validate_roi,
)
from sipd.labeling.rasterize import VECTOR_MASK_EXTENSIONS
from sipd.paths import PathPolicy
from sipd.preprocess.product_files import product_name
from sipd.raster import SCENE_DTYPES, atomic_path, check_readable, raster_info
from sipd.store import Store

PROJECT_ID = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
SCENE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
CLASS_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")
HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")

# CSS colour names people type most; anything else as #rrggbb.
NAMED_COLORS = {
    "black": "#000000",
    "white": "#ffffff",
    "gray": "#808080",
    "grey": "#808080",
    "red": "#ff0000",
    "darkred": "#8b0000",
    "orange": "#ffa500",
    "yellow": "#ffff00",
    "gold": "#ffd700",
    "green": "#008000",
    "lime": "#00ff00",
    "darkgreen": "#006400",
    "olive": "#808000",
    "teal": "#008080",
    "cyan": "#00ffff",
    "blue": "#0000ff",
    "navy": "#000080",
    "skyblue": "#87ceeb",
    "indigo": "#4b0082",
    "purple": "#800080",
    "violet": "#ee82ee",
    "magenta": "#ff00ff",
    "pink": "#ffc0cb",
    "brown": "#a52a2a",
    "tan": "#d2b48c",
    "beige": "#f5f5dc",
    "salmon": "#fa8072",
    "coral": "#ff7f50",
}
# Distinct colours for classes created without one.
PALETTE = [
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#46f0f0",
    "#f032e6",
    "#bcf60c",
    "#fabebe",
    "#008080",
    "#e6beff",
    "#9a6324",
    "#800000",
    "#aaffc3",
]


def normalize_color(color: str, index: int) -> str:
    if not color:
        return PALETTE[index % len(PALETTE)]
    lowered = color.strip().lower()
    if HEX_COLOR.match(lowered):
        return lowered
    if lowered in NAMED_COLORS:
        return NAMED_COLORS[lowered]
    raise InvalidArgument(
        f"colour {color!r} is not #rrggbb or one of: {', '.join(sorted(NAMED_COLORS))}"
    )


def check_mask_opens(policy: PathPolicy, mask: Path) -> None:
    """A raster background mask may make GDAL open only files inside the roots (a VRT
    mask's sources decide which pixels are left unclassified). Vector masks are read by
    OGR from GeoJSON, GeoPackage or Shapefile, none of which references other files."""
    if mask.suffix.lower() not in VECTOR_MASK_EXTENSIONS:
        check_readable(mask, functools.partial(policy.check_opened, what=f"background mask {mask}"))


def check_scene_dtype(info: dict[str, Any]) -> None:
    """Refuse a pixel type no net is trained on (raster_info's dict); the one rule for
    scenes added to a project and rasters given to predict."""
    if info["dtype"] not in SCENE_DTYPES:
        raise InvalidArgument(
            f"{bounded(str(info['path']))} has pixel type {info['dtype']}; "
            f"accepted: {', '.join(SCENE_DTYPES)} "
            "(convert it, e.g. with gdal_translate -ot Float32)"
        )


class Projects:
    def __init__(
        self,
        store: Store,
        policy: PathPolicy,
        data_dir: Path,
        max_scene_pixels: int = LimitsConfig.max_scene_pixels,
    ) -> None:
        self.store = store
        self.policy = policy
        self.data_dir = data_dir
        # A mask holds a byte per scene pixel in the worker's memory: a header
        # declaring 200000 x 200000 pixels is refused here, before anything allocates.
        self.max_scene_pixels = max_scene_pixels

    # -- projects -----------------------------------------------------------------

    def create(
        self, project_id: str, description: str, classes: list[tuple[str, str]], bands: list[str]
    ) -> dict[str, Any]:
        if not PROJECT_ID.match(project_id or ""):
            raise InvalidArgument(
                f"project id {bounded(repr(project_id))} is not valid: 1-63 lowercase letters, "
                "digits, '-' or '_', starting with a letter"
            )
        if not classes:
            raise InvalidArgument("a project needs at least one class, e.g. --classes ice,water")
        if len(classes) > 254:
            raise InvalidArgument(f"{len(classes)} classes; at most 254 fit in a uint8 label map")
        seen: set[str] = set()
        defs = []
        for i, (name, color) in enumerate(classes):
            if not CLASS_NAME.match(name) or name.lower() == "background":
                raise InvalidArgument(
                    f"class name {bounded(repr(name))} is not valid: letters, digits, '_', '-', "
                    "'.', starting with a letter; 'background' is reserved for value 0"
                )
            if name.lower() in seen:
                raise InvalidArgument(f"class {name!r} is given twice")
            if name.rsplit("_", 1)[-1].lower() in SPLITS:
                raise InvalidArgument(
                    f"class name {name!r} ends in a split suffix; SIP labels such as "
                    f"'{name}' would read as class and split"
                )
            seen.add(name.lower())
            defs.append({"value": i + 1, "name": name, "color": normalize_color(color, i)})
        if len(set(bands)) != len(bands) or any(not b for b in bands):
            raise InvalidArgument(
                f"band names must be unique and non-empty, got {bounded(str(bands))}"
            )
        try:
            self.store.execute(
                "INSERT INTO projects (id, description, classes, bands, create_time) "
                "VALUES (?,?,?,?,?)",
                (project_id, description, json.dumps(defs), json.dumps(bands), time.time()),
            )
        except Exception as exc:
            if "UNIQUE" in str(exc):
                raise AlreadyExists(f"project {project_id!r} already exists") from None
            raise
        return self.get(project_id)

    def get(self, project_id: str) -> dict[str, Any]:
        row = self.store.query_one("SELECT * FROM projects WHERE id = ?", (project_id,))
        if row is None:
            raise NotFound(
                f"project {project_id!r} does not exist; create it with `sipctl project create`"
            )
        project = dict(row)
        project["classes"] = json.loads(project["classes"])
        project["bands"] = json.loads(project["bands"])
        project["scene_count"] = self._count("scenes", project_id)
        project["roi_count"] = self._count("rois", project_id)
        return project

    def _count(self, table: str, project_id: str) -> int:
        row = self.store.query_one(f"SELECT COUNT(*) FROM {table} WHERE project = ?", (project_id,))
        return int(row[0]) if row else 0

    def list(self) -> list[dict[str, Any]]:
        return [self.get(r["id"]) for r in self.store.query("SELECT id FROM projects ORDER BY id")]

    def delete(self, project_id: str, delete_models: bool) -> None:
        self.get(project_id)
        busy = self.store.query_one(
            "SELECT id FROM jobs WHERE project = ? AND state IN ('QUEUED','RUNNING') LIMIT 1",
            (project_id,),
        )
        if busy:
            raise FailedPrecondition(
                f"project {project_id!r} has job jobs/{busy[0]} queued or running; cancel it first"
            )
        with self.store.transaction() as db:
            db.execute("DELETE FROM rois WHERE project = ?", (project_id,))
            db.execute("DELETE FROM scenes WHERE project = ?", (project_id,))
            db.execute("DELETE FROM projects WHERE id = ?", (project_id,))
        shutil.rmtree(self.project_dir(project_id), ignore_errors=True)
        if delete_models:
            shutil.rmtree(self.data_dir / "models" / project_id, ignore_errors=True)

    def project_dir(self, project_id: str) -> Path:
        return self.data_dir / "projects" / project_id

    def preprocessed_dir(self, project_id: str) -> Path:
        """Where products preprocessed into scenes go when the caller names no output."""
        return self.project_dir(project_id) / "preprocessed"

    def class_names(self, project: dict[str, Any]) -> list[str]:
        return [c["name"] for c in project["classes"]]

    # -- scenes -------------------------------------------------------------------

    def add_scene(
        self,
        project_id: str,
        scene_id: str,
        path: str,
        mask: str,
        recipe: str = "",
        *,
        made_here: bool = False,
    ) -> dict[str, Any]:
        """Register a raster as a scene; `recipe` ("name@version") when it was made by one.

        `made_here`: the daemon wrote the raster itself (a preprocessed product, perhaps
        under its data dir), so the allowed roots, which bound what callers name, do not
        apply to it.
        """
        project = self.get(project_id)
        if made_here:
            resolved = Path(os.path.realpath(path))
            opened = None
        else:
            resolved = self.policy.check_input(path, "scene path")
            opened = functools.partial(self.policy.check_opened, what=f"scene {resolved}")
        if not scene_id:
            scene_id = scene_id_of(resolved)
        check_scene_id(scene_id)
        info = raster_info(resolved, opened)
        self._check_scene(project, info)
        check_readable(resolved, opened)
        mask_path = str(self.policy.check_input(mask, "background mask")) if mask else ""
        if mask_path:
            check_mask_opens(self.policy, Path(mask_path))
            background_mask(resolved, mask_path)  # refuses a wrong size or an unreadable file now
        with self.store.transaction() as db:
            if db.execute(
                "SELECT 1 FROM scenes WHERE project=? AND id=?", (project_id, scene_id)
            ).fetchone():
                raise AlreadyExists(
                    f"scene {scene_id!r} already exists in project {project_id!r}; "
                    "pick another --name or remove it first"
                )
            if not project["bands"]:
                bands = [n or f"B{i + 1}" for i, n in enumerate(info["band_names"])]
                db.execute(
                    "UPDATE projects SET bands = ? WHERE id = ?", (json.dumps(bands), project_id)
                )
            db.execute(
                "INSERT INTO scenes (project, id, path, background_mask, info, create_time, "
                "recipe) VALUES (?,?,?,?,?,?,?)",
                (
                    project_id,
                    scene_id,
                    str(resolved),
                    mask_path,
                    json.dumps(info),
                    time.time(),
                    recipe,
                ),
            )
            self.store.bump_revision(db, project_id)
        return self.get_scene(project_id, scene_id)

    def _check_scene(self, project: dict[str, Any], info: dict[str, Any]) -> None:
        self._check_scene_size(info)
        check_scene_dtype(info)
        bands = project["bands"]
        if bands and info["band_count"] != len(bands):
            raise InvalidArgument(
                f"{info['path']} has {info['band_count']} band(s) but project {project['id']!r} "
                f"expects {len(bands)}: {', '.join(bands)}"
            )
        names = info["band_names"]
        if bands and all(names) and [n.lower() for n in names] != [b.lower() for b in bands]:
            raise InvalidArgument(
                f"{info['path']} has bands {', '.join(names)} but project {project['id']!r} "
                f"expects {', '.join(bands)} in that order"
            )

    def _check_scene_size(self, info: dict[str, Any]) -> None:
        pixels = int(info["width"]) * int(info["height"])
        if pixels > self.max_scene_pixels:
            raise ResourceExhausted(
                f"{bounded(str(info.get('path', 'the scene')))} is {info['width']} x "
                f"{info['height']} pixels ({pixels:,}), more than this daemon handles "
                f"({self.max_scene_pixels:,}, option limits.max_scene_pixels); "
                "cut it into smaller scenes or raise the limit"
            )

    def get_scene(self, project_id: str, scene_id: str) -> dict[str, Any]:
        row = self.store.query_one(
            "SELECT * FROM scenes WHERE project=? AND id=?", (project_id, scene_id)
        )
        if row is None:
            self.get(project_id)
            raise NotFound(f"scene {scene_id!r} does not exist in project {project_id!r}")
        return self._scene(row)

    def _scene(self, row: Any) -> dict[str, Any]:
        scene = dict(row)
        scene["info"] = json.loads(scene["info"])
        count = self.store.query_one(
            "SELECT COUNT(*) FROM rois WHERE project=? AND scene=?", (scene["project"], scene["id"])
        )
        scene["roi_count"] = int(count[0]) if count else 0
        return scene

    def list_scenes(self, project_id: str) -> list[dict[str, Any]]:
        self.get(project_id)
        rows = self.store.query("SELECT * FROM scenes WHERE project=? ORDER BY id", (project_id,))
        return [self._scene(r) for r in rows]

    def delete_scene(self, project_id: str, scene_id: str) -> None:
        self.get_scene(project_id, scene_id)
        with self.store.transaction() as db:
            db.execute("DELETE FROM rois WHERE project=? AND scene=?", (project_id, scene_id))
            db.execute("DELETE FROM scenes WHERE project=? AND id=?", (project_id, scene_id))
            self.store.bump_revision(db, project_id)
        shutil.rmtree(self.project_dir(project_id) / "masks" / scene_id, ignore_errors=True)

    # -- ROIs ---------------------------------------------------------------------

    def add_roi(
        self,
        project_id: str,
        scene_id: str,
        *,
        class_name: str,
        split: str,
        wkt: str,
        coordinates: str,
        width: float,
        source: str = "drawn",
    ) -> dict[str, Any]:
        project = self.get(project_id)
        scene = self.get_scene(project_id, scene_id)
        if not math.isfinite(width) or width < 0:
            # 0 means "not given" (proto3 default); a negative or NaN width is a mistake.
            raise InvalidArgument(
                f"roi width {width} is not valid; give a positive line width in pixels "
                "(0 = default 1)"
            )
        if width == 0:
            width = 1.0
        geom = parse_wkt(wkt)
        if coordinates == "scene":
            geom = scene_to_pixel(geom, scene["info"]["transform"])
        roi = RoiSpec(class_name, split, geom, width, source, coordinates)
        self._validate(project, scene, roi, f"({class_name}, {split})")
        with self.store.transaction() as db:
            rid = self._insert(db, project_id, scene_id, roi)
            self.store.bump_revision(db, project_id)
        return self.get_roi(project_id, scene_id, rid)

    def _validate(
        self, project: dict[str, Any], scene: dict[str, Any], roi: RoiSpec, source: str
    ) -> None:
        info = scene["info"]
        validate_roi(roi, info["width"], info["height"], self.class_names(project), source)

    def _insert(self, db: Any, project_id: str, scene_id: str, roi: RoiSpec) -> int:
        cur = db.execute(
            "INSERT INTO rois (project, scene, class_name, split, wkt, width, source, create_time) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (
                project_id,
                scene_id,
                roi.class_name,
                roi.split,
                roi.geometry.wkt,
                roi.width,
                roi.source,
                time.time(),
            ),
        )
        return int(cur.lastrowid)

    def get_roi(self, project_id: str, scene_id: str, roi_id: int) -> dict[str, Any]:
        row = self.store.query_one(
            "SELECT * FROM rois WHERE project=? AND scene=? AND id=?",
            (project_id, scene_id, roi_id),
        )
        if row is None:
            raise NotFound(
                f"ROI {roi_id} does not exist on scene {scene_id!r} of project {project_id!r}"
            )
        return dict(row)

    def list_rois(
        self, project_id: str, scene_id: str | None, split: str = "", class_name: str = ""
    ) -> list[dict[str, Any]]:
        if scene_id is None:
            self.get(project_id)
        else:
            self.get_scene(project_id, scene_id)
        where, args = ["project = ?"], [project_id]
        for column, value in (("scene", scene_id), ("split", split), ("class_name", class_name)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        rows = self.store.query(
            f"SELECT * FROM rois WHERE {' AND '.join(where)} ORDER BY id", tuple(args)
        )
        return [dict(r) for r in rows]

    def delete_roi(self, project_id: str, scene_id: str, roi_id: int) -> None:
        self.get_roi(project_id, scene_id, roi_id)
        with self.store.transaction() as db:
            db.execute("DELETE FROM rois WHERE id = ?", (roi_id,))
            self.store.bump_revision(db, project_id)

    def import_rois(
        self,
        project_id: str,
        scene_id: str,
        path: str,
        *,
        default_split: str,
        fields: dict[str, str],
        default_width: float,
        replace: bool,
        validate_only: bool,
    ) -> dict[str, Any]:
        project = self.get(project_id)
        scene = self.get_scene(project_id, scene_id)
        resolved = self.policy.check_input(path, "ROI file")
        info = scene["info"]
        rois = import_rois(
            resolved,
            width=info["width"],
            height=info["height"],
            transform=info["transform"],
            crs=info["crs"],
            class_names=self.class_names(project),
            default_split=default_split,
            default_width=default_width or 1.0,
            **fields,
        )
        objects: dict[str, dict[str, int]] = {}
        for roi in rois:
            per_class = objects.setdefault(roi.split, {})
            per_class[roi.class_name] = per_class.get(roi.class_name, 0) + 1
        if not validate_only:
            # All or nothing: one transaction for the replace and every insert.
            with self.store.transaction() as db:
                if replace:
                    db.execute(
                        "DELETE FROM rois WHERE project=? AND scene=?", (project_id, scene_id)
                    )
                for roi in rois:
                    self._insert(db, project_id, scene_id, roi)
                self.store.bump_revision(db, project_id)
        return {"imported": len(rois), "objects": objects, "format": _format_name(resolved)}

    def export_rois(
        self,
        project_id: str,
        scene_id: str,
        path: str,
        coordinates: str,
        overwrite: bool = False,
    ) -> dict[str, Any]:
        scene = self.get_scene(project_id, scene_id)
        rows = self.list_rois(project_id, scene_id)
        info = scene["info"]
        if not coordinates:
            coordinates = "scene" if info["crs"] else "pixel"
        specs = [
            (
                r["id"],
                RoiSpec(r["class_name"], r["split"], parse_wkt(r["wkt"]), r["width"], r["source"]),
            )
            for r in rows
        ]
        doc = export_geojson(
            specs, transform=info["transform"], crs=info["crs"], coordinates=coordinates
        )
        text = json.dumps(doc)
        if not path:
            return {"count": len(rows), "geojson": text, "path": ""}
        resolved = self._export_target(path, overwrite)
        with atomic_path(resolved) as tmp:
            tmp.write_text(text)
        return {"count": len(rows), "geojson": "", "path": str(resolved)}

    def scene_files(self) -> dict[Path, tuple[str, str]]:
        """Every registered scene's raster and background mask -> (project, scene id)."""
        rows = self.store.query("SELECT project, id, path, background_mask FROM scenes")
        return {
            Path(os.path.realpath(used)): (row["project"], row["id"])
            for row in rows
            for used in (row["path"], row["background_mask"])
            if used
        }

    def refuse_scene_file(
        self,
        resolved: Path,
        what: str,
        scene_files: dict[Path, tuple[str, str]] | None = None,
    ) -> None:
        """A registered scene's raster or mask is never an output, of any project: other
        projects' labels and datasets depend on it. Callers checking several paths pass
        `scene_files()` once."""
        files = self.scene_files() if scene_files is None else scene_files
        owner = files.get(resolved)
        if owner is not None:
            project, scene = owner
            raise PermissionDenied(
                f"{what} {resolved} is a file of scene {scene!r} in project {project!r}; "
                "choose another file"
            )

    def _export_target(self, path: str, overwrite: bool) -> Path:
        """The checked export file: inside the roots, outside the data dir (sipd.db,
        models, projects), never a registered scene's raster or mask, and an
        existing file only when the caller asked to overwrite it."""
        resolved = self.policy.check_output(path, "export path", self.data_dir)
        if resolved.is_dir():
            raise InvalidArgument(
                f"export path {resolved} is a folder; give a file name (e.g. rois.geojson)"
            )
        self.refuse_scene_file(resolved, "export path")
        if os.path.lexists(resolved) and not overwrite:
            raise AlreadyExists(
                f"export path {resolved} exists; pass overwrite (sipctl roi export "
                "--overwrite) to replace it, or choose another file"
            )
        return resolved

    # -- masks and job snapshots --------------------------------------------------

    def masks_dir(self, project_id: str, scene_id: str) -> Path:
        return self.project_dir(project_id) / "masks" / scene_id

    def snapshot(
        self,
        project_id: str,
        splits: tuple[str, ...] = SPLITS,
        scene_ids: list[str] | None = None,
    ) -> ProjectSnapshot:
        """Everything a worker job needs about a project, taken at submit time: the
        scenes (all, or `scene_ids`) that hold ROIs of `splits`, with those ROIs."""
        project = self.get(project_id)
        wanted = set(scene_ids or ())
        scenes = []
        for scene in self.list_scenes(project_id):
            if wanted and scene["id"] not in wanted:
                continue
            # Scenes stored before the limit (or under a larger one) are refused at submit.
            self._check_scene_size(scene["info"])
            rois = [
                RoiSnapshot(
                    class_name=r["class_name"], split=r["split"], wkt=r["wkt"], width=r["width"]
                )
                for r in self.list_rois(project_id, scene["id"])
                if r["split"] in splits
            ]
            # ComputeMasks names scenes explicitly and wants their (maybe empty) masks.
            if rois or wanted:
                scenes.append(
                    SceneSnapshot(
                        name=scene["id"],
                        path=scene["path"],
                        background_mask=scene["background_mask"] or "",
                        info=scene["info"],
                        rois=rois,
                        masks_dir=str(self.masks_dir(project_id, scene["id"])),
                    )
                )
        return ProjectSnapshot(
            project=project_id,
            classes=project["classes"],
            bands=project["bands"],
            revision=project["revision"],
            scenes=scenes,
        )

    def count_rois(self, project_id: str, split: str) -> int:
        row = self.store.query_one(
            "SELECT COUNT(*) FROM rois WHERE project = ? AND split = ?", (project_id, split)
        )
        return int(row[0]) if row else 0


def _format_name(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "sip-csv"
    if suffix in (".gpkg", ".shp"):
        return "gpkg" if suffix == ".gpkg" else "shapefile"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return "json"
    if isinstance(doc, dict) and "objects" in doc:
        return "sip-json"
    if isinstance(doc, dict) and "shapes" in doc:
        return "labelme"
    return "geojson"


def check_scene_id(scene_id: str) -> None:
    if not SCENE_ID.match(scene_id):
        raise InvalidArgument(
            f"scene id {bounded(repr(scene_id))} is not valid: 1-63 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit"
        )


def scene_id_of(path: Path) -> str:
    """The default scene id of a raster or product: its name without the extension or
    packaging ("S1A_..._5371" from "S1A_..._5371.SAFE.zip")."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", product_name(path))[:63].rstrip("._-") or "scene"
