"""The watch building blocks on real files and a real SQLite store: names, settling, products,
the durable queue (exactly-once key, backpressure, batches). The submit transaction and its
crash points: tests/unit/test_watch_transaction.py."""

from __future__ import annotations

import json
import os
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from sipd.config import WatchConfig
from sipd.errors import AlreadyExists, InvalidArgument
from sipd.store import Store
from sipd.watch.files import (
    Layout,
    companions,
    has_sentinel,
    is_ignored_name,
    is_leftover_temporary,
    output_base,
    signature,
)
from sipd.watch.outputs import free_destination, move_unit
from sipd.watch.products import raster_path
from sipd.watch.queue import ClaimLost, WatchQueue
from sipd.watch.runtime import Runtime
from sipd.watch.scanner import Scanner
from sipd.watch.settle import Settler
from sipd.watch.spec import WatchSpec, check_folders, spec_from_dict


def test_writers_temporary_names_are_ignored() -> None:
    for name in (".scene.tif.Xy12ab", ".hidden.tif", "scene.tif.part", "scene.tif.tmp",
                 "scene.tif.crdownload", "scene.tif.filepart", "scene.tif~"):  # fmt: skip
        assert is_ignored_name(name), name
    for name in ("scene.tif", "S1A_x.SAFE", "a.tar.gz", "part.tif", "tmp.tif"):
        assert not is_ignored_name(name), name
    assert is_leftover_temporary(".s1.tif.0a1b2c3d.tmp")
    assert is_leftover_temporary(".s1.tif.0a1b2c3d.scratch.tif.aux.xml")
    assert not is_leftover_temporary("s1.tif")


def test_layout_maps_event_paths_to_units(tmp_path: Path) -> None:
    flat = Layout(tmp_path, recursive=False, pattern="*")
    assert flat.unit_of(tmp_path / "a.tif") == tmp_path / "a.tif"
    assert flat.unit_of(tmp_path / "a.tif.done") == tmp_path / "a.tif"  # a sentinel: its data
    assert flat.unit_of(tmp_path / "a.tif.aux.xml") == tmp_path / "a.tif"
    assert flat.unit_of(tmp_path / "X.SAFE" / "measurement" / "vv.tiff") == tmp_path / "X.SAFE"
    assert flat.unit_of(tmp_path / "sub" / "b.tif") == tmp_path / "sub"  # flat: a folder is one
    for ignored in (".a.tif.123456", "a.tif.part", "processed/a.tif", "failed/a.tif.error.txt"):
        assert flat.unit_of(tmp_path / ignored) is None, ignored
    assert flat.unit_of(tmp_path.parent / "elsewhere.tif") is None
    deep = Layout(tmp_path, recursive=True, pattern="*.tif")
    assert deep.unit_of(tmp_path / "sub" / "b.tif") == tmp_path / "sub" / "b.tif"
    assert deep.unit_of(tmp_path / "sub" / "b.jp2") is None
    assert deep.unit_of(tmp_path / "sub" / "processed" / "b.tif") is not None  # only top-level
    assert deep.is_subfolder(tmp_path / "sub") and deep.is_subfolder(tmp_path / "sub" / "x")
    for not_one in ("X.SAFE", "processed", ".tmpdir", "sub/Y.SAFE"):
        assert not deep.is_subfolder(tmp_path / not_one), not_one
    assert not flat.is_subfolder(tmp_path / "sub")


def test_a_landsat_product_folder_is_one_unit_even_in_a_recursive_watch(tmp_path: Path) -> None:
    """A Landsat folder as USGS delivers it has no suffix; its product id makes it one
    product, so a recursive watch does not take each band file for a scene."""
    product = "LC08_L2SP_008059_20191201_20200825_02_T1"
    for rel in (f"2019/{product}/{product}_MTL.txt", f"2019/{product}/{product}_SR_B4.TIF",
                "2019/plain/scene.tif"):  # fmt: skip
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    deep = Layout(tmp_path, recursive=True, pattern="*")
    units = sorted(p.relative_to(tmp_path).as_posix() for p in deep.scan())
    assert units == [f"2019/{product}", "2019/plain/scene.tif"]
    band = tmp_path / "2019" / product / f"{product}_SR_B4.TIF"
    assert deep.unit_of(band) == tmp_path / "2019" / product
    assert not deep.is_subfolder(tmp_path / "2019" / product)


