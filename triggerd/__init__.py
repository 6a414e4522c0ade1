"""triggerd: a trigger and workflow daemon for beamline data pipelines."""

__all__ = ["__version__"]

__version__ = "0.1.0"
