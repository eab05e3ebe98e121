"""Console output and error handling shared by every ``mind-edge`` sub-command.

The one place a command's output consoles and its error policy live, so that the sub-CLIs of the
rooms (``export/cli.py``, ``runtime/cli.py``, ``devices/cli.py``, ...) import them from here and the
top-level CLI (:mod:`mind_edge.cli`) can mount them without an import cycle. Torch-free: typer,
rich and the standard library only.

* :data:`console` / :data:`err_console` — rich consoles for stdout / stderr (:data:`PIPE_WIDTH`
  columns when not a terminal).
* :func:`fail` — one ``error: ...`` line on stderr, the exit to raise.
* :func:`handle_errors` — the decorator every command carries: a :class:`MindEdgeError`, a file
  system error or a missing optional package becomes one line and exit code 2.
* :func:`require_modules` — refuse a command at once when an optional package it needs is missing.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import typer
from rich.console import Console

from mind_edge.errors import MindEdgeError

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
EXTRA_OF = {"torch": "train", "torchvision": "train", "safetensors": "train", "sklearn": "train",
            "matplotlib": "train", "onnx": "export", "onnxruntime": "ort", "nacl": "sign"}


def fail(message: str, code: int = 2, label: str = "error") -> typer.Exit:
    """Print ``label: message`` as ONE line on stderr (the message is data: never markup, no control
    characters, newlines shown as ``\\n``) and return the exit to raise."""
    from rich.text import Text

    from mind_edge.textsafe import clean

    err_console.print(Text.assemble((f"{label}:", "bold red" if code == 2 else "bold yellow"), " ", clean(message)),
                      highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _command_name() -> str:
    """``mind-edge train`` etc. for the running command (typer >= 0.20 vendors click)."""
    try:
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - typer with click as a dependency
        try:
            from click import get_current_context
        except ImportError:
            return "this command"
    ctx = get_current_context(silent=True)
    return ctx.command_path if ctx is not None else "this command"


def _missing_module_message(module: str, what: str) -> str:
    extra = EXTRA_OF.get(module, "all")
    msg = f"{what} needs the '{module}' package, which is not installed; install it with: pip install 'mind-edge[{extra}]'"
    if extra == "train":
        msg += " (on a host without a GPU, install the CPU build of torch first: see the README's Install section)"
    return msg


def require_modules(*modules: str) -> None:
    """Fail at once, with the extra to install, when a module a command needs is missing.

    Checked with ``importlib.util.find_spec`` (nothing is imported), so a torch-free device
    install refuses ``mind-edge train`` in milliseconds with one line.
    """
    from mind_edge.errors import MissingExtraError

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


__all__ = ["PIPE_WIDTH", "EXTRA_OF", "console", "err_console", "fail", "handle_errors", "require_modules"]
