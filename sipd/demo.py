"""`make demo`: start sipd on its embedded defaults and walk the example with sipctl.

Everything lives in ./demo-data: generated scenes and ROI files, and the
daemon's data dir. The daemon is started with the embedded defaults except
for the data dir and allowed root (kept inside demo-data so the demo never
touches your real sipd state); each sipctl command is printed before it
runs, so the transcript doubles as a tutorial.

At the end it sets up an empty project on the demo scene for the labeling
studio and prints the studio's address; in a terminal the daemon keeps
running until Ctrl+C so that you can draw there (SIPD_DEMO_KEEP=0: stop at once).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DEMO_DIR = Path("demo-data")


def _free(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
        except OSError:
            return False
    return True


class Demo:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.state = self.root / "state"
        self.daemon: subprocess.Popen[bytes] | None = None
        self.address = ""

    def start_daemon(self) -> None:
        args = [
            sys.executable,
            "-m",
            "sipd",
            "--data-dir",
            str(self.state),
            "--allowed-root",
            str(self.root),
        ]
        if not _free("127.0.0.1:50051"):
            print("127.0.0.1:50051 is in use (another sipd?); the demo daemon takes a free port")
            args += ["--listen", "127.0.0.1:0"]
        if not _free("127.0.0.1:9464"):
            args += ["--metrics-listen", ""]
        if not _free("127.0.0.1:50052"):
            args += ["--studio-listen", "127.0.0.1:0"]
        print(f"$ {shlex.join(['sipd', *args[3:]])}  # log: {self.root / 'sipd.log'}")
        log = open(self.root / "sipd.log", "wb")  # noqa: SIM115 - the daemon's stdout/stderr
        self.daemon = subprocess.Popen(args, stdout=log, stderr=log)
        address_file = self.state / "sipd.address"
        deadline = time.monotonic() + 60
        while not address_file.exists():
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"sipd did not start; see {self.root / 'sipd.log'}")
            time.sleep(0.1)
        self.address = address_file.read_text().strip()

    def sipctl(self, *args: str, quiet: bool = False) -> str:
        print(f"\n$ sipctl {shlex.join(args)}", flush=True)
        env = {**os.environ, "SIPCTL_ADDRESS": self.address}
        result = subprocess.run(
            [sys.executable, "-m", "sipctl", *args], env=env, stdout=subprocess.PIPE, text=True
        )
        if not quiet:
            print(result.stdout, end="", flush=True)
        if result.returncode != 0:
            raise SystemExit(f"demo step failed: sipctl {shlex.join(args)}")
        return result.stdout

    def stop_daemon(self) -> None:
        if self.daemon is None or self.daemon.poll() is not None:
            return
        print("\n$ kill -TERM sipd")
        self.daemon.send_signal(signal.SIGTERM)
        code = self.daemon.wait(timeout=60)
        print(f"sipd exited with status {code}")


def main() -> int:
    started = time.monotonic()
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir(parents=True)
    demo = Demo(DEMO_DIR)
    try:
        demo.start_daemon()
        demo.sipctl("status")
        run_example(demo)
        open_studio(demo)
        print(f"\ndemo finished in {time.monotonic() - started:.0f} s; files in "
              f"{DEMO_DIR.resolve()}")  # fmt: skip
        keep = os.environ.get("SIPD_DEMO_KEEP", "1" if sys.stdin.isatty() else "0") == "1"
        if keep and demo.daemon is not None:
            print("sipd keeps running for the studio; press Ctrl+C to stop it")
            try:
                demo.daemon.wait()
            except KeyboardInterrupt:
                pass
    finally:
        demo.stop_daemon()
    return 0


def open_studio(demo: Demo) -> None:
    """An empty project on the demo scene: draw a few strokes and watch the label map."""
    demo.sipctl("project", "create", "studio", "--classes", "water,ice,land", "--colors",
                "navy,skyblue,olive", "--bands", "B1,B2,B3,B4")  # fmt: skip
    demo.sipctl("scene", "add", "studio", str(demo.root / "scene_a.tif"), "--name", "a")
    address = demo.sipctl("studio", "--no-open", quiet=True).splitlines()[0]
    print(
        f"\nlabeling studio: {address}\n"
        "open it in a browser, pick project 'studio', a class (keys 1-3) and the line tool, "
        "and draw a few strokes on water, ice and land: the label map appears as you draw"
    )


def write_geojson_rois(
    path: Path, rois: list[dict], transform: object, crs: str, classes: list[str]
) -> None:
    """ROIs as a GeoJSON FeatureCollection in the scene's CRS (what QGIS users draw)."""
    features = []
    for roi in rois:
        coords = [list(transform * (c, r)) for c, r in roi["coords"]]  # type: ignore[operator]
        geometry = (
            {"type": "Point", "coordinates": coords[0]}
            if roi["kind"] == "point"
            else {"type": "LineString", "coordinates": coords}
        )
        features.append(
            {
                "type": "Feature",
                "geometry": geometry,
                "properties": {"class": classes[roi["class_value"] - 1], "split": roi["split"]},
            }
        )
    epsg = crs.split(":")[1]
    doc = {
        "type": "FeatureCollection",
        "features": features,
        "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}},
    }
    path.write_text(json.dumps(doc, indent=1))


