"""What runs the facenet network: torch, or the same network exported to ONNX and run
by an engine made for CPU inference (ONNX Runtime, OpenVINO), about twice torch's
speed on a CPU for the same vectors (docs/benchmarks.md).

The graph is exported from the backbone's own weights the first time an engine needs
it and cached in the torch hub cache beside the weights (`<TORCH_HOME>/facestore/`),
named by the weights' sha256, the torch version that exported it and the opset; a
sidecar JSON holds the graph's sha256, checked on every load. A damaged or stale
cache file is exported again, with a log line.

The engine is not part of the embedding space: every engine's vectors match torch's
to a cosine of 0.99999 or better (tests/unit/test_engines.py), so changing engine
needs no reembed. `auto` picks ONNX Runtime, then OpenVINO, on a CPU when installed
and the precision is float32; torch otherwise (CUDA, reduced precision, --compile).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from facestore.config import torch_home
from facestore.errors import ConfigurationError
from facestore.settings import ENGINE, ENGINES, cite

log = logging.getLogger(__name__)

OPSET = 17
INPUT, OUTPUT = "input", "embedding"
EXPORT_BATCH = 2  # the example batch of the export; the batch axis is dynamic
MODULES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
EXTRAS = {"onnxruntime": "onnx", "openvino": "openvino"}


class Runner(Protocol):
    """Runs the network on a float32 NCHW batch; gives unit float32 vectors."""

    name: str

    def run(self, batch: np.ndarray) -> np.ndarray: ...


def installed(engine: str) -> bool:
    module = MODULES.get(engine)
    return module is None or find_spec(module) is not None


def choose_engine(requested: str, device_type: str, precision: str, compiled: bool) -> str:
    """The engine `requested` stands for on this device; a named engine that cannot run
    here is refused (exit 2) with what to do."""
    if requested not in ENGINES:
        raise ConfigurationError(
            f"Unknown engine {requested!r} ({cite(ENGINE)}). Use one of: {', '.join(ENGINES)}."
        )
    if requested == "auto":
        if device_type != "cpu" or precision != "float32" or compiled:
            return "torch"
        return next((e for e in ("onnxruntime", "openvino") if installed(e)), "torch")
    if requested == "torch":
        return requested
    if device_type != "cpu":
        raise ConfigurationError(
            f"{cite(ENGINE, requested)} runs on the CPU; this backbone's device is "
            f"{device_type}. Use {cite(ENGINE, 'torch')} (or auto) there."
        )
    if precision != "float32" or compiled:
        raise ConfigurationError(
            f"{cite(ENGINE, requested)} runs the network in float32, uncompiled. Drop the "
            "reduced precision or --compile, or use the torch engine."
        )
    if not installed(requested):
        raise ConfigurationError(
            f"{cite(ENGINE, requested)} is not installed. Run pip install "
            f"'facestore[{EXTRAS[requested]}]', or use {cite(ENGINE, 'auto')}."
        )
    return requested


def cpu_threads() -> int:
    """The threads an engine uses: the cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cache_dir() -> Path:
    return torch_home() / "facestore"


def graph_path(variant: str, weights_sha256: str) -> Path:
    import torch

    version = torch.__version__.split("+")[0]
    return cache_dir() / f"{variant}-{weights_sha256[:16]}-torch{version}-opset{OPSET}.onnx"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def exported_graph(variant: str, weights_sha256: str, model: Callable[[], Any]) -> Path:
    """The cached ONNX graph of these weights, exported now (from `model()`, the torch
    network) if it is missing, damaged or from another exporter."""
    path = graph_path(variant, weights_sha256)
    sidecar = path.with_suffix(".json")
    expected = {"weights_sha256": weights_sha256, "opset": OPSET, "file": path.name}
    if path.is_file() and sidecar.is_file():
        try:
            recorded = json.loads(sidecar.read_text())
            if {k: recorded.get(k) for k in expected} == expected and recorded.get(
                "graph_sha256"
            ) == _file_sha256(path):
                return path
        except (OSError, ValueError):
            pass
        log.warning("The cached ONNX graph %s is damaged or stale; exporting it again", path)
    elif path.exists() or sidecar.exists():
        log.warning("The cached ONNX graph %s is incomplete; exporting it again", path)
    _export(model(), path)
    sidecar.write_text(json.dumps({**expected, "graph_sha256": _file_sha256(path)}) + "\n")
    return path


def _export(network: Any, path: Path) -> None:
    """Export to a temporary name in the same folder, then rename: a reader never sees
    half a file, and two processes exporting at once each write a whole one."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("Exporting the network to ONNX (once for these weights): %s", path)
    example = torch.zeros((EXPORT_BATCH, 3, 160, 160), dtype=torch.float32)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(handle)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notes
            torch.onnx.export(
                network,
                (example,),
                temporary,
                dynamo=False,  # the TorchScript exporter: no onnxscript needed
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                opset_version=OPSET,
            )
        os.chmod(temporary, 0o644)  # as the weights beside it: mkstemp's 0600 hides it
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


class OnnxRuntimeRunner:
    name = "onnxruntime"

    def __init__(self, graph: Path, threads: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # no spinning between operators: the decode workers need those cycles
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(
            str(graph), options, providers=["CPUExecutionProvider"]
        )

    def run(self, batch: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(batch, dtype=np.float32)
        return np.asarray(self.session.run([OUTPUT], {INPUT: pixels})[0], dtype=np.float32)


class OpenVinoRunner:
    name = "openvino"

    def __init__(self, graph: Path, threads: int) -> None:
        import openvino

        core = openvino.Core()
        self.model = core.compile_model(
            str(graph), "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
        )

    def run(self, batch: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(batch, dtype=np.float32)
        return np.asarray(self.model(pixels)[0], dtype=np.float32)


def runner(engine: str, graph: Path) -> Runner:
    if engine == "openvino":
        return OpenVinoRunner(graph, cpu_threads())
    return OnnxRuntimeRunner(graph, cpu_threads())
