"""Every setting a user can give, declared once: its name, type, default, help, command
line flag and environment variable. The CLI builds its options from these (click reads
the variables with `envvar=`), `facestore --help` lists the variables from them,
`facestore doctor` and the tests read them, and errors name them through `cite()`.
No other module of facestore/ or cli/ spells a FACESTORE_ variable. No I/O here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DEVICE_DECODES = ("auto", "on", "off")
ENGINES = ("auto", "torch", "onnxruntime", "openvino")
PRECISIONS = ("float32", "float16", "bfloat16")  # float32 everywhere by default

# Defaults that --help shows and the library uses, declared here (no imports) so that
# a command's --help loads neither numpy, scikit-learn nor torch.
CLASSIFIER_NAMES = ("auto", "centroid", "knn", "lda", "logreg", "svc")  # classifiers.py's
DEFAULT_FAR = 0.03  # the open-set rule's false-accept target (openset.py)
DEFAULT_KEEP = 5  # published model versions kept (artifacts.py)
DEFAULT_LEASE_SECONDS = 120.0  # a worker's claim on a batch of faces (embedding.py)
DEFAULT_FOLDS = 5  # evaluate's k-fold (evaluate.py)
DEFAULT_TOP_K = 3  # predict's guesses (predict.py)
DEFAULT_STUCK_AFTER = 900.0  # seconds: a queue this old with no vector since is stuck
DEFAULT_BACKBONE = "vggface2"
DEFAULT_PRECISION = "float32"
DEFAULT_MODEL_DIR = "model"


@dataclass(frozen=True)
class Setting:
    name: str  # the Python parameter (BackboneSettings field, or argument)
    env: str  # the environment variable
    help: str
    flag: str | None = None  # the command line option; None: environment only
    type: type | tuple[str, ...] = str  # a Python type, or the allowed choices
    default: Any = None  # None: no default, or one decided elsewhere (the help says which)
    python: str = ""  # how Python callers pass it, for error messages

    def for_command_line(self, value: str | None = None) -> str:
        if value is not None:
            given = f"{self.flag} {value}" if self.flag else f"{self.env}={value}"
            return f"{given} (or {self.env}={value})" if self.flag else given
        return f"{self.flag} / {self.env}" if self.flag else self.env

    def for_python(self, value: str | None = None) -> str:
        if value is not None:
            call = self.python.replace("...", repr(value)) if self.python else ""
            return f"{call} (or {self.env}={value})" if call else f"{self.env}={value}"
        return f"{self.python} (or {self.env})" if self.python else self.env


DB = Setting(
    "db",
    "FACESTORE_DB",
    "The app's database: a SQLite file path or a SQLAlchemy URL.",
    flag="--db",
    python="the database URL",
)
MODEL_DIR = Setting(
    "model_dir",
    "FACESTORE_MODEL_DIR",
    "Where published models live. [default: ./model]",
    flag="--model-dir",
    python="model_dir",
)
BACKBONE = Setting(
    "backbone",
    "FACESTORE_BACKBONE",
    "Backbone name: vggface2, casia-webface, dlib, or a plugin. [default: the backbone "
    "of the library's vectors (its active space); vggface2 for a library with none]",
    flag="--backbone",
    python="BackboneSettings(name=...)",
)
WEIGHTS = Setting(
    "weights",
    "FACESTORE_WEIGHTS",
    "Backbone weights file (e.g. 20180402-114759-vggface2.pt). If not given: the torch "
    "hub cache ($TORCH_HOME), then a download.",
    flag="--weights",
    python="BackboneSettings(weights=...)",
)
DEVICE = Setting(
    "device",
    "FACESTORE_DEVICE",
    "auto (CUDA if available), cpu, cuda or cuda:N. [default: auto]",
    flag="--device",
    python="BackboneSettings(device=...)",
)
BATCH_SIZE = Setting(
    "batch_size",
    "FACESTORE_BATCH_SIZE",
    "Faces per model batch. [default: 32 on a CPU, 1024 on a GPU]",
    flag="--batch-size",
    type=int,
    python="BackboneSettings(batch_size=...)",
)
PRECISION = Setting(
    "precision",
    "FACESTORE_PRECISION",
    "The model's arithmetic. Part of the embedding space: vectors of different "
    "precisions never mix. [default: float32]",
    flag="--precision",
    type=PRECISIONS,
    python="BackboneSettings(precision=...)",
)
ENGINE = Setting(
    "engine",
    "FACESTORE_ENGINE",
    "What runs a facenet backbone's network: torch, or its ONNX export on onnxruntime or "
    "openvino (CPU only; about twice torch's speed there, the same vectors: no reembed). "
    "auto: onnxruntime, then openvino, on a CPU when installed (pip install "
    "'facestore[onnx]'), else torch. [default: auto]",
    flag="--engine",
    type=ENGINES,
    default="auto",
    python="BackboneSettings(engine=...)",
)
DEVICE_DECODE = Setting(
    "device_decode",
    "FACESTORE_DEVICE_DECODE",
    "Decode JPEG crops in batches on the model's device (nvjpeg on a GPU); other crops "
    "take the CPU route. auto: on for CUDA devices. [default: auto]",
    flag="--device-decode",
    type=DEVICE_DECODES,
    default="auto",
    python="BackboneSettings(device_decode=...)",
)
WORKER_HOST = Setting(
    "worker_host",
    "FACESTORE_WORKER_HOST",
    "This worker's machine name in leases (watch), where host names clash.",
)
METRICS_ADDR = Setting(
    "metrics_addr",
    "FACESTORE_METRICS_ADDR",
    "Serve Prometheus metrics on /metrics and health on /healthz and /readyz here (a bare "
    "PORT binds 127.0.0.1). Off by default.",
    flag="--metrics-addr",
)
SERVE_ADDR = Setting(
    "addr",
    "FACESTORE_SERVE_ADDR",
    "Where 'serve' listens, HOST:PORT (a bare PORT binds 127.0.0.1). Any address but "
    "the loopback one needs a token file.",
    flag="--addr",
    default="127.0.0.1:8765",
)
TOKEN_FILE = Setting(
    "token_file",
    "FACESTORE_TOKEN_FILE",
    "A file holding the token 'serve' asks of every request but /healthz (header "
    "'Authorization: Bearer TOKEN'); needed to listen beyond loopback.",
    flag="--token-file",
)

SETTINGS = (
    DB,
    MODEL_DIR,
    BACKBONE,
    WEIGHTS,
    DEVICE,
    BATCH_SIZE,
    PRECISION,
    ENGINE,
    DEVICE_DECODE,
    WORKER_HOST,
    METRICS_ADDR,
    SERVE_ADDR,
    TOKEN_FILE,
)
BACKBONE_SETTINGS = (BACKBONE, WEIGHTS, DEVICE, BATCH_SIZE, PRECISION, ENGINE, DEVICE_DECODE)
BY_NAME = {setting.name: setting for setting in SETTINGS}


def environment_table(width: int = 24) -> list[str]:
    """The lines of `facestore --help`'s environment table, one per setting."""
    lines = []
    for setting in SETTINGS:
        where = setting.flag or setting.help.split(" (", 1)[0].rstrip(".")
        lines.append(f"{setting.env:<{width}}{where}")
    return lines


# Errors name settings through cite(): the library's messages then read right from
# Python (the parameter) and from the command line (the flag): errors.FacestoreError.
_CITED = re.compile(r"\{setting:(\w+)(?:=([^}]*))?\}")


def cite(setting: Setting, value: str | None = None) -> str:
    """A setting named in a message (with a value to give it, if any)."""
    return "{setting:" + setting.name + ("" if value is None else f"={value}") + "}"


def render(message: str, command_line: bool) -> str:
    """A message's cited settings, as the command line or as Python spells them."""

    def named(match: re.Match[str]) -> str:
        setting, value = BY_NAME[match.group(1)], match.group(2)
        return setting.for_command_line(value) if command_line else setting.for_python(value)

    return _CITED.sub(named, message)
