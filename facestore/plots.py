"""PNG plots of an evaluation (matplotlib, imported only when a plot is asked for)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facestore.errors import ConfigurationError
from facestore.evaluate import Evaluation


def require_matplotlib() -> Any:
    """matplotlib's pyplot (headless), or a ConfigurationError saying how to install it:
    called before any work, so that a missing extra fails at once."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigurationError(
            f"--plot needs matplotlib ({exc}). Install it: pip install 'facestore[plot]'."
        ) from exc
    return plt


def plot_evaluation(evaluation: Evaluation, path: Path) -> Path:
    """Left: the open-set curve against the false-accept target. Right: closed-set accuracy."""
    plt = require_matplotlib()
    curve = evaluation.curve
    x = [p.far_target for p in curve]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 2]})
    lines = (
        ("named_right", "o-", "tab:green", "known: named right"),
        ("named_wrong", "o-", "tab:red", "known: named wrongly"),
        ("unknown", "o-", "tab:gray", "known: left unknown"),
        ("strangers_rejected", "s-", "tab:blue", "strangers: unknown"),
    )
    for attribute, style, colour, label in lines:
        left.plot(x, [getattr(p, attribute) for p in curve], style, color=colour, label=label)
    chosen = evaluation.calibrated
    left.axvline(chosen.far_target, color="black", linestyle="--", linewidth=1)
    left.annotate(
        f"calibrated rule (target {chosen.far_target:.0%}):\n"
        f"named right {chosen.named_right:.1%}, wrongly {chosen.named_wrong:.1%}\n"
        f"strangers rejected {chosen.strangers_rejected:.1%}",
        xy=(chosen.far_target, 0.5),
        xytext=(8, 0),
        textcoords="offset points",
        fontsize=9,
    )
    left.set_xscale("log")
    left.set_ylim(-0.02, 1.02)
    left.set_xlabel("false-accept target at retrain (share of strangers allowed a name)")
    left.set_ylabel("share of faces")
    left.set_title(
        f"Open set: {evaluation.people - evaluation.strangers_per_seed} known people, "
        f"{evaluation.strangers_per_seed} stranger{'s' * (evaluation.strangers_per_seed != 1)}, "
        f"{len(evaluation.seeds)} seed{'s' * (len(evaluation.seeds) != 1)} "
        f"({evaluation.classifier})"
    )
    left.grid(True, which="both", alpha=0.3)
    left.legend(loc="lower left", fontsize=9)
    names = list(evaluation.closed_set)
    accuracy = [evaluation.closed_set[n].accuracy for n in names]
    errors = [evaluation.closed_set[n].std for n in names]
    bars = right.bar(names, accuracy, yerr=errors, color="tab:purple", alpha=0.8, capsize=4)
    # the label inside the bar, clear of the error bar's cap; the axis from 0, so that
    # a small difference looks small
    right.bar_label(
        bars,
        labels=[f"{a:.3f}\n± {e:.3f}" for a, e in zip(accuracy, errors, strict=True)],
        label_type="center",
        color="white",
        fontsize=9,
    )
    right.set_ylim(0.0, 1.05)
    right.set_ylabel("accuracy")
    folds = evaluation.closed_set[names[0]].folds if names else 0
    right.set_title(f"Closed set: {folds}-fold accuracy, {evaluation.faces} faces")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
