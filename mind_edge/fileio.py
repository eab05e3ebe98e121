"""Small torch-free file helpers shared by every room: atomic writes and hashing.

Nothing on disk is ever left half-written: data goes to a temporary file in the same
folder, is fsync'ed, then renamed over the target (atomic on POSIX), and the folder is
fsync'ed so the rename itself survives a power cut.

Modes: ``tempfile`` creates files 0600 and folders 0700; what we write is given the mode an
ordinary ``open``/``mkdir`` would give it (0666/0777 minus the process umask), so a bundle, a
run or a patch can be read by a runtime service of another user when the umask allows it.
Only secret keys ask for 0600 explicitly (``mode=``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory so that a rename inside it is durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def current_umask() -> int:
    """The process umask (read from /proc on Linux; elsewhere set and restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # pragma: no cover - non-Linux
    os.umask(old)
    return old


def default_mode(directory: bool = False) -> int:
    """The mode ``open``/``mkdir`` would give a new file/folder under the current umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


def make_temp_dir(*, prefix: str, suffix: str, dir: str | os.PathLike) -> Path:  # noqa: A002 - tempfile's keyword
    """``tempfile.mkdtemp`` with the umask's folder mode instead of 0700 (renamed into place later)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=dir))
    os.chmod(tmp, default_mode(directory=True))
    return tmp


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], None], *, mode: int | None = None) -> Path:
    """Call ``writer(tmp_path)`` then move the result to ``path`` atomically.

    The file gets ``mode`` (e.g. 0o600 for a secret key), by default the umask's file mode.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        with open(tmp_path, "rb+") as fh:
            os.fchmod(fh.fileno(), default_mode() if mode is None else mode)
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()
