"""Typed reading of the JSON files mind-edge is handed (torch-free, numpy-free).

Every format (``bundle.json``, a patch header, ``run.json``) has one typed loader built from
these checks. A check either returns a value of the promised Python type or raises the
format's error class with one line naming the file, the field, what was expected and what was
found (its JSON type, never its content: a file may be anything, e.g. a symlink to a secret).

* :class:`Fields` wraps one JSON object: ``f.int("task", lo=0)``, ``f.str("name")``,
  ``f.float("temperature", positive=True)``, ``f.list("classes")``, ``f.obj("base")``;
  ``bool`` is never accepted as a number, floats never as integers (``4.7`` is not task 4),
  ``NaN``/``Infinity`` never as numbers.
* :func:`plain_name` — a file name read from a file: one path component, no separators, no
  ``..``, no leading dot or dash, no control characters; anything else is refused.
* :func:`open_regular_file` — the one bounded open: a regular file (not a FIFO, device or
  directory), at most ``max_bytes`` bytes, optionally not a symlink; :func:`read_regular_file`
  reads it whole, the patch reader streams it.
* :func:`read_json_file` — strict JSON (``NaN`` refused), UTF-8, from :func:`read_regular_file`.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mind_edge.errors import MindEdgeError
from mind_edge.textsafe import clean

__all__ = [
    "Fields",
    "plain_name",
    "open_regular_file",
    "read_json_file",
    "read_regular_file",
    "json_type",
    "strict_json_loads",
    "PLAIN_NAME_RE",
]

#: A plain file name: letters, digits, ``_``, ``-``, ``.`` and ``+``, not starting with ``.`` or ``-``.
PLAIN_NAME_RE = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,199}$")


def json_type(value: Any) -> str:
    """The JSON name of a value's type (for messages that must not echo the value)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number" if math.isfinite(value) else "a non-finite number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def strict_json_loads(text: str | bytes) -> Any:
    """``json.loads`` that refuses ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON)."""
    return json.loads(text, parse_constant=_reject_constant)


