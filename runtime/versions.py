"""The versioned bundle store: ``BUNDLE/CURRENT`` + ``BUNDLE/versions/vNNNN/`` (torch-free).

After the first ``mind-edge patch apply`` a bundle folder holds ``CURRENT`` (one line naming the
live version; replaced atomically: tmp + fsync + rename + fsync of the folder) and complete
bundles under ``versions/``. This module owns that layout: the exclusive lock of an update,
listing versions, the pointer, the copy of a plain bundle into ``versions/v0001``, the move of
machine-local files (engines, caches) and the clean-up of leftovers.

**Clean-up removes only what mind-edge created** (:func:`cleanup`): the pointer's temporary
files (``.CURRENT.<pid>.tmp``), version folders (``vNNNN``) that are neither live nor kept,
mind-edge's temporary folders under ``versions/`` (``.vNNNN.<random>.tmp|.old``), and, after a
first apply that committed but died before removing the plain bundle's top-level files, only
those top-level files that are byte-identical to the same file of a kept version that lists it.
Anything else (a user's notes, a folder of their own under ``versions/``) is left alone, and a
``versions/`` that is a symbolic link is refused, never followed.

``MIND_EDGE_CRASH_AT=<point>`` (tests only) SIGKILLs the process at the named point of the
apply sequence (:data:`CRASH_POINTS`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import re
import shutil
import signal
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from mind_edge.fileio import atomic_write_bytes, default_mode, fsync_dir, sha256_file
from mind_edge.runtime.bundle import (
    BUNDLE_JSON,
    MODEL_FILE,
    POINTER_FILE,
    PROBE_FILE,
    VALIDATION_FILE,
    VERSION_RE,
    VERSIONS_DIR,
    read_meta,
    read_record,
    resolve_version,
)
from mind_edge.runtime.engine_fingerprint import MACHINE_LOCAL_PATTERNS, TIMING_CACHE
from mind_edge.runtime.errors import BundleError
from mind_edge.schema import plain_name

log = logging.getLogger(__name__)

CRASH_ENV = "MIND_EDGE_CRASH_AT"
CRASH_POINTS = (
    "verified",  # patch and bundle verified, new graph built and validated; nothing written
    "cleaned",  # leftovers of an interrupted apply removed
    "base_copied",  # first apply: the plain bundle copied into versions/v0001
    "version_written",  # the new version renamed into versions/
    "pointer_tmp",  # the new CURRENT written to a temporary file, not yet renamed
    "pointer_replaced",  # CURRENT replaced (committed), folder not yet fsync'ed
    "committed",  # CURRENT durable
    "root_cleanup",  # first apply: some of the plain bundle's old top-level files removed
    "pruned",  # versions older than the previous one removed
)
PLAIN_FILES = (MODEL_FILE, PROBE_FILE, VALIDATION_FILE, BUNDLE_JSON)  # BUNDLE_JSON last
POINTER_TMP_RE = re.compile(r"^\.CURRENT\.[0-9]+\.tmp$")
VERSION_TMP_RE = re.compile(r"^\.v[0-9]{4,9}\.[A-Za-z0-9_]+\.(tmp|old)$")  # write_bundle / convert temporaries
SPACE_MARGIN = 1 << 20


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        log.warning("%s=%s: killing the process (crash-safety test)", CRASH_ENV, name)
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """An exclusive flock on the bundle folder itself (no lock file: a failed apply changes nothing)."""
    import fcntl  # noqa: PLC0415 - POSIX only: mind_edge.runtime stays importable where fcntl is missing

    fd = os.open(root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BundleError(
                f"bundle {root} is being updated by another process (patch apply/rollback); try again when it finishes"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def version_num(name: str) -> int:
    return int(name[1:])


def version_name(num: int) -> str:
    return f"v{num:04d}"


def versions_dir(root: Path) -> Path:
    """``root/versions``; refused when it is a symbolic link (never followed out of the bundle)."""
    vdir = root / VERSIONS_DIR
    if vdir.is_symlink():
        raise BundleError(
            f"{vdir} is a symbolic link; mind-edge keeps a bundle's versions inside the bundle folder and "
            "never follows a link out of it — replace it with the real folder (or re-copy the bundle)"
        )
    return vdir


def _is_dir_not_link(p: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(p).st_mode)
    except OSError:
        return False


def list_versions(root: Path) -> list[str]:
    """Complete version folders under ``root/versions`` (sorted oldest first)."""
    vdir = versions_dir(root)
    if not vdir.is_dir():
        return []
    return sorted((p.name for p in vdir.iterdir() if VERSION_RE.match(p.name) and _is_dir_not_link(p)), key=version_num)


def previous_version(root: Path, version: str) -> str | None:
    """The version ``version`` was patched from (``base_version`` in its bundle.json)."""
    try:
        meta = read_meta(root / VERSIONS_DIR / version)
    except BundleError:
        return None
    prev = meta.get("base_version")
    return prev if isinstance(prev, str) and VERSION_RE.match(prev) else None


def write_pointer(root: Path, name: str) -> None:
    """Replace ``root/CURRENT`` atomically (tmp + fsync + rename + fsync of the folder)."""
    tmp = root / f".{POINTER_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), default_mode())
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(name + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        crash_point("pointer_tmp")
        os.replace(tmp, root / POINTER_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    crash_point("pointer_replaced")
    fsync_dir(root)


def remove(path: Path) -> None:
    """Remove a file, a symlink (never its target) or a folder tree (symlinks inside are not followed)."""
    if _is_dir_not_link(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _ours_in_versions(name: str) -> bool:
    return bool(VERSION_RE.match(name) or VERSION_TMP_RE.match(name))


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except OSError:
        return False
    if not (stat.S_ISREG(sa.st_mode) and stat.S_ISREG(sb.st_mode)) or sa.st_size != sb.st_size:
        return False
    return sha256_file(a) == sha256_file(b)


def cleanup(root: Path, keep: int = 2) -> list[str]:
    """Remove what an interrupted apply/rollback left behind; keep the live version and ``keep - 1`` ancestors.

    Returns the removed paths (relative to ``root``). Only mind-edge's own names are removed
    (see the module docstring); without ``CURRENT`` the bundle is plain and mind-edge's names
    under ``versions/`` are leftovers of a first apply that never committed.
    """
    removed = []
    for p in root.iterdir():
        if POINTER_TMP_RE.match(p.name) and not _is_dir_not_link(p):
            remove(p)
            removed.append(p.name)
    vdir = versions_dir(root)
    _, current = resolve_version(root)
    if current is None:
        if vdir.is_dir():
            for p in vdir.iterdir():
                if _ours_in_versions(p.name):
                    remove(p)
                    removed.append(f"{VERSIONS_DIR}/{p.name}")
            with contextlib.suppress(OSError):
                vdir.rmdir()  # only when nothing of the user's is inside
                removed.append(VERSIONS_DIR)
        if removed:
            fsync_dir(root)
        return removed
    wanted = [current]
    while len(wanted) < keep:
        prev = previous_version(root, wanted[-1])
        if prev is None or not _is_dir_not_link(vdir / prev):
            break
        wanted.append(prev)
    for p in vdir.iterdir():
        if p.name not in wanted and _ours_in_versions(p.name):
            remove(p)
            removed.append(f"{VERSIONS_DIR}/{p.name}")
    # a first apply that committed but died before removing the plain bundle's top-level files: remove a
    # top-level file only if a kept version lists it and holds a byte-identical copy (what the apply copied)
    for v in reversed(wanted):
        try:
            files = list(read_record(vdir / v).files)
        except BundleError:
            continue
        for n in files + [BUNDLE_JSON]:
            if _same_file(root / n, vdir / v / n):
                (root / n).unlink()
                removed.append(n)
    if removed:
        fsync_dir(vdir)
        fsync_dir(root)
        log.info("removed leftovers of an earlier update in %s: %s", root, ", ".join(removed))
    return removed


def copy_plain_to_version(root: Path, files: Sequence[str], name: str) -> Path:
    """Copy a plain bundle's files into ``versions/<name>`` (temporary folder, fsync, rename)."""
    vdir = versions_dir(root)
    vdir.mkdir(exist_ok=True)
    tmp = vdir / f".{name}.convert.tmp"
    remove(tmp)
    for n in files:
        plain_name(n, f"bundle {root}", BundleError)
    try:
        tmp.mkdir()
        for n in files:
            shutil.copyfile(root / n, tmp / n, follow_symlinks=False)
            with open(tmp / n, "rb+") as fh:
                os.fsync(fh.fileno())
        fsync_dir(tmp)
        os.replace(tmp, vdir / name)
    except BaseException:
        remove(tmp)
        raise
    fsync_dir(vdir)
    fsync_dir(root)
    return vdir / name


