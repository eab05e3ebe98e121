"""``mind-edge engine build|list``: TensorRT engines built on the machine that runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from mind_edge.console import console, handle_errors


def register(app: typer.Typer) -> None:
    """Add the ``engine`` sub-app (``engine build``, ``engine list``) to ``app``."""
    engine_app = typer.Typer(help="TensorRT engines, built on the device that runs them (never copied between machines).",
                             no_args_is_help=True, add_completion=False)

    @engine_app.command("build")
    @handle_errors
    def build_cmd(
        bundle: Annotated[Path, typer.Argument(help="A bundle folder written by 'mind-edge export'.")],
        fp16: Annotated[bool, typer.Option("--fp16", help="FP16 backbone; the routing head stays FP32.")] = False,
        workspace: Annotated[Optional[int], typer.Option("--workspace", help="Builder workspace in MB (default: the detected Jetson profile's, else 256).")] = None,
        dla: Annotated[Optional[int], typer.Option("--dla", help="Build for DLA core N (with GPU fallback; implies --fp16 and a static batch).")] = None,
        timing_cache: Annotated[Optional[Path], typer.Option("--timing-cache", help="Timing cache file to read and update (default: BUNDLE/trt-cache/timing.cache).")] = None,
        no_timing_cache: Annotated[bool, typer.Option("--no-timing-cache", help="Build without a timing cache.")] = False,
        strongly_typed: Annotated[Optional[bool], typer.Option("--strongly-typed/--weakly-typed", help="Network typing (default: weak on TensorRT 10, strong on 11+).", show_default=False)] = None,
        min_batch: Annotated[int, typer.Option(help="Smallest batch of the optimization profile.")] = 1,
        opt_batch: Annotated[Optional[int], typer.Option(help="Batch the engine is tuned for (default: the device profile's, else 8).")] = None,
        max_batch: Annotated[Optional[int], typer.Option(help="Largest batch (default: max(32, opt)); larger inputs are split.")] = None,
        force: Annotated[bool, typer.Option(help="Rebuild even if an engine with the same fingerprint exists.")] = False,
        verbose: Annotated[bool, typer.Option("--trt-verbose", help="TensorRT's verbose builder log.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    ) -> None:
        """Build the TensorRT engine of BUNDLE on this machine (engine-<fingerprint>.plan + engine.json)."""
        from rich.table import Table

        from mind_edge.export.engine import EngineBuildOptions, build_engine

        opts = EngineBuildOptions(fp16=fp16, workspace_mb=workspace, dla_core=dla, timing_cache=timing_cache,
                                  use_timing_cache=not no_timing_cache, strongly_typed=strongly_typed,
                                  min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch, force=force,
                                  verbose=verbose)
        res = build_engine(bundle, opts)
        if as_json:
            typer.echo(json.dumps(res.summary()))
            return
        fp = res.fingerprint
        from mind_edge.textsafe import text  # paths and names are data, never markup

        table = Table(title=text(f"engine {res.path}"), title_justify="left", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        table.add_row("status", "[yellow]reused (same fingerprint; --force rebuilds)[/]" if res.reused else "[green]built[/]")
        table.add_row("machine", text(fp.machine.describe()))
        table.add_row("precision", f"{fp.precision} ({fp.typing} typing"
                      + (f", {len(res.pinned_fp32_layers)} routing-head layers pinned to FP32" if res.pinned_fp32_layers else "")
                      + (", FP16 casts in the graph" if fp.precision == "fp16" and fp.typing == "strong" else "") + ")")
        table.add_row("DLA", "no (GPU)" if fp.dla_core is None else f"core {fp.dla_core}, GPU fallback")
        table.add_row("batch", f"min {fp.min_batch} / opt {fp.opt_batch} / max {fp.max_batch}")
        table.add_row("workspace", f"{fp.workspace_mb} MB")
        table.add_row("size", f"{res.record.bytes / 1e6:.2f} MB, sha256 {res.record.sha256[:16]}…")
        table.add_row("time", f"{res.seconds:.1f} s")
        for note in res.notes:
            table.add_row("note", text(note))
        console.print(table)

    @engine_app.command("list")
    @handle_errors
    def list_cmd(
        bundle: Annotated[Path, typer.Argument(help="A bundle folder.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """List the engines recorded for BUNDLE and whether each one fits this machine."""
        from rich.table import Table

        from mind_edge.errors import MindEdgeError
        from mind_edge.export.engine import engine_table_rows
        from mind_edge.runtime.engine_fingerprint import import_tensorrt, machine_info

        machine, why_unknown = None, ""
        try:
            machine = machine_info(import_tensorrt("checking engines against this machine"))
        except MindEdgeError as exc:
            why_unknown = str(exc).split(";")[0]
        rows = engine_table_rows(bundle, machine)
        if as_json:
            typer.echo(json.dumps({"bundle": str(bundle), "machine": None if machine is None else machine.__dict__,
                                   "engines": rows}))
            return
        title = f"engines of {bundle} — this machine: " + (machine.describe() if machine else f"unknown ({why_unknown})")
        from mind_edge.textsafe import text

        table = Table(title=text(title), title_justify="left")
        for col in ("file", "precision", "DLA", "batch", "TensorRT", "GPU", "usable here"):
            table.add_column(col)
        for r in rows:
            usable = "?" if r["usable"] is None else ("[green]yes[/]" if r["usable"] else "[red]no[/]: " + "; ".join(r["why"]))
            table.add_row(text(r["file"]), f"{r['precision']} ({r['typing']})", "-" if r["dla_core"] is None else str(r["dla_core"]),
                          r["batch"], r["tensorrt"], f"{r['gpu']} ({r['compute']})", usable)
        if not rows:
            console.print(text(f"bundle {bundle} has no engine yet; build one with: mind-edge engine build {bundle}"), soft_wrap=True)
            return
        console.print(table)

    app.add_typer(engine_app, name="engine")


__all__ = ["register"]
