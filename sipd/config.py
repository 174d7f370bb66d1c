"""Typed configuration: embedded defaults < YAML file < SIPD_* environment < flags.

Every option has a default here, so `sipd` runs with no file at all.
config/sipd.yaml lists the same options with comments; a test keeps the two
in step. Environment variables: the documented short names (SIPD_LISTEN,
SIPD_DATA_DIR, SIPD_CONFIG, SIPD_METRICS_LISTEN, SIPD_DEVICE, SIPD_LOG_LEVEL,
SIPD_ALLOWED_ROOTS) and, for any nested option, SIPD_<SECTION>__<OPTION>
(e.g. SIPD_JOBS__CANCEL_GRACE_SECONDS=5).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from sipd.device import parse_device
from sipd.errors import InvalidArgument


@dataclass
class JobsConfig:
    # Queued jobs beyond this are refused with RESOURCE_EXHAUSTED.
    queue_limit: int = 1000
    # Seconds a running job has to stop after a cancel before its worker is killed.
    cancel_grace_seconds: float = 10.0
    # Seconds SIGTERM waits for the running job before cancelling it hard.
    shutdown_grace_seconds: float = 20.0
    # torch/onnxruntime threads in the worker; 0 = one per core.
    threads: int = 0


@dataclass
class InferenceConfig:
    # Tiles per onnxruntime call; 0 = by device (1 on a CPU, 4 on a GPU).
    batch_size: int = 0
    # Tile edge; 0 = the model's own (model.yaml tile.size).
    tile_size: int = 0
    # onnxruntime intra-op threads; 0 = jobs.threads.
    intra_op_threads: int = 0
    # Inference sessions kept warm in the worker (least recently used evicted).
    session_cache_size: int = 4
    # Try TensorRT before CUDA when the device is a GPU.
    tensorrt: bool = False
    # Run the fp16 variant of a model on CUDA when it has one.
    fp16: bool = False
    # Largest raster PredictStream accepts, in bytes.
    max_stream_bytes: int = 2 * 1024**3
    # Bytes per message PredictStream sends back.
    stream_chunk_bytes: int = 1024**2
    # GDAL block cache of the worker in MB (GDAL_CACHEMAX); 0 = GDAL's default (5% of RAM).
    gdal_cache_mb: int = 256


@dataclass
class TrainingConfig:
    # Net used when a train request names none: unet, patchcnn or spectral.
    arch: str = "unet"
    epochs: int = 15
    batch_size: int = 16
    learning_rate: float = 0.002
    # Optimizer steps per epoch at most; 0 = one pass over the chips. With it
    # a training run costs the same on 20 scenes as on 200 (bench quality).
    steps_per_epoch: int = 12
    # Epochs without validation improvement before stopping; 0 = never.
    patience: int = 8
    # Shift the net's output to the scenes' class mix (sipd/training/priors.py).
    prior_correction: bool = True
    # Edge of the training chips cut around labeled pixels.
    chip_size: int = 128


@dataclass
class RayConfig:
    # The Ray cluster's GCS address (`ray start --head` prints it), e.g. 10.0.0.5:6379.
    address: str = ""
    # Actors in the pool; each keeps warm onnxruntime sessions of the models it ran.
    actors: int = 2
    # What one actor takes from its node: CPUs, and GPUs (1 on GPU nodes: it then runs CUDA).
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    # Where the daemon's folders are on the cluster's nodes when they mount the shared
    # storage elsewhere: entries "DAEMON_PREFIX=NODE_PREFIX", e.g. "/data=/mnt/data".
    path_map: list[str] = field(default_factory=list)
    # Seconds to wait for the cluster and its actors before a job fails.
    connect_timeout_seconds: float = 30.0
    # Times a scene is run again after its actor died (a lost node, a killed process).
    scene_retries: int = 3


@dataclass
class WatchConfig:
    # Seconds a file's size and mtime must stay unchanged before it is taken.
    quiet_seconds: float = 5.0
    # Seconds between full rescans of every inbox (missed events, network shares).
    rescan_seconds: float = 30.0
    # Scenes waiting across all watches; beyond it new files wait on disk.
    queue_limit: int = 1000
    # Attempts for a scene that fails with a transient error.
    retries: int = 3
    # First retry delay in seconds; doubles per attempt.
    retry_backoff_seconds: float = 2.0
    # Watches declared here (same fields as `sipctl watch add`).
    watches: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class LimitsConfig:
    # Streaming calls (WatchJob, PredictStream) open at once; each holds an RPC
    # thread, so beyond this they are refused with RESOURCE_EXHAUSTED and
    # unary calls (Health, GetStatus, CancelJob) always find a thread.
    max_streams: int = 64
    # Streaming calls open at once from one client connection.
    max_streams_per_client: int = 16
    # Largest scene (width x height) accepted for labeling and masks: a mask
    # holds one byte per pixel in memory, so this bounds its allocation.
    max_scene_pixels: int = 1_000_000_000


@dataclass
class AccessConfig:
    # Bearer tokens besides the owner's (DATA_DIR/sipd.token, admin, made at
    # first start): each {name, token or token_file, scopes: read|label|admin}.
    tokens: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TlsConfig:
    # Server certificate chain and key (PEM); both set = TLS on the gRPC port.
    cert: str = ""
    key: str = ""
    # CA bundle (PEM) that client certificates must chain to; set = mTLS required.
    client_ca: str = ""


@dataclass
class Config:
    # gRPC address; port 0 picks a free port (written to DATA_DIR/sipd.address).
    listen: str = "127.0.0.1:50051"
    # Where state lives; empty = the per-user data folder.
    data_dir: str = ""
    # Prometheus /metrics address; empty = off.
    metrics_listen: str = "127.0.0.1:9464"
    # Labeling studio (web page) address; empty = off. Same tokens and TLS as gRPC.
    studio_listen: str = "127.0.0.1:50052"
    # Folders the daemon may read and write; empty = the data dir and the user's home.
    allowed_roots: list[str] = field(default_factory=list)
    # auto (CUDA if usable, else CPU), cpu or cuda:N.
    device: str = "auto"
    # debug, info, warning or error.
    log_level: str = "info"
    jobs: JobsConfig = field(default_factory=JobsConfig)
    # Where predict and test jobs run: local (the worker process) or ray (a Ray cluster).
    executor: str = "local"
    ray: RayConfig = field(default_factory=RayConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    access: AccessConfig = field(default_factory=AccessConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    # Preprocessing recipes: [{name, preprocessor, options: {...}, description}].
    # Each is stored as a new version when it differs from the stored latest one.
    recipes: list[dict[str, Any]] = field(default_factory=list)
    # Listen on a non-loopback address without TLS (tokens then cross the network in clear).
    insecure_allow_remote_without_tls: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Short environment names the README and scripts rely on.
_ENV_NAMES = {
    "SIPD_LISTEN": "listen",
    "SIPD_DATA_DIR": "data_dir",
    "SIPD_METRICS_LISTEN": "metrics_listen",
    "SIPD_STUDIO_LISTEN": "studio_listen",
    "SIPD_EXECUTOR": "executor",
    "SIPD_DEVICE": "device",
    "SIPD_LOG_LEVEL": "log_level",
    "SIPD_ALLOWED_ROOTS": "allowed_roots",
    "SIPD_INSECURE_ALLOW_REMOTE_WITHOUT_TLS": "insecure_allow_remote_without_tls",
}


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("sipd", appauthor=False))


def load_config(
    config_file: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Merge the layers and validate. Raises InvalidArgument naming the bad option."""
    env = os.environ if env is None else env
    merged: dict[str, Any] = dataclasses.asdict(Config())
    path = config_file or env.get("SIPD_CONFIG") or ""
    if path:
        _merge(merged, _read_yaml(path), source=path)
    _merge(merged, _env_layer(env), source="environment")
    _merge(merged, dict(overrides or {}), source="command line")
    config = _build(Config, merged, "")
    _validate(config)
    if not config.data_dir:
        config.data_dir = str(default_data_dir())
    config.data_dir = str(Path(config.data_dir).expanduser().resolve())
    return config


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InvalidArgument(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"config file {path} must hold a mapping of options")
    return data


