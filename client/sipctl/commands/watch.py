"""sipctl watch add | list | show | pause | resume | remove."""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

from sipapi.v1 import watch_pb2

from sipctl.app import App, absolute
from sipctl.client import CliError
from sipctl.render import table, to_plain

ON_SUCCESS = {
    "keep": watch_pb2.ON_SUCCESS_KEEP,
    "move": watch_pb2.ON_SUCCESS_MOVE,
    "delete": watch_pb2.ON_SUCCESS_DELETE,
}


def register(sub: Any, job_options: argparse.ArgumentParser) -> None:
    watch = sub.add_parser(
        "watch", help="watched inbox folders: scenes that arrive are classified automatically"
    )
    wsub = watch.add_subparsers(dest="watch_command", required=True, metavar="COMMAND")
    p = wsub.add_parser("add", help="start watching a folder (kept across restarts)")
    p.add_argument("inbox", help="folder scenes arrive in")
    p.add_argument("--project", required=True, help="project whose model classifies them")
    p.add_argument("--out", required=True, dest="outbox", help="folder for the label maps")
    p.add_argument(
        "--model", default="latest", help="model version, or latest (follows the newest; default)"
    )
    p.add_argument("--pattern", default="*", help="file names to take, e.g. '*.tif' (default *)")
    p.add_argument("--recursive", action="store_true", help="also take files in sub-folders")
    p.add_argument(
        "--on-success",
        choices=sorted(ON_SUCCESS),
        default="keep",
        help="what happens to an input once its outputs are written: keep (default), "
        "move to INBOX/processed, or delete",
    )
    p.add_argument("--name", default="", help="watch id (default: from the inbox folder's name)")
    p.add_argument(
        "--quiet-seconds",
        type=float,
        default=0.0,
        help="seconds a file must stay unchanged before it is taken (default: sipd's "
        "watch.quiet_seconds)",
    )
    p.add_argument(
        "--sentinel",
        action="store_true",
        help="take NAME only once NAME.done or NAME.ready exists",
    )
    p.add_argument("--confidence", action="store_true", help="also write NAME_confidence.tif")
    p.add_argument(
        "--recipe",
        default="",
        help="arrivals are raw products: preprocess each with this recipe (NAME or "
        "NAME@VERSION; a bare name is pinned to its latest version now)",
    )
    p.add_argument(
        "--keep-preprocessed",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep NAME_preprocessed.tif in the outbox (default) or remove it once classified",
    )
    p.set_defaults(func=add)
    p = wsub.add_parser("list", help="all watches with their counts")
    p.set_defaults(func=list_watches)
    for name, func, text in (
        ("show", show, "one watch: settings, scenes done/failed/queued, the last error"),
        ("pause", pause, "stop taking new files (queued ones wait)"),
        ("resume", resume, "take files again, including those that arrived while paused"),
        ("remove", remove, "stop and forget a watch (its files and outputs stay)"),
    ):
        p = wsub.add_parser(name, help=text)
        p.add_argument("watch", help="watch id or name (watches/ID)")
        p.set_defaults(func=func)


def _name(watch: str) -> str:
    return watch if watch.startswith("watches/") else f"watches/{watch}"


def _default_id(inbox: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", os.path.basename(os.path.normpath(inbox))).strip("-_")
    if not base:
        raise CliError("cannot make a watch id from the inbox's name; give one with --name")
    return base[:63]


def _plain(w: watch_pb2.Watch) -> dict[str, Any]:
    data = to_plain(w)
    data["state"] = watch_pb2.Watch.State.Name(w.state)
    data["on_success"] = _policy(w)
    return data


def _policy(w: watch_pb2.Watch) -> str:
    return watch_pb2.OnSuccess.Name(w.on_success).removeprefix("ON_SUCCESS_").lower()


def _print(w: watch_pb2.Watch) -> None:
    state = watch_pb2.Watch.State.Name(w.state).lower()
    origin = " (from the config file)" if w.from_config else ""
    print(f"{w.name}: {state}{origin}")
    print(
        f"inbox:    {w.inbox} (pattern {w.pattern}, recursive {_yes(w.recursive)}, "
        f"quiet {w.quiet_seconds:g} s, sentinel {_yes(w.require_sentinel)})"
    )
    print(f"outbox:   {w.outbox} (confidence {_yes(w.confidence)}; on success: {_policy(w)})")
    print(f"model:    {w.project}/models/{w.model}")
    if w.recipe:
        keep = "removed once classified" if w.remove_preprocessed else "kept"
        print(f"recipe:   {w.recipe} (preprocessed rasters {keep})")
    print(f"scenes:   {w.done} done, {w.failed} failed, {w.queued} queued, {w.running} running")
    if w.last_error:
        print(f"last error: {w.last_error}")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def add(app: App) -> int:
    a = app.args
    watch = watch_pb2.Watch(
        inbox=absolute(a.inbox),
        outbox=absolute(a.outbox),
        project=a.project if a.project.startswith("projects/") else f"projects/{a.project}",
        model=a.model,
        pattern=a.pattern,
        recursive=a.recursive,
        on_success=ON_SUCCESS[a.on_success],
        quiet_seconds=a.quiet_seconds,
        require_sentinel=a.sentinel,
        confidence=a.confidence,
        recipe=a.recipe,
        remove_preprocessed=not a.keep_preprocessed,
    )
    w = app.client.call(
        app.client.watches.CreateWatch,
        watch_pb2.CreateWatchRequest(watch_id=a.name or _default_id(a.inbox), watch=watch),
    )
    app.emit(_plain(w), lambda: _print(w))
    return 0


def list_watches(app: App) -> int:
    resp = app.client.call(
        app.client.watches.ListWatches, watch_pb2.ListWatchesRequest(page_size=1000)
    )
    app.emit(
        {"watches": [_plain(w) for w in resp.watches]},
        lambda: table(
            [
                [
                    w.name.removeprefix("watches/"),
                    watch_pb2.Watch.State.Name(w.state).lower(),
                    w.project.removeprefix("projects/"),
                    w.model,
                    w.done,
                    w.failed,
                    w.queued + w.running,
                    w.inbox,
                ]
                for w in resp.watches
            ],
            ["WATCH", "STATE", "PROJECT", "MODEL", "DONE", "FAILED", "QUEUED", "INBOX"],
        ),
    )
    return 0


def show(app: App) -> int:
    w = app.client.call(
        app.client.watches.GetWatch, watch_pb2.GetWatchRequest(name=_name(app.args.watch))
    )
    app.emit(_plain(w), lambda: _print(w))
    return 0


def pause(app: App) -> int:
    w = app.client.call(
        app.client.watches.PauseWatch, watch_pb2.PauseWatchRequest(name=_name(app.args.watch))
    )
    app.emit(_plain(w), lambda: print(f"paused {w.name}; {w.queued} scene(s) wait"))
    return 0


def resume(app: App) -> int:
    w = app.client.call(
        app.client.watches.ResumeWatch, watch_pb2.ResumeWatchRequest(name=_name(app.args.watch))
    )
    app.emit(_plain(w), lambda: print(f"resumed {w.name}"))
    return 0


def remove(app: App) -> int:
    name = _name(app.args.watch)
    app.client.call(app.client.watches.DeleteWatch, watch_pb2.DeleteWatchRequest(name=name))
    app.emit({"deleted": name}, lambda: print(f"removed {name}; its files and outputs stay"))
    return 0