def test_scan_finds_units_and_skips_ours(tmp_path: Path) -> None:
    names = ("a.tif", "a.tif.done", "a.tif.aux.xml", ".b.tif.x1y2z3", "c.tif.part", "sub/d.tif",
             "sub/X.SAFE/m/e.tiff", "processed/old.tif", "failed/bad.tif")  # fmt: skip
    for rel in names:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    flat = sorted(p.relative_to(tmp_path).as_posix() for p in Layout(tmp_path, False, "*").scan())
    assert flat == ["a.tif", "sub"]
    deep = sorted(p.relative_to(tmp_path).as_posix() for p in Layout(tmp_path, True, "*").scan())
    assert deep == ["a.tif", "sub/X.SAFE", "sub/d.tif"]
    layout = Layout(tmp_path, True, "*")
    assert output_base(layout, tmp_path / "sub" / "X.SAFE") == Path("sub/X")
    assert output_base(layout, tmp_path / "a.tar.gz") == Path("a")


def test_settler_waits_for_a_quiet_period_while_a_writer_appends(tmp_path: Path) -> None:
    # The settler's clock is the `now` each poll is given: the writer's pace and the quiet
    # period are stepped exactly, with no sleeps and no dependence on the machine's load.
    path = tmp_path / "slow.tif"
    settler = Settler(quiet=0.6, require_sentinel=False)
    now = 100.0
    settler.touch(path, now)
    with open(path, "wb") as out:
        for _ in range(15):  # a chunk every 0.1 s for 1.5 s: never quiet for 0.6 s
            out.write(b"x" * 1000)
            out.flush()
            now += 0.1
            assert settler.poll(now) == []
    # The last change (seen at `now`) restarted the clock: still pending just before 0.6 s.
    assert settler.poll(now + 0.59) == []
    ready = settler.poll(now + 0.61)
    assert [u for u, _ in ready] == [path] and ready[0][1][0] == path.stat().st_size == 15000
    assert settler.awaiting_sentinel == 0  # no sentinel asked for: nothing held for one


def test_a_quiet_unit_without_its_sentinel_is_held_and_counted(tmp_path: Path) -> None:
    data = tmp_path / "scene.tif"
    data.write_bytes(b"v1")
    settler = Settler(quiet=1.0, require_sentinel=True)
    settler.touch(data, 0.0)
    assert settler.poll(0.5) == [] and settler.awaiting_sentinel == 0  # not quiet yet
    assert settler.poll(1.5) == [] and settler.awaiting_sentinel == 1  # quiet, but held
    with open(data, "ab") as out:
        out.write(b"more")  # written again: no longer quiet, so no longer counted as held
    assert settler.poll(2.0) == [] and settler.awaiting_sentinel == 0
    assert settler.poll(3.0) == [] and settler.awaiting_sentinel == 1
    (tmp_path / "scene.tif.done").write_text("")
    assert [u for u, _ in settler.poll(3.1)] == [data] and settler.awaiting_sentinel == 0


def test_a_fresh_sentinel_releases_at_once_a_stale_one_does_not(tmp_path: Path) -> None:
    data = tmp_path / "scene.tif"
    data.write_bytes(b"v1")
    settler = Settler(quiet=100.0, require_sentinel=True)
    settler.touch(data, 0.0)
    assert settler.poll(1000.0) == []  # quiet long passed, but a sentinel is required
    (tmp_path / "scene.tif.done").write_text("")
    assert [u for u, _ in settler.poll(1000.1)] == [data]
    # A new version written after the sentinel: the old sentinel says nothing about it.
    later = time.time() + 5
    os.utime(data, (later, later))
    assert not has_sentinel(data, signature(data)[1])
    (tmp_path / "scene.ready").write_text("")  # STEM.ready counts too
    os.utime(tmp_path / "scene.ready", (later + 1, later + 1))
    assert has_sentinel(data, signature(data)[1])
    assert settler.poll(1000.2)  # still pending: it was never forgotten


def test_a_vanished_unit_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "gone.tif"
    path.write_bytes(b"x")
    settler = Settler(quiet=0.0, require_sentinel=False)
    settler.touch(path, 0.0)
    path.unlink()
    assert settler.poll(1.0) == [] and len(settler) == 0


def test_products_resolve_to_one_raster(tmp_path: Path) -> None:
    tif = tmp_path / "plain.tif"
    tif.write_bytes(b"x")
    assert raster_path(tif) == str(tif)
    z = tmp_path / "p.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("p/readme.txt", "hi")
        zf.writestr("p/band.tif", "x")
    assert raster_path(z) == f"/vsizip/{z}/p/band.tif"
    t = tmp_path / "p.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        tf.add(tif, "inner/plain.tif")
    assert raster_path(t) == f"/vsitar/{t}/inner/plain.tif"
    safe = tmp_path / "S1A.SAFE"
    (safe / "measurement").mkdir(parents=True)
    (safe / "measurement" / "vv.tiff").write_bytes(b"x")
    (safe / "measurement" / "vh.tiff").write_bytes(b"x")
    with pytest.raises(InvalidArgument, match="2 rasters"):
        raster_path(safe)
    (safe / "manifest.safe").write_text("<xml/>")
    assert raster_path(safe) == str(safe / "manifest.safe")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InvalidArgument, match="not a readable zip"):
        raster_path(bad)
    empty = tmp_path / "docs"
    empty.mkdir()
    (empty / "a.txt").write_text("x")
    with pytest.raises(InvalidArgument, match="no raster"):
        raster_path(empty)