def _env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for name, value in env.items():
        if name in _ENV_NAMES:
            key = _ENV_NAMES[name]
            layer[key] = (
                [p for p in value.split(os.pathsep) if p] if key == "allowed_roots" else value
            )
        elif name.startswith("SIPD_") and "__" in name:
            section, _, option = name[5:].lower().partition("__")
            layer.setdefault(section, {})[option] = yaml.safe_load(value) if value else value
    return layer


def _merge(base: dict[str, Any], layer: Mapping[str, Any], source: str) -> None:
    for key, value in layer.items():
        if key not in base:
            known = ", ".join(sorted(base))
            raise InvalidArgument(f"unknown option {key!r} in {source}; known options: {known}")
        if isinstance(base[key], dict) and key != "watches":
            if not isinstance(value, Mapping):
                raise InvalidArgument(f"option {key!r} in {source} must be a mapping")
            _merge(base[key], value, f"{source} ({key})")
        else:
            base[key] = value


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        value = values[f.name]
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = _build(hint, value, f"{name}.")
        else:
            kwargs[f.name] = _coerce(name, value, hint)
    return cls(**kwargs)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    try:
        if hint is bool:
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return lowered in ("true", "1", "yes")
            return bool(value)
        if hint is int:
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if hint is float:
            return float(value)
        if hint is str:
            return "" if value is None else str(value)
        # list[str] or list[dict]
        if value is None:
            return []
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise ValueError
        return list(value)
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"option {name!r} has value {value!r}; expected {getattr(hint, '__name__', hint)}"
        ) from None


