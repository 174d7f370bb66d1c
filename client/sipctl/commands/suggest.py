"""sipctl suggest: where a new label would help the model most."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

from sipapi.v1 import common_pb2, prediction_pb2

from sipctl.app import App
from sipctl.render import print_json, table, to_plain


def register(sub: Any, job_options: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "suggest",
        parents=[job_options],
        help="regions where a new label would help most (uncertain, spread out, unlabeled)",
        description="Runs the model over the project's scenes (a job) and returns the square "
        "regions with the highest mean uncertainty (normalized entropy of the class "
        "probabilities), spread over each scene and away from existing ROIs, as a GeoJSON "
        "FeatureCollection in the scene's CRS (pixel coordinates for scenes without one).",
    )
    p.add_argument("project")
    p.add_argument(
        "--scene", action="append", default=[], help="only this scene (repeatable; default all)"
    )
    p.add_argument("--n", type=int, default=10, help="regions to return (default 10)")
    p.add_argument("--model", default="latest", help="model version (default latest)")
    p.add_argument("--size", type=int, default=64, help="region edge in pixels (default 64)")
    p.add_argument(
        "--min-distance",
        type=int,
        default=0,
        help="least distance in pixels between region centres (default 2 x size)",
    )
    p.add_argument("--tile-size", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=0)
    p.add_argument("-o", "--output", default="", help="write the GeoJSON here (default: print it)")
    p.set_defaults(func=suggest)


def suggest(app: App) -> int:
    a = app.args
    req = prediction_pb2.SuggestRequest(
        model=f"projects/{a.project}/models/{a.model or 'latest'}",
        scenes=a.scene,
        n=a.n,
        size=a.size,
        min_distance=a.min_distance,
        tile_size=a.tile_size,
        batch_size=a.batch_size,
    )
    job = app.client.call(app.client.prediction.Suggest, req)
    if a.detach:
        return app.run_job(job, lambda r: None)
    final = app.follow(job.name)
    if final.state != common_pb2.Job.SUCCEEDED or final.WhichOneof("result") != "suggest":
        return app.finish(final, lambda r: None)  # raises with the job's error
    result = final.suggest
    if a.output:
        _write(a.output, result.geojson)
    if app.json:
        # With -o: the result (regions, where the file went); without: the GeoJSON itself.
        if a.output:
            print_json({**to_plain(result), "output": os.path.abspath(a.output)})
        else:
            print_json(json.loads(result.geojson))
        return 0
    if not a.output:
        print(result.geojson)
        return 0
    _human(result, a.output)
    return 0


def _write(path: str, text: str) -> None:
    """Whole or not at all: a temporary file beside the target, renamed over it."""
    target = os.path.abspath(os.path.expanduser(path))
    folder = os.path.dirname(target) or "."
    fd, tmp = tempfile.mkstemp(prefix=".sipctl-", suffix=".geojson", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _human(r: common_pb2.SuggestResult, output: str) -> None:
    rows = [
        [g.rank, g.scene.rsplit("/", 1)[-1], g.row, g.col, g.size, f"{g.uncertainty:.3f}",
         g.majority_class]
        for g in r.regions
    ]  # fmt: skip
    table(rows, ["RANK", "SCENE", "ROW", "COL", "SIZE", "UNCERTAINTY", "MAJORITY"])
    print(
        f"{len(r.regions)} of {r.candidates} candidate region(s) on {len(r.scenes)} scene(s), "
        f"model {r.model}; GeoJSON written to {output}",
        file=sys.stdout,
    )
