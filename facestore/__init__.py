"""facestore: an incremental face-embedding store with a retrain trigger."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("facestore")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
