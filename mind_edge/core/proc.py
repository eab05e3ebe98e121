"""Process helpers (torch-free, stdlib only): resident-set sizes and one spawn-worker protocol.

**Peak RSS** (:func:`peak_rss_mb`): on Linux the ``VmHWM`` line of ``/proc/self/status``, the
high-water mark of *this process image*. ``getrusage(RUSAGE_SELF).ru_maxrss`` is wrong in
exactly the case a measuring worker is in: when a process calls ``exec``, Linux folds the
high-water mark of the memory it replaces into ``ru_maxrss`` (``exec_mmap`` ->
``setmax_mm_hiwater_rss``), and right after ``fork`` that memory is the parent's (with
``vfork``/``posix_spawn`` it *is* the parent's address space). So a fresh worker started by a
613 MiB parent reports at least 613 MiB however little it uses itself. ``VmHWM`` starts anew
with the exec'd image. Elsewhere (no ``/proc``) ``ru_maxrss`` is the fallback (KiB on Linux,
bytes on macOS); ``nan`` where neither exists.

**Current RSS** (:func:`current_rss_mb`): resident pages of ``/proc/self/statm``.

**Workers** (:func:`spawn_call`): run ``target(*args, **kwargs)`` in a fresh interpreter started
with ``multiprocessing``'s ``spawn`` method (as Optimum's exporters validate models): nothing
of the parent's heap, threads or imported modules (PyTorch, CUDA contexts) leaks into it, so
its peak RSS and its timings are its own. Nor does the parent's ``__main__`` script: ``spawn``
re-runs it in the child (as ``__mp_main__``, so that objects defined there can be unpickled), and
from the ``mind-edge`` console script that meant every bench/learn worker imported
``mind_edge.cli``, typer and rich (and whatever a user's script imports) before it measured
anything. ``spawn`` decides this in the parent, from ``sys.modules['__main__']``: its
``__spec__.name`` (``python -m``) or its ``__file__`` (a script) go into the child's preparation
data; a main module with neither is left alone (as in an interactive session). So while a worker
starts, :func:`_main_hidden` hides both attributes of ``__main__`` (under the lock that serialises
worker starts; restored right after ``start()``, which has written the preparation data by then).
joblib's loky does the same by default (``LokyProcess(init_main_module=False)``); stdlib
``multiprocessing`` has no switch for it, and hiding the two attributes keeps its own, documented
``spawn`` machinery (pipes, exit codes, the resource tracker) instead of a second hand-written
launcher. A ``target`` defined in the ``__main__`` script itself still works: its pickle names
``__main__``, so the main module is not hidden for it. The result comes back pickled through a pipe; an
exception in the worker comes back as :class:`WorkerError` with its one-line summary and
traceback; a crash, a kill (out of memory) or a timeout raise :class:`WorkerError` too, naming
the exit code and the last line the worker wrote to stderr. ``target`` must be importable
(a module-level function; of an importable module, or its worker re-runs the parent's script) and
its arguments and result picklable (instances of classes defined in the ``__main__`` script are
not). ``env`` entries are set in the worker's environment before it starts (e.g.
``OMP_NUM_THREADS``, which libraries read when they are loaded): :func:`thread_env` builds them.

``fast_exit=True`` ends the worker with ``os._exit`` right after it has sent its result, skipping
the interpreter's teardown. For a worker that measures its own peak RSS this makes the process's
lifetime peak (what ``/usr/bin/time -v`` reports) the peak it measured: tearing down an
interpreter that imported PyTorch faults in about 125 MiB more of libtorch's *file-backed*
pages (``RssFile`` 229 -> 358 MiB, ``RssAnon`` unchanged; measured on Linux 6.18, torch 2.x),
which says nothing about the work measured. It also saves the seconds that teardown takes.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mind_edge.errors import MindEdgeError

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None

MIB = 2**20
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# ----------------------------------------------------------------------------- RSS


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def maxrss_mb() -> float:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in MiB (wrong in a fresh child of a big parent; see above)."""
    if resource is None:  # pragma: no cover - Windows
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def peak_rss_mb() -> float:
    """Peak resident set size of this process image so far, in MiB (``VmHWM``; see the module doc)."""
    kib = _status_kib("VmHWM")
    return kib / 1024 if kib is not None else maxrss_mb()


