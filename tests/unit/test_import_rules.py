"""The import rules of docs/architecture.md, checked on the source and in a fresh interpreter.

Rules (module-level and function-level imports alike, since a lazy import
still couples two packages):
- only the servicers (sipd.services), the server and the entry point speak
  gRPC: nothing else imports grpc, google.protobuf or the generated sipapi;
- the client (client/sipctl, client/sipapi) never imports the daemon (sipd);
- contracts depend on nothing but errors, config and the net catalog;
- training and inference never import each other;
- the daemon process never loads torch or onnxruntime (only the worker does).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GRPC_MODULES = ("grpc", "google.protobuf", "sipapi", "grpc_health", "grpc_reflection")
# May speak gRPC: they are the API surface of the daemon.
API_SURFACE = ("sipd.services", "sipd.server", "sipd.main")
CONTRACTS_MAY_IMPORT = ("sipd.contracts", "sipd.errors", "sipd.config", "sipd.nets.catalog")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT / "client" if path.is_relative_to(ROOT / "client") else ROOT)
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from sipd import x` may name a submodule.
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _sources(*folders: str) -> list[Path]:
    return sorted(
        p
        for folder in folders
        for p in (ROOT / folder).rglob("*.py")
        # Generated code, and what a local `pip install` may leave behind.
        if not {"sipapi", "build"} & set(p.parts)
    )


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_sources_are_found() -> None:
    # A rule checked on no files passes for nothing.
    assert len(_sources("sipd")) > 50 and len(_sources("client")) > 5


def test_only_the_api_surface_speaks_grpc() -> None:
    offenders = [
        f"{_module_name(p)} imports {m}"
        for p in _sources("sipd")
        if not _within(_module_name(p), API_SURFACE)
        for m in sorted(_imports(p))
        if _within(m, GRPC_MODULES)
    ]
    assert offenders == []


def test_the_client_never_imports_the_daemon() -> None:
    offenders = [
        f"{_module_name(p)} imports {m}"
        for p in _sources("client")
        for m in sorted(_imports(p))
        if _within(m, ("sipd",))
    ]
    assert offenders == []


def test_contracts_depend_only_on_errors_config_and_the_net_catalog() -> None:
    offenders = [
        f"{_module_name(p)} imports {m}"
        for p in _sources("sipd/contracts")
        for m in sorted(_imports(p))
        if _within(m, ("sipd",)) and not _within(m, CONTRACTS_MAY_IMPORT)
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("sipd/training", "sipd.inference"), ("sipd/inference", "sipd.training")],
)
def test_training_and_inference_do_not_import_each_other(package: str, forbidden: str) -> None:
    offenders = [
        f"{_module_name(p)} imports {m}"
        for p in _sources(package)
        for m in sorted(_imports(p))
        if _within(m, (forbidden,))
    ]
    assert offenders == []


def test_the_daemon_process_loads_neither_torch_nor_onnxruntime() -> None:
    code = (
        "import sys, sipd.server, sipd.job_requests, sipd.stream_upload, sipd.watch.manager\n"
        "heavy = sorted(m for m in ('torch', 'onnxruntime') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == ""
