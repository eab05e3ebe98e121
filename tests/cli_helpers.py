"""Assertions shared by the CLI tests of every room (tests/ is on sys.path through tests/conftest.py)."""

from __future__ import annotations


def one_error_line(result) -> str:
    """A refused command: exit code 2 and exactly one non-empty line on stderr, ``error: …``."""
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]
