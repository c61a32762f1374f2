"""`facestore watch`: the daemon beside the tagging app."""

from __future__ import annotations

import dataclasses

import click

from facestore import settings
from facestore.cli.app import App, pass_app
from facestore.cli.common import FacestoreCommand
from facestore.cli.options import (
    classifier_option,
    cluster_options,
    min_confidence_option,
    min_quality_option,
    setting_option,
)
from facestore.daemon.options import WatchOptions
from facestore.daemon.signals import exit_on_signals_while_starting

DEFAULTS = WatchOptions()


@click.command(cls=FacestoreCommand)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=DEFAULTS.interval,
    show_default=True,
    help="Seconds between reconciles on the timer, whatever the file events say.",
)
@click.option(
    "--slice",
    "work_slice",
    type=click.FloatRange(min=0.1),
    default=DEFAULTS.work_slice,
    show_default=True,
    help="While a backlog lasts: seconds of embedding (plus the batch in progress) between "
    "checks of the retrain policy and writes of new suggestions. Capped at --interval.",
)
@click.option("--poll", is_flag=True, help="Use the timer alone, no file events.")
@click.option(
    "--debounce",
    type=click.FloatRange(min=0),
    default=DEFAULTS.debounce,
    show_default=True,
    help="Seconds to wait after a file event for the app's burst of writes to settle.",
)
@click.option(
    "--retrain-min-changes",
    type=click.IntRange(min=1),
    default=DEFAULTS.retrain_min_changes,
    show_default=True,
    help="Retrain once this many faces are new, relabelled or removed since the model.",
)
@click.option(
    "--retrain-delay",
    type=click.FloatRange(min=0),
    default=DEFAULTS.retrain_delay,
    show_default=True,
    help="...or once the oldest untrained change is this many seconds old.",
)
@click.option(
    "--retrain-cooldown",
    type=click.FloatRange(min=0),
    default=DEFAULTS.retrain_cooldown,
    show_default=True,
    help="At most one retrain per this many seconds.",
)
@click.option(
    "--retrain/--no-retrain",
    default=True,
    show_default=True,
    help="Retrain from this worker. With several workers one retrains at a time anyway.",
)
@classifier_option
@click.option(
    "--lease",
    type=click.FloatRange(min=1),
    default=DEFAULTS.lease,
    show_default=True,
    help="Seconds a claimed batch stays this worker's; after that another worker may take it.",
)
@click.option(
    "--suggestions/--no-suggestions",
    default=True,
    show_default=True,
    help="Embed unverified faces too and write face_suggestion rows for them.",
)
@min_confidence_option
@min_quality_option
@click.option(
    "--clusters/--no-clusters",
    default=True,
    show_default=True,
    help="Group the unverified faces the model names nobody for into face_cluster rows.",
)
@cluster_options
@setting_option(settings.METRICS_ADDR, metavar="HOST:PORT")
@pass_app(backbone=True)
def watch(
    app: App,
    metrics_addr: str | None,
    **options: object,
) -> None:
    """Run beside the tagging app: keep the cache current, retrain, suggest.

    \b
    Each reconcile embeds in slices of --slice seconds: verified faces first,
    then (unless --no-suggestions) at least one batch of unverified ones; after
    each slice it retrains when the labels changed enough and writes
    face_suggestion rows for the unverified faces embedded so far. Woken by a
    change it works the queue facestore's triggers fill; every --interval it also
    checks a rolling slice of 50,000 face ids and the ids added since (the first
    pass: every face) for anything not queued, and sweeps orphans there, so every
    face is checked within ceil(highest id / 50,000) intervals. SQLite files are watched
    for changes (events are hints; PRAGMA data_version decides); PostgreSQL
    wakes the worker with LISTEN/NOTIFY; --poll uses the timer alone.

    Several workers (processes or machines) can watch one database: each
    claims batches of faces with a lease, so no face is embedded twice, and
    the batch of a worker that dies is taken over when its lease expires.

    SIGTERM or SIGINT stops within a second on a quiet machine, about two with
    every core busy, mid-batch if need be (the unwritten faces go back to the
    queue; a full re-cluster in progress is stopped), and exits 0. Exit status 2
    means a configuration problem (do not restart); other failures exit 1.

    Under systemd (Type=notify) it sends READY=1 once started, WATCHDOG=1 while
    its loop runs (WatchdogSec=) and STOPPING=1 on SIGTERM: docs/operations.md.
    """
    exit_on_signals_while_starting()
    from facestore.daemon.http import MetricsServer, parse_addr
    from facestore.daemon.loop import Daemon
    from facestore.daemon.signals import stop_on_signals
    from facestore.daemon.systemd import Notifier
    from facestore.daemon.telemetry import FullPassCollector, QueueCollector, Telemetry

    address = parse_addr(metrics_addr) if metrics_addr else None
    store = app.store
    telemetry = Telemetry(float(options["interval"]))  # type: ignore[arg-type]
    telemetry.registry.register(QueueCollector(store.queue.depth_by_space))
    # before the backbone: a taken port fails at once, and /healthz answers while it loads
    server = MetricsServer(telemetry, *address) if address else None
    try:
        options_backbone, embedder = app.library_backbone()
        watch_options = dataclasses.replace(
            WatchOptions(batch_size=options_backbone.batch_size),
            **{k: v for k, v in options.items()},  # type: ignore[arg-type]
        )
        daemon = Daemon(
            store, app.model_dir, watch_options, embedder, telemetry=telemetry, notifier=Notifier()
        )
        telemetry.registry.register(FullPassCollector(lambda: daemon.grouper.progress))
        with stop_on_signals(daemon):
            daemon.run()
    finally:
        if server is not None:
            server.close()
