"""Terminal output of the ``mind-edge`` commands and of the example scripts (torch-free).

The CLI package (:mod:`mind_edge.cli`) and the scripts in ``examples/`` print through this module,
so that what a user sees (consoles, progress, logging, the one-line errors) is defined once.
typer, rich and the standard library only.

* :data:`console` / :data:`err_console` — rich consoles for stdout / stderr (:data:`PIPE_WIDTH`
  columns when not a terminal).
* :func:`fail` — one ``error: ...`` line on stderr, the exit to raise.
* :func:`handle_errors` — the one error policy of every command: a :class:`MindEdgeError`, a file
  system error or a missing optional package becomes one line and exit code 2.
* :func:`require_modules` — refuse a command at once when an optional package it needs is missing.
* :class:`LogReporter` / :class:`RichReporter` — training progress (``mind_edge.train.Reporter``)
  as plain lines or as a rich progress bar.
* :func:`setup_logging` — rich logging on stderr, one clean line per record.
* :func:`read_defaults` — option defaults per command from ``$MIND_EDGE_DEFAULTS``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from mind_edge.errors import ConfigError, MindEdgeError, MissingExtraError
from mind_edge.textsafe import clean

try:  # typer >= 0.20 vendors click
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - typer with click as a dependency
    from click import get_current_context

#: Width of tables when output goes to a file or a pipe (rich's 80 columns split numbers across
#: lines); a terminal keeps its own width, and COLUMNS overrides both.
PIPE_WIDTH = 160


def _console(stderr: bool = False) -> Console:
    c = Console(stderr=stderr)
    if not c.is_terminal and "COLUMNS" not in os.environ:
        c.width = PIPE_WIDTH
    return c


console = _console()
err_console = _console(stderr=True)

#: Which extra installs each optional module a command needs.
EXTRA_OF = {
    "torch": "train",
    "torchvision": "train",
    "safetensors": "train",
    "sklearn": "train",
    "matplotlib": "train",
    "onnx": "export",
    "onnxruntime": "ort",
    "nacl": "sign",
}

#: Environment variable naming a JSON file of option defaults per command (click's default_map):
#: ``{"train": {"epochs": 1}, "patch": {"create": {...}}}``. Options given on the command line win.
DEFAULTS_ENV = "MIND_EDGE_DEFAULTS"


# ----------------------------------------------------------------------------- errors


def fail(message: str, code: int = 2, label: str = "error") -> typer.Exit:
    """Print ``label: message`` as ONE line on stderr (the message is data: never markup, no control
    characters, newlines shown as ``\\n``) and return the exit to raise."""
    err_console.print(
        Text.assemble((f"{label}:", "bold red" if code == 2 else "bold yellow"), " ", clean(message)),
        highlight=False,
        soft_wrap=True,
    )
    return typer.Exit(code)


def _command_name() -> str:
    """``mind-edge train`` etc. for the running command."""
    ctx = get_current_context(silent=True)
    return ctx.command_path if ctx is not None else "this command"


def _missing_module_message(module: str, what: str) -> str:
    extra = EXTRA_OF.get(module, "all")
    msg = (
        f"{what} needs the '{module}' package, which is not installed; "
        f"install it with: pip install 'mind-edge[{extra}]'"
    )
    if extra == "train":
        msg += " (on a host without a GPU, install the CPU build of torch first: see the README's Install section)"
    return msg


def require_modules(*modules: str) -> None:
    """Fail at once, with the extra to install, when a module a command needs is missing.

    Checked with ``importlib.util.find_spec`` (nothing is imported), so a torch-free device
    install refuses ``mind-edge train`` in milliseconds with one line.
    """
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken or blocked install counts as missing
            found = False
        if not found:
            raise MissingExtraError(module, EXTRA_OF.get(module, "all"), f"'{_command_name()}'")


def handle_errors(fn):
    """Turn a MindEdgeError (or a missing optional package) into one clear line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MindEdgeError as exc:
            message = str(exc)
            if getattr(exc, "extra", None) in ("ort", "sign") and "mind-edge[device]" not in message:
                message += "; on a device, 'mind-edge[device]' installs everything the device side needs"
            raise fail(message, getattr(exc, "exit_code", 2), getattr(exc, "label", "error")) from None
        except OSError as exc:  # a file system failure nothing more specific caught: still one line, exit 2
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            raise fail(f"{_command_name()} failed: {exc.strerror or type(exc).__name__}{where}") from None
        except ModuleNotFoundError as exc:
            top = (exc.name or "").split(".")[0]
            if top not in EXTRA_OF:
                raise
            raise fail(_missing_module_message(top, f"'{_command_name()}'")) from None

    return wrapper


# ----------------------------------------------------------------------------- logging and defaults


def setup_logging(verbose: bool) -> None:
    """Log records of ``mind_edge`` through rich on stderr (debug with ``verbose``, else warnings)."""
    root = logging.getLogger("mind_edge")
    if not any(isinstance(h, RichHandler) for h in root.handlers):
        handler = RichHandler(console=err_console, show_path=False, show_time=False, markup=False)
        handler.addFilter(_one_clean_line)
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)


