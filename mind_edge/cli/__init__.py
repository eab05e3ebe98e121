"""The ``mind-edge`` command line (typer + rich): the whole command tree, in one place.

The CLI is the top layer: it may import every room, and nothing below imports it. Only the CLI
parses user input; the commands are plain functions in one module per area, registered here:

* :mod:`~mind_edge.cli.host` — ``train``, ``eval``, ``calibrate``, ``info``, ``learn``
* :mod:`~mind_edge.cli.demo` — ``demo`` (renders :func:`mind_edge.demo.run_demo`)
* :mod:`~mind_edge.cli.export` — ``export``, ``engine build|list``
* :mod:`~mind_edge.cli.runtime` — ``predict``, ``bench`` and the one renderer of a bench report
* :mod:`~mind_edge.cli.patch` — ``keygen``, ``patch create|inspect|apply|rollback|trust``
* :mod:`~mind_edge.cli.devices` — ``devices list|show|detect``, ``deploy``
* :mod:`~mind_edge.cli.options` — options and arguments several commands share

Errors are formatted once: every command (and the root callback) runs inside
:func:`mind_edge.console.handle_errors`, so a :class:`~mind_edge.errors.MindEdgeError` is one
``error: ...`` line on stderr and exit code 2.

Imports: a device install has no PyTorch, so ``mind-edge predict|bench|patch|keygen|devices|deploy|
engine`` never import it. The CLI modules import the torch-free side (``mind_edge.runtime``,
``mind_edge.devices``, ``mind_edge.core``, ``mind_edge.export.engine``) at the top; the torch side
(``mind_edge.run``, ``train``, ``learn``, ``calibrate``, ``checkpoint``, ``data``, ``demo``,
``mind_edge.export.exporter``/``quantize``/``patch``) is imported inside the command that needs it,
after its cheap checks. That is the one exception to "internal imports at the top of files"
(ruff's PLC0415 is ignored for these modules in pyproject.toml); a test proves in a fresh
interpreter that importing this package leaves torch out.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mind_edge import __version__
from mind_edge.cli import demo as demo_cli
from mind_edge.cli import devices, export, host, patch, runtime
from mind_edge.console import DEFAULTS_ENV, handle_errors, read_defaults, setup_logging


class _App(typer.Typer):
    """A typer app whose every command reports errors through :func:`mind_edge.console.handle_errors`."""

    def command(self, name: str | None = None, **kwargs):
        register = super().command(name, **kwargs)

        def decorator(fn):
            register(handle_errors(fn))
            return fn

        return decorator


app = _App(
    name="mind-edge",
    help="MIND class-incremental learning for the edge: train, export, run and extend on device.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"mind-edge {__version__}")
        raise typer.Exit()


@app.callback()
@handle_errors
def _main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    setup_logging(verbose)
    defaults = read_defaults()
    if defaults:
        # option defaults per command for every sub-command of this run (README: MIND_EDGE_DEFAULTS)
        ctx.default_map = {**(ctx.default_map or {}), **defaults}


# the host (torch side)
app.command()(host.train)
app.command("eval")(host.eval_run)
app.command()(host.calibrate)
app.command()(host.info)
app.command()(demo_cli.demo)
app.command()(export.export)
# the device (torch-free)
app.command()(runtime.predict)
app.command()(runtime.bench)
app.command("deploy")(devices.deploy_bundle)
app.command()(host.learn)
app.command()(patch.keygen)

engine_app = _App(
    help="TensorRT engines, built on the device that runs them (never copied between machines).",
    no_args_is_help=True,
    add_completion=False,
)
engine_app.command("build")(export.engine_build)
engine_app.command("list")(export.engine_list)
app.add_typer(engine_app, name="engine")

patch_app = _App(
    help="Task patches: create, inspect, apply (atomically, torch-free) and roll back.", no_args_is_help=True
)
patch_app.command()(patch.create)
patch_app.command()(patch.inspect)
patch_app.command()(patch.apply)
patch_app.command()(patch.rollback)
patch_app.command()(patch.trust)
app.add_typer(patch_app, name="patch")

devices_app = _App(help="Device profiles, detection and telemetry.", no_args_is_help=True, add_completion=False)
devices_app.command("list")(devices.list_devices)
devices_app.command()(devices.show)
devices_app.command("detect")(devices.detect_device)
app.add_typer(devices_app, name="devices")


def main() -> None:
    app()


__all__ = ["DEFAULTS_ENV", "app", "main"]
