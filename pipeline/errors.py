"""Errors FuseBench reports to users as one clear line (the CLI prints them without a traceback)."""
from __future__ import annotations

from pathlib import Path


class FuseBenchError(Exception):
    """A problem with the user's input or configuration, worded for the user.

    ``path`` names the file or folder the problem is in; ``str(err)`` is ``"<path>: <problem>"``.
    """

    def __init__(self, problem: str, path: str | Path | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class DataError(FuseBenchError, ValueError):
    """Bad dataset content: missing partner, size mismatch, unreadable image, bad label..."""


class ConfigError(FuseBenchError, ValueError):
    """Bad params.yaml value or CLI argument."""
