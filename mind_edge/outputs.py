"""Output folders of commands and scripts: refuse to overwrite what they did not write (torch-free).

* :func:`check_new_output` — an ``--out`` that must be new or empty.
* :func:`check_owned_out` / :func:`clear_owned_out` — an ``--out`` that a command marks as its own
  (a marker file it writes first), so that ``--overwrite`` replaces only that command's outputs of
  an earlier run and never a folder it did not write.

All checks run before anything is imported, loaded or trained.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mind_edge.errors import ConfigError


def check_new_output(out: Path, what: str, hint: str = "") -> None:
    """Refuse an ``--out`` that is a file or a non-empty folder (before any work is done)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is a file; choose another --out for the {what}")
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(
            f"--out {out} is not empty; choose another --out for the {what}" + (f" {hint}" if hint else "")
        )


def check_owned_out(out: Path, overwrite: bool, *, marker: str, what: str) -> bool:
    """Refuse a file or a non-empty ``out``, unless ``overwrite`` and ``what`` wrote it before.

    ``marker`` (a file ``what`` writes first into its folder) marks the folder as its own; a folder
    without it is never touched. Returns whether a previous run's outputs are to be replaced.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is a file; choose another --out for {what}")
    if not out.is_dir() or not any(out.iterdir()):
        return False
    if not overwrite:
        raise ConfigError(
            f"--out {out} is not empty; choose another --out for {what}, or pass --overwrite to "
            f"replace the outputs of an earlier {what} there (nothing else is removed)"
        )
    if not (out / marker).is_file():
        raise ConfigError(
            f"--out {out} is not empty and was not written by {what} (no {marker}); "
            f"--overwrite only replaces the outputs of an earlier {what}: choose another --out"
        )
    return True


def clear_owned_out(out: Path, names: tuple[str, ...]) -> None:
    """Remove the entries ``names`` (what a command writes) from ``out``, nothing else."""
    for name in names:
        p = Path(out) / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


__all__ = ["check_new_output", "check_owned_out", "clear_owned_out"]
