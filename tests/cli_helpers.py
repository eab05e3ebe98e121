"""Assertions shared by the CLI tests of every room (tests/ is on sys.path through tests/conftest.py)."""

from __future__ import annotations

#: Python source that makes any later ``import torch`` fail (prepend it to a ``python -c`` program).
BLOCK_TORCH = """
import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
        return None
sys.meta_path.insert(0, _NoTorch())
"""


def one_error_line(result) -> str:
    """A refused command: exit code 2 and exactly one non-empty line on stderr, ``error: …``."""
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]
