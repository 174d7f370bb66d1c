"""`sipd`: start the daemon."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from sipd import __version__
from sipd.config import load_config
from sipd.errors import SipError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="sipd",
        description="Local daemon for pixel-level image classification from a few drawn examples. "
        "Options override SIPD_* environment variables, which override the config file, "
        "which overrides the embedded defaults.",
    )
    p.add_argument(
        "--listen", help="gRPC address HOST:PORT (default 127.0.0.1:50051; port 0 = any free port)"
    )
    p.add_argument("--data-dir", help="where state lives (default: the per-user data folder)")
    p.add_argument("--config", help="YAML config file (default: $SIPD_CONFIG, else none)")
    p.add_argument(
        "--metrics-listen", help="Prometheus /metrics address HOST:PORT; '' turns it off"
    )
    p.add_argument(
        "--studio-listen", help="labeling studio (web page) address HOST:PORT; '' turns it off"
    )
    p.add_argument("--executor", choices=["local", "ray"], help="where predict jobs run")
    p.add_argument("--ray-address", help="the Ray cluster's GCS address HOST:PORT (--executor ray)")
    p.add_argument("--device", help="auto, cpu or cuda:N")
    p.add_argument("--log-level", help="debug, info, warning or error")
    p.add_argument(
        "--allowed-root",
        action="append",
        dest="allowed_roots",
        metavar="DIR",
        help="folder the daemon may read and write (repeatable; replaces the default roots)",
    )
    p.add_argument("--tls-cert", dest="tls_cert", metavar="PEM", help="server certificate chain")
    p.add_argument("--tls-key", dest="tls_key", metavar="PEM", help="server private key")
    p.add_argument(
        "--tls-client-ca",
        dest="tls_client_ca",
        metavar="PEM",
        help="CA bundle client certificates must chain to (turns on mTLS)",
    )
    p.add_argument(
        "--insecure-allow-remote-without-tls",
        action="store_const",
        const=True,
        dest="insecure_allow_remote_without_tls",
        help="listen on a non-loopback address without TLS; tokens then cross the network "
        "in clear (see docs/security.md)",
    )
    p.add_argument(
        "--print-config", action="store_true", help="print the merged configuration and exit"
    )
    p.add_argument("--version", action="version", version=f"sipd {__version__}")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides: dict[str, Any] = {
        key: value
        for key, value in vars(args).items()
        if key not in ("config", "print_config") and value is not None
    }
    # The TLS flags are options of the tls section.
    tls = {
        option: overrides.pop(f"tls_{option}")
        for option in ("cert", "key", "client_ca")
        if f"tls_{option}" in overrides
    }
    if tls:
        overrides["tls"] = tls
    if "ray_address" in overrides:
        overrides["ray"] = {"address": overrides.pop("ray_address")}
    try:
        config = load_config(args.config, overrides=overrides)
    except SipError as exc:
        print(f"sipd: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        shown = config.as_dict()
        for entry in shown["access"]["tokens"]:
            if isinstance(entry, dict) and entry.get("token"):
                entry["token"] = "<hidden>"  # a printed config is pasted into tickets
        print(yaml.safe_dump(shown, sort_keys=False), end="")
        return 0

    from sipd.server import Daemon, configure_logging

    configure_logging(config.log_level)
    try:
        daemon = Daemon(config)
        daemon.start()
    except SipError as exc:
        print(f"sipd: {exc}", file=sys.stderr)
        return 1
    daemon.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