def adopt_machine_local(root: Path, version_dir: Path) -> list[str]:
    """Move the engines and caches built on this machine for the plain bundle (``engine-*.plan``,
    ``engine.json``, ``trt-cache/``, timing caches) into its version folder: they belong to that
    model, so a rollback to it reuses them, and no stale engine stays beside ``CURRENT``. One
    rename each; after a crash half-way the rest stays at the top, where nothing reads it, and
    each moved engine is still checked against its fingerprint before use."""
    moved = []
    for p in sorted(root.iterdir()):
        name = p.name + ("/" if p.is_dir() else "")
        if any(fnmatch.fnmatch(name, pat) for pat in MACHINE_LOCAL_PATTERNS) and not (version_dir / p.name).exists():
            os.replace(p, version_dir / p.name)
            moved.append(p.name)
    if moved:
        fsync_dir(version_dir)
        fsync_dir(root)
        log.info("moved %s into %s (built for that version)", ", ".join(moved), version_dir)
    return moved


def carry_timing_cache(old: Path, new: Path) -> None:
    """Copy TensorRT's timing cache of the previous version into the new one: it is per machine but
    valid for any model, so the new version's ``engine build`` starts warm. Best effort: the
    cache is an optimisation, a failed copy only logs."""
    src, dst = old / TIMING_CACHE, new / TIMING_CACHE
    if not src.is_file() or dst.exists():
        return
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(dst, src.read_bytes())
    except OSError as exc:
        log.warning("could not copy the TensorRT timing cache %s to %s: %s", src, dst, exc)


