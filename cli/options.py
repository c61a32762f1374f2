"""Options shared by several commands, declared once. Environment variables are named in
facestore.config; click reads and validates them and `--help` shows them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from facestore.config import (
    DEVICE_DECODES,
    ENV_BACKBONE,
    ENV_BATCH_SIZE,
    ENV_DB,
    ENV_DEVICE,
    ENV_DEVICE_DECODE,
    ENV_MODEL_DIR,
    ENV_PRECISION,
    ENV_WEIGHTS,
    PRECISIONS,
)

F = TypeVar("F", bound=Callable[..., Any])

BACKBONE_PARAMS = (
    "backbone",
    "weights",
    "device",
    "batch_size",
    "precision",
    "channels_last",
    "compile_model",
    "device_decode",
)


def location_options(func: F) -> F:
    """--db and --model-dir, accepted before or after the command name."""
    return db_option(model_dir_option(func))


def db_option(func: F) -> F:
    return click.option(
        "--db",
        default=None,
        envvar=ENV_DB,
        show_envvar=True,
        help="The app's database: a SQLite file path or a SQLAlchemy URL.",
    )(func)


def model_dir_option(func: F) -> F:
    return click.option(
        "--model-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        envvar=ENV_MODEL_DIR,
        show_envvar=True,
        help="Where published models live. [default: ./model]",
    )(func)


def backbone_options(func: F) -> F:
    for decorator in reversed(
        [
            click.option(
                "--backbone",
                default=None,
                envvar=ENV_BACKBONE,
                show_envvar=True,
                help="Backbone name: vggface2 (default), casia-webface, dlib, or a plugin.",
            ),
            click.option(
                "--weights",
                type=click.Path(dir_okay=False, path_type=Path),
                default=None,
                envvar=ENV_WEIGHTS,
                show_envvar=True,
                help="Backbone weights file (e.g. 20180402-114759-vggface2.pt). If not given: "
                "the torch hub cache ($TORCH_HOME), then a download.",
            ),
            click.option(
                "--device",
                default=None,
                envvar=ENV_DEVICE,
                show_envvar=True,
                help="auto (CUDA if available), cpu, cuda or cuda:N. [default: auto]",
            ),
            click.option(
                "--batch-size",
                type=click.IntRange(min=1),
                default=None,
                envvar=ENV_BATCH_SIZE,
                show_envvar=True,
                help="Faces per model batch. [default: 32 on a CPU, 1024 on a GPU]",
            ),
            click.option(
                "--precision",
                type=click.Choice(PRECISIONS),
                default=None,
                envvar=ENV_PRECISION,
                show_envvar=True,
                help="The model's arithmetic. Part of the embedding space: vectors of "
                "different precisions never mix. [default: float32]",
            ),
            click.option(
                "--channels-last",
                is_flag=True,
                help="channels_last memory layout (faster with reduced precision on a GPU).",
            ),
            click.option(
                "--compile",
                "compile_model",
                is_flag=True,
                help="torch.compile the model (slow start, faster batches on a GPU).",
            ),
            click.option(
                "--device-decode",
                type=click.Choice(DEVICE_DECODES),
                default="auto",
                envvar=ENV_DEVICE_DECODE,
                show_envvar=True,
                help="Decode JPEG crops in batches on the model's device (nvjpeg on a GPU); "
                "other crops take the CPU route. auto: on for CUDA devices. [default: auto]",
            ),
        ]
    ):
        func = decorator(func)
    return func


CLASSIFIER_HELP = (
    "Who a face is; whether it is anyone known is the model's open-set rule. "
    "auto: lda (chosen on real faces, docs/accuracy.md); svc: StandardScaler + linear SVC "
    "(the seed's); lda: shrinkage linear discriminant analysis; logreg: logistic "
    "regression; knn: cosine 5-nearest neighbours; centroid: cosine nearest centroid."
)


def classifier_option(func: F) -> F:
    """--classifier, the same choices and default everywhere a model is trained."""
    from facestore.classifiers import CLASSIFIERS

    return click.option(
        "--classifier",
        type=click.Choice(sorted(CLASSIFIERS)),
        default="auto",
        show_default=True,
        help=CLASSIFIER_HELP,
    )(func)


def min_confidence_option(func: F) -> F:
    """--min-confidence, one meaning and default for predict and the daemon's suggestions."""
    return click.option(
        "--min-confidence",
        type=click.FloatRange(0, 1),
        default=None,
        help="Override the model's calibrated 'unknown' rule: name a face only when its "
        "confidence (the estimated chance the name is right) is at least this. "
        "[default: the model's rule, calibrated at retrain; see 'facestore evaluate']",
    )(func)


def min_quality_option(func: F) -> F:
    """--min-quality, one meaning and default for predict and the daemon."""
    return click.option(
        "--min-quality",
        type=click.FloatRange(min=0),
        default=None,
        help="Name or group a face only when its quality is at least this: 1.0 is the "
        "floor the model's quality gate calibrated on the verified faces (crop size, "
        "sharpness, how face-like its vector is), 0 turns the gate off. [default: 1.0]",
    )(func)


def far_option(func: F) -> F:
    """--false-accept, the target the open-set rule is calibrated to at retrain."""
    from facestore.openset import DEFAULT_FAR

    return click.option(
        "--false-accept",
        "far",
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        default=DEFAULT_FAR,
        show_default=True,
        help="Target share of strangers (faces of people not in the model) that the "
        "retrained model may still name; the 'unknown' threshold is calibrated to it. "
        "Lower: fewer strangers named, more known faces left unknown.",
    )(func)


CLUSTER_DISTANCE_HELP = (
    "Cosine distance at which clusters of unknown faces are cut (each member then needs a "
    "mate within it too). [default: calibrated per space on the verified faces: the "
    "distance only 0.1% of pairs of two different people come within]"
)


def cluster_options(func: F) -> F:
    """--cluster-distance and --cluster-min-size (watch, clusters --rebuild)."""
    func = click.option(
        "--cluster-min-size",
        type=click.IntRange(min=2),
        default=None,
        help="Fewest faces that make a cluster. [default: 2]",
    )(func)
    return click.option(
        "--cluster-distance",
        type=click.FloatRange(min=0.0, max=2.0, min_open=True),
        default=None,
        help=CLUSTER_DISTANCE_HELP,
    )(func)
