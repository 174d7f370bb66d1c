"""`make demo`: start sipd on its embedded defaults and walk the example with sipctl.

Everything lives in ./demo-data: generated scenes and ROI files, and the
daemon's data dir. The daemon is started with the embedded defaults except
for the data dir and allowed root (kept inside demo-data so the demo never
touches your real sipd state); each sipctl command is printed before it
runs, so the transcript doubles as a tutorial.
"""

from __future__ import annotations

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
        args = [sys.executable, "-m", "sipd", "--data-dir", str(self.state),
                "--allowed-root", str(self.root)]
        if not _free("127.0.0.1:50051"):
            print("127.0.0.1:50051 is in use (another sipd?); the demo daemon takes a free port")
            args += ["--listen", "127.0.0.1:0"]
        if not _free("127.0.0.1:9464"):
            args += ["--metrics-listen", ""]
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

    def sipctl(self, *args: str) -> str:
        print(f"\n$ sipctl {shlex.join(args)}", flush=True)
        env = {**os.environ, "SIPCTL_ADDRESS": self.address}
        result = subprocess.run([sys.executable, "-m", "sipctl", *args], env=env,
                                stdout=subprocess.PIPE, text=True)
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
    finally:
        demo.stop_daemon()
    print(f"\ndemo finished in {time.monotonic() - started:.0f} s; files in {DEMO_DIR.resolve()}")
    return 0


def run_example(demo: Demo) -> None:
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    scene = demo.root / "scene_a.tif"
    data = np.random.default_rng(1).integers(0, 4000, (4, 512, 512), dtype=np.uint16)
    profile = {"driver": "GTiff", "width": 512, "height": 512, "count": 4, "dtype": "uint16",
               "crs": "EPSG:32633", "transform": from_origin(500000, 7000000, 10, 10)}
    with rasterio.open(scene, "w", **profile) as ds:
        ds.write(data)
    demo.sipctl("inspect", str(scene), "--stats")


if __name__ == "__main__":
    sys.exit(main())