def folder_bytes(folder: Path, names: Sequence[str]) -> int:
    return sum((folder / n).stat().st_size for n in names if (folder / n).is_file())


def check_free_space(root: Path, need: int, what: str) -> None:
    """Refuse (nothing written yet) when the file system of ``root`` has less than ``need`` + 1 MiB free."""
    try:
        st = os.statvfs(root)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if free < need + SPACE_MARGIN:
        raise BundleError(
            f"{what} needs {_mb(need + SPACE_MARGIN)} free next to bundle {root}, but only {_mb(free)} "
            "are free there; free some space (old bundles, engines, logs) and try again — the bundle is "
            "unchanged"
        )


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def undo_uncommitted(root: Path, created: Sequence[Path]) -> None:
    """Remove what a failed (uncommitted) update created, newest first; best effort."""
    for p in reversed(list(created)):
        with contextlib.suppress(OSError):
            if p.name == VERSIONS_DIR:
                p.rmdir()  # only if empty
            else:
                remove(p)
    with contextlib.suppress(OSError):
        fsync_dir(root)


__all__ = [
    "CRASH_ENV",
    "CRASH_POINTS",
    "PLAIN_FILES",
    "cleanup",
    "list_versions",
    "previous_version",
    "locked",
    "write_pointer",
    "versions_dir",
    "check_free_space",
    "copy_plain_to_version",
    "adopt_machine_local",
    "carry_timing_cache",
    "crash_point",
    "remove",
    "version_name",
    "version_num",
    "undo_uncommitted",
]
