"""The ray executor's settings and path mapping (no cluster needed)."""

from __future__ import annotations

import pytest

from sipd.config import load_config
from sipd.errors import InvalidArgument
from sipd.jobs.ray_executor import PathMap


def test_path_map_rewrites_the_longest_prefix_both_ways() -> None:
    paths = PathMap.parse(["/data=/mnt/data", "/data/scenes=/fast/scenes", "/srv=/"])
    assert paths.to_node("/data/x/a.tif") == "/mnt/data/x/a.tif"
    assert paths.to_node("/data/scenes/b.tif") == "/fast/scenes/b.tif"
    assert paths.to_node("/database/c.tif") == "/database/c.tif"  # a prefix of a name only
    assert paths.to_node("/srv/d.tif") == "/d.tif"
    assert paths.to_node("/elsewhere/e.tif") == "/elsewhere/e.tif"
    assert paths.to_node("") == ""
    for path in ("/data/x/a.tif", "/data/scenes/b.tif", "/srv/d.tif"):
        assert paths.to_daemon(paths.to_node(path)) == path
    # A watched archive's member: the archive's own path is mapped.
    assert paths.to_node("/vsizip//data/in/a.zip/x.tif") == "/vsizip//mnt/data/in/a.zip/x.tif"
    # Back: the longest node prefix first (/m/sub is under /m).
    nested = PathMap.parse(["/d=/m/sub", "/long/daemon/path=/m"])
    assert nested.to_daemon("/m/sub/f.tif") == "/d/f.tif"
    assert nested.to_daemon("/m/g.tif") == "/long/daemon/path/g.tif"


def test_executor_settings_are_checked() -> None:
    config = load_config(env={"SIPD_EXECUTOR": "ray", "SIPD_RAY__ADDRESS": "10.0.0.5:6379",
                              "SIPD_RAY__ACTORS": "4"})  # fmt: skip
    assert (config.executor, config.ray.address, config.ray.actors) == ("ray", "10.0.0.5:6379", 4)
    assert load_config(env={}).executor == "local"
    for env, words in [
        ({"SIPD_EXECUTOR": "dask"}, "not one of: local, ray"),
        ({"SIPD_EXECUTOR": "ray"}, "needs ray.address HOST:PORT"),
        ({"SIPD_EXECUTOR": "ray", "SIPD_RAY__ADDRESS": "h:1", "SIPD_RAY__ACTORS": "0"},
         "ray.actors must be at least 1"),
        ({"SIPD_EXECUTOR": "ray", "SIPD_RAY__ADDRESS": "h:1", "SIPD_RAY__PATH_MAP": "[data=/x]"},
         "DAEMON_PREFIX=NODE_PREFIX"),
    ]:  # fmt: skip
        with pytest.raises(InvalidArgument, match=words):
            load_config(env=env)


def test_the_ray_flags_set_the_ray_section() -> None:
    from sipd.main import parse_args

    args = vars(parse_args(["--executor", "ray", "--ray-address", "127.0.0.1:6379"]))
    assert args["executor"] == "ray" and args["ray_address"] == "127.0.0.1:6379"