def _one_clean_line(record: logging.LogRecord) -> bool:
    """Log messages carry data (names, paths): one line, no control characters, never markup."""
    record.msg, record.args = clean(record.getMessage()), None
    return True


def read_defaults(section: str | None = None) -> dict:
    """Option defaults from the JSON file named by ``$MIND_EDGE_DEFAULTS`` (``{}`` when unset).

    ``section`` picks one key (e.g. a script's name); the CLI uses the whole object as click's
    ``default_map`` (one key per command, nested for groups: ``{"patch": {"create": {...}}}``).
    """
    path = os.environ.get(DEFAULTS_ENV)
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{DEFAULTS_ENV}={path} must name a readable JSON file of option defaults per command "
            f"({exc}); unset it or fix the file"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{DEFAULTS_ENV}={path} must hold a JSON object (command -> {{option: default}}), got {type(data).__name__}"
        )
    if section is not None:
        data = data.get(section, {})
        if not isinstance(data, dict):
            raise ConfigError(f"{DEFAULTS_ENV}={path}: {section!r} must be an object of option defaults")
    return data


# ----------------------------------------------------------------------------- progress


class LogReporter:
    """Implements mind_edge.train.Reporter as plain progress lines, for logs, pipes and nohup.

    One line when a stage starts, then one at least every ``interval`` seconds, and one when it
    ends: ``task 0 train: 120/500 (24%) epoch 3/10 loss 0.532, 4 s``. Lines are written after a
    batch once ``interval`` has passed; with ``heartbeat`` a background thread also repeats the
    last state when a batch takes longer than that (a slow or busy machine), so a log never goes
    quiet for more than ``interval`` seconds while a stage runs.
    """

    def __init__(self, stream=None, interval: float = 5.0, clock=time.monotonic, heartbeat: bool = True):
        self.stream = stream
        self.interval = float(interval)
        self.clock = clock
        self.heartbeat = heartbeat
        self._label: str | None = None
        self._total = self._done = 0
        self._t0 = self._last = 0.0
        self._info = ""
        self._lock = threading.Lock()
        self._stop: threading.Event | None = None

    def _beat(self, stop) -> None:
        while not stop.wait(self.interval / 4):
            with self._lock:
                if self._label is not None and self.clock() - self._last >= self.interval:
                    self._emit(self._line())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def _emit(self, text: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        print(text, file=stream, flush=True)
        self._last = self.clock()

    def _line(self) -> str:
        pct = f" ({100 * self._done // self._total}%)" if self._total else ""
        info = f" {self._info}" if self._info else ""
        return f"{self._label}: {self._done}/{self._total}{pct}{info}, {self.clock() - self._t0:.0f} s"

    def start(self, label: str, total: int) -> None:
        with self._lock:
            self._label, self._total, self._done, self._info = label, int(total), 0, ""
            self._t0 = self.clock()
            self._emit(f"{label}: started, {self._total} steps")
        if self.heartbeat and self._stop is None:
            self._stop = threading.Event()
            threading.Thread(target=self._beat, args=(self._stop,), name="mind-edge-progress", daemon=True).start()

    def advance(self, info: str = "") -> None:
        with self._lock:
            if self._label is None:
                return
            self._done += 1
            self._info = info
            if self.clock() - self._last >= self.interval:
                self._emit(self._line())

    def finish(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None
        with self._lock:
            if self._label is not None:
                self._emit(self._line() + " done")
                self._label = None


class RichReporter:
    """Implements mind_edge.train.Reporter with a rich progress bar per training stage.

    The bar needs a terminal: when ``console`` is not one (a pipe, a file, CI logs, nohup), the
    progress is written as plain lines on stderr instead (:class:`LogReporter`), so stdout stays
    clean for ``--json``.
    """

    def __init__(self, console: Console, transient: bool = True):
        self._plain = None if console.is_terminal else LogReporter()
        self.progress = None
        if self._plain is None:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=transient,
            )
        self._task = None

    def __enter__(self):
        if self.progress is not None:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            return self.progress.__exit__(*exc)
        return False

    def start(self, label: str, total: int) -> None:
        if self._plain is not None:
            return self._plain.start(label, total)
        self._task = self.progress.add_task(label, total=total, info="")

    def advance(self, info: str = "") -> None:
        if self._plain is not None:
            return self._plain.advance(info)
        if self._task is not None:
            self.progress.update(self._task, advance=1, info=info)

    def finish(self) -> None:
        if self._plain is not None:
            return self._plain.finish()
        if self._task is not None:
            self.progress.remove_task(self._task)
            self._task = None


__all__ = [
    "DEFAULTS_ENV",
    "EXTRA_OF",
    "PIPE_WIDTH",
    "LogReporter",
    "RichReporter",
    "console",
    "err_console",
    "fail",
    "handle_errors",
    "read_defaults",
    "require_modules",
    "setup_logging",
]
