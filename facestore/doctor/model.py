"""The model: the current one loads in the active space, and how far the labels moved
since it was trained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facestore import artifacts
from facestore.backbones import Space
from facestore.daemon.policy import count_changes
from facestore.doctor.checks import FAIL, OK, SKIP, Check
from facestore.errors import FacestoreError
from facestore.store import Store


def check_model(model_dir: Path, active: Space | None) -> tuple[Check, artifacts.Bundle | None]:
    """The check, and the model when it loads."""
    current = artifacts.current_version(model_dir)
    if current is None:
        return Check("model", FAIL, f"no model published in {model_dir}", "facestore retrain"), None
    try:
        bundle = artifacts.load_bundle(model_dir)
    except FacestoreError as exc:
        return Check(
            "model",
            FAIL,
            f"model {current} does not load: {exc}",
            "facestore model rollback (to the previous version), or facestore retrain",
        ), None
    space = str(bundle.embedding_config.get("config_hash"))
    if active is not None and space != active.config_hash:
        return Check(
            "model",
            FAIL,
            f"model {current} was trained in space {space[:12]}, not the active {active.label}",
            "facestore retrain",
        ), bundle
    return Check("model", OK, f"{current} loads (files verified), space matches"), bundle


def check_last_retrain(
    store: Store, bundle: artifacts.Bundle | None, active: Space | None
) -> Check:
    if bundle is None:
        return Check("last retrain", SKIP, "not checked: no loadable model (see 'model')")
    created: Any = bundle.metrics.get("created_at")
    detail = f"model {bundle.version}, trained {created}"
    if active is None:
        return Check("last retrain", OK, detail)
    changes = count_changes(bundle.training_set, store.library.training_pairs(active.config_hash))
    if changes:
        return Check(
            "last retrain",
            OK,
            f"{detail}; {changes} labelled faces changed since (the daemon retrains by its "
            "policy; 'facestore retrain' does it now)",
        )
    return Check("last retrain", OK, f"{detail}; up to date with the labels")
