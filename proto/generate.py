"""Generate client/sipapi/v1 from proto/sip/v1 (run by `make proto`).

protoc writes `from sip.v1 import x_pb2`; the modules live in the package
sipapi.v1 of the client distribution (client/), so the imports are
rewritten to `from sipapi.v1 import x_pb2`.
`--check` regenerates into a temporary folder and exits 1 when the committed
modules differ (the test suite calls it).
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
API_DIR = ROOT / "client" / "sipapi"
_IMPORT = re.compile(r"^from sip\.v1 import ", re.MULTILINE)


def generate(out: Path) -> list[Path]:
    from grpc_tools import protoc  # dev dependency, imported only here

    protos = sorted(
        str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "sip" / "v1").glob("*.proto")
    )
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # protoc mirrors the proto folders (sip/v1/); the package is sipapi/v1/.
    generated = out / "sip" / "v1"
    (out / "v1").mkdir()
    for path in sorted(p for p in generated.iterdir() if p.suffix in (".py", ".pyi")):
        (out / "v1" / path.name).write_text(_IMPORT.sub("from sipapi.v1 import ", path.read_text()))
    shutil.rmtree(out / "sip")
    for pkg in (out, out / "v1"):
        (pkg / "__init__.py").write_text(
            '"""Generated from proto/sip/v1 by `make proto`; do not edit."""\n'
        )
    return sorted(p for p in out.rglob("*") if p.suffix in (".py", ".pyi"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when client/sipapi is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        rel = {p.relative_to(tmp) for p in fresh}
        if args.check:
            current = {
                p.relative_to(API_DIR) for p in API_DIR.rglob("*") if p.suffix in (".py", ".pyi")
            }
            stale = sorted(str(r) for r in rel ^ current)
            stale += sorted(
                str(r)
                for r in rel & current
                if not filecmp.cmp(Path(tmp) / r, API_DIR / r, shallow=False)
            )
            if stale:
                print("client/sipapi is stale; run `make proto`. Differs: " + ", ".join(stale))
                return 1
            print("client/sipapi is up to date")
            return 0
        shutil.rmtree(API_DIR, ignore_errors=True)
        for r in rel:
            (API_DIR / r).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(tmp) / r, API_DIR / r)
    print(f"generated {len(rel)} files in {API_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