def test_moving_a_unit_takes_its_companions_and_can_be_repeated(tmp_path: Path) -> None:
    unit = tmp_path / "in" / "scene.img"
    unit.parent.mkdir()
    for name in ("scene.img", "scene.hdr", "scene.img.done", "scene.img.aux.xml"):
        (unit.parent / name).write_text(name)
    assert sorted(p.name for p in companions(unit)) == [
        "scene.hdr", "scene.img.aux.xml", "scene.img.done"]  # fmt: skip
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / "scene.img").write_text("an earlier one")
    dest = free_destination(tmp_path / "failed", Path("scene.img"))
    assert dest.name == "scene.1.img"
    move_unit(unit, dest)
    move_unit(unit, dest)  # a repeat after a crash finds everything moved
    assert sorted(p.name for p in (tmp_path / "failed").iterdir()) == [
        "scene.1.hdr", "scene.1.img", "scene.1.img.aux.xml", "scene.1.img.done", "scene.img"]
    assert list(unit.parent.iterdir()) == []


def test_spec_validation_names_the_field() -> None:
    spec = spec_from_dict(
        {"id": "s1", "inbox": "/i", "outbox": "/o", "project": "projects/p", "model": "3",
         "recursive": "yes", "on_success": "MOVE"}, "watch.watches[0]")  # fmt: skip
    assert (spec.project, spec.model, spec.recursive, spec.on_success) == ("p", "3", True, "move")
    bad = [
        ({"id": "bad id"}, "watch id"),
        ({"model": "newest"}, "model"),
        ({"on_success": "archive"}, "on_success"),
        ({"quiet_seconds": -1}, "quiet_seconds"),
        ({"pattern": "sub/*.tif"}, "pattern"),
        ({"colour": "red"}, "unknown field"),
        ({"recursive": "maybe"}, "recursive"),
    ]
    for change, words in bad:
        data = {"id": "s1", "inbox": "/i", "outbox": "/o", "project": "p", **change}
        with pytest.raises(InvalidArgument, match=words):
            spec_from_dict(data, "w")
    with pytest.raises(InvalidArgument, match="outbox is required"):
        spec_from_dict({"id": "s1", "inbox": "/i", "project": "p"}, "w")
    for inbox, outbox in (("/a", "/a"), ("/a", "/a/out"), ("/a/in", "/a")):
        with pytest.raises(InvalidArgument, match="neither inside"):
            check_folders(Path(inbox), Path(outbox))
    check_folders(Path("/a/in"), Path("/a/out"))


@pytest.fixture
def queue(tmp_path: Path) -> WatchQueue:
    store = Store(tmp_path / "sipd.db")
    q = WatchQueue(store)
    q.create_watch(WatchSpec(id="w", inbox=str(tmp_path / "in"), outbox=str(tmp_path / "out"),
                             project="p"))  # fmt: skip
    return q


def test_a_scene_is_queued_once_per_path_size_and_mtime(queue: WatchQueue) -> None:
    assert queue.offer("w", "/in/a.tif", 10, 111, limit=100) == "queued"
    assert queue.offer("w", "/in/a.tif", 10, 111, limit=100) == "known"
    assert queue.offer("w", "/in/a.tif", 12, 222, limit=100) == "queued"  # changed: again
    assert queue.counts()["w"]["QUEUED"] == 2
    with pytest.raises(AlreadyExists):
        queue.create_watch(WatchSpec(id="w", inbox="/x", outbox="/y", project="p"))


def test_the_queue_is_bounded_across_watches(queue: WatchQueue) -> None:
    queue.create_watch(WatchSpec(id="v", inbox="/v", outbox="/vo", project="p"))
    for i in range(3):
        assert queue.offer("w", f"/in/{i}.tif", 1, i, limit=5) == "queued"
    for i in range(2):
        assert queue.offer("v", f"/v/{i}.tif", 1, i, limit=5) == "queued"
    assert queue.offer("w", "/in/9.tif", 1, 9, limit=5) == "full"
    assert queue.depth() == 5
    rows = queue.claim("w", 8, time.time())
    queue.attach([r["id"] for r in rows], job_id=1, model="m")
    assert queue.depth() == 2  # running scenes no longer wait
    assert queue.offer("w", "/in/9.tif", 1, 9, limit=5) == "queued"


