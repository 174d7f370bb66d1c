"""PreprocessService: raster inspection, sensor preprocessors and their recipes."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import grpc
from sipapi.v1 import common_pb2, preprocess_pb2, preprocess_pb2_grpc

from sipd.contracts.jobs import InspectParams
from sipd.contracts.preprocessing import Recipe, option_specs, option_text
from sipd.preprocess.catalog import PREPROCESSORS
from sipd.raster import check_readable
from sipd.services.common import rpc
from sipd.services.job_results import job_to_proto

if TYPE_CHECKING:
    from sipd.server import Daemon


def recipe_to_proto(r: Recipe) -> preprocess_pb2.Recipe:
    options = {name: option_text(value) for name, value in r.step.options.model_dump().items()}
    return preprocess_pb2.Recipe(
        name=f"recipes/{r.name}",
        version=r.version,
        preprocessor=r.step.preprocessor,
        options=options,
        description=r.description,
        create_time=r.created,
        from_config=r.from_config,
        deleted=r.deleted,
    )


class PreprocessServicer(preprocess_pb2_grpc.PreprocessServiceServicer):
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    @rpc
    def InspectRaster(
        self, request: preprocess_pb2.InspectRasterRequest, context: grpc.ServicerContext
    ) -> common_pb2.Job:
        policy = self.daemon.policy
        path = policy.check_input(request.path, "raster path")
        # Open once here so a missing or unreadable file is INVALID_ARGUMENT now, not a
        # failed job later; every file GDAL opens for it (VRT sources) must be in the roots.
        check_readable(path, functools.partial(policy.check_opened, what=f"raster {path}"))
        job = self.daemon.engine.submit(
            InspectParams(path=str(path), statistics=request.statistics)
        )
        return job_to_proto(job)

    @rpc
    def ListPreprocessors(
        self, request: preprocess_pb2.ListPreprocessorsRequest, context: grpc.ServicerContext
    ) -> preprocess_pb2.ListPreprocessorsResponse:
        response = preprocess_pb2.ListPreprocessorsResponse()
        for p in PREPROCESSORS.values():
            specs = option_specs(p.options)
            response.preprocessors.add(
                name=p.name,
                description=p.description,
                inputs=p.inputs,
                options={s["name"]: s["description"] for s in specs},
                option_specs=[preprocess_pb2.PreprocessorOption(**s) for s in specs],
            )
        return response

    @rpc
    def Preprocess(
        self, request: preprocess_pb2.PreprocessRequest, context: grpc.ServicerContext
    ) -> common_pb2.Job:
        job = self.daemon.requests.preprocess(
            request.input,
            request.output,
            recipe=request.recipe,
            preprocessor=request.preprocessor,
            options=dict(request.options),
            overwrite=request.overwrite,
            project=request.project.removeprefix("projects/"),
            scene=request.scene,
        )
        return job_to_proto(job)

    @rpc
    def CreateRecipe(
        self, request: preprocess_pb2.CreateRecipeRequest, context: grpc.ServicerContext
    ) -> preprocess_pb2.Recipe:
        options = dict(request.options)
        if request.fit_on:
            fitted = self.daemon.requests.fit_recipe(
                request.preprocessor, options, list(request.fit_on)
            )
            options = {**options, **fitted}
        recipe = self.daemon.recipes.create(
            request.recipe_id, request.preprocessor, options, request.description
        )
        return recipe_to_proto(recipe)

    @rpc
    def GetRecipe(
        self, request: preprocess_pb2.GetRecipeRequest, context: grpc.ServicerContext
    ) -> preprocess_pb2.Recipe:
        return recipe_to_proto(self.daemon.recipes.get(request.name, request.version))

    @rpc
    def ListRecipes(
        self, request: preprocess_pb2.ListRecipesRequest, context: grpc.ServicerContext
    ) -> preprocess_pb2.ListRecipesResponse:
        return preprocess_pb2.ListRecipesResponse(
            recipes=[recipe_to_proto(r) for r in self.daemon.recipes.list()]
        )

    @rpc
    def DeleteRecipe(
        self, request: preprocess_pb2.DeleteRecipeRequest, context: grpc.ServicerContext
    ) -> preprocess_pb2.DeleteRecipeResponse:
        return preprocess_pb2.DeleteRecipeResponse(
            versions=self.daemon.recipes.delete(request.name)
        )