class Fields:
    """Typed access to one JSON object read from ``where`` (errors are ``error`` instances)."""

    def __init__(self, obj: Any, where: str, error: type[MindEdgeError], *, path: str = "", hint: str = "") -> None:
        self.where, self.error, self.path, self.hint = where, error, path, hint
        if not isinstance(obj, dict):
            raise self._fail(path or "the file", "an object", obj)
        self.obj = obj

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _fail(self, name: str, expected: str, found: Any, *, missing: bool = False) -> MindEdgeError:
        got = "it is missing" if missing else f"found {json_type(found)}"
        tail = f"; {self.hint}" if self.hint else ""
        return self.error(f'{self.where}: "{name}" must be {expected}, {got}{tail}')

    def has(self, key: str) -> bool:
        return key in self.obj and self.obj[key] is not None

    def raw(self, key: str, expected: str = "present") -> Any:
        if key not in self.obj:
            raise self._fail(self._name(key), expected, None, missing=True)
        return self.obj[key]

    def int(self, key: str, *, lo: int | None = None, hi: int | None = None, default: Any = ...) -> int:
        if default is not ... and key not in self.obj:
            return default
        v = self.raw(key, "an integer")
        return check_int(v, self._name(key), self, lo=lo, hi=hi)

    def float(self, key: str, *, positive: bool = False, lo: float | None = None, default: Any = ...) -> float:
        if default is not ... and key not in self.obj:
            return default
        v = self.raw(key, "a finite number")
        return check_float(v, self._name(key), self, positive=positive, lo=lo)

    def str(
        self,
        key: str,
        *,
        choices: tuple[str, ...] | None = None,
        pattern: re.Pattern | None = None,
        max_len: int = 4096,
        default: Any = ...,
    ) -> str:
        if default is not ... and key not in self.obj:
            return default
        v = self.raw(key, "a string")
        return check_str(v, self._name(key), self, choices=choices, pattern=pattern, max_len=max_len)

    def bool(self, key: str, *, default: Any = ...) -> bool:
        if default is not ... and key not in self.obj:
            return default
        v = self.raw(key, "true or false")
        if not isinstance(v, bool):
            raise self._fail(self._name(key), "true or false", v)
        return v

    def list(self, key: str, *, min_len: int = 0, max_len: int | None = None, default: Any = ...) -> list:
        if default is not ... and key not in self.obj:
            return default
        v = self.raw(key, "a list")
        if not isinstance(v, list):
            raise self._fail(self._name(key), "a list", v)
        if len(v) < min_len or (max_len is not None and len(v) > max_len):
            bound = f"at least {min_len}" + (f" and at most {max_len}" if max_len is not None else "")
            raise self.error(f'{self.where}: "{self._name(key)}" must have {bound} entries, it has {len(v)}')
        return v

    def obj_or_none(self, key: str) -> Fields | None:
        v = self.obj.get(key)
        if v is None:
            return None
        return self.sub(key)

    def sub(self, key: str) -> Fields:
        v = self.raw(key, "an object")
        if not isinstance(v, dict):
            raise self._fail(self._name(key), "an object", v)
        return Fields(v, self.where, self.error, path=self._name(key), hint=self.hint)

    def item(self, value: Any, index: int | str) -> Fields:
        """An object inside a list of this object (``value`` = the list entry at ``index``)."""
        name = f"{self.path}[{index}]" if isinstance(index, int) else self._name(index)
        if not isinstance(value, dict):
            raise self._fail(name, "an object", value)
        return Fields(value, self.where, self.error, path=name, hint=self.hint)

    def ints(
        self,
        key: str,
        *,
        lo: int | None = None,
        hi: int | None = None,
        min_len: int = 0,
        max_len: int | None = None,
        unique: bool = False,
    ) -> list[int]:
        values = self.list(key, min_len=min_len, max_len=max_len)
        out = [check_int(v, f"{self._name(key)}[{i}]", self, lo=lo, hi=hi) for i, v in enumerate(values)]
        if unique and len(set(out)) != len(out):
            raise self.error(f'{self.where}: "{self._name(key)}" lists a value twice')
        return out

    def floats(self, key: str, *, positive: bool = False, min_len: int = 0, max_len: int | None = None) -> list[float]:
        values = self.list(key, min_len=min_len, max_len=max_len)
        return [check_float(v, f"{self._name(key)}[{i}]", self, positive=positive) for i, v in enumerate(values)]

    def strs(self, key: str, *, min_len: int = 0, max_len: int | None = None, max_str: int = 4096) -> list[str]:
        values = self.list(key, min_len=min_len, max_len=max_len)
        return [check_str(v, f"{self._name(key)}[{i}]", self, max_len=max_str) for i, v in enumerate(values)]


