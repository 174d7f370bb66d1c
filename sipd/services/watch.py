"""WatchService: proto <-> sipd.watch.WatchManager."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import empty_pb2
from sipapi.v1 import watch_pb2, watch_pb2_grpc

from sipd.errors import InvalidArgument
from sipd.services.common import page, parse_name, rpc, timestamp

if TYPE_CHECKING:
    from sipd.server import Daemon

_ON_SUCCESS = {
    watch_pb2.ON_SUCCESS_UNSPECIFIED: "keep",
    watch_pb2.ON_SUCCESS_KEEP: "keep",
    watch_pb2.ON_SUCCESS_MOVE: "move",
    watch_pb2.ON_SUCCESS_DELETE: "delete",
}
_ON_SUCCESS_ENUM = {
    "keep": watch_pb2.ON_SUCCESS_KEEP,
    "move": watch_pb2.ON_SUCCESS_MOVE,
    "delete": watch_pb2.ON_SUCCESS_DELETE,
}


def watch_id(name: str) -> str:
    return parse_name(name, "watches/{}", "watch name")[0]


def watch_to_proto(w: dict[str, Any]) -> watch_pb2.Watch:
    msg = watch_pb2.Watch(
        name=f"watches/{w['id']}",
        inbox=w["inbox"],
        outbox=w["outbox"],
        project=f"projects/{w['project']}",
        model=w["model"],
        pattern=w["pattern"],
        recursive=w["recursive"],
        on_success=_ON_SUCCESS_ENUM[w["on_success"]],
        quiet_seconds=w["quiet_seconds"],
        require_sentinel=w["require_sentinel"],
        confidence=w["confidence"],
        recipe=w.get("recipe", ""),
        remove_preprocessed=not w.get("keep_preprocessed", True),
        state=watch_pb2.Watch.State.Value(w["state"]),
        done=w["done"],
        failed=w["failed"],
        queued=w["queued"],
        running=w["running"],
        last_error=w["last_error"],
        from_config=w["from_config"],
    )
    created = timestamp(w["create_time"])
    if created is not None:
        msg.create_time.CopyFrom(created)
    return msg


class WatchServicer(watch_pb2_grpc.WatchServiceServicer):
    def __init__(self, daemon: Daemon) -> None:
        self.watches = daemon.watches

    @rpc
    def CreateWatch(
        self, request: watch_pb2.CreateWatchRequest, context: grpc.ServicerContext
    ) -> watch_pb2.Watch:
        w = request.watch
        if not request.watch_id:
            raise InvalidArgument("watch_id is empty; give an id such as inbox-s1")
        if w.on_success not in _ON_SUCCESS:
            raise InvalidArgument(f"on_success {w.on_success} is not a known value")
        return watch_to_proto(
            self.watches.create(
                {
                    "id": request.watch_id,
                    "inbox": w.inbox,
                    "outbox": w.outbox,
                    "project": w.project,
                    "model": w.model or "latest",
                    "pattern": w.pattern or "*",
                    "recursive": w.recursive,
                    "on_success": _ON_SUCCESS[w.on_success],
                    "quiet_seconds": w.quiet_seconds,
                    "require_sentinel": w.require_sentinel,
                    "confidence": w.confidence,
                    "recipe": w.recipe,
                    "keep_preprocessed": not w.remove_preprocessed,
                }
            )
        )

    @rpc
    def GetWatch(
        self, request: watch_pb2.GetWatchRequest, context: grpc.ServicerContext
    ) -> watch_pb2.Watch:
        return watch_to_proto(self.watches.get(watch_id(request.name)))

    @rpc
    def ListWatches(
        self, request: watch_pb2.ListWatchesRequest, context: grpc.ServicerContext
    ) -> watch_pb2.ListWatchesResponse:
        items, token = page(self.watches.list(), request.page_size, request.page_token)
        return watch_pb2.ListWatchesResponse(
            watches=[watch_to_proto(w) for w in items], next_page_token=token
        )

    @rpc
    def PauseWatch(
        self, request: watch_pb2.PauseWatchRequest, context: grpc.ServicerContext
    ) -> watch_pb2.Watch:
        return watch_to_proto(self.watches.pause(watch_id(request.name)))

    @rpc
    def ResumeWatch(
        self, request: watch_pb2.ResumeWatchRequest, context: grpc.ServicerContext
    ) -> watch_pb2.Watch:
        return watch_to_proto(self.watches.resume(watch_id(request.name)))

    @rpc
    def DeleteWatch(
        self, request: watch_pb2.DeleteWatchRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        self.watches.delete(watch_id(request.name))
        return empty_pb2.Empty()
