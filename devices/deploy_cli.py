"""``mind-edge deploy BUNDLE --host USER@HOST``: copy, build the engine there, benchmark, fetch the results."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from mind_edge.console import console, handle_errors


def register(app: typer.Typer) -> None:
    """Add the top-level ``deploy`` command to ``app``."""
    @app.command("deploy")
    @handle_errors
    def deploy_cmd(
        bundle: Annotated[Path, typer.Argument(help="A bundle folder written by 'mind-edge export'.")],
        host: Annotated[str, typer.Option("--host", help="USER@HOST, HOST, or a Host alias of ~/.ssh/config.")],
        port: Annotated[Optional[int], typer.Option("--port", "-p", help="ssh port (default: 22 or ~/.ssh/config's).")] = None,
        remote_dir: Annotated[str, typer.Option("--dir", help="Folder on the device for bundles (relative = remote home).")] = "mind-edge/bundles",
        identity: Annotated[Optional[Path], typer.Option("--identity", "-i", help="Private key file (ssh -i; only this key is offered).")] = None,
        name: Annotated[Optional[str], typer.Option(help="Bundle folder name on the device (default: the local folder's).")] = None,
        remote_cmd: Annotated[str, typer.Option(help="mind-edge on the device: a name on its PATH, a full path, or e.g. 'python3 -m mind_edge.cli'.")] = "mind-edge",
        remote_python: Annotated[str, typer.Option(help="Python on the device whose 'import tensorrt' decides the engine build.")] = "python3",
        engine: Annotated[str, typer.Option(help="Build a TensorRT engine on the device: auto (if TensorRT imports there), always, never.")] = "auto",
        fp16: Annotated[bool, typer.Option("--fp16", help="Build the engine with an FP16 backbone (routing head FP32).")] = False,
        bench: Annotated[bool, typer.Option("--bench/--no-bench", help="Run 'mind-edge bench' on the device and fetch its JSON.")] = True,
        bench_args: Annotated[Optional[str], typer.Option(help="Extra arguments for the remote 'mind-edge bench', e.g. \"--min-seconds 5 --batch 8\".")] = None,
        backend: Annotated[Optional[str], typer.Option(help="Benchmark backend(s) on the device (default: trt,ort if an engine was built, else the bench default).")] = None,
        out: Annotated[Optional[Path], typer.Option("--out", help="Where to save the fetched benchmark JSON (default: beside the bundle). No short form: -o is an ssh option, as in ssh itself.")] = None,
        strict_host_key_checking: Annotated[str, typer.Option(help="ssh StrictHostKeyChecking: accept-new (trust on first use), yes, no.")] = "accept-new",
        connect_timeout: Annotated[int, typer.Option(help="ssh ConnectTimeout in seconds.")] = 10,
        ssh_option: Annotated[Optional[List[str]], typer.Option("--ssh-option", "-o", help="Extra ssh option KEY=VALUE (repeatable), e.g. -o ProxyJump=gateway, as ssh -o takes it.")] = None,
        ssh_config: Annotated[Optional[Path], typer.Option(help="ssh config file instead of ~/.ssh/config (ssh -F).")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the deploy summary and the benchmark as JSON.")] = False,
    ) -> None:
        """Copy BUNDLE to a device over ssh/rsync, build its TensorRT engine there, benchmark it, show the results."""
        from rich.table import Table

        from mind_edge.devices.deploy import DeployError, DeployOptions, SshTarget, bench_rows, deploy

        try:
            extra = tuple(shlex.split(bench_args)) if bench_args else ()
        except ValueError as exc:
            raise DeployError(f"--bench-args {bench_args!r} is not a valid argument string ({exc})") from None
        target = SshTarget(host=host, port=port, identity=identity, strict_host_key_checking=strict_host_key_checking,
                           connect_timeout=connect_timeout, options=tuple(ssh_option or ()), config_file=ssh_config)
        options = DeployOptions(remote_dir=remote_dir, name=name, remote_cmd=remote_cmd, remote_python=remote_python,
                                engine=engine, fp16=fp16, bench=bench, bench_args=extra, backend=backend)
        res = deploy(bundle, target, options, out=out)
        if as_json:
            typer.echo(json.dumps({**res.summary(), "bench": res.bench}))
            return
        from mind_edge.textsafe import text  # what the device reports (and local paths) is data, never markup

        table = Table(title=text(f"deployed {bundle} → {res.target}"), title_justify="left", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        r = res.remote
        table.add_row("device", text(f"{r.machine or '?'}; mind-edge: {r.cmd or '-'}; TensorRT: {r.tensorrt or 'no'}"))
        free = f"{r.disk_free_kb / 1024:.0f} MB free on {r.mount}" if r.disk_free_kb is not None else "free space unknown"
        table.add_row("bundle", text(f"{res.remote_bundle} ({res.copied_bytes / 1e6:.2f} MB copied; {free} before)"))
        table.add_row("engine", text(res.engine_note + (f" — {res.engine.get('engine')}" if res.engine else "")))
        if res.bench_file:
            table.add_row("benchmark", text(f"backend {res.backend}; JSON saved to {res.bench_file}"))
        table.add_row("time", " · ".join(f"{k} {v:.1f} s" for k, v in res.seconds.items()))
        console.print(table)
        if res.bench is not None:
            cols, rows = bench_rows(res.bench)
            bt = Table(title=text(f"benchmark on {res.target}"), title_justify="left")
            for c in cols:
                bt.add_column(text(c), justify="left" if c in ("field", "name", "backend", "providers") else "right")
            for row in rows:
                bt.add_row(*(text(v) for v in row))
            console.print(bt)


__all__ = ["register"]
