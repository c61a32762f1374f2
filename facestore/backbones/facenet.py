"""facenet-pytorch InceptionResnetV1, in eval mode, on CUDA when available."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from facestore.backbones import PreparedBase
from facestore.backbones.engines import Runner, choose_engine, exported_graph, runner
from facestore.backbones.preprocess import (
    IMAGE_SIZE,
    NORMALISATION,
    PREPROCESS_VERSION,
    prepare,
    prepare_batch,
)
from facestore.backbones.weights import CHECKPOINTS, file_sha256, resolve_weights
from facestore.config import DEVICE_DECODES, BackboneSettings
from facestore.errors import ConfigurationError, WeightsError
from facestore.settings import BACKBONE, DEVICE, cite

log = logging.getLogger(__name__)

EMBEDDING_DIM = 512
# Batch sizes per device: large batches keep a GPU busy (bench/gpu.py); on a CPU a
# batch of 32 already reaches the model's throughput and keeps stops prompt.
CPU_BATCH_SIZE = 32
GPU_BATCH_SIZE = 1024
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def inception_resnet_v1() -> Any:
    """facenet-pytorch's InceptionResnetV1 class.

    The package's __init__ also imports MTCNN, and with it torchvision and
    torch._dynamo: 1.4 s of every start on a 2-core machine, for a detector facestore
    does not use. So, unless the package is loaded already, it is registered without
    running its __init__ (its `models` folders are namespace packages) and only
    models/inception_resnet_v1.py runs; the first other name asked of the package
    (`facenet_pytorch.MTCNN`) runs the __init__ then, so other code sees the whole
    package.
    """
    package = sys.modules.get("facenet_pytorch")
    if package is None:
        spec = importlib.util.find_spec("facenet_pytorch")
        if spec is None or spec.loader is None:
            raise ModuleNotFoundError("facenet-pytorch is not installed: pip install facestore")
        package = importlib.util.module_from_spec(spec)
        loader = spec.loader

        def complete(name: str) -> Any:
            del package.__getattr__  # once: the __init__ defines the rest
            loader.exec_module(package)
            return getattr(package, name)

        package.__getattr__ = complete  # type: ignore[method-assign]
        sys.modules["facenet_pytorch"] = package
    from facenet_pytorch.models.inception_resnet_v1 import InceptionResnetV1

    return InceptionResnetV1


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise ConfigurationError(
            f"Unknown device {requested!r}. Use auto, cpu, cuda or cuda:N."
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigurationError(
            f"Device {requested!r} was asked for but CUDA is not available. Use "
            f"{cite(DEVICE, 'cpu')}."
        )
    return device


def decode_device_for(device: torch.device, choice: str) -> torch.device | None:
    """Where JPEGs are decoded in batches (the GPU route), or None for the CPU route.

    auto: on a CUDA device. on: on the model's device whatever it is (on a CPU that is
    torchvision's decoder; how the tests run the route). off: never.
    """
    if choice not in DEVICE_DECODES:
        raise ConfigurationError(
            f"Unknown device-decode choice {choice!r}. Use one of: {', '.join(DEVICE_DECODES)}."
        )
    if choice == "on" or (choice == "auto" and device.type == "cuda"):
        return device
    return None


def load_checkpoint(path: Path, variant: str) -> dict[str, torch.Tensor]:
    """Read an official facenet-pytorch state_dict and check its logits layer."""
    expected = CHECKPOINTS[variant].num_classes
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"Weights file {path} is not a readable PyTorch state_dict ({exc}). "
            f"Pass the official {CHECKPOINTS[variant].filename}."
        ) from exc
    if not isinstance(state, dict) or "logits.weight" not in state:
        raise WeightsError(
            f"Weights file {path} is not a facenet-pytorch InceptionResnetV1 state_dict "
            f"(no 'logits' layer). Pass the official {CHECKPOINTS[variant].filename}."
        )
    classes = int(state["logits.weight"].shape[0])
    if classes != expected:
        others = [name for name, c in CHECKPOINTS.items() if c.num_classes == classes]
        hint = ""
        if others:
            hint = f" It looks like {others[0]} weights: pass {cite(BACKBONE, others[0])}."
        raise WeightsError(
            f"Weights file {path} has a logits layer with {classes} outputs, but {variant} "
            f"weights have {expected}.{hint}"
        )
    return {k: v for k, v in state.items() if not k.startswith("logits.")}


class FacenetBackbone(PreparedBase):
    """Implements the Backbone protocol with InceptionResnetV1."""

    dim = EMBEDDING_DIM

    def __init__(
        self,
        variant: str,
        weights_path: Path,
        device: torch.device,
        precision: str = "float32",
        channels_last: bool = False,
        compile_model: bool = False,
        device_decode: str = "auto",
        engine: str = "auto",
    ) -> None:
        self.name = variant
        self.device = device
        self.weights_path = weights_path
        self.dtype = DTYPES[precision]
        self.channels_last = channels_last
        self.compiled = compile_model
        self.decode_device = decode_device_for(device, device_decode)
        self.default_batch_size = GPU_BATCH_SIZE if device.type == "cuda" else CPU_BATCH_SIZE
        self.engine = choose_engine(engine, device.type, precision, compile_model)
        weights_sha256 = file_sha256(weights_path)
        self.runner: Runner | None = None
        self.model: Any = None
        if self.engine == "torch":
            self.model = self._network(variant, weights_path)
        else:  # the torch network is built only to export a graph not cached yet
            graph = exported_graph(
                variant, weights_sha256, lambda: self._network(variant, weights_path)
            )
            self.runner = runner(self.engine, graph)
        self.config: Mapping[str, Any] = {
            "weights_sha256": weights_sha256,
            "image_size": IMAGE_SIZE,
            "normalisation": NORMALISATION,
            "preprocess_version": PREPROCESS_VERSION,
            "precision": precision,  # reduced precision is a space of its own
        }
        log.info(
            "Loaded %s weights from %s on %s (engine %s)",
            variant,
            weights_path,
            device,
            self.engine,
        )

    def _network(self, variant: str, weights_path: Path) -> Any:
        """The torch network with the weights, in eval mode, on the device and dtype."""
        with torch.device("meta"):  # no random initialisation: the weights replace it
            model = inception_resnet_v1()(pretrained=None, classify=False)
        missing, unexpected = model.load_state_dict(
            load_checkpoint(weights_path, variant), strict=False, assign=True
        )
        if missing or unexpected:
            raise WeightsError(
                f"Weights file {weights_path} does not fit InceptionResnetV1 "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]}). "
                f"Pass the official {CHECKPOINTS[variant].filename}."
            )
        model = model.eval().to(device=self.device, dtype=self.dtype)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return torch.compile(model) if self.compiled else model

    @classmethod
    def from_settings(cls, variant: str, settings: BackboneSettings) -> FacenetBackbone:
        weights = resolve_weights(variant, settings.weights)
        return cls(
            variant,
            weights,
            pick_device(settings.device),
            settings.precision,
            settings.channels_last,
            settings.compile,
            settings.device_decode,
            settings.engine,
        )

    @property
    def device_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "device": str(self.device),
            "torch": torch.__version__,
            "channels_last": self.channels_last,
            "compiled": self.compiled,
            "device_decode": self.decode_device is not None,
            "engine": self.engine,
        }
        if self.device.type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(self.device)
        return info

    # decode worker processes run preprocess.prepare on their own (ProcessPreparable)
    prepared_shape = (3, IMAGE_SIZE, IMAGE_SIZE)

    @property
    def prepare_function(self) -> Callable[[Image.Image], np.ndarray]:
        return prepare

    def prepare(self, image: Image.Image) -> np.ndarray:
        """CPU-side preprocessing of one image; safe to run in worker threads."""
        return prepare(image)

    def stack_prepared(
        self, rows: Sequence[np.ndarray | torch.Tensor]
    ) -> np.ndarray | torch.Tensor:
        """One batch of prepared rows: arrays from the CPU route, tensors from the GPU
        route (already on the device), or both. On CUDA, host rows go through pinned
        memory so that the copy to the device does not block."""
        if all(isinstance(row, np.ndarray) for row in rows):
            if self.device.type != "cuda":
                return np.stack(rows)
            host = torch.empty((len(rows), *self.prepared_shape), pin_memory=True)
            for i, row in enumerate(rows):
                host[i] = torch.from_numpy(row)
            return host
        return torch.stack(
            [torch.as_tensor(row).to(self.device, non_blocking=True) for row in rows]
        )

    def embed_prepared(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.runner is not None:  # a CPU engine: host arrays in, vectors out
            host = batch.numpy() if isinstance(batch, torch.Tensor) else batch
            return self.runner.run(host)
        with torch.inference_mode():
            tensor = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(batch)
            tensor = tensor.to(self.device, non_blocking=True).to(self.dtype)
            if self.channels_last:
                tensor = tensor.contiguous(memory_format=torch.channels_last)
            vectors = self.model(tensor)
        return vectors.float().cpu().numpy()

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.embed_prepared(prepare_batch(images))
