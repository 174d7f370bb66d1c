"""Watched inboxes: one output set per input, even when two inputs share a stem, and GDAL's
sidecar files (NAME.properties, NAME.aux.xml, ...) are never taken as scenes."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import rasterio

from sipd.synthetic import make_scene
from sipd.watch.files import Layout, is_companion_name, output_base
from tests.integration.watch_support import SIZE, check_output_set, start_daemon, watch_show
from tests.support import wait_for


def test_output_base_keeps_the_extension_except_for_geotiffs_and_products(
    tmp_path: Path,
) -> None:
    layout = Layout(tmp_path, True, "*")
    bases = {
        name: output_base(layout, tmp_path / name).as_posix()
        for name in ("dup.tif", "dup.jp2", "dup.img", "L.TIF", "t.tiff", "x.tar.gz", "z.zip",
                     "sub/S1A.SAFE", "sub/d.nc")
    }  # fmt: skip
    assert bases == {
        "dup.tif": "dup", "dup.jp2": "dup.jp2", "dup.img": "dup.img", "L.TIF": "L",
        "t.tiff": "t", "x.tar.gz": "x", "z.zip": "z", "sub/S1A.SAFE": "sub/S1A",
        "sub/d.nc": "sub/d.nc",
    }  # fmt: skip
    # Decided from the name alone: a unit that has gone (moved, deleted) keeps its name.
    (tmp_path / "gone.jp2").write_bytes(b"x")
    before = output_base(layout, tmp_path / "gone.jp2")
    (tmp_path / "gone.jp2").unlink()
    assert output_base(layout, tmp_path / "gone.jp2") == before


@pytest.mark.parametrize(
    "name", ["x.tar.gz.properties", "s.tif.aux.xml", "s.tif.ovr", "s.tif.msk", "s.img.aux"]
)
def test_gdal_sidecars_belong_to_their_scene(tmp_path: Path, name: str) -> None:
    layout = Layout(tmp_path, False, "*")
    (tmp_path / name).write_bytes(b"x")
    assert is_companion_name(name)
    assert list(layout.scan()) == []  # alone, a sidecar is no scene
    scene = name.rsplit(".", 2 if name.endswith(".aux.xml") else 1)[0]
    assert layout.unit_of(tmp_path / name) == tmp_path / scene


def _jp2_copy(src: Path, dest: Path) -> Path:
    with rasterio.open(src) as ds:
        data, profile = ds.read(), ds.profile
    profile.update(driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES")
    for key in ("tiled", "blockxsize", "blockysize", "compress", "interleave"):
        profile.pop(key, None)
    with rasterio.open(dest, "w", **profile) as out:
        out.write(data)
    return dest


@pytest.mark.slow  # a daemon and a watch; the naming rules are tested fast above
def test_same_stem_inputs_and_gdal_sidecars_in_one_inbox(
    tmp_path: Path, trained_model: Path
) -> None:
    staging, inbox, outbox = tmp_path / "staging", tmp_path / "inbox", tmp_path / "outbox"
    staging.mkdir()
    inbox.mkdir()
    make_scene(staging / "dup.tif", width=SIZE, height=SIZE, seed=1, blocksize=SIZE)
    make_scene(staging / "other.tif", width=SIZE, height=SIZE, seed=2, blocksize=SIZE)
    make_scene(staging / "inner.tif", width=SIZE, height=SIZE, seed=3, blocksize=SIZE)
    jp2 = _jp2_copy(staging / "other.tif", staging / "dup.jp2")
    with tarfile.open(staging / "x.tar.gz", "w:gz") as tf:
        tf.add(staging / "inner.tif", "x/inner.tif")
    d = start_daemon(tmp_path, trained_model)
    try:
        # move: the first input leaves the inbox before the second is named, the hard case.
        d.sipctl("watch", "add", str(inbox), "--project", "wp", "--out", str(outbox),
                 "--name", "names", "--on-success", "move")  # fmt: skip
        for src in (staging / "dup.tif", jp2, staging / "x.tar.gz"):
            (inbox / src.name).write_bytes(src.read_bytes())
        # What GDAL's /vsigzip/ leaves beside an archive it has indexed.
        (inbox / "x.tar.gz.properties").write_text("compressed_size=1\nuncompressed_size=2\n")
        (inbox / "dup.tif.aux.xml").write_text("<PAMDataset/>\n")
        wait_for(lambda: watch_show(d, "names")["done"] >= 3, 120, what="3 scenes done")
        w = watch_show(d, "names")
        assert (w["done"], w["failed"], w["queued"], w["running"]) == (3, 0, 0, 0), w
        assert not (inbox / "failed").exists()
        inputs = {}
        for stem in ("dup", "dup.jp2", "x"):
            inputs[stem] = Path(check_output_set(outbox, stem)["input"]).name
        # Each set names its own input: neither overwrote the other.
        assert inputs == {"dup": "dup.tif", "dup.jp2": "dup.jp2", "x": "x.tar.gz"}
        # The sidecars travelled with their scenes.
        processed = sorted(p.name for p in (inbox / "processed").iterdir())
        assert processed == sorted(
            ["dup.tif", "dup.tif.aux.xml", "dup.jp2", "x.tar.gz", "x.tar.gz.properties"]
        )
        summary = json.loads((outbox / "dup.jp2.json").read_text())
        assert summary["outputs"]["labels"] == str(outbox / "dup.jp2.tif")
    finally:
        d.stop()
