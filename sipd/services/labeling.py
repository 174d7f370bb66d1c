"""LabelingService: scenes, ROIs, import/export and masks."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import empty_pb2
from sipapi.v1 import (
    labeling_pb2,
    labeling_pb2_grpc,
)

from sipd.contracts.job_record import JobState
from sipd.contracts.jobs import MasksResult
from sipd.errors import InvalidArgument
from sipd.services.common import (
    enum_name,
    label_counts,
    page,
    parse_name,
    project_id,
    row_number,
    rpc,
    split_enum,
    split_name,
    timestamp,
)
from sipd.services.job_results import mask_summary

if TYPE_CHECKING:
    from sipd.server import Daemon


def scene_to_proto(s: dict[str, Any]) -> labeling_pb2.Scene:
    info = s["info"]
    msg = labeling_pb2.Scene(
        name=f"projects/{s['project']}/scenes/{s['id']}",
        path=s["path"],
        background_mask=s["background_mask"],
        width=info["width"],
        height=info["height"],
        band_count=info["band_count"],
        dtype=info["dtype"],
        band_names=info["band_names"],
        crs=info["crs"],
        transform=info["transform"],
        roi_count=s["roi_count"],
        recipe=s.get("recipe", ""),
    )
    if info["nodata"] is not None:
        msg.nodata = info["nodata"]
    msg.create_time.CopyFrom(timestamp(s["create_time"]))
    return msg


def roi_to_proto(r: dict[str, Any]) -> labeling_pb2.Roi:
    msg = labeling_pb2.Roi(
        name=f"projects/{r['project']}/scenes/{r['scene']}/rois/{r['id']}",
        class_name=r["class_name"],
        split=split_enum(r["split"]),
        wkt=r["wkt"],
        coordinates=labeling_pb2.COORDINATES_PIXEL,
        width=r["width"],
        source=r["source"],
    )
    msg.create_time.CopyFrom(timestamp(r["create_time"]))
    return msg


def scene_name(name: str) -> tuple[str, str]:
    return parse_name(name, "projects/{}/scenes/{}", "scene name")  # type: ignore[return-value]


def _coordinates(value: int) -> str:
    # proto3 keeps unknown enum numbers: refuse them instead of reading them as pixels.
    return (
        enum_name(labeling_pb2.Coordinates, value, "coordinates")
        .removeprefix("COORDINATES_")
        .lower()
        .replace("unspecified", "pixel")
    )


class LabelingServicer(labeling_pb2_grpc.LabelingServiceServicer):
    def __init__(self, daemon: Daemon) -> None:
        self.projects = daemon.projects
        self.requests = daemon.requests
        self.engine = daemon.engine
        self.stream_limits = daemon.stream_limits

    @rpc
    def CreateScene(
        self, request: labeling_pb2.CreateSceneRequest, context: grpc.ServicerContext
    ) -> Any:
        pid = project_id(request.parent)
        scene = self.projects.add_scene(
            pid, request.scene_id, request.scene.path, request.scene.background_mask
        )
        return scene_to_proto(scene)

    @rpc
    def GetScene(self, request: labeling_pb2.GetSceneRequest, context: grpc.ServicerContext) -> Any:
        return scene_to_proto(self.projects.get_scene(*scene_name(request.name)))

    @rpc
    def ListScenes(
        self, request: labeling_pb2.ListScenesRequest, context: grpc.ServicerContext
    ) -> Any:
        scenes = self.projects.list_scenes(project_id(request.parent))
        items, token = page(scenes, request.page_size, request.page_token)
        return labeling_pb2.ListScenesResponse(
            scenes=[scene_to_proto(s) for s in items], next_page_token=token
        )

    @rpc
    def DeleteScene(
        self, request: labeling_pb2.DeleteSceneRequest, context: grpc.ServicerContext
    ) -> Any:
        self.projects.delete_scene(*scene_name(request.name))
        return empty_pb2.Empty()

    @rpc
    def CreateRoi(
        self, request: labeling_pb2.CreateRoiRequest, context: grpc.ServicerContext
    ) -> Any:
        pid, sid = scene_name(request.parent)
        r = request.roi
        if not r.wkt:
            raise InvalidArgument(
                "roi.wkt is empty; give a WKT geometry, e.g. 'LINESTRING (10 10, 200 40)'"
            )
        roi = self.projects.add_roi(
            pid,
            sid,
            class_name=r.class_name,
            split=split_name(r.split),
            wkt=r.wkt,
            coordinates=_coordinates(r.coordinates),
            width=r.width,
            source=r.source or "drawn",
        )
        return roi_to_proto(roi)

    @rpc
    def ListRois(self, request: labeling_pb2.ListRoisRequest, context: grpc.ServicerContext) -> Any:
        match = re.fullmatch(r"projects/([^/]+)/scenes/-", request.parent)
        if match:
            pid, sid = project_id(f"projects/{match.group(1)}"), None
        else:
            pid, sid = scene_name(request.parent)
        split = split_name(request.split, default="") if request.split else ""
        rois = self.projects.list_rois(pid, sid, split, request.class_name)
        items, token = page(rois, request.page_size, request.page_token)
        return labeling_pb2.ListRoisResponse(
            rois=[roi_to_proto(r) for r in items], next_page_token=token
        )

    @rpc
    def DeleteRoi(
        self, request: labeling_pb2.DeleteRoiRequest, context: grpc.ServicerContext
    ) -> Any:
        pid, sid, rid = parse_name(request.name, "projects/{}/scenes/{}/rois/{}", "ROI name")
        roi = row_number(rid)
        if roi is None:
            raise InvalidArgument(f"ROI id {rid!r} is not a number of an ROI")
        self.projects.delete_roi(pid, sid, roi)
        return empty_pb2.Empty()

    @rpc
    def ImportRois(
        self, request: labeling_pb2.ImportRoisRequest, context: grpc.ServicerContext
    ) -> Any:
        pid, sid = scene_name(request.parent)
        fields = {
            "class_field": request.class_field or "class",
            "split_field": request.split_field or "split",
            "label_field": request.label_field or "label",
        }
        result = self.projects.import_rois(
            pid,
            sid,
            request.path,
            default_split=split_name(request.default_split),
            fields=fields,
            default_width=request.default_width,
            replace=request.replace,
            validate_only=request.validate_only,
        )
        return labeling_pb2.ImportRoisResponse(
            imported=result["imported"],
            objects=label_counts(result["objects"]),
            format=result["format"],
        )

    @rpc
    def ExportRois(
        self, request: labeling_pb2.ExportRoisRequest, context: grpc.ServicerContext
    ) -> Any:
        pid, sid = scene_name(request.parent)
        coordinates = "" if not request.coordinates else _coordinates(request.coordinates)
        result = self.projects.export_rois(
            pid, sid, request.path, coordinates, overwrite=request.overwrite
        )
        return labeling_pb2.ExportRoisResponse(**result)

    @rpc
    def ComputeMasks(
        self, request: labeling_pb2.ComputeMasksRequest, context: grpc.ServicerContext
    ) -> Any:
        # Long work runs in the worker like every other job; this call waits for it,
        # holding a thread as long as a stream does, so it counts against the same bound.
        pid = project_id(request.parent)
        ids = [s.rsplit("/", 1)[-1] for s in request.scenes]
        with self.stream_limits.hold(context, "ComputeMasks"):
            job = self.requests.masks(pid, ids)
            while not job.final and context.is_active():
                job = self.engine.wait(job.id, timeout=1.0)
        if not job.final:
            self.engine.cancel(job.id, "cancelled: the ComputeMasks caller went away")
        if job.state != JobState.SUCCEEDED or not isinstance(job.result, MasksResult):
            raise job.failure()
        return mask_summary(pid, job.result)
