"""``mind-edge devices list|show|detect`` (device profiles, detection) and ``mind-edge deploy`` (ssh)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mind_edge.cli.options import BundleArg, JsonOpt
from mind_edge.cli.runtime import render_bench
from mind_edge.console import console
from mind_edge.devices.deploy import DeployError, DeployOptions, SshTarget, bench_rows, deploy
from mind_edge.devices.profiles import Detection, DeviceProfile, detect, get_profile, list_profiles
from mind_edge.runtime.bench import RESULTS_SCHEMA
from mind_edge.textsafe import field_table, text

# ----------------------------------------------------------------------------- devices list, show, detect


def _wide_console() -> Console:
    wide = Console()
    if not wide.is_terminal:
        wide = Console(width=240)  # piped or captured: never wrap profile names
    return wide


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


def list_devices(json_out: JsonOpt = False) -> None:
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
        cells = (
            p.name,
            p.display_name,
            _or(p.jetpack),
            _or(p.tensorrt),
            _or(p.cuda),
            _memory(p),
            str(p.dla_cores),
            _modes(p),
            _workspace(p),
        )
        table.add_row(*(text(v) for v in cells))  # data, never markup
    _wide_console().print(table)


def show(
    name: Annotated[str, typer.Argument(help="Profile name, e.g. orin-nano-8gb (see: mind-edge devices list).")],
    json_out: JsonOpt = False,
) -> None:
    """Show one device profile in full."""
    p = get_profile(name)
    if json_out:
        _echo_json(p.to_dict())
        return
    table = field_table(f"{p.display_name} ({p.name})", justify_left=False)
    gpu = (
        f"{p.gpu.arch}, {p.gpu.cuda_cores} CUDA cores, {p.gpu.tensor_cores} tensor cores, "
        f"compute capability {p.gpu.compute_capability}"
        if p.gpu
        else "-"
    )
    modes = "\n".join(
        f"{m.id}: {m.name}" + (f" ({m.watts:g} W)" if m.watts is not None else "") + (f" - {m.note}" if m.note else "")
        for m in p.power_modes
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
        ("power modes", modes or "-"),
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
    _wide_console().print(table)


def _detection_table(d: Detection) -> Table:
    table = field_table("detected device", justify_left=False)
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


def detect_device(
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
    _wide_console().print(_detection_table(d))


# ----------------------------------------------------------------------------- deploy


def _is_bench_report(data: Any) -> bool:
    """A report of this version's ``mind-edge bench`` (anything else is shown as a generic table)."""
    return (
        isinstance(data, dict)
        and data.get("format") == "mind-edge-bench"
        and data.get("schema_version") == RESULTS_SCHEMA
    )


