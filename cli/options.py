"""Options shared by several commands, built from the settings declared once in
facestore.settings: their flags, types, defaults, help and environment variables (click
reads those with `envvar=` and `--help` shows them)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from facestore import settings
from facestore.settings import Setting

F = TypeVar("F", bound=Callable[..., Any])

# the backbone options a command with backbone=True takes (App.backbone_given)
BACKBONE_PARAMS = (*(s.name for s in settings.BACKBONE_SETTINGS), "channels_last", "compile_model")
PATHS = {
    settings.WEIGHTS.name: click.Path(dir_okay=False, path_type=Path),
    settings.TOKEN_FILE.name: click.Path(exists=True, dir_okay=False, path_type=Path),
}


def setting_option(setting: Setting, **extra: Any) -> Callable[[F], F]:
    """The command line option of a setting: its flag, type, default, help, variable."""
    assert setting.flag is not None, f"{setting.name} has no command line option"
    kind: Any = setting.type
    if isinstance(kind, tuple):
        kind = click.Choice(kind)
    elif kind is int:
        kind = click.IntRange(min=1)
    elif kind is str:
        kind = PATHS.get(setting.name)
    options: dict[str, Any] = {
        "default": setting.default,
        "envvar": setting.env,
        "show_envvar": True,
        "help": setting.help,
        **({"type": kind} if kind is not None else {}),
        **extra,
    }
    return click.option(setting.flag, setting.name, **options)


def location_options(func: F) -> F:
    """--db and --model-dir, accepted before or after the command name."""
    return db_option(model_dir_option(func))


def db_option(func: F) -> F:
    return setting_option(settings.DB)(func)


def model_dir_option(func: F) -> F:
    return setting_option(settings.MODEL_DIR, type=click.Path(file_okay=False, path_type=Path))(
        func
    )


def _model_fixes(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is not None:
        raise click.UsageError(
            "--backbone does nothing here: the model's own backbone is used (the one it was "
            "trained with, see 'facestore model list'). Drop --backbone.",
            ctx,
        )


def backbone_options(func: F, choose: bool = True) -> F:
    """choose=False: the backbone is the model's, so no --backbone (an option that
    would do nothing)."""
    chosen = [s for s in settings.BACKBONE_SETTINGS if choose or s is not settings.BACKBONE]
    refused = [] if choose else [click.option("--backbone", hidden=True, callback=_model_fixes)]
    for decorator in reversed(
        [
            *refused,
            *(setting_option(s) for s in chosen),
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
REMEMBERED = "[default: the current model's (see 'facestore model show'), else {}]"


def classifier_option(func: F) -> F:
    """--classifier, the same choices everywhere a model is trained; not given: the
    current model's (facestore.training_settings)."""
    return click.option(
        "--classifier",
        type=click.Choice(settings.CLASSIFIER_NAMES),
        default=None,
        help=f"{CLASSIFIER_HELP} {REMEMBERED.format('auto')}",
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
        "sharpness, JPEG quality, face score), 0 turns the gate off. [default: 1.0]",
    )(func)


FAR_HELP = (
    "Target share of strangers (faces of people not in the model) that the "
    "retrained model may still name; the 'unknown' threshold is calibrated to it. "
    "Lower: fewer strangers named, more known faces left unknown."
)
DEFAULT_FAR = 0.03  # facestore.openset.DEFAULT_FAR, spelled here so --help needs no numpy


def far_option(func: F) -> F:
    """--false-accept for a model that is trained: not given, the current model's."""
    return click.option(
        "--false-accept",
        "far",
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        default=None,
        help=f"{FAR_HELP} {REMEMBERED.format(DEFAULT_FAR)}",
    )(func)


def far_target_option(func: F) -> F:
    """--false-accept where nothing is published ('facestore evaluate')."""
    return click.option(
        "--false-accept",
        "far",
        type=click.FloatRange(0, 1, min_open=True, max_open=True),
        default=DEFAULT_FAR,
        show_default=True,
        help=FAR_HELP,
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
        help="Fewest faces that make a cluster. [default: 3]",  # grouping.DEFAULT_MIN_SIZE
    )(func)
    return click.option(
        "--cluster-distance",
        type=click.FloatRange(min=0.0, max=2.0, min_open=True),
        default=None,
        help=CLUSTER_DISTANCE_HELP,
    )(func)
