"""The error the kit reports as one line: what is wrong, and what to do."""

from __future__ import annotations


class KitError(RuntimeError):
    """A failure the CLI prints as one line (no traceback) before exiting non-zero
    (demo.cli.errors.one_line_errors)."""