def write_sip_csv(
    path: Path, rois: list[dict], width: int, height: int, classes: list[str]
) -> None:
    """ROIs in SIP's own CSV format: one row per vertex, label = class_split."""
    rows = [",width,height,Object,X,Y,Type,Label"]
    n = 0
    for obj, roi in enumerate(rois, start=1):
        kind = "Point" if roi["kind"] == "point" else "Line"
        label = f"{classes[roi['class_value'] - 1]}_{roi['split']}"
        for c, r in roi["coords"]:
            rows.append(f"{n},{width},{height},{obj},{c},{r},{kind},{label}")
            n += 1
    path.write_text("\n".join(rows) + "\n")


def run_example(demo: Demo) -> None:
    import rasterio

    from sipd.synthetic import make_scene as make
    from sipd.synthetic import sample_rois

    root = demo.root
    classes = ["water", "ice", "land"]
    size = 1024
    # Scene A carries train and val examples, scene B only test examples (held out).
    truth_a = make(root / "scene_a.tif", width=size, height=size, bands=4, seed=1)
    truth_b = make(
        root / "scene_b.tif", width=size, height=size, bands=4, seed=2, origin=(520000.0, 7000000.0)
    )
    rois_a = sample_rois(
        truth_a,
        seed=1,
        n_lines_per_class=6,
        n_points_per_class=10,
        splits={"train": 0.75, "val": 0.25},
    )
    rois_b = sample_rois(
        truth_b, seed=2, n_lines_per_class=6, n_points_per_class=10, splits={"test": 1.0}
    )
    with rasterio.open(root / "scene_a.tif") as ds:
        write_geojson_rois(
            root / "rois_a.geojson", rois_a, ds.transform, ds.crs.to_string(), classes
        )
    write_sip_csv(root / "rois_b.csv", rois_b, size, size, classes)
    print(
        f"generated {root}/scene_a.tif and scene_b.tif ({size} x {size}, 4 bands, uint16, "
        "3 classes), rois_a.geojson (train/val), rois_b.csv (SIP CSV, test)"
    )

    demo.sipctl(
        "project",
        "create",
        "demo",
        "--classes",
        ",".join(classes),
        "--colors",
        "navy,skyblue,olive",
        "--bands",
        "B1,B2,B3,B4",
    )
    demo.sipctl("scene", "add", "demo", str(root / "scene_a.tif"), "--name", "a")
    demo.sipctl("scene", "add", "demo", str(root / "scene_b.tif"), "--name", "b")
    demo.sipctl("roi", "import", "demo", str(root / "rois_a.geojson"), "--scene", "a")
    demo.sipctl("roi", "import", "demo", str(root / "rois_b.csv"), "--scene", "b")
    demo.sipctl(
        "roi",
        "add",
        "demo",
        "--scene",
        "a",
        "--class",
        "land",
        "--split",
        "train",
        "--wkt",
        _land_point(truth_a),
        "--width",
        "3",
    )
    counts = json.loads(demo.sipctl("--json", "mask", "demo", quiet=True))["counts"]
    labeled = sum(n for per in counts.values() for c, n in per.items() if c != "background")
    print(
        f"labeled pixels: {labeled} of {2 * size * size} ({100 * labeled / (2 * size * size):.2f}%)"
    )
    demo.sipctl("dataset", "prepare", "demo")
    demo.sipctl("train", "demo", "--epochs", "12", "--seed", "0")
    demo.sipctl("test", "demo")
    out = root / "scene_b_labels.tif"
    demo.sipctl(
        "predict", "demo", str(root / "scene_b.tif"), "-o", str(out), "--confidence", "--quicklook"
    )
    demo.sipctl("models", "list", "demo")
    print(f"\nlabel map: {out.resolve()}")


def _land_point(truth: object) -> str:
    """One hand-placed point inside the 'land' class, as an analyst would add."""
    import numpy as np

    rows, cols = np.nonzero(np.asarray(truth) == 3)
    mid = len(rows) // 2
    r, c = int(rows[mid]), int(cols[mid])
    return f"POINT ({c + 0.5} {r + 0.5})"


if __name__ == "__main__":
    sys.exit(main())
