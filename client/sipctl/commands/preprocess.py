"""sipctl preprocess | recipe: raw sensor products into classifiable scenes."""

from __future__ import annotations

import argparse
import io
import textwrap
from typing import Any

from sipapi.v1 import preprocess_pb2

from sipctl.app import App, absolute
from sipctl.client import CliError
from sipctl.render import table, to_plain

# Flags of the SAR options (ListPreprocessors names and explains each); only the
# ones given are sent, so a recipe's own values stay unless overridden.
_BOOL_OPTIONS = {
    "noise_removal": "subtract the product's thermal noise (default on)",
    "border_noise": "blank the low-DN border noise at near and far range",
    "db": "write 10*log10 of the intensity (default on)",
    "incidence_band": "add an incidence angle band (degrees)",
}
_VALUE_OPTIONS = {
    "polarisations": "bands to make, e.g. HH,HV (default: all present)",
    "calibration": "sigma0 (default), gamma0 or beta0",
    "noise_floor_db": "floor in dB for values at or below zero after noise removal (-40)",
    "multilook": "looks AZIMUTHxRANGE, e.g. 2x2",
    "speckle": "none, boxcar[:N], lee[:N], refined-lee[:N] (N odd, default 7)",
    "crs": "output CRS, e.g. EPSG:3413; auto = UTM of the scene; none = radar geometry",
    "resolution": "output pixel size in CRS units (default: the multilooked spacing)",
    "resampling": "bilinear (default) or nearest",
    "dem": "DEM raster for terrain correction (Sentinel-1); default: none (ellipsoid)",
}


def add_options(p: argparse.ArgumentParser) -> None:
    for name, text in _VALUE_OPTIONS.items():
        p.add_argument(f"--{name.replace('_', '-')}", dest=f"opt_{name}", help=text)
    for name, text in _BOOL_OPTIONS.items():
        p.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"opt_{name}",
            action=argparse.BooleanOptionalAction,
            default=None,
            help=text,
        )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="any option by name (see `sipctl preprocess list`); repeatable",
    )


def options_of(app: App) -> dict[str, str]:
    args = app.args
    options: dict[str, str] = {}
    for item in args.option:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise CliError(f"--option {item!r} is not NAME=VALUE")
        options[name.strip().replace("-", "_")] = value.strip()
    for name in (*_VALUE_OPTIONS, *_BOOL_OPTIONS):
        value = getattr(args, f"opt_{name}")
        if value is not None:
            options[name] = str(value).lower() if isinstance(value, bool) else str(value)
    if options:
        # The daemon resolves nothing against our working directory: an option naming a
        # file (a DEM, a calibration panel, a white reference: type "path" in
        # ListPreprocessors) goes as an absolute path.
        resp = app.client.call(
            app.client.preprocess.ListPreprocessors, preprocess_pb2.ListPreprocessorsRequest()
        )
        paths = {o.name for p in resp.preprocessors for o in p.option_specs if o.type == "path"}
        for name in set(options) & paths:
            if options[name]:
                options[name] = absolute(options[name])
    return options


def register(sub: Any, job_options: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "preprocess",
        parents=[job_options],
        help="raw products (Sentinel-1, RADARSAT-2, RCM) into calibrated, geocoded COGs; "
        "`preprocess list` shows the preprocessors and their options",
    )
    p.add_argument("product", help="the product as delivered (see `preprocess list`), or `list`")
    p.add_argument("-o", "--output", default="", help="COG to write")
    p.add_argument(
        "--sensor",
        default="",
        help="preprocessor (see `sipctl preprocess list`); default: the recipe's, or detected",
    )
    p.add_argument("--recipe", default="", help="recipe NAME or NAME@VERSION")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_options(p)
    p.set_defaults(func=preprocess)

    recipe = sub.add_parser("recipe", help="named, versioned preprocessing options")
    rsub = recipe.add_subparsers(dest="recipe_command", required=True, metavar="COMMAND")
    p = rsub.add_parser("create", help="store a recipe (a new version when the name exists)")
    p.add_argument("name")
    p.add_argument("--sensor", required=True, help="preprocessor (see `sipctl preprocess list`)")
    p.add_argument("--description", default="")
    p.add_argument(
        "--fit-on",
        action="append",
        default=[],
        metavar="PRODUCT",
        help="fit the recipe's learned part (hyperspectral principal components) on these "
        "training products; repeatable",
    )
    add_options(p)
    p.set_defaults(func=recipe_create)
    p = rsub.add_parser("list", help="the latest version of every recipe")
    p.set_defaults(func=recipe_list)
    p = rsub.add_parser("show", help="one recipe (NAME or NAME@VERSION)")
    p.add_argument("name")
    p.set_defaults(func=recipe_show)
    p = rsub.add_parser("delete", help="delete every version of a recipe")
    p.add_argument("name")
    p.set_defaults(func=recipe_delete)


