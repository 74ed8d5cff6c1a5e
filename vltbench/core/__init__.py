"""Shared by every stage: configuration, registries, errors, files and locks, devices, progress."""

__version__ = "0.1.0"  # the release; pyproject.toml states the same