def check_int(v: Any, name: str, f: Fields, *, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise f._fail(name, "an integer", v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"between {lo} and {hi}"
        raise f.error(
            f'{f.where}: "{name}" must be an integer {rng}, found {v if abs(v) < 10**12 else "a huge one"}'
            + (f"; {f.hint}" if f.hint else "")
        )
    return v


def check_float(v: Any, name: str, f: Fields, *, positive: bool = False, lo: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise f._fail(name, "a finite number", v)
    if positive and not v > 0:
        raise f.error(f'{f.where}: "{name}" must be > 0, found {v:g}' + (f"; {f.hint}" if f.hint else ""))
    if lo is not None and v < lo:
        raise f.error(f'{f.where}: "{name}" must be >= {lo:g}, found {v:g}' + (f"; {f.hint}" if f.hint else ""))
    return float(v)


def check_str(
    v: Any,
    name: str,
    f: Fields,
    *,
    choices: tuple[str, ...] | None = None,
    pattern: re.Pattern | None = None,
    max_len: int = 4096,
) -> str:
    if not isinstance(v, str):
        raise f._fail(name, "a string", v)
    if len(v) > max_len:
        raise f.error(f'{f.where}: "{name}" is a string of {len(v)} characters, at most {max_len} allowed')
    if choices is not None and v not in choices:
        raise f.error(f'{f.where}: "{name}" must be one of {", ".join(choices)}' + (f"; {f.hint}" if f.hint else ""))
    if pattern is not None and not pattern.match(v):
        raise f.error(f'{f.where}: "{name}" is not of the expected form' + (f"; {f.hint}" if f.hint else ""))
    return v


def plain_name(name: Any, where: str, error: type[MindEdgeError], what: str = "file name") -> str:
    """``name`` if it is one plain path component (see :data:`PLAIN_NAME_RE`), else ``error``."""
    if not isinstance(name, str) or not PLAIN_NAME_RE.match(name):
        shown = clean(name, limit=60) if isinstance(name, str) else json_type(name)
        raise error(
            f"{where} names the {what} {shown!r}, which is not a plain file name (letters, digits, '_', "
            "'-', '.', '+'; no '/', no leading '.' or '-'); the file was crafted or corrupted — re-export or "
            "re-copy it"
        )
    return name


@contextmanager
def open_regular_file(
    path: Path,
    *,
    max_bytes: int,
    error: type[MindEdgeError],
    what: str,
    follow_symlinks: bool = True,
    hint: str = "pass the file itself",
    fix: str | None = None,
) -> Iterator[tuple[int, int]]:
    """``(fd, size)`` of ``path`` opened for reading, if it is a regular file of at most ``max_bytes`` bytes.

    The one place that opens a file mind-edge is handed: non-blocking (a FIFO never blocks the
    open), close-on-exec, ``O_NOFOLLOW`` unless ``follow_symlinks``; the type and size are checked
    on the open descriptor (``fstat``), so a file swapped after a check is still the one read. An
    ``OSError`` inside the ``with`` block becomes one ``error`` line too; ``hint`` ends the "not a
    regular file" message, ``fix`` the "too large" one.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except OSError as exc:
        if not follow_symlinks and os.path.islink(path):
            raise error(f"{what} {path} is a symbolic link; mind-edge only reads it as a plain file") from None
        raise error(f"{what} {path} cannot be opened ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {path} is not a regular file (a folder, FIFO or device); {hint}")
        if st.st_size > max_bytes:
            raise error(
                f"{what} {path} has {st.st_size:,} bytes, more than the {max_bytes:,} this mind-edge reads; "
                f"it is not a file mind-edge wrote{f' — {fix}' if fix else ''}"
            )
        yield fd, st.st_size
    except OSError as exc:
        raise error(f"{what} {path} cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def read_regular_file(
    path: Path,
    *,
    max_bytes: int,
    error: type[MindEdgeError],
    what: str,
    follow_symlinks: bool = True,
    fix: str | None = None,
) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes`` bytes (:func:`open_regular_file`)."""
    with open_regular_file(
        path, max_bytes=max_bytes, error=error, what=what, follow_symlinks=follow_symlinks, fix=fix
    ) as (fd, _):
        chunks, total = [], 0
        while True:
            block = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not block:
                break
            chunks.append(block)
            total += len(block)
            if total > max_bytes:
                raise error(f"{what} {path} grew beyond {max_bytes:,} bytes while being read")
        return b"".join(chunks)


def read_json_file(
    path: Path, *, max_bytes: int, error: type[MindEdgeError], what: str, fix: str = "re-create it"
) -> Any:
    """Strict JSON from a regular file of at most ``max_bytes`` bytes (see :func:`read_regular_file`)."""
    data = read_regular_file(path, max_bytes=max_bytes, error=error, what=what, fix=fix)
    try:
        return strict_json_loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not UTF-8 text; the file is corrupt — {fix}") from None
    except (ValueError, RecursionError) as exc:
        msg = str(exc) if isinstance(exc, json.JSONDecodeError) else "NaN/Infinity or too deeply nested"
        raise error(f"{what} {path} is not valid JSON ({msg}); the file is corrupt — {fix}") from None


def checked(fn: Callable[[], Any], error: type[MindEdgeError], where: str) -> Any:
    """Run ``fn``; a stray ``KeyError``/``TypeError``/``ValueError`` becomes one ``error`` line (a safety net)."""
    try:
        return fn()
    except MindEdgeError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise error(f"{where} is malformed ({type(exc).__name__}); re-create it") from None
