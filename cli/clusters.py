"""`facestore clusters`: the groups of unknown faces, which the app reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from facestore.cli.app import App, pass_app
from facestore.cli.common import FacestoreCommand, counted, print_json, stage_bars
from facestore.cli.options import cluster_options
from facestore.errors import ConfigurationError
from facestore.timestamps import iso_utc

if TYPE_CHECKING:  # the library is imported where used: --help starts fast
    from facestore.store import Store
    from facestore.unknown_groups import Resemblance

SHOW_FACES = 12


@click.command("clusters", cls=FacestoreCommand)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--min-size", type=click.IntRange(min=1), default=1, help="List clusters of at least N faces."
)
@click.option(
    "--rebuild",
    is_flag=True,
    help="Group every unknown face anew first (ids are kept where most faces stay), "
    "with --cluster-distance and --cluster-min-size.",
)
@cluster_options
@pass_app()
def clusters(
    app: App,
    as_json: bool,
    min_size: int,
    rebuild: bool,
    cluster_distance: float | None,
    cluster_min_size: int | None,
) -> None:
    """Clusters of unknown faces, biggest first, with their faces.

    Unknown faces are the unverified faces with a vector in the active space that
    the model names nobody for (no face_suggestion row). `facestore watch` keeps
    the clusters current; --rebuild groups them anew here, with a progress bar per
    stage on a terminal (read, neighbours, micro-clusters, linkage, write). Above
    20,000 unknown faces the neighbours come from a faiss index (docs/daemon.md).
    Nothing here changes person_id, verified or a named face.

    A cluster whose faces lie within 1.5x the model's "unknown" threshold of a known
    person shows "may be person P" with that distance: perhaps the same person, for
    example years apart. When a re-cluster merges two clusters, the larger keeps its
    id and lists the other under "absorbed", so an id shown before can be followed.

    JSON: a list of {cluster_id, size, representative_face_id, face_ids, distance,
    min_size, created_at, updated_at, absorbed, may_be}; may_be is null or
    {person_id, distance, threshold}; with --rebuild, {rebuild: {...}, clusters: [...]}.
    """
    from facestore.unknown_groups import cluster_params, recluster

    store = app.store
    report = None
    if rebuild:
        space = store.spaces.active()
        if space is None:
            raise ConfigurationError(
                "No active embedding space yet: run 'facestore embed' (or 'facestore watch')."
            )
        params, source = cluster_params(store, space, cluster_distance, cluster_min_size)
        with stage_bars() as progress:
            report = recluster(store, space, params, source, progress)
    listed = store.clusters.listing(min_size)
    nearest = _resemblances(store, app, {c.cluster_id: c.face_ids for c in listed})
    rows = [
        {
            "cluster_id": c.cluster_id,
            "size": c.size,
            "representative_face_id": c.representative_face_id,
            "face_ids": c.face_ids,
            "distance": c.distance,
            "min_size": c.min_size,
            "created_at": iso_utc(c.created_at),
            "updated_at": iso_utc(c.updated_at),
            "absorbed": c.absorbed,
            "may_be": nearest[c.cluster_id].as_json() if c.cluster_id in nearest else None,
        }
        for c in listed
    ]
    if as_json:
        print_json({"rebuild": report.as_json(), "clusters": rows} if report else rows)
        return
    if report:
        click.echo(
            f"clustered {report.clustered} of {counted(report.unknown, 'unknown face')} into "
            f"{counted(report.clusters, 'cluster')} (distance {report.distance:.3f}, "
            f"{report.distance_from}; {report.seconds:.1f}s)"
        )
    if not rows:
        click.echo("no clusters")
    for row in rows:
        faces = row["face_ids"]
        shown = ", ".join(map(str, faces[:SHOW_FACES])) + (
            " ..." if len(faces) > SHOW_FACES else ""
        )
        notes = []
        if row["may_be"]:
            may_be = row["may_be"]
            notes.append(
                f"may be person {may_be['person_id']}: distance {may_be['distance']:.3f}, "
                f"names from {may_be['threshold']:.3f}"
            )
        if row["absorbed"]:
            notes.append("absorbed " + ", ".join(map(str, row["absorbed"])))
        extra = f" ({'; '.join(notes)})" if notes else ""
        click.echo(f"cluster {row['cluster_id']}: {counted(row['size'], 'face')}: {shown}{extra}")


def _resemblances(store: Store, app: App, clusters: dict[int, list[int]]) -> dict[int, Resemblance]:
    """The known people the clusters may be, by the current model when it has one for the
    active space (none: nothing is shown)."""
    from facestore import artifacts
    from facestore.errors import ModelError
    from facestore.unknown_groups import resemblances

    space = store.spaces.active()
    if space is None or artifacts.current_version(app.model_dir) is None:
        return {}
    try:
        bundle = artifacts.load_bundle(app.model_dir)
    except ModelError:
        return {}  # `facestore model` says what is wrong with it
    if bundle.embedding_config.get("config_hash") != space.config_hash:
        return {}
    return resemblances(store, bundle, clusters)
