"""sipctl project | scene | roi | mask."""

from __future__ import annotations

import argparse
from typing import Any

from sipapi.v1 import common_pb2, labeling_pb2, preprocess_pb2, project_pb2

from sipctl.app import App, absolute
from sipctl.client import CliError
from sipctl.commands.preprocess import print_result
from sipctl.render import table, to_plain

SPLITS = ["train", "val", "test"]


def register(sub: Any, job_options: argparse.ArgumentParser) -> None:
    project = sub.add_parser("project", help="create, list, show and delete projects")
    psub = project.add_subparsers(dest="project_command", required=True, metavar="COMMAND")
    p = psub.add_parser("create", help="a classification task: classes, colours, bands")
    p.add_argument("project", help="project id, e.g. seaice")
    p.add_argument(
        "--classes", required=True, help="class names in order, comma-separated: ice,water"
    )
    p.add_argument(
        "--colors", default="", help="one colour per class: #rrggbb or a name (orange,indigo)"
    )
    p.add_argument(
        "--bands",
        default="",
        help="band names every scene must have, in order: HH,HV "
        "(default: taken from the first scene)",
    )
    p.add_argument("--description", default="")
    p.set_defaults(func=project_create)
    p = psub.add_parser("list", help="all projects")
    p.set_defaults(func=project_list)
    p = psub.add_parser("show", help="one project")
    p.add_argument("project")
    p.set_defaults(func=project_show)
    p = psub.add_parser("delete", help="delete a project with its scenes, ROIs and masks")
    p.add_argument("project")
    p.add_argument("--models", action="store_true", help="also delete its model versions")
    p.set_defaults(func=project_delete)

    scene = sub.add_parser("scene", help="register rasters as scenes of a project")
    ssub = scene.add_subparsers(dest="scene_command", required=True, metavar="COMMAND")
    p = ssub.add_parser(
        "add",
        parents=[job_options],
        help="register a raster (read in place, not copied), or preprocess a raw product "
        "with --recipe and register the result",
    )
    p.add_argument("project")
    p.add_argument("path", help="raster file, or a raw product with --recipe")
    p.add_argument(
        "--recipe",
        default="",
        help="preprocess the product with this recipe (NAME or NAME@VERSION) first",
    )
    p.add_argument(
        "-o",
        "--output",
        default="",
        help="with --recipe: the COG to write (default: under sipd's data dir)",
    )
    p.add_argument("--name", default="", help="scene id (default: the file name without extension)")
    p.add_argument(
        "--background-mask",
        default="",
        help="raster (non-zero = background) or vector file (polygons = background)",
    )
    p.set_defaults(func=scene_add)
    p = ssub.add_parser("list", help="a project's scenes")
    p.add_argument("project")
    p.set_defaults(func=scene_list)
    p = ssub.add_parser("show", help="one scene")
    p.add_argument("project")
    p.add_argument("scene")
    p.set_defaults(func=scene_show)
    p = ssub.add_parser("remove", help="forget a scene and its ROIs (the file stays)")
    p.add_argument("project")
    p.add_argument("scene")
    p.set_defaults(func=scene_remove)

    roi = sub.add_parser("roi", help="example pixels: add, import, list, export, delete")
    rsub = roi.add_subparsers(dest="roi_command", required=True, metavar="COMMAND")
    p = rsub.add_parser(
        "import",
        help="import ROIs from GeoJSON, GeoPackage, Shapefile, SIP CSV/JSON "
        "or labelme JSON (all or nothing)",
    )
    p.add_argument("project")
    p.add_argument("file")
    p.add_argument("--scene", default="", help="scene id (needed when the project has several)")
    p.add_argument(
        "--split", choices=SPLITS, default="train", help="split for features without one"
    )
    p.add_argument(
        "--class-field", default="", help="attribute with the class name (default: class)"
    )
    p.add_argument("--split-field", default="", help="attribute with the split (default: split)")
    p.add_argument(
        "--label-field",
        default="",
        help="attribute with a SIP label like ice_train (default: label)",
    )
    p.add_argument(
        "--width", type=float, default=0.0, help="brush width for points and lines (default 1)"
    )
    p.add_argument("--replace", action="store_true", help="replace the scene's ROIs")
    p.add_argument("--dry-run", action="store_true", help="check the file, store nothing")
    p.set_defaults(func=roi_import)
    p = rsub.add_parser("add", help="add one ROI from WKT")
    p.add_argument("project")
    p.add_argument("--scene", default="")
    p.add_argument("--class", dest="class_name", required=True)
    p.add_argument("--split", choices=SPLITS, default="train")
    p.add_argument("--wkt", required=True, help="e.g. 'LINESTRING (10 10, 200 40)'")
    p.add_argument(
        "--crs",
        choices=["pixel", "scene"],
        default="pixel",
        help="pixel: (column, row) from the top-left corner; scene: the scene's CRS",
    )
    p.add_argument("--width", type=float, default=1.0, help="brush width in pixels (points, lines)")
    p.set_defaults(func=roi_add)
    p = rsub.add_parser("list", help="ROIs of a project or one scene")
    p.add_argument("project")
    p.add_argument("--scene", default="")
    p.add_argument("--split", choices=SPLITS)
    p.add_argument("--class", dest="class_name", default="")
    p.set_defaults(func=roi_list)
    p = rsub.add_parser("export", help="a scene's ROIs as GeoJSON")
    p.add_argument("project")
    p.add_argument("--scene", default="")
    p.add_argument("-o", "--output", default="", help="file to write (default: stdout)")
    p.add_argument(
        "--crs", choices=["pixel", "scene"], help="default: the scene's CRS if it has one"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace the output file when it exists"
    )
    p.set_defaults(func=roi_export)
    p = rsub.add_parser("delete", help="delete one ROI")
    p.add_argument("project")
    p.add_argument("id", type=int)
    p.add_argument("--scene", default="")
    p.set_defaults(func=roi_delete)

    p = sub.add_parser(
        "mask", help="rasterize ROIs to label masks; labeled pixels per class and split"
    )
    p.add_argument("project")
    p.add_argument("--scene", action="append", default=[], help="only this scene (repeatable)")
    p.set_defaults(func=mask)