def _validate(config: Config) -> None:
    parse_device(config.device)  # InvalidArgument naming what is accepted
    if config.executor not in ("local", "ray"):
        raise InvalidArgument(f"executor {config.executor!r} is not one of: local, ray")
    if config.executor == "ray":
        host, sep, port = config.ray.address.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise InvalidArgument(
                f"executor ray needs ray.address HOST:PORT (the cluster's GCS address, "
                f"--ray-address or SIPD_RAY__ADDRESS), got {config.ray.address!r}"
            )
        if config.ray.actors < 1 or config.ray.cpus_per_actor <= 0 or config.ray.gpus_per_actor < 0:
            raise InvalidArgument(
                "ray.actors must be at least 1, ray.cpus_per_actor above 0 and "
                "ray.gpus_per_actor 0 or more"
            )
        for entry in config.ray.path_map:
            left, sep, right = str(entry).partition("=")
            if not sep or not left.startswith("/") or not right.startswith("/"):
                raise InvalidArgument(
                    f"ray.path_map entry {entry!r} must read DAEMON_PREFIX=NODE_PREFIX, both "
                    "absolute, e.g. /data=/mnt/data"
                )
    if config.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise InvalidArgument(
            f"log_level {config.log_level!r} is not one of: debug, info, warning, error"
        )
    addresses = (
        ("listen", config.listen),
        ("metrics_listen", config.metrics_listen),
        ("studio_listen", config.studio_listen),
    )
    for name, address in addresses:
        if name != "listen" and not address:
            continue
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise InvalidArgument(f"{name} {address!r} must be HOST:PORT, e.g. 127.0.0.1:50051")
    tls = config.tls
    if bool(tls.cert) != bool(tls.key):
        raise InvalidArgument("tls.cert and tls.key go together: set both (PEM files) or neither")
    if tls.client_ca and not tls.cert:
        raise InvalidArgument("tls.client_ca (mTLS) needs tls.cert and tls.key as well")
    positive = {
        "jobs.queue_limit": config.jobs.queue_limit,
        "inference.session_cache_size": config.inference.session_cache_size,
        "inference.stream_chunk_bytes": config.inference.stream_chunk_bytes,
        "inference.max_stream_bytes": config.inference.max_stream_bytes,
        "watch.queue_limit": config.watch.queue_limit,
        "limits.max_streams": config.limits.max_streams,
        "limits.max_streams_per_client": config.limits.max_streams_per_client,
        "limits.max_scene_pixels": config.limits.max_scene_pixels,
    }
    for name, value in positive.items():
        if value < 1:
            raise InvalidArgument(f"{name} must be at least 1, got {value}")
    not_negative = {
        "inference.batch_size": config.inference.batch_size,
        "inference.tile_size": config.inference.tile_size,
        "inference.gdal_cache_mb": config.inference.gdal_cache_mb,
    }
    for name, value in not_negative.items():
        if value < 0:
            raise InvalidArgument(f"{name} must be 0 (automatic) or positive, got {value}")
