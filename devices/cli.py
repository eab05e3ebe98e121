"""``mind-edge devices ...``: list and show device profiles, detect the current device."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mind_edge.console import handle_errors
from mind_edge.devices.profiles import Detection, DeviceProfile, detect, get_profile, list_profiles
from mind_edge.textsafe import text

log = logging.getLogger(__name__)

app = typer.Typer(
    help="Device profiles (Jetson Orin/Xavier, generic CPUs) and detection of the current device.",
    no_args_is_help=True,
    add_completion=False,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _console() -> Console:
    console = Console()
    if not console.is_terminal:
        console = Console(width=240)  # piped or captured: never wrap profile names
    return console


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2))


def _or(value: Any, empty: str = "-") -> str:
    return empty if value in (None, "", ()) else str(value)


def _memory(p: DeviceProfile) -> str:
    if p.memory_gb is None:
        return "host"
    return f"{p.memory_gb:g} GB" + (" shared" if p.memory_shared else "")


def _modes(p: DeviceProfile) -> str:
    return ", ".join(m.name for m in p.power_modes) or "-"


def _workspace(p: DeviceProfile) -> str:
    return f"{p.defaults.workspace_mb} MB" if p.defaults.workspace_mb else "-"


@app.command("list")
@handle_errors
def list_cmd(json_out: JsonOpt = False) -> None:
    """List every device profile."""
    profiles = list_profiles()
    if json_out:
        _echo_json([p.to_dict() for p in profiles])
        return
    table = Table(title="mind-edge device profiles")
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("module")
    table.add_column("JetPack", no_wrap=True)
    table.add_column("TensorRT", no_wrap=True)
    table.add_column("CUDA", no_wrap=True)
    table.add_column("memory", no_wrap=True)
    table.add_column("DLA", justify="right")
    table.add_column("power modes")
    table.add_column("workspace", no_wrap=True, justify="right")
    for p in profiles:
        table.add_row(*(text(v) for v in (  # data, never markup
            p.name,
            p.display_name,
            _or(p.jetpack),
            _or(p.tensorrt),
            _or(p.cuda),
            _memory(p),
            str(p.dla_cores),
            _modes(p),
            _workspace(p),
        )))
    _console().print(table)


@app.command("show")
@handle_errors
def show_cmd(
    name: Annotated[str, typer.Argument(help="Profile name, e.g. orin-nano-8gb (see: mind-edge devices list).")],
    json_out: JsonOpt = False,
) -> None:
    """Show one device profile in full."""
    p = get_profile(name)
    if json_out:
        _echo_json(p.to_dict())
        return
    table = Table(title=text(f"{p.display_name} ({p.name})"), show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value")
    gpu = (
        f"{p.gpu.arch}, {p.gpu.cuda_cores} CUDA cores, {p.gpu.tensor_cores} tensor cores, "
        f"compute capability {p.gpu.compute_capability}"
        if p.gpu
        else "-"
    )
    rows = [
        ("kind", p.kind),
        ("module", p.module),
        ("SoC", _or(p.soc)),
        ("CPU", f"{_or(p.cpu_model, 'detected at run time')}" + (f" x{p.cpu_cores}" if p.cpu_cores else "")),
        ("JetPack / L4T", f"{_or(p.jetpack)} / {_or(p.l4t)}"),
        ("TensorRT / CUDA / Python", f"{_or(p.tensorrt)} / {_or(p.cuda)} / {_or(p.python)}"),
        ("memory", _memory(p)),
        ("GPU", gpu),
        ("DLA cores", str(p.dla_cores)),
        (
            "power modes",
            "\n".join(
                f"{m.id}: {m.name}" + (f" ({m.watts:g} W)" if m.watts is not None else "") + (f" - {m.note}" if m.note else "")
                for m in p.power_modes
            )
            or "-",
        ),
        (
            "defaults",
            f"workspace {p.defaults.workspace_mb} MB, fp16 {p.defaults.fp16}, int8 {p.defaults.int8}, "
            f"batch {p.defaults.batch}, threads {p.defaults.threads or 'auto'}",
        ),
        ("detected by", ", ".join(p.detect.device_tree_model or p.detect.machines)),
        ("notes", p.notes),
        ("sources", "\n".join(p.sources)),
    ]
    for key, value in rows:
        table.add_row(key, Text("\n").join(text(line) for line in str(value).split("\n")))
    _console().print(table)


def _detection_table(d: Detection) -> Table:
    table = Table(title="detected device", show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value")
    mem = f"{d.memory_total_mb} MiB" if d.memory_total_mb else "-"
    for key, value in [
        ("profile", f"{d.profile.name} ({d.profile.display_name})"),
        ("matched by", d.matched_by),
        ("device-tree model", _or(d.model)),
        ("L4T", _or(d.l4t_version)),
        ("machine", d.machine),
        ("CPU", f"{_or(d.cpu_model)} x{_or(d.cpu_count, '?')}"),
        ("memory", mem),
    ]:
        table.add_row(key, text(value))
    for w in d.warnings:
        table.add_row(Text("warning", style="yellow"), text(w))
    return table


@app.command("detect")
@handle_errors
def detect_cmd(
    json_out: JsonOpt = False,
    root: Annotated[
        Optional[Path],
        typer.Option("--root", hidden=True, help="Read /etc and /proc under this folder instead of / (tests)."),
    ] = None,
) -> None:
    """Detect this device and print the matching profile."""
    d = detect(root if root is not None else Path("/"))
    if json_out:
        _echo_json(d.to_dict())
        return
    _console().print(_detection_table(d))


__all__ = ["app"]