def deploy_bundle(
    bundle: BundleArg,
    host: Annotated[str, typer.Option("--host", help="USER@HOST, HOST, or a Host alias of ~/.ssh/config.")],
    port: Annotated[
        Optional[int], typer.Option("--port", "-p", help="ssh port (default: 22 or ~/.ssh/config's).")
    ] = None,
    remote_dir: Annotated[
        str, typer.Option("--dir", help="Folder on the device for bundles (relative = remote home).")
    ] = "mind-edge/bundles",
    identity: Annotated[
        Optional[Path], typer.Option("--identity", "-i", help="Private key file (ssh -i; only this key is offered).")
    ] = None,
    name: Annotated[
        Optional[str], typer.Option(help="Bundle folder name on the device (default: the local folder's).")
    ] = None,
    remote_cmd: Annotated[
        str,
        typer.Option(
            help="mind-edge on the device: a name on its PATH, a full path, or e.g. 'python3 -m mind_edge.cli'."
        ),
    ] = "mind-edge",
    remote_python: Annotated[
        str, typer.Option(help="Python on the device whose 'import tensorrt' decides the engine build.")
    ] = "python3",
    engine: Annotated[
        str,
        typer.Option(help="Build a TensorRT engine on the device: auto (if TensorRT imports there), always, never."),
    ] = "auto",
    fp16: Annotated[
        bool, typer.Option("--fp16", help="Build the engine with an FP16 backbone (routing head FP32).")
    ] = False,
    bench: Annotated[
        bool, typer.Option("--bench/--no-bench", help="Run 'mind-edge bench' on the device and fetch its JSON.")
    ] = True,
    bench_args: Annotated[
        Optional[str],
        typer.Option(help="Extra arguments for the remote 'mind-edge bench', e.g. \"--min-seconds 5 --batch 8\"."),
    ] = None,
    backend: Annotated[
        Optional[str],
        typer.Option(
            help="Benchmark backend(s) on the device (default: trt,ort if an engine was built, else the bench default)."
        ),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            help="Where to save the fetched benchmark JSON (default: beside the bundle). No short form: -o is an "
            "ssh option, as in ssh itself.",
        ),
    ] = None,
    strict_host_key_checking: Annotated[
        str, typer.Option(help="ssh StrictHostKeyChecking: accept-new (trust on first use), yes, no.")
    ] = "accept-new",
    connect_timeout: Annotated[int, typer.Option(help="ssh ConnectTimeout in seconds.")] = 10,
    ssh_option: Annotated[
        Optional[list[str]],
        typer.Option(
            "--ssh-option",
            "-o",
            help="Extra ssh option KEY=VALUE (repeatable), e.g. -o ProxyJump=gateway, as ssh -o takes it.",
        ),
    ] = None,
    ssh_config: Annotated[
        Optional[Path], typer.Option(help="ssh config file instead of ~/.ssh/config (ssh -F).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the deploy summary and the benchmark as JSON.")
    ] = False,
) -> None:
    """Copy BUNDLE to a device over ssh/rsync, build its TensorRT engine there, benchmark it, show the results."""
    try:
        extra = tuple(shlex.split(bench_args)) if bench_args else ()
    except ValueError as exc:
        raise DeployError(f"--bench-args {bench_args!r} is not a valid argument string ({exc})") from None
    target = SshTarget(
        host=host,
        port=port,
        identity=identity,
        strict_host_key_checking=strict_host_key_checking,
        connect_timeout=connect_timeout,
        options=tuple(ssh_option or ()),
        config_file=ssh_config,
    )
    options = DeployOptions(
        remote_dir=remote_dir,
        name=name,
        remote_cmd=remote_cmd,
        remote_python=remote_python,
        engine=engine,
        fp16=fp16,
        bench=bench,
        bench_args=extra,
        backend=backend,
    )
    res = deploy(bundle, target, options, out=out)
    if as_json:
        typer.echo(json.dumps({**res.summary(), "bench": res.bench}))
        return
    # what the device reports (and local paths) is data, never markup
    table = field_table(f"deployed {bundle} → {res.target}")
    r = res.remote
    table.add_row("device", text(f"{r.machine or '?'}; mind-edge: {r.cmd or '-'}; TensorRT: {r.tensorrt or 'no'}"))
    free = f"{r.disk_free_kb / 1024:.0f} MB free on {r.mount}" if r.disk_free_kb is not None else "free space unknown"
    table.add_row("bundle", text(f"{res.remote_bundle} ({res.copied_bytes / 1e6:.2f} MB copied; {free} before)"))
    table.add_row("engine", text(res.engine_note + (f" — {res.engine.get('engine')}" if res.engine else "")))
    if res.bench_file:
        table.add_row("benchmark", text(f"backend {res.backend}; JSON saved to {res.bench_file}"))
    table.add_row("time", " · ".join(f"{k} {v:.1f} s" for k, v in res.seconds.items()))
    console.print(table)
    if res.bench is None:
        return
    if _is_bench_report(res.bench):  # the device ran this version's bench: its report, rendered as 'bench' does
        console.print(text(f"benchmark on {res.target}"), style="bold")
        render_bench(res.bench, console)
        return
    cols, rows = bench_rows(res.bench)  # another version's or tool's JSON: its fields as they are
    bt = Table(title=text(f"benchmark on {res.target}"), title_justify="left")
    for c in cols:
        bt.add_column(text(c), justify="left" if c in ("field", "name", "backend", "providers") else "right")
    for row in rows:
        bt.add_row(*(text(v) for v in row))
    console.print(bt)
