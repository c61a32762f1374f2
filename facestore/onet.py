"""MTCNN's output network (ONet) in numpy: the face probability of a 48 x 48 crop,
the same figures as facenet-pytorch's `ONet` (tested against it to 1e-5), without
importing torch (1.7 s, which a `predict` with the dlib backbone would otherwise spend
on one face score), and the same network in torch (`torch_face_probability`, faster
for a process that has torch loaded anyway) without facenet-pytorch's MTCNN module,
which imports torchvision (another 1.3 s).

The weights are the ones facenet-pytorch ships (facenet_pytorch/data/onet.pt, saved
in torch's legacy format), read by `read_legacy_state_dict`: a pickle that may only
name an ordered dict, float storages and torch's tensor rebuild, then the raw storages.
"""

from __future__ import annotations

import collections
import functools
import pickle
import struct
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
INPUT_SIDE = 48
CHUNK = 64  # crops per numpy pass: conv1's windows are 64 x 46 x 46 x 27 floats (15 MB)
TORCH_CHUNK = 256
LAYERS = ((3, 2), (3, 2), (2, 2))  # (kernel, stride) of the max pool after conv1..conv3


@dataclass(frozen=True)
class _Storage:
    key: str
    numel: int


@dataclass(frozen=True)
class _TensorSpec:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


class _FloatStorage:  # stands for torch.FloatStorage in the pickle
    pass


def _rebuild_tensor(storage: _Storage, offset: int, size: Any, stride: Any, *_: Any) -> Any:
    return _TensorSpec(storage, int(offset), tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch", "FloatStorage"): _FloatStorage,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed here") from None

    def persistent_load(self, pid: Any) -> _Storage:
        kind, storage_type, key, _location, numel, view = pid
        if kind != "storage" or storage_type is not _FloatStorage or view is not None:
            raise pickle.UnpicklingError(f"unsupported storage {pid!r}")
        return _Storage(str(key), int(numel))


def read_legacy_state_dict(f: BinaryIO) -> dict[str, np.ndarray]:
    """A float32 state dict saved by torch.save in its legacy (pre-1.6) format."""
    if pickle.load(f) != LEGACY_MAGIC or pickle.load(f) != LEGACY_PROTOCOL:
        raise ValueError("not a legacy torch file")
    info = pickle.load(f)
    if not info.get("little_endian", True):
        raise ValueError("a big-endian torch file")
    specs = _StateDictUnpickler(f).load()
    storages: dict[str, np.ndarray] = {}
    for key in pickle.load(f):
        (numel,) = struct.unpack("<q", f.read(8))
        storages[str(key)] = np.frombuffer(f.read(4 * numel), dtype="<f4")
    tensors = {}
    for name, spec in specs.items():
        data = storages[spec.storage.key]
        strides = tuple(4 * s for s in spec.stride)
        view = np.lib.stride_tricks.as_strided(data[spec.offset :], spec.size, strides)
        tensors[name] = np.array(view, dtype=np.float32)
    return tensors


def weights_path() -> Path:
    spec = find_spec("facenet_pytorch")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("facenet-pytorch is not installed")
    return Path(spec.origin).parent / "data" / "onet.pt"


@functools.lru_cache(maxsize=1)
def onet_weights() -> dict[str, np.ndarray]:
    with weights_path().open("rb") as f:
        return read_legacy_state_dict(f)


def _conv(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """A valid, stride-1 convolution of NHWC x with an OIHW weight."""
    out_channels, _, kh, kw = weight.shape
    windows = sliding_window_view(x, (kh, kw), axis=(1, 2))  # N, H', W', C, kh, kw
    n, h, w = windows.shape[:3]
    flat = windows.reshape(n * h * w, -1)
    return (flat @ weight.reshape(out_channels, -1).T + bias).reshape(n, h, w, out_channels)


def _prelu(x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """max(x, 0) + slope * min(x, 0), per channel, in place."""
    negative = np.minimum(x, 0)
    np.maximum(x, 0, out=x)
    negative *= slope
    x += negative
    return x


def _max_pool(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """torch's MaxPool2d(kernel, stride, ceil_mode=True) on NHWC x."""
    n, h, w, c = x.shape
    out_h = -(-(h - kernel) // stride) + 1
    out_w = -(-(w - kernel) // stride) + 1
    padded = np.full(
        (n, (out_h - 1) * stride + kernel, (out_w - 1) * stride + kernel, c),
        -np.inf,
        dtype=x.dtype,
    )
    padded[:, :h, :w] = x
    span_h, span_w = (out_h - 1) * stride + 1, (out_w - 1) * stride + 1
    out = padded[:, :span_h:stride, :span_w:stride].copy()
    for i in range(kernel):  # the window's other cells, one shifted view at a time
        for j in range(kernel):
            np.maximum(out, padded[:, i : i + span_h : stride, j : j + span_w : stride], out=out)
    return out


def face_probability(crops: np.ndarray, weights: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """ONet's face probability of each N x 48 x 48 x 3 uint8 RGB crop, float32."""
    p = weights if weights is not None else onet_weights()
    out = []
    for start in range(0, len(crops), CHUNK):
        x = (crops[start : start + CHUNK].astype(np.float32) - 127.5) * np.float32(0.0078125)
        for layer, (kernel, stride) in enumerate(LAYERS, start=1):
            x = _conv(x, p[f"conv{layer}.weight"], p[f"conv{layer}.bias"])
            x = _max_pool(_prelu(x, p[f"prelu{layer}.weight"]), kernel, stride)
        x = _prelu(_conv(x, p["conv4.weight"], p["conv4.bias"]), p["prelu4.weight"])
        x = x.transpose(0, 2, 1, 3).reshape(len(x), -1)  # torch's permute(0, 3, 2, 1) of NCHW
        x = _prelu(x @ p["dense5.weight"].T + p["dense5.bias"], p["prelu5.weight"])
        logits = x @ p["dense6_1.weight"].T + p["dense6_1.bias"]
        logits -= logits.max(axis=1, keepdims=True)
        odds = np.exp(logits)
        out.append(odds[:, 1] / odds.sum(axis=1))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


@functools.lru_cache(maxsize=1)
def _torch_weights() -> dict[str, Any]:
    import torch

    return {name: torch.from_numpy(array) for name, array in onet_weights().items()}


def torch_face_probability(crops: np.ndarray) -> np.ndarray:
    """`face_probability` in torch, on the CPU."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    p = _torch_weights()
    out = []
    with torch.inference_mode():
        for start in range(0, len(crops), TORCH_CHUNK):
            batch = torch.from_numpy(np.ascontiguousarray(crops[start : start + TORCH_CHUNK]))
            x = (batch.permute(0, 3, 1, 2).float() - 127.5) * 0.0078125
            for layer, (kernel, stride) in enumerate(LAYERS, start=1):
                x = F.conv2d(x, p[f"conv{layer}.weight"], p[f"conv{layer}.bias"])
                x = F.prelu(x, p[f"prelu{layer}.weight"])
                x = F.max_pool2d(x, kernel, stride, ceil_mode=True)
            x = F.prelu(F.conv2d(x, p["conv4.weight"], p["conv4.bias"]), p["prelu4.weight"])
            x = x.permute(0, 3, 2, 1).reshape(len(x), -1)
            x = F.prelu(F.linear(x, p["dense5.weight"], p["dense5.bias"]), p["prelu5.weight"])
            logits = F.linear(x, p["dense6_1.weight"], p["dense6_1.bias"])
            out.append(torch.softmax(logits, dim=1)[:, 1].numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
