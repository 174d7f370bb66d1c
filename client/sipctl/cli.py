"""`sipctl`: the command-line client of sipd."""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module

from sipctl import runtime
from sipctl.app import App
from sipctl.client import DEFAULT_ADDRESS, Client, CliError

# Command modules in the order `sipctl --help` lists them.
COMMAND_MODULES = [
    "labeling", "preprocess", "training", "suggest", "watch", "system", "jobs", "bench",
]  # fmt: skip


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
    parser.add_argument(
        "--token",
        default=os.environ.get("SIPCTL_TOKEN"),
        help="bearer token (default: $SIPCTL_TOKEN, else the owner's token when sipd at "
        "--address runs as this user, else none)",
    )
    parser.add_argument(
        "--tls-ca",
        default=os.environ.get("SIPCTL_TLS_CA"),
        metavar="PEM",
        help="talk TLS, trusting this CA bundle (default: $SIPCTL_TLS_CA)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        default=bool(os.environ.get("SIPCTL_TLS")),
        help="talk TLS, trusting the system's CAs ($SIPCTL_TLS=1)",
    )
    parser.add_argument(
        "--tls-cert",
        default=os.environ.get("SIPCTL_TLS_CERT"),
        metavar="PEM",
        help="client certificate for mTLS (default: $SIPCTL_TLS_CERT)",
    )
    parser.add_argument(
        "--tls-key",
        default=os.environ.get("SIPCTL_TLS_KEY"),
        metavar="PEM",
        help="client private key for mTLS (default: $SIPCTL_TLS_KEY)",
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
    token = args.token or runtime.find_token(args.address)
    args.token = token  # `sipctl studio` hands it to the browser
    try:
        client = Client(
            args.address, args.timeout, token, tls=args.tls, tls_ca=args.tls_ca,
            tls_cert=args.tls_cert, tls_key=args.tls_key,
        )  # fmt: skip
    except CliError as exc:
        print(f"sipctl: {exc}", file=sys.stderr)
        return 1
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
