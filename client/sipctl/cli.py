"""`sipctl`: the command-line client of sipd."""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module

from sipctl.app import App
from sipctl.client import DEFAULT_ADDRESS, Client, CliError

# Command modules in the order `sipctl --help` lists them.
COMMAND_MODULES = ["labeling", "training", "watch", "system", "jobs", "bench"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sipctl",
        description="Command-line client of sipd: label scenes, train, test and predict.",
    )
    parser.add_argument(
        "--address",
        default=os.environ.get("SIPCTL_ADDRESS", DEFAULT_ADDRESS),
        help=f"sipd's gRPC address (default: $SIPCTL_ADDRESS, else {DEFAULT_ADDRESS})",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per call (default 60)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    # Options shared by every command that starts a job.
    job_options = argparse.ArgumentParser(add_help=False)
    job_options.add_argument(
        "--detach", action="store_true", help="print the job name and return instead of waiting"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        import_module(f"sipctl.commands.{name}").register(sub, job_options)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "detach"):
        args.detach = False
    client = Client(args.address, args.timeout)
    try:
        return int(args.func(App(args, client)) or 0)
    except CliError as exc:
        print(f"sipctl: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