def preprocess(app: App) -> int:
    a = app.args
    if a.product == "list":
        return preprocessors(app)
    if not a.output:
        raise CliError("give the COG to write with -o/--output")
    req = preprocess_pb2.PreprocessRequest(
        preprocessor=a.sensor,
        input=absolute(a.product),
        output=absolute(a.output),
        options=options_of(app),
        recipe=a.recipe,
        overwrite=a.overwrite,
    )
    job = app.client.call(app.client.preprocess.Preprocess, req)
    return app.run_job(job, print_result)


_SAR = ("sentinel1", "radarsat2", "rcm")


def print_result(r: Any) -> None:
    info = r.info
    sar = r.preprocessor in _SAR
    print(
        f"{', '.join(r.outputs)}: {info.width} x {info.height}, bands "
        f"{', '.join(info.band_names)}, crs {info.crs or ('none (GCPs)' if sar else 'none')}"
    )
    meta = r.metadata
    if sar:
        print(
            f"{meta.get('mission', r.preprocessor)} {meta.get('mode', '')} "
            f"{meta.get('product_type', '')} {meta.get('start_time', '')} "
            f"{meta.get('orbit_direction', '')}".rstrip()
        )
    else:
        print(meta.get("sensor", r.preprocessor))
    if r.recipe:
        print(f"recipe: {r.recipe}@{r.recipe_version}")
    if r.scene:
        print(f"scene: {r.scene}")
    order = ["open", "read", "calibrate", "speckle", "db", "incidence", "write", "geocode", "bands",
             "cog"]  # fmt: skip
    known = [k for k in order if k in r.step_seconds]
    steps = ", ".join(
        f"{k} {r.step_seconds[k]:.1f}s"
        for k in [*known, *sorted(set(r.step_seconds) - set(order) - {"total"})]
    )
    print(f"{r.seconds:.1f} s ({steps})")


def preprocessors(app: App) -> int:
    resp = app.client.call(
        app.client.preprocess.ListPreprocessors, preprocess_pb2.ListPreprocessorsRequest()
    )

    def human() -> None:
        for p in resp.preprocessors:
            print(f"{p.name}: {p.description}")
            print(f"  input: {p.inputs}")
            text = io.StringIO()
            rows = []
            for o in p.option_specs:
                # Long meanings (a mask's class list) wrap under their column.
                lines = textwrap.wrap(o.description, 72) or [""]
                rows.append([o.name, o.type, o.default or '""', lines[0]])
                rows.extend(["", "", "", more] for more in lines[1:])
            table(rows, ["OPTION", "TYPE", "DEFAULT", "MEANING"], out=text)
            print("\n".join(f"  {line}" for line in text.getvalue().splitlines()))
            print()

    app.emit(to_plain(resp), human)
    return 0


def _print_recipe(r: preprocess_pb2.Recipe) -> None:
    print(f"{r.name.removeprefix('recipes/')}@{r.version} ({r.preprocessor})")
    if r.description:
        print(f"  {r.description}")
    for name, value in sorted(r.options.items()):
        print(f"  {name}: {value}")


def recipe_create(app: App) -> int:
    a = app.args
    r = app.client.call(
        app.client.preprocess.CreateRecipe,
        preprocess_pb2.CreateRecipeRequest(
            recipe_id=a.name,
            preprocessor=a.sensor,
            options=options_of(app),
            description=a.description,
            fit_on=[absolute(f) for f in a.fit_on],
        ),
    )
    app.emit(to_plain(r), lambda: _print_recipe(r))
    return 0


def recipe_list(app: App) -> int:
    resp = app.client.call(app.client.preprocess.ListRecipes, preprocess_pb2.ListRecipesRequest())
    app.emit(
        to_plain(resp),
        lambda: table(
            [
                [r.name.removeprefix("recipes/"), r.version, r.preprocessor, r.description]
                for r in resp.recipes
            ],
            ["RECIPE", "VERSION", "SENSOR", "DESCRIPTION"],
        ),
    )
    return 0


def recipe_show(app: App) -> int:
    name, _, version = app.args.name.partition("@")
    if version and not version.isdigit():
        raise CliError(f"{app.args.name!r} is not NAME or NAME@VERSION")
    r = app.client.call(
        app.client.preprocess.GetRecipe,
        preprocess_pb2.GetRecipeRequest(name=name, version=int(version or 0)),
    )
    app.emit(to_plain(r), lambda: _print_recipe(r))
    return 0


def recipe_delete(app: App) -> int:
    resp = app.client.call(
        app.client.preprocess.DeleteRecipe, preprocess_pb2.DeleteRecipeRequest(name=app.args.name)
    )
    app.emit(
        to_plain(resp), lambda: print(f"deleted {resp.versions} version(s) of {app.args.name}")
    )
    return 0
