"""The Enfugue JSON API served by Ray Serve."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("enfugue-serve")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
