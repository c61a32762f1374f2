"""facestore's version, from the installed distribution ("0.0.0" in a source tree that
was never installed). Its own module, so that what needs only the version (the
artifacts' manifest, `facestore --version`) imports nothing else."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("facestore")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