def test_claim_batches_but_a_solo_scene_runs_alone(queue: WatchQueue) -> None:
    for i in range(5):
        queue.offer("w", f"/in/{i}.tif", 1, i, limit=100)
    rows = queue.claim("w", 3, time.time())
    assert [r["path"] for r in rows] == ["/in/0.tif", "/in/1.tif", "/in/2.tif"]
    queue.attach([r["id"] for r in rows], job_id=7, model="m")
    queue.split([r["id"] for r in rows])  # the batch failed: each alone from now on
    assert len(queue.claim("w", 3, time.time())) == 1
    # A retry waits for its backoff.
    store = queue.store
    store.execute("UPDATE watch_files SET state = 'QUEUED'")
    store.execute("UPDATE watch_files SET state = 'RUNNING', job = 8 WHERE path = '/in/3.tif'")
    row = queue.rows_of_job(8)[0]
    queue.retry([row["id"]], not_before=time.time() + 60, split=False)
    claimed: list[str] = []
    while batch := queue.claim("w", 10, time.time()):
        claimed += [r["path"] for r in batch]
        queue.attach([r["id"] for r in batch], job_id=9, model="m")
    assert sorted(claimed) == ["/in/0.tif", "/in/1.tif", "/in/2.tif", "/in/4.tif"]
    assert queue.scene_rows([row["id"]])[0]["attempts"] == 1


def test_claim_only_reads_and_attach_takes_only_waiting_scenes(queue: WatchQueue) -> None:
    for name in ("a", "b"):
        queue.offer("w", f"/in/{name}.tif", 1, 1, limit=100)
    rows = queue.claim("w", 8, time.time())
    ids = [r["id"] for r in rows]
    # Read, not taken: a crash now leaves nothing to recover.
    assert queue.claim("w", 8, time.time()) == rows
    assert queue.counts()["w"]["QUEUED"] == 2
    queue.mark_failed(ids[1], "unreadable")  # changed after it was read
    with pytest.raises(ClaimLost, match="1 of 2"):
        queue.attach(ids, job_id=5, model="m")
    assert [r["state"] for r in queue.scene_rows(ids)] == ["QUEUED", "FAILED"]  # all or none
    queue.attach(ids[:1], job_id=5, model="m")
    assert [r["path"] for r in queue.rows_of_job(5)] == ["/in/a.tif"]


def test_the_scanner_counts_its_passes_and_rescans(queue: WatchQueue, tmp_path: Path) -> None:
    # The counters /metrics exposes, and tests wait on instead of sleeping.
    spec = queue.get_watch("w")["spec"]
    Path(spec.inbox).mkdir()
    (Path(spec.inbox) / "a.tif").write_bytes(b"x")
    rt = Runtime(spec=spec, layout=Layout(Path(spec.inbox), False, "*"),
                 settler=Settler(quiet=0.0, require_sentinel=False), paused=False)  # fmt: skip
    scanner = Scanner(queue, WatchConfig(rescan_seconds=3600), lambda: {"w": rt},
                      schedule=lambda _rt: None, wake=lambda: None)  # fmt: skip
    scanner.tick()  # the start rescan finds a.tif; quiet 0: queued in the same pass
    assert (rt.passes, rt.rescans, queue.counts()["w"]["QUEUED"]) == (1, 1, 1)
    scanner.tick()  # the next rescan is an hour away
    assert (rt.passes, rt.rescans) == (2, 1)
    rt.paused = True
    scanner.tick()  # a paused watch is passed over, and that pass counts
    assert (rt.passes, rt.rescans) == (3, 1)
    rt.paused, rt.rescan_requested = False, True  # what resume does
    scanner.tick()
    assert (rt.passes, rt.rescans, queue.counts()["w"]["QUEUED"]) == (4, 2, 1)  # a.tif is known


def test_finished_steps_are_recorded_once(queue: WatchQueue) -> None:
    queue.offer("w", "/in/a.tif", 1, 1, limit=100)
    rows = queue.claim("w", 8, time.time())
    queue.attach([rows[0]["id"]], job_id=3, model="m")
    assert queue.mark_done(rows[0]["id"], {"summary": "/out/a.json"})
    assert not queue.mark_done(rows[0]["id"], {"summary": "/out/a.json"})
    assert not queue.mark_failed(rows[0]["id"], "too late")
    row = queue.scene_rows([rows[0]["id"]])[0]
    assert row["state"] == "DONE" and json.loads(row["result"]) == {"summary": "/out/a.json"}
    queue.delete_watch("w")
    assert queue.scene_rows([rows[0]["id"]]) == []  # a removed watch takes its history along
