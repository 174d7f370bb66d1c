"""The quality benchmark's own sipd: a daemon process on 127.0.0.1 with an ephemeral port,
a data dir under the work dir and allowed roots covering the work dir and the dataset;
started like the test harness does (tests/support.py), stopped at the end, on errors and
on Ctrl-C alike (a context manager).

The benchmark talks to it through `sipctl --json` in child processes, as a user would:
inside sipd only the API surface speaks gRPC (docs/architecture.md, import rules), and
this way every step is exactly the sipctl command it names."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any


class SipctlError(RuntimeError):
    """A sipctl command that failed: its arguments, exit status and message."""

    def __init__(self, args: tuple[str, ...], code: int, message: str) -> None:
        super().__init__(f"sipctl {' '.join(args)} exited {code}: {message}")
        self.message = message


class BenchDaemon:
    def __init__(
        self,
        data_dir: Path,
        roots: list[Path],
        env: dict[str, str] | None = None,
        studio: bool = False,
    ):
        self.data_dir = data_dir
        # The studio on an ephemeral port (its address in `studio_address`) when asked.
        self.studio = studio
        self.studio_address = ""
        self.roots = roots
        self.env = env or {}
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.address = ""
        self.token = ""

    def start(self, timeout: float = 60.0) -> BenchDaemon:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        address_file = self.data_dir / "sipd.address"
        address_file.unlink(missing_ok=True)
        args = [sys.executable, "-m", "sipd", "--listen", "127.0.0.1:0",
                "--data-dir", str(self.data_dir), "--metrics-listen", "",
                "--studio-listen", "127.0.0.1:0" if self.studio else ""]  # fmt: skip
        for root in self.roots:
            args += ["--allowed-root", str(root)]
        # The caller's SIPD_* settings would change what is measured; only ours pass.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPD_")}
        env.update(self.env)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        # Its own process group: a Ctrl-C at the terminal reaches the benchmark, which then
        # stops the daemon in order (SIGTERM, wait), instead of both racing.
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not address_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"sipd exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"sipd did not start within {timeout:g} s:\n{self.log()}")
            time.sleep(0.05)
        host, _, port = address_file.read_text().strip().rpartition(":")
        self.address = f"127.0.0.1:{port}"
        self.token = (self.data_dir / "sipd.token").read_text().strip()
        if self.studio:
            self.studio_address = (self.data_dir / "sipd.studio_address").read_text().strip()
        self._wait_worker(timeout)
        return self

    def _wait_worker(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sipctl("status")["worker"]["state"] == "IDLE":
                return
            time.sleep(0.2)
        raise RuntimeError(f"sipd's worker did not become idle:\n{self.log()[-3000:]}")

    def sipctl(self, *args: str) -> Any:
        """`sipctl --json ARGS` against this daemon: its JSON output; SipctlError if it fails."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPCTL_")}
        env["SIPCTL_TOKEN"] = self.token
        proc = subprocess.run(
            [sys.executable, "-m", "sipctl", "--address", self.address, "--timeout", "600",
             "--json", "-q", *args],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines() or ["no message"]
            raise SipctlError(args, proc.returncode, lines[-1])
        return json.loads(proc.stdout) if proc.stdout.strip() else {}

    def job(self, *args: str) -> dict[str, Any]:
        """Start a job with `sipctl ARGS --detach`, wait for it (`sipctl jobs wait`) and
        return it as `sipctl --json jobs show` gives it (state, times, result)."""
        name = self.sipctl(*args, "--detach")["job"]
        try:
            self.sipctl("jobs", "wait", name)
        except SipctlError:
            pass  # a job that did not succeed; its record says why
        job = self.sipctl("jobs", "show", name)
        if job["state"] != "SUCCEEDED":
            raise RuntimeError(
                f"{job['type']} job {name} {job['state']}: {job.get('error') or 'no reason'}"
            )
        return job

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def __enter__(self) -> BenchDaemon:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