def _project(app: App, name: str) -> project_pb2.Project:
    return app.client.call(
        app.client.projects.GetProject, project_pb2.GetProjectRequest(name=f"projects/{name}")
    )


def _split_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def project_create(app: App) -> int:
    a = app.args
    classes = _split_list(a.classes)
    colors = _split_list(a.colors)
    if colors and len(colors) != len(classes):
        raise CliError(
            f"--colors has {len(colors)} colour(s) for {len(classes)} class(es); give one per class"
        )
    project = project_pb2.Project(
        description=a.description,
        classes=[
            common_pb2.ClassDef(name=c, color=colors[i] if colors else "")
            for i, c in enumerate(classes)
        ],
        bands=_split_list(a.bands),
    )
    p = app.client.call(
        app.client.projects.CreateProject,
        project_pb2.CreateProjectRequest(project_id=a.project, project=project),
    )
    app.emit(to_plain(p), lambda: _print_project(p))
    return 0


def _print_project(p: project_pb2.Project) -> None:
    print(f"{p.name}: {p.scene_count} scene(s), {p.roi_count} ROI(s), {p.model_count} model(s)")
    print("classes: " + ", ".join(f"{c.value}={c.name} {c.color}" for c in p.classes))
    print(f"bands:   {', '.join(p.bands) or '(from the first scene)'}")
    if p.latest_model:
        print(f"latest:  {p.latest_model}")


def project_list(app: App) -> int:
    resp = app.client.call(
        app.client.projects.ListProjects, project_pb2.ListProjectsRequest(page_size=1000)
    )
    app.emit(
        {"projects": [to_plain(p) for p in resp.projects]},
        lambda: table(
            [
                [
                    p.name.removeprefix("projects/"),
                    ",".join(c.name for c in p.classes),
                    ",".join(p.bands),
                    p.scene_count,
                    p.roi_count,
                    p.model_count,
                ]
                for p in resp.projects
            ],
            ["PROJECT", "CLASSES", "BANDS", "SCENES", "ROIS", "MODELS"],
        ),
    )
    return 0


def project_show(app: App) -> int:
    p = _project(app, app.args.project)
    app.emit(to_plain(p), lambda: _print_project(p))
    return 0


def project_delete(app: App) -> int:
    req = project_pb2.DeleteProjectRequest(
        name=f"projects/{app.args.project}", delete_models=app.args.models
    )
    app.client.call(app.client.projects.DeleteProject, req)
    app.emit({"deleted": req.name}, lambda: print(f"deleted {req.name}"))
    return 0


