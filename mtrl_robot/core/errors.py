"""Errors that name the file, the field and the problem."""

from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """A configuration or data file is malformed or out of range."""

    def __init__(self, source: str | Path | None, field: str | None, problem: str):
        self.source = str(source) if source is not None else None
        self.field = field or None
        self.problem = problem
        where = self.source or "<input>"
        if field:
            where += f": {field}"
        super().__init__(f"{where}: {problem}")


class JointVectorError(ValueError):
    """A joint vector has the wrong length or non-finite values."""
