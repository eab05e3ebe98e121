"""A copy of the project's tree, as a fresh clone with the working tree's edits (tests/ is on sys.path)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_source_tree(dst: Path) -> Path:
    """The project's files: tracked and untracked-but-not-ignored (no runs/, bundles/, .venv, keys/)."""
    dst.mkdir(parents=True, exist_ok=True)
    if (ROOT / ".git").exists() and shutil.which("git"):
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        for rel in filter(None, out.decode().split("\0")):
            src = ROOT / rel
            if src.is_file():  # skips files deleted in the working tree
                (dst / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst / rel)
    else:  # an unpacked source tree
        shutil.copytree(
            ROOT,
            dst,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(
                ".venv", "runs", "bundles", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "keys"
            ),
        )
    return dst
