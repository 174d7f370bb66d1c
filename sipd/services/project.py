"""ProjectService: proto <-> sipd.projects (projects)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import empty_pb2
from sipapi.v1 import (
    common_pb2,
    project_pb2,
    project_pb2_grpc,
)

from sipd.services.common import (
    page,
    project_id,
    rpc,
    timestamp,
)

if TYPE_CHECKING:
    from sipd.server import Daemon


def project_to_proto(p: dict[str, Any], models: list[dict[str, Any]]) -> project_pb2.Project:
    msg = project_pb2.Project(
        name=f"projects/{p['id']}",
        description=p["description"],
        classes=[common_pb2.ClassDef(**c) for c in p["classes"]],
        bands=p["bands"],
        scene_count=p["scene_count"],
        roi_count=p["roi_count"],
        model_count=len(models),
        latest_model=models[0].name if models else "",
    )
    msg.create_time.CopyFrom(timestamp(p["create_time"]))
    return msg


class ProjectServicer(project_pb2_grpc.ProjectServiceServicer):
    def __init__(self, daemon: Daemon) -> None:
        self.projects = daemon.projects
        self.models = daemon.models

    def _proto(self, p: dict[str, Any]) -> project_pb2.Project:
        return project_to_proto(p, self.models.list(p["id"]))

    @rpc
    def CreateProject(
        self, request: project_pb2.CreateProjectRequest, context: grpc.ServicerContext
    ) -> Any:
        p = request.project
        classes = [(c.name, c.color) for c in p.classes]
        return self._proto(
            self.projects.create(request.project_id, p.description, classes, list(p.bands))
        )

    @rpc
    def GetProject(
        self, request: project_pb2.GetProjectRequest, context: grpc.ServicerContext
    ) -> Any:
        return self._proto(self.projects.get(project_id(request.name)))

    @rpc
    def ListProjects(
        self, request: project_pb2.ListProjectsRequest, context: grpc.ServicerContext
    ) -> Any:
        items, token = page(self.projects.list(), request.page_size, request.page_token)
        return project_pb2.ListProjectsResponse(
            projects=[self._proto(p) for p in items], next_page_token=token
        )

    @rpc
    def DeleteProject(
        self, request: project_pb2.DeleteProjectRequest, context: grpc.ServicerContext
    ) -> Any:
        self.projects.delete(project_id(request.name), request.delete_models)
        return empty_pb2.Empty()
