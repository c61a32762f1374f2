"""`facestore import DIR`: a folder per person becomes verified face rows.

For trying facestore without the tagging app. JPEG, PNG and WebP files are stored
as they are; other formats Pillow reads (PGM, BMP, TIFF...) are re-encoded as PNG.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from facestore.db import write_transaction
from facestore.errors import FacestoreError, ImageDecodeError
from facestore.images import crop_bytes
from facestore.schema import FACE_TABLE, reflect_face_table

log = logging.getLogger(__name__)

INSERT_BATCH = 500


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class ImportReport:
    faces: int = 0
    people: int = 0
    created_table: bool = False
    skipped: list[Skipped] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "faces": self.faces,
            "people": self.people,
            "created_table": self.created_table,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        }


def minimal_face_table(metadata: sa.MetaData) -> sa.Table:
    """The smallest table that meets the contract, for databases without an app."""
    return sa.Table(
        FACE_TABLE,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("face_crop_blob", sa.LargeBinary, nullable=False),
        sa.Column("person_id", sa.Text, nullable=True),
        sa.Column("verified", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def _people(root: Path) -> Iterator[tuple[str, list[Path]]]:
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        yield folder.name, files


def top_level_files(root: Path) -> list[Path]:
    """Files directly in the folder: they belong to no person, so they are not imported."""
    return sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))


def check_folder(root: Path) -> None:
    """Refuse, saying why, a folder that holds no person folder with files in it."""
    if not root.is_dir():
        raise FacestoreError(f"{root} is not a directory. Pass a folder of per-person folders.")
    if any(files for _, files in _people(root)):
        return
    loose = top_level_files(root)
    found = (
        f"it holds {len(loose)} files directly ({', '.join(p.name for p in loose[:3])}"
        f"{', ...' if len(loose) > 3 else ''}) and no person folder with files"
        if loose
        else "it holds no person folder with files"
    )
    raise FacestoreError(
        f"Nothing to import from {root}: {found}. Put each person's crops in a folder named "
        "by their person_id, e.g. DIR/17/a.jpg, DIR/17/b.png, DIR/42/c.jpg."
    )


def _person_id_converter(table: sa.Table) -> Callable[[str], Any]:
    try:
        python_type = table.c.person_id.type.python_type
    except NotImplementedError:
        python_type = str
    if python_type is int:

        def to_int(name: str) -> int:
            if not name.lstrip("-").isdigit():
                raise FacestoreError(
                    f"Folder {name!r} is not an integer, but face.person_id is an integer "
                    "column. Name the person folders by their numeric person_id."
                )
            return int(name)

        return to_int
    return str


class Target:
    """The face table rows go to, opened at the first importable file, so that a
    folder with nothing importable creates no database."""

    def __init__(self, open_engine: Callable[[], Engine], report: ImportReport) -> None:
        self.engine = open_engine()
        if not sa.inspect(self.engine).has_table(FACE_TABLE):
            minimal_face_table(sa.MetaData()).create(self.engine)
            report.created_table = True
            log.info("Created a minimal 'face' table")
        self.face = reflect_face_table(self.engine)
        self.person_id = _person_id_converter(self.face.table)

    def row(self, blob: bytes, person: str) -> dict[str, Any]:
        row: dict[str, Any] = {"face_crop_blob": blob, "person_id": self.person_id(person)}
        if self.face.has_verified:
            row["verified"] = True
        return row

    def insert(self, rows: list[dict[str, Any]]) -> None:
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(self.face.table.insert(), rows)
        except sa.exc.IntegrityError as exc:
            raise FacestoreError(
                f"The app's face table refused the new rows: {exc.orig}. It may need "
                "columns 'facestore import' does not fill; import through the app instead."
            ) from exc


def import_folder(
    open_engine: Callable[[], Engine],
    root: Path,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import the folder through the engine that open_engine() gives, called only once
    a file proves importable. Raises FacestoreError when none does."""
    check_folder(root)
    report = ImportReport()
    for path in top_level_files(root):
        report.skipped.append(Skipped(str(path), "not in a person folder"))
    target: Target | None = None
    rows: list[dict[str, Any]] = []

    def flush() -> None:
        if rows and target is not None:
            target.insert(rows)
            report.faces += len(rows)
            rows.clear()

    for person, files in _people(root):
        added = 0
        for path in files:
            try:
                blob = crop_bytes(path)
            except ImageDecodeError as exc:
                report.skipped.append(Skipped(str(path), str(exc)))
                continue
            finally:
                if progress is not None:
                    progress(1)
            target = target or Target(open_engine, report)
            rows.append(target.row(blob, person))
            added += 1
            if len(rows) >= INSERT_BATCH:
                flush()
        report.people += bool(added)
    flush()
    if target is None:
        raise FacestoreError(
            f"Nothing imported from {root}: none of its {len(report.skipped)} files is an "
            f"image facestore can read ({report.skipped[0].path}: "
            f"{report.skipped[0].reason}). No database was created or changed."
        )
    return report


def count_files(root: Path) -> int:
    return sum(len(files) for _, files in _people(root)) if root.is_dir() else 0