def _scene_parent(app: App, project: str, scene: str) -> str:
    """The scene's resource name; with no --scene, the project's only scene."""
    if scene:
        return f"projects/{project}/scenes/{scene}"
    resp = app.client.call(
        app.client.labeling.ListScenes,
        labeling_pb2.ListScenesRequest(parent=f"projects/{project}", page_size=2),
    )
    if len(resp.scenes) == 1:
        return resp.scenes[0].name
    if not resp.scenes:
        raise CliError(
            f"project {project!r} has no scene; add one with `sipctl scene add {project} FILE`"
        )
    raise CliError(f"project {project!r} has several scenes; say which with --scene")


def scene_add(app: App) -> int:
    a = app.args
    if a.recipe:
        if a.background_mask:
            raise CliError("--background-mask is for registered rasters; add it without --recipe")
        req = preprocess_pb2.PreprocessRequest(
            input=absolute(a.path),
            output=absolute(a.output),
            recipe=a.recipe,
            project=a.project,
            scene=a.name,
        )
        job = app.client.call(app.client.preprocess.Preprocess, req)
        return app.run_job(job, print_result)
    if a.output:
        raise CliError("--output is for --recipe (a product to preprocess)")
    scene = labeling_pb2.Scene(path=absolute(a.path), background_mask=absolute(a.background_mask))
    s = app.client.call(
        app.client.labeling.CreateScene,
        labeling_pb2.CreateSceneRequest(
            parent=f"projects/{a.project}", scene_id=a.name, scene=scene
        ),
    )
    app.emit(to_plain(s), lambda: _print_scene(s))
    return 0


def _print_scene(s: labeling_pb2.Scene) -> None:
    print(
        f"{s.name}: {s.width} x {s.height}, {s.band_count} band(s) {s.dtype}, "
        f"crs {s.crs or 'none'}, "
        f"{s.roi_count} ROI(s)" + (f", made with recipe {s.recipe}" if s.recipe else "")
    )
    print(
        f"path: {s.path}" + (f"; background mask: {s.background_mask}" if s.background_mask else "")
    )


def scene_list(app: App) -> int:
    resp = app.client.call(
        app.client.labeling.ListScenes,
        labeling_pb2.ListScenesRequest(parent=f"projects/{app.args.project}", page_size=1000),
    )
    app.emit(
        {"scenes": [to_plain(s) for s in resp.scenes]},
        lambda: table(
            [
                [
                    s.name.rsplit("/", 1)[-1],
                    f"{s.width}x{s.height}",
                    s.band_count,
                    s.dtype,
                    s.roi_count,
                    s.path,
                ]
                for s in resp.scenes
            ],
            ["SCENE", "SIZE", "BANDS", "TYPE", "ROIS", "PATH"],
        ),
    )
    return 0


def scene_show(app: App) -> int:
    s = app.client.call(
        app.client.labeling.GetScene,
        labeling_pb2.GetSceneRequest(name=f"projects/{app.args.project}/scenes/{app.args.scene}"),
    )
    app.emit(to_plain(s), lambda: _print_scene(s))
    return 0


def scene_remove(app: App) -> int:
    name = f"projects/{app.args.project}/scenes/{app.args.scene}"
    app.client.call(app.client.labeling.DeleteScene, labeling_pb2.DeleteSceneRequest(name=name))
    app.emit({"deleted": name}, lambda: print(f"removed {name}"))
    return 0


def _split(name: str) -> int:
    return common_pb2.Split.Value(f"SPLIT_{name.upper()}")


def _split_text(value: int) -> str:
    return common_pb2.Split.Name(value).removeprefix("SPLIT_").lower()


def roi_import(app: App) -> int:
    a = app.args
    req = labeling_pb2.ImportRoisRequest(
        parent=_scene_parent(app, a.project, a.scene),
        path=absolute(a.file),
        default_split=_split(a.split),
        class_field=a.class_field,
        split_field=a.split_field,
        label_field=a.label_field,
        default_width=a.width,
        replace=a.replace,
        validate_only=a.dry_run,
    )
    resp = app.client.call(app.client.labeling.ImportRois, req)
    data = to_plain(resp)

    def human() -> None:
        verb = "would import" if a.dry_run else "imported"
        print(f"{verb} {resp.imported} ROI(s) from {a.file} ({resp.format}) onto {req.parent}")
        table(
            [[o.class_name, _split_text(o.split), o.pixels] for o in resp.objects],
            ["CLASS", "SPLIT", "OBJECTS"],
        )

    app.emit(data, human)
    return 0


