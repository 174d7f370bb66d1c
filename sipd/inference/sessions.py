"""onnxruntime sessions for model folders: provider choice, running a batch, a warm LRU cache.

The worker keeps sessions warm across jobs (creating one costs from tens of
milliseconds on CPU to minutes for a TensorRT engine), so sessions live in a
SessionCache keyed by model folder: a published version never changes (a
re-export is a new version, in a new folder), so a folder's session stays
valid as long as the folder is the same one.

On a GPU, batches run through IO binding (BatchRunner): the input buffer
on the device is allocated once and refilled, and only the outputs the
caller asked for are copied back to the host. On the CPU a plain run is
as fast and simpler.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from sipd.device import parse_device
from sipd.errors import FailedPrecondition, InvalidArgument
from sipd.inference.model_view import ModelSpec, read_model_spec
from sipd.modelrepo.card import ClassDef, Tile
from sipd.modelrepo.layout import CARD_FILE, FP16_FILE, GRAPH_FILE

log = logging.getLogger("sipd.inference")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

# Devices whose GPU providers failed to initialise in this process. Library
# availability does not change while the process runs, so later sessions go
# straight to CPU instead of repeating onnxruntime's error spew and our log line.
_failed_devices: set[str] = set()
_failed_lock = threading.Lock()


@dataclass
class LoadedModel:
    """A model folder ready to run: its parsed model.yaml, session and provider."""

    spec: ModelSpec
    session: ort.InferenceSession
    provider: str  # the execution provider actually running the graph
    device: str  # what was asked for ("cpu", "cuda:0", "auto")
    graph_file: str = GRAPH_FILE  # or FP16_FILE when the fp16 variant runs
    # Run batches through IO binding; None = only when a GPU provider runs the graph.
    io_binding: bool | None = None

    @property
    def on_gpu(self) -> bool:
        return self.provider in (CUDA, TENSORRT)

    def runner(self, roles: tuple[str, ...] | list[str]) -> BatchRunner:
        """A callable running one batch [N, C, H, W] float32 -> {role: array} for `roles`."""
        bind = self.on_gpu if self.io_binding is None else self.io_binding
        return BatchRunner(self, tuple(roles), bind)

    @property
    def path(self) -> Path:
        return self.spec.path

    @property
    def classes(self) -> tuple[ClassDef, ...]:
        return self.spec.classes

    @property
    def bands(self) -> tuple[str, ...]:
        return self.spec.bands

    @property
    def tile(self) -> Tile:
        return self.spec.tile

    @property
    def outputs(self) -> dict[str, str]:
        return self.spec.outputs


class BatchRunner:
    """Runs batches of one model for a fixed set of output roles.

    Not thread-safe: the tile loop makes one per run and calls it from its
    inference thread only. With `bind` (IO binding), the input lives in an
    OrtValue on the session's device that is allocated for the first batch
    and refilled in place for every batch of the same shape; outputs are
    allocated by onnxruntime on the device and only the requested ones are
    copied to the host.
    """

    def __init__(self, model: LoadedModel, roles: tuple[str, ...], bind: bool) -> None:
        self.model = model
        self.roles = roles
        self.names = [model.spec.outputs[r] for r in roles]
        self.bind = bind
        self._device = ("cuda", parse_device(model.device).index) if model.on_gpu else ("cpu", 0)
        self._input: ort.OrtValue | None = None
        self._binding: Any = None

    def __call__(self, data: np.ndarray) -> dict[str, np.ndarray]:
        if not self.bind:
            result = self.model.session.run(self.names, {self.model.spec.input_name: data})
            return dict(zip(self.roles, result, strict=True))
        data = np.ascontiguousarray(data, dtype=np.float32)
        device, device_id = self._device
        if self._input is None or tuple(self._input.shape()) != data.shape:
            # Owned by onnxruntime: a value made from the numpy array would
            # borrow that array's memory (on the CPU), which the caller frees.
            self._input = ort.OrtValue.ortvalue_from_shape_and_type(
                data.shape, np.float32, device, device_id
            )
            self._binding = self.model.session.io_binding()
            self._binding.bind_ortvalue_input(self.model.spec.input_name, self._input)
        self._input.update_inplace(data)
        binding = self._binding
        binding.clear_binding_outputs()
        for name in self.names:
            binding.bind_output(name, device, device_id)
        self.model.session.run_with_iobinding(binding)
        # Copies: a numpy view of a CPU OrtValue would dangle once the
        # binding is replaced (and the writer thread holds results that long).
        outputs = binding.copy_outputs_to_cpu()
        return dict(zip(self.roles, outputs, strict=True))


def _provider_list(
    kind: str, device_id: int, enable_tensorrt: bool, fp16: bool, trt_cache_dir: str | None
) -> list[Any]:
    if kind == "cpu":
        return [CPU]
    available = ort.get_available_providers()
    if kind == "auto" and CUDA not in available:
        return [CPU]
    providers: list[Any] = []
    if enable_tensorrt and TENSORRT in available:
        cache = trt_cache_dir or os.path.join(tempfile.gettempdir(), "sipd-trt-cache")
        providers.append(
            (
                TENSORRT,
                {
                    "device_id": device_id,
                    "trt_fp16_enable": bool(fp16),
                    # Engine builds take minutes; caching them makes restarts cheap.
                    "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": cache,
                },
            )
        )
    providers.append((CUDA, {"device_id": device_id}))
    providers.append(CPU)
    return providers


def _session_options(intra_op_threads: int, quiet: bool, spin: bool) -> ort.SessionOptions:
    so = ort.SessionOptions()
    # ENABLE_ALL includes the CPU layout transform to blocked NCHWc
    # convolutions (fused with BatchNorm and ReLU), worth ~15% on a U-Net.
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The memory pattern pre-plans one arena block for all intermediate
    # tensors; for a U-Net on 1100 px tiles it nearly doubles peak memory
    # (measured: 1.36 GB -> 0.75 GB without it) and is not faster (the arena
    # still reuses freed blocks).
    so.enable_mem_pattern = False
    so.intra_op_num_threads = max(0, int(intra_op_threads))
    # One graph at a time: parallelism comes from intra-op threads, and the
    # predictor's reader/writer threads need the remaining CPU.
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning intra-op threads busy-wait between operators; on a small CPU
    # that steals the cores the reader/writer threads need (measured: ~10%
    # slower end to end with spinning on 2 cores).
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if quiet:
        so.log_severity_level = 3
    return so


def _create_session(
    onnx_path: Path, providers: list[Any], intra_op_threads: int, spin: bool
) -> ort.InferenceSession:
    gpu = providers != [CPU]
    so = _session_options(intra_op_threads, quiet=gpu, spin=spin)
    # onnxruntime prints its own provider fallback banner on stdout; our one log
    # line says the same in the daemon's log, so keep the banner out of it.
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        session = ort.InferenceSession(str(onnx_path), sess_options=so, providers=providers)
    if sink.getvalue().strip():
        log.debug("onnxruntime: %s", sink.getvalue().strip())
    return session


def _check_graph(spec: ModelSpec, session: ort.InferenceSession) -> None:
    where = spec.path / GRAPH_FILE
    inputs = {i.name: i for i in session.get_inputs()}
    if spec.input_name not in inputs:
        raise FailedPrecondition(
            f"{where}: graph has no input {spec.input_name!r} (has {sorted(inputs)}); "
            "model.yaml input.name must match the graph"
        )
    shape = inputs[spec.input_name].shape
    if len(shape) == 4 and isinstance(shape[1], int) and shape[1] != len(spec.bands):
        raise FailedPrecondition(
            f"{where}: graph expects {shape[1]} channels but model.yaml lists "
            f"{len(spec.bands)} bands {list(spec.bands)}"
        )
    names = {o.name for o in session.get_outputs()}
    missing = [f"{role}={name}" for role, name in spec.outputs.items() if name not in names]
    if missing:
        raise FailedPrecondition(
            f"{where}: graph lacks outputs named in model.yaml: {', '.join(missing)} "
            f"(graph outputs: {sorted(names)})"
        )


def load_model(
    model_dir: str | os.PathLike[str],
    *,
    device: str = "cpu",
    intra_op_threads: int = 0,
    enable_tensorrt: bool = False,
    fp16: bool = False,
    trt_cache_dir: str | None = None,
    allow_spinning: bool = False,
    io_binding: bool | None = None,
) -> LoadedModel:
    """Validate a model folder and open a new session for it (no caching).

    GPU providers are tried when asked ("cuda:N", or "auto" when onnxruntime
    lists CUDA); which one runs is read back from the session, and a CUDA
    provider that did not initialise falls back to CPU with one log line.
    `fp16` runs the folder's fp16 variant (model.fp16.onnx) on a GPU when it
    has one, and lets TensorRT build fp16 engines; on the CPU the float32
    graph always runs (CPUs have no fast fp16 convolutions).
    `io_binding` None means: IO binding exactly when a GPU provider runs.
    """
    setting = parse_device(device)
    kind, device_id = setting.kind, setting.index
    spec = read_model_spec(model_dir)
    with _failed_lock:
        known_bad = device in _failed_devices
    providers = (
        [CPU]
        if known_bad
        else _provider_list(kind, device_id, enable_tensorrt, fp16, trt_cache_dir)
    )
    graph_file = GRAPH_FILE
    if fp16 and providers != [CPU] and (spec.path / FP16_FILE).is_file():
        graph_file = FP16_FILE
    session = _open(spec.path / graph_file, providers, intra_op_threads, allow_spinning)
    used = session.get_providers()[0]
    if providers != [CPU] and used == CPU:
        with _failed_lock:
            first = device not in _failed_devices
            _failed_devices.add(device)
        if first:
            level = logging.INFO if kind == "auto" else logging.WARNING
            log.log(
                level,
                "device %s: onnxruntime could not initialise %s (CUDA/cuDNN libraries missing "
                "or no usable GPU); running models on CPU",
                device,
                CUDA,
            )
        if graph_file != GRAPH_FILE:
            graph_file = GRAPH_FILE
            session = _open(spec.path / graph_file, [CPU], intra_op_threads, allow_spinning)
    _check_graph(spec, session)
    return LoadedModel(
        spec=spec,
        session=session,
        provider=used,
        device=device,
        graph_file=graph_file,
        io_binding=io_binding,
    )


def _open(
    onnx_path: Path, providers: list[Any], intra_op_threads: int, spin: bool
) -> ort.InferenceSession:
    try:
        return _create_session(onnx_path, providers, intra_op_threads, spin)
    except Exception as exc:  # onnxruntime raises several unrelated types for a bad graph
        raise FailedPrecondition(f"{onnx_path}: onnxruntime cannot load the graph: {exc}") from exc


def usable_providers(device: str) -> list[str]:
    """Execution providers that actually initialise for `device`, best first.

    onnxruntime lists CUDA whenever the GPU package is installed; only a
    session shows whether its libraries and a GPU are there. Probed with a
    one-node graph, so it costs milliseconds (plus CUDA's own start-up).
    """
    setting = parse_device(device)
    kind, device_id = setting.kind, setting.index
    if kind == "cpu":
        return [CPU]
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    providers = _provider_list(kind, device_id, True, False, None)
    so = _session_options(1, quiet=True, spin=False)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink):
            session = ort.InferenceSession(
                model.SerializeToString(), sess_options=so, providers=providers
            )
    except Exception:  # a broken GPU stack: the CPU still works
        return [CPU]
    return list(session.get_providers())


class SessionCache:
    """At most `max_sessions` warm sessions, least recently used evicted first.

    Thread-safe; keyed by the model folder. Published folders never change,
    so nothing is re-read on a hit. One stat of model.yaml per lookup tells
    whether the folder under that path is still the same one: a version
    removed by hand and another copied in under its number is a different
    model and gets a fresh session.
    """

    def __init__(self, max_sessions: int = 4, **options: Any) -> None:
        """`options` are load_model's keyword arguments (device, intra_op_threads,
        enable_tensorrt, fp16, trt_cache_dir, allow_spinning, io_binding)."""
        if max_sessions < 1:
            raise InvalidArgument(f"max_sessions must be >= 1, got {max_sessions}")
        # Refuse unknown options and a bad device at construction, not at first use.
        inspect.signature(load_model).bind("", **options)
        parse_device(options.get("device", "cpu"))
        self.max_sessions = max_sessions
        self.options = options
        self._entries: OrderedDict[str, tuple[tuple[int, int, int], LoadedModel]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, model_dir: object) -> bool:
        if not isinstance(model_dir, str | os.PathLike):
            return False
        return self._key(model_dir) in self._entries

    @staticmethod
    def _key(model_dir: str | os.PathLike[str]) -> str:
        return str(Path(model_dir).resolve())

    def get(self, model_dir: str | os.PathLike[str]) -> LoadedModel:
        """The warm model for a folder, loading it on first use."""
        key = self._key(model_dir)
        identity = _identity(Path(key))
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] == identity:
                self._entries.move_to_end(key)
                return hit[1]
            # Loading under the lock keeps two jobs from building the same
            # session twice; loads are rare next to predictions.
            model = load_model(key, **self.options)
            self._entries[key] = (identity, model)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_sessions:
                evicted, _ = self._entries.popitem(last=False)
                log.debug("session cache: evicted %s", evicted)
            return model

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _identity(folder: Path) -> tuple[int, int, int]:
    """Which model.yaml file the folder holds: (device, inode, ctime); -1s when it has none.

    The change time is set when the file is made and no copy tool can carry
    it over (unlike the modification time), so with the inode (which a file
    system may reuse) it tells a new copy from the file that was there.
    """
    try:
        st = (folder / CARD_FILE).stat()
    except OSError:
        return (-1, -1, -1)  # load_model reports the incomplete folder properly
    return (st.st_dev, st.st_ino, st.st_ctime_ns)
