"""Errors facestore raises. Every message says what is wrong, then what to do.

A message names a setting with `facestore.settings.cite(SETTING)`: `str(error)` then
speaks of the Python parameter (BackboneSettings(weights=...)), and the CLI, which
shows `error.for_command_line`, of the flag and the environment variable.
"""

from __future__ import annotations

from facestore.settings import render


class FacestoreError(Exception):
    """Base class: a problem the user can fix. The CLI prints the message, no traceback."""

    exit_code = 1

    def __init__(self, message: str = "", *args: object) -> None:
        super().__init__(render(message, command_line=False), *args)
        self.for_command_line = render(message, command_line=True)


class ConfigurationError(FacestoreError):
    """Bad settings: retrying without a change cannot help (the daemon exits 2, no restart)."""

    exit_code = 2


class DatabaseError(ConfigurationError):
    """The database is unreachable or does not have the shape facestore needs."""


class DatabaseUnavailableError(FacestoreError):
    """A database server that does not answer now: may come back, so retrying can help."""


class FaceTableError(DatabaseError):
    """The app's `face` table is missing or lacks a required column."""


class SchemaNotAtHeadError(DatabaseError):
    def __init__(self, current: str | None, expected: str) -> None:
        self.current = current
        self.expected = expected
        shown = current if current else "none (facestore is not installed in this database)"
        super().__init__(
            f"Database schema is at {shown}, expected {expected}. Run 'facestore db upgrade'."
        )


class WeightsError(ConfigurationError):
    """Backbone weights cannot be found or are not in the expected format."""


class BackboneError(ConfigurationError):
    """Unknown backbone name, or a plugin that fails to load."""


class SpaceMismatchError(ConfigurationError):
    """The configured backbone gives a different embedding space than the active one."""


class ImageDecodeError(FacestoreError):
    """A crop that cannot become an RGB image; recorded as a failure, never shown as an error."""


class TrainingError(FacestoreError):
    """Not enough data to train a classifier."""


class ModelError(FacestoreError):
    """The published model is missing, damaged or incompatible."""


class ModelNotFoundError(ModelError):
    pass


class ModelIntegrityError(ModelError):
    pass


class ModelIncompatibleError(ModelError):
    pass


class BusyError(FacestoreError):
    """Another retrain or migration holds the lock; try again when it has finished."""