def roi_add(app: App) -> int:
    a = app.args
    roi = labeling_pb2.Roi(
        class_name=a.class_name,
        split=_split(a.split),
        wkt=a.wkt,
        width=a.width,
        coordinates=labeling_pb2.COORDINATES_SCENE
        if a.crs == "scene"
        else labeling_pb2.COORDINATES_PIXEL,
    )
    r = app.client.call(
        app.client.labeling.CreateRoi,
        labeling_pb2.CreateRoiRequest(parent=_scene_parent(app, a.project, a.scene), roi=roi),
    )
    app.emit(to_plain(r), lambda: print(f"{r.name}: {r.class_name} ({_split_text(r.split)})"))
    return 0


def roi_list(app: App) -> int:
    a = app.args
    parent = f"projects/{a.project}/scenes/{a.scene or '-'}"
    rois: list[labeling_pb2.Roi] = []
    token = ""
    while True:
        resp = app.client.call(
            app.client.labeling.ListRois,
            labeling_pb2.ListRoisRequest(
                parent=parent,
                split=_split(a.split) if a.split else 0,
                class_name=a.class_name,
                page_size=1000,
                page_token=token,
            ),
        )
        rois.extend(resp.rois)
        token = resp.next_page_token
        if not token:
            break
    app.emit(
        {"rois": [to_plain(r) for r in rois]},
        lambda: table(
            [
                [
                    r.name.split("/")[3],
                    r.name.rsplit("/", 1)[-1],
                    r.class_name,
                    _split_text(r.split),
                    r.wkt.split(" ", 1)[0],
                    f"{r.width:g}",
                    r.source,
                ]
                for r in rois
            ],
            ["SCENE", "ID", "CLASS", "SPLIT", "TYPE", "WIDTH", "SOURCE"],
        ),
    )
    return 0


def roi_export(app: App) -> int:
    a = app.args
    coords = {"pixel": labeling_pb2.COORDINATES_PIXEL, "scene": labeling_pb2.COORDINATES_SCENE}.get(
        a.crs or "", 0
    )
    resp = app.client.call(
        app.client.labeling.ExportRois,
        labeling_pb2.ExportRoisRequest(
            parent=_scene_parent(app, a.project, a.scene),
            path=absolute(a.output),
            coordinates=coords,
            overwrite=a.overwrite,
        ),
    )
    if not a.output:
        print(resp.geojson)
    else:
        app.emit(to_plain(resp), lambda: print(f"wrote {resp.count} ROI(s) to {resp.path}"))
    return 0


def roi_delete(app: App) -> int:
    a = app.args
    name = f"{_scene_parent(app, a.project, a.scene)}/rois/{a.id}"
    app.client.call(app.client.labeling.DeleteRoi, labeling_pb2.DeleteRoiRequest(name=name))
    app.emit({"deleted": name}, lambda: print(f"deleted {name}"))
    return 0


def counts_by_split(counts: Any) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for c in counts:
        out.setdefault(_split_text(c.split), {})[c.class_name] = int(c.pixels)
    return out


def mask(app: App) -> int:
    a = app.args
    req = labeling_pb2.ComputeMasksRequest(parent=f"projects/{a.project}", scenes=a.scene)
    resp = app.client.call(app.client.labeling.ComputeMasks, req)
    data = {
        "counts": counts_by_split(resp.totals),
        "scenes": [
            {
                "scene": s.scene,
                "paths": dict(s.paths),
                "counts": counts_by_split(s.counts),
                "conflicting_pixels": s.conflicting_pixels,
                "pixels_in_several_splits": s.pixels_in_several_splits,
            }
            for s in resp.scenes
        ],
    }

    def human() -> None:
        totals = data["counts"]
        classes = sorted({c for per in totals.values() for c in per})
        table(
            [[c, *[totals.get(s, {}).get(c, 0) for s in SPLITS]] for c in classes],
            ["CLASS", *SPLITS],
        )
        for s in data["scenes"]:
            warn = ""
            if s["conflicting_pixels"]:
                warn += (
                    f"; {s['conflicting_pixels']} pixel(s) claimed by two classes (left unlabeled)"
                )
            if s["pixels_in_several_splits"]:
                warn += f"; {s['pixels_in_several_splits']} pixel(s) in several splits (a leak)"
            print(f"{s['scene']}: masks in {s['paths'].get('train', '').rsplit('/', 1)[0]}{warn}")

    app.emit(data, human)
    return 0
