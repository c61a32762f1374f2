"""The application object a command works with: settings resolved once, the store opened
on first use. `pass_app` is the one way a command gets it."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from facestore.cli.options import (
    BACKBONE_PARAMS,
    backbone_options,
    db_option,
    model_dir_option,
)
from facestore.config import DEFAULT_MODEL_DIR, BackboneSettings, resolve_backbone, resolve_db

if TYPE_CHECKING:  # imported where used: a command that needs none starts fast
    from sqlalchemy.engine import Engine

    from facestore.backbones import Backbone
    from facestore.store import Store

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class App:
    """--db, --model-dir and the backbone options of one command line."""

    db: str | None
    model_dir: Path
    backbone_given: dict[str, Any] = field(default_factory=dict)  # BACKBONE_PARAMS given
    _engine: Engine | None = field(default=None, repr=False)
    _store: Store | None = field(default=None, repr=False)

    @property
    def db_url(self) -> str:
        return resolve_db(self.db, env={})  # click already read the environment variable

    def engine(self, create: bool = False) -> Engine:
        """The app's database; only create=True ('facestore import') may create a file."""
        if self._engine is None:
            from facestore import db as database

            self._engine = database.create_engine(self.db_url, must_exist=not create)
        return self._engine

    @property
    def store(self) -> Store:
        """The cache, refusing a database whose facestore schema is missing or behind."""
        if self._store is None:
            from facestore import db as database

            engine = self.engine()
            database.require_head(engine)  # a wrong database is said before the rest loads
            from facestore.store import Store

            self._store = Store(engine)
        return self._store

    @property
    def backbone(self) -> str | None:
        """The --backbone given (or its environment variable, which click read)."""
        return self.backbone_given.get("backbone")

    def backbone_settings(self, default_name: str | None = None) -> BackboneSettings:
        given = dict(self.backbone_given)
        given["backbone"] = given.get("backbone") or default_name
        return resolve_backbone(given, env={})  # click already read the variables

    def build_backbone(self, default_name: str | None = None) -> Backbone:
        from facestore.backbones import build_backbone

        return build_backbone(self.backbone_settings(default_name))

    def library_backbone_name(self) -> str | None:
        """The one rule for the backbone: --backbone (or its variable), else the
        backbone of the library's vectors (its active space), else None: the default."""
        if self.backbone:
            return self.backbone
        active = self.store.spaces.active()
        return active.backbone if active else None

    def library_backbone(self) -> tuple[BackboneSettings, Backbone]:
        """The settings and the built backbone, by `library_backbone_name`'s rule."""
        name = self.library_backbone_name()
        return self.backbone_settings(name), self.build_backbone(name)


def pass_app(backbone: bool | str = False, db: bool = True) -> Callable[[F], F]:
    """Decorator: add --db (unless db=False), --model-dir and, with backbone=True, the
    backbone options (backbone="model": all but --backbone, which the model fixes);
    hand the command an `App` as its first argument."""

    def decorate(func: F) -> F:
        @click.pass_context
        @functools.wraps(func)
        def wrapper(ctx: click.Context, **kwargs: Any) -> Any:
            root = ctx.find_root().params
            given = {name: kwargs.pop(name) for name in BACKBONE_PARAMS if name in kwargs}
            app = App(
                db=kwargs.pop("db", None) or root.get("db"),
                model_dir=Path(
                    kwargs.pop("model_dir", None) or root.get("model_dir") or DEFAULT_MODEL_DIR
                ),
                backbone_given=given,
            )
            return ctx.invoke(func, app, **kwargs)

        command: Any = model_dir_option(wrapper)
        if db:
            command = db_option(command)
        if backbone:
            command = backbone_options(command, choose=backbone != "model")
        return command

    return decorate