def current_rss_mb() -> float:
    """Resident set size of this process now, in MiB (``/proc/self/statm``; the peak where that is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / MIB
    except (OSError, ValueError, IndexError, AttributeError):
        return peak_rss_mb()


# ----------------------------------------------------------------------------- workers


class WorkerError(MindEdgeError):
    """A spawned worker raised, crashed, was killed or ran out of time."""

    def __init__(self, message: str, *, exitcode: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.exitcode = exitcode
        self.detail = detail  # the worker's traceback or stderr

    @property
    def killed(self) -> bool:
        """Ended by a signal (SIGKILL from the out-of-memory killer, usually)."""
        return self.exitcode is not None and (self.exitcode < 0 or self.exitcode == 137)


def thread_env(threads: int | None) -> dict[str, str]:
    """Environment entries that cap the BLAS/OpenMP threads of a worker (empty for ``None``)."""
    return {var: str(int(threads)) for var in THREAD_VARS} if threads else {}


_ENV_LOCK = threading.Lock()


@contextlib.contextmanager
def _environ(env: Mapping[str, str] | None) -> Iterator[None]:
    """``os.environ`` with ``env`` applied while a worker starts (spawn copies the environment)."""
    if not env:
        yield
        return
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_MAIN_ATTRS = ("__spec__", "__file__")  # what multiprocessing.spawn.get_preparation_data reads of __main__


@contextlib.contextmanager
def _main_hidden(target: Callable[..., Any]) -> Iterator[None]:
    """``sys.modules['__main__']`` without ``__spec__`` and ``__file__`` while a worker starts, so that
    ``spawn`` does not re-run the parent's main module in it (see the module doc); not for a
    ``target`` defined in that module (its pickle names ``__main__``)."""
    main = sys.modules.get("__main__")
    if main is None or getattr(target, "__module__", None) in ("__main__", "__mp_main__"):
        yield
        return
    saved = {k: main.__dict__[k] for k in _MAIN_ATTRS if k in main.__dict__}
    main.__spec__ = None
    main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        for k in _MAIN_ATTRS:
            if k in saved:
                main.__dict__[k] = saved[k]
            else:
                main.__dict__.pop(k, None)


def _worker(conn, stderr_path: str, fast_exit: bool, target: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    """Runs in the spawned interpreter: stderr to a file, the result or the error to the pipe."""
    try:
        fd = os.open(stderr_path, os.O_WRONLY | os.O_APPEND)
        os.dup2(fd, 2)
        os.close(fd)
    except OSError:
        pass
    try:
        result = target(*args, **kwargs)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, whatever it is
        summary = f"{type(exc).__name__}: {exc}".strip().splitlines()
        conn.send(("error", summary[0] if summary else type(exc).__name__, traceback.format_exc()))
    else:
        conn.send(("ok", result))
    finally:
        conn.close()
    if fast_exit:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)


def _last_line(path: str) -> str:
    try:
        lines = [ln for ln in Path(path).read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def spawn_call(
    target: Callable[..., Any],
    *args: Any,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    fast_exit: bool = False,
    **kwargs: Any,
) -> Any:
    """``target(*args, **kwargs)`` in a fresh ``spawn`` interpreter; its return value, or :class:`WorkerError`."""
    ctx = multiprocessing.get_context("spawn")
    name = getattr(target, "__qualname__", repr(target))
    fd, stderr_path = tempfile.mkstemp(prefix="mind-edge-worker-", suffix=".stderr")
    os.close(fd)
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_worker, args=(send, stderr_path, fast_exit, target, args, kwargs), name=f"mind-edge:{name}"
    )
    try:
        with _ENV_LOCK, _environ(env), _main_hidden(target):
            proc.start()
        send.close()  # the worker holds the only writer now: EOF when it dies
        try:
            ready = recv.poll(timeout)
            msg = recv.recv() if ready else None
        except EOFError:
            msg = None
        if msg is None and not ready:
            proc.kill()
            proc.join()
            raise WorkerError(
                f"the worker {name} did not finish within {timeout:g} s and was stopped", exitcode=proc.exitcode
            )
        proc.join()
        if msg is None:
            code = proc.exitcode
            why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            last = _last_line(stderr_path)
            hint = " (out of memory?)" if code is not None and (code < 0 or code == 137) else ""
            raise WorkerError(
                f"the worker {name} died without a result ({why}{hint})" + (f": {last}" if last else ""),
                exitcode=code,
                detail=Path(stderr_path).read_text(errors="replace") if last else "",
            )
        if msg[0] == "error":
            raise WorkerError(f"the worker {name} failed: {msg[1]}", exitcode=proc.exitcode, detail=msg[2])
        return msg[1]
    finally:
        if proc.is_alive():  # an exception on our side (KeyboardInterrupt): do not leave it running
            proc.kill()
            proc.join()
        recv.close()
        with contextlib.suppress(OSError):
            os.unlink(stderr_path)


__all__ = ["peak_rss_mb", "current_rss_mb", "maxrss_mb", "spawn_call", "thread_env", "WorkerError", "THREAD_VARS"]
