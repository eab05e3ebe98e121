"""``mind-edge export`` (a run → a validated bundle, torch side) and ``mind-edge engine build|list``
(TensorRT engines built on the machine that runs them, torch-free)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from mind_edge.cli.options import BundleArg, JsonPlainOpt, JsonResultOpt, RunDirArg
from mind_edge.console import console, require_modules
from mind_edge.core.routing import POLICIES, get_policy
from mind_edge.errors import ConfigError, MindEdgeError
from mind_edge.export.engine import EngineBuildOptions, build_engine, engine_table_rows
from mind_edge.runtime import engine_fingerprint
from mind_edge.runtime.graph import LAYOUTS, MAX_OPSET, MIN_OPSET
from mind_edge.textsafe import field_table, markup, text


def _mb(n: int) -> str:
    return f"{n / 1e6:.3f} MB"


# ----------------------------------------------------------------------------- export


def check_export_args(run_dir: Path, out: Path, *, layout: str, opset: int, overwrite: bool) -> None:
    """The cheap checks of ``export`` (seconds of loading and validation are never spent on a typo)."""
    from mind_edge.checkpoint import read_run_json

    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r} (--layout); choose one of {', '.join(LAYOUTS)}")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(
            f"opset {opset} is not supported (--opset); mind-edge builds opsets {MIN_OPSET}..{MAX_OPSET} "
            "(TensorRT 10 parses them; 17 is the default)"
        )
    read_run_json(run_dir)  # JSON only: a missing or foreign run directory fails here
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"bundle output {out} exists and is a file; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(
            f"bundle output folder {out} exists and is not empty; choose another --out or pass --overwrite"
        )


def _prefixes(text: str | None) -> tuple[str, ...]:
    """``--int8-keep-fp32``'s comma list: node-name prefixes (letters, digits, '_' and '.'), no empty item."""
    if text is None:
        return ()
    items = tuple(t.strip() for t in text.split(","))
    bad = [t for t in items if not re.fullmatch(r"[A-Za-z0-9_.]{1,64}", t)]
    if bad:
        raise ConfigError(f"--int8-keep-fp32 takes node-name prefixes such as 'stem.,blocks.0.'; not {bad[0]!r}")
    return items


def _precision_line(p: dict) -> str:
    """One line of the FP16/INT8 graph's agreement with the FP32 PyTorch model."""
    parts = [
        f"{p['precision']} vs FP32 on {p.get('inputs', {}).get(p.get('measured_on'), {}).get('count', 0)} "
        f"{p.get('measured_on')} images: routing agreement {100 * (p.get('routing_agreement') or 0):.2f}%",
        f"label agreement {100 * (p.get('label_agreement') or 0):.2f}%",
    ]
    if p.get("tag") is not None:
        parts.append(f"TAG {p['tag']:.4f} (FP32 {p['tag_fp32']:.4f}), TAW {p['taw']:.4f} (FP32 {p['taw_fp32']:.4f})")
    parts.append(f"max |Δ task_logits| {p.get('max_abs_task_logits') or 0:.3g}")
    s = p.get("sizes") or {}
    if s:
        parts.append(f"model.onnx {s['ratio_to_fp32_shared']:.1%} of the FP32 shared graph")
    return "; ".join(parts)


def export(
    run_dir: RunDirArg,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Bundle folder to write (model.onnx, bundle.json, probe, report)."),
    ],
    layout: Annotated[
        str,
        typer.Option(
            help="shared (weights once + int8 owner maps) | folded (per-task weights, BN folded; for TensorRT)."
        ),
    ] = "shared",
    opset: Annotated[int, typer.Option(help="ONNX opset (13..20).")] = 17,
    atol: Annotated[
        float, typer.Option(help="Absolute tolerance between ONNX Runtime and PyTorch on float outputs.")
    ] = 1e-4,
    rtol: Annotated[
        float,
        typer.Option(help="Relative tolerance (an element passes within atol OR rtol*|ref|; 0 = absolute only)."),
    ] = 1e-5,
    temperature: Annotated[
        Optional[float], typer.Option(help="Routing temperature baked into the graph (default: the run's).")
    ] = None,
    samples: Annotated[
        int,
        typer.Option(
            help="Test images of the run compared against PyTorch (evenly drawn; 32 random inputs are added)."
        ),
    ] = 256,
    validate: Annotated[
        bool, typer.Option(help="Validate against PyTorch before writing (checker, ORT vs torch, size).")
    ] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing bundle in --out.")] = False,
    precision: Annotated[
        str,
        typer.Option(
            help="fp32 | fp16 (shared layout, FP16 backbone, 4-bit owner maps) | int8 (QDQ: per-channel int8 "
            "weights, calibrated uint8 activations, one chain per task). The routing head (pool, heads, "
            "task_logits, route.*) stays FP32 in every precision."
        ),
    ] = "fp32",
    calibration: Annotated[
        Optional[int],
        typer.Option(
            help="int8: calibration images drawn evenly from the run's training split of the learned tasks "
            "(default 256)."
        ),
    ] = None,
    int8_keep_fp32: Annotated[
        Optional[str],
        typer.Option(
            help="int8: comma-separated backbone node-name prefixes left in FP32, e.g. ResNet-32's first stage "
            "'stem.,blocks.0.,blocks.1.,blocks.2.,blocks.3.,blocks.4.' (fewer routing flips, slower at batch 1)."
        ),
    ] = None,
    int8_method: Annotated[
        Optional[str],
        typer.Option(
            help="int8: activation calibration method of ONNX Runtime's quantizer: minmax (default) | percentile "
            "| entropy; recorded in bundle.json, so patches re-quantize alike."
        ),
    ] = None,
    int8_quantize_features: Annotated[
        bool,
        typer.Option(
            help="int8: quantize sub-network 0 too. By default it stays FP32 when the routing policy reads its "
            "pooled features (shared, lda, the default combined): faster by about 1/N of the backbone, but more "
            "images routed unlike the FP32 model."
        ),
    ] = False,
    min_routing_agreement: Annotated[
        float,
        typer.Option(
            help="fp16/int8: refuse the bundle when the fraction of test images routed to the same task as the "
            "FP32 model is below this."
        ),
    ] = 0.99,
    max_tag_drop: Annotated[
        float,
        typer.Option(
            help="fp16/int8: refuse the bundle when its TAG is more than this many percentage points below the "
            "FP32 model's."
        ),
    ] = 1.0,
    routing: Annotated[
        Optional[str],
        typer.Option(
            help="Routing policy the graph computes: "
            + " | ".join(POLICIES)
            + " (default: the run's; score policies need the run's routing statistics, see 'mind-edge calibrate')."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the export summary as JSON.")] = False,
) -> None:
    """Export a trained run as one shared-weight ONNX graph with the task-selection head."""
    require_modules("torch", "safetensors", "onnx", *(("onnxruntime",) if validate else ()))
    check_export_args(run_dir, out, layout=layout, opset=opset, overwrite=overwrite)  # before loading anything
    if routing is not None:
        get_policy(routing)  # a typo fails here, before loading anything
    keep_fp32 = _prefixes(int8_keep_fp32)  # likewise
    if int8_method is not None:
        from mind_edge.runtime.precision import check_int8_method

        check_int8_method(int8_method)  # likewise
        if precision != "int8":
            raise ConfigError(f"--int8-method applies to --precision int8 only (this export is {precision})")
    if int8_quantize_features and precision != "int8":
        raise ConfigError(f"--int8-quantize-features applies to --precision int8 only (this export is {precision})")
    from mind_edge.export.exporter import export_bundle
    from mind_edge.export.quantize import PrecisionThresholds

    thresholds = PrecisionThresholds(min_routing_agreement=min_routing_agreement, max_tag_drop=max_tag_drop)
    res = export_bundle(
        run_dir,
        out,
        layout=layout,
        opset=opset,
        atol=atol,
        rtol=rtol,
        temperature=temperature,
        validate=validate,
        overwrite=overwrite,
        max_test_samples=samples,
        precision=precision,
        calibration=calibration,
        thresholds=thresholds,
        routing=routing,
        int8_keep_fp32=keep_fp32,
        int8_method=int8_method or "minmax",
        int8_fp32_features=False if int8_quantize_features else None,
    )
    if as_json:
        typer.echo(json.dumps(res.summary()))
        return
    # paths and messages are data, never markup
    table = field_table(f"bundle {res.bundle}")
    table.add_row(
        "graph",
        f"{res.precision} · {res.layout} layout, opset {res.opset}, {res.num_tasks} tasks, "
        f"T={res.temperature:g}, routing {res.report.get('routing', '?')}"
        + ("" if res.precision == "fp32" else " (routing head FP32; validation below: the FP32 graph)"),
    )
    table.add_row(
        "model.onnx",
        f"{_mb(res.model_bytes)} ({res.ratio_to_dense:.2f}x one dense fp32 sub-network of {_mb(res.dense_bytes)}; "
        f"{res.num_tasks} separate sub-networks: {_mb(res.naive_bytes)})",
    )
    rep = res.report
    if rep.get("skipped"):
        table.add_row("validation", "[yellow]skipped[/]")
    else:
        deltas = ", ".join(f"{k} {v:.2e}" for k, v in rep["max_abs_diff"].items() if v is not None)
        agree = ", ".join(f"{k} {100 * v:.2f}%" for k, v in rep["agreement"].items() if v is not None)
        counts = ", ".join(f"{k} {v['count']}" for k, v in rep["inputs"].items())
        table.add_row("validation", f"[green]passed[/] (atol {rep['atol']:g}, rtol {rep['rtol']:g}; inputs: {counts})")
        table.add_row("max |Δ|", deltas)
        table.add_row("agreement", agree)
        if rep.get("precision"):
            table.add_row("precision", _precision_line(rep["precision"]))
        for w in rep.get("warnings", []):
            table.add_row("warning", f"[yellow]{markup(w)}[/]")
    table.add_row("time", f"{res.seconds:.1f} s")
    console.print(table)


# ----------------------------------------------------------------------------- engine build, engine list


def engine_build(
    bundle: BundleArg,
    fp16: Annotated[bool, typer.Option("--fp16", help="FP16 backbone; the routing head stays FP32.")] = False,
    workspace: Annotated[
        Optional[int],
        typer.Option("--workspace", help="Builder workspace in MB (default: the detected Jetson profile's, else 256)."),
    ] = None,
    dla: Annotated[
        Optional[int],
        typer.Option("--dla", help="Build for DLA core N (with GPU fallback; implies --fp16 and a static batch)."),
    ] = None,
    timing_cache: Annotated[
        Optional[Path],
        typer.Option(
            "--timing-cache", help="Timing cache file to read and update (default: BUNDLE/trt-cache/timing.cache)."
        ),
    ] = None,
    no_timing_cache: Annotated[bool, typer.Option("--no-timing-cache", help="Build without a timing cache.")] = False,
    strongly_typed: Annotated[
        Optional[bool],
        typer.Option(
            "--strongly-typed/--weakly-typed",
            help="Network typing (default: weak on TensorRT 10, strong on 11+).",
            show_default=False,
        ),
    ] = None,
    min_batch: Annotated[int, typer.Option(help="Smallest batch of the optimization profile.")] = 1,
    opt_batch: Annotated[
        Optional[int], typer.Option(help="Batch the engine is tuned for (default: the device profile's, else 8).")
    ] = None,
    max_batch: Annotated[
        Optional[int], typer.Option(help="Largest batch (default: max(32, opt)); larger inputs are split.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if an engine with the same fingerprint exists.")] = False,
    verbose: Annotated[bool, typer.Option("--trt-verbose", help="TensorRT's verbose builder log.")] = False,
    as_json: JsonResultOpt = False,
) -> None:
    """Build the TensorRT engine of BUNDLE on this machine (engine-<fingerprint>.plan + engine.json)."""
    opts = EngineBuildOptions(
        fp16=fp16,
        workspace_mb=workspace,
        dla_core=dla,
        timing_cache=timing_cache,
        use_timing_cache=not no_timing_cache,
        strongly_typed=strongly_typed,
        min_batch=min_batch,
        opt_batch=opt_batch,
        max_batch=max_batch,
        force=force,
        verbose=verbose,
    )
    res = build_engine(bundle, opts)
    if as_json:
        typer.echo(json.dumps(res.summary()))
        return
    fp = res.fingerprint
    # paths and names are data, never markup
    table = field_table(f"engine {res.path}")
    table.add_row(
        "status", "[yellow]reused (same fingerprint; --force rebuilds)[/]" if res.reused else "[green]built[/]"
    )
    table.add_row("machine", text(fp.machine.describe()))
    table.add_row(
        "precision",
        f"{fp.precision} ({fp.typing} typing"
        + (f", {len(res.pinned_fp32_layers)} routing-head layers pinned to FP32" if res.pinned_fp32_layers else "")
        + (", FP16 casts in the graph" if fp.precision == "fp16" and fp.typing == "strong" else "")
        + ")",
    )
    table.add_row("DLA", "no (GPU)" if fp.dla_core is None else f"core {fp.dla_core}, GPU fallback")
    table.add_row("batch", f"min {fp.min_batch} / opt {fp.opt_batch} / max {fp.max_batch}")
    table.add_row("workspace", f"{fp.workspace_mb} MB")
    table.add_row("size", f"{res.record.bytes / 1e6:.2f} MB, sha256 {res.record.sha256[:16]}…")
    table.add_row("time", f"{res.seconds:.1f} s")
    for note in res.notes:
        table.add_row("note", text(note))
    console.print(table)


def engine_list(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder.")],
    as_json: JsonPlainOpt = False,
) -> None:
    """List the engines recorded for BUNDLE and whether each one fits this machine."""
    machine, why_unknown = None, ""
    try:
        # through the module: tests replace import_tensorrt with a fake TensorRT
        machine = engine_fingerprint.machine_info(
            engine_fingerprint.import_tensorrt("checking engines against this machine")
        )
    except MindEdgeError as exc:
        why_unknown = str(exc).split(";")[0]
    rows = engine_table_rows(bundle, machine)
    if as_json:
        typer.echo(
            json.dumps(
                {"bundle": str(bundle), "machine": None if machine is None else machine.__dict__, "engines": rows}
            )
        )
        return
    title = f"engines of {bundle} — this machine: " + (machine.describe() if machine else f"unknown ({why_unknown})")
    table = Table(title=text(title), title_justify="left")
    for col in ("file", "precision", "DLA", "batch", "TensorRT", "GPU", "usable here"):
        table.add_column(col)
    for r in rows:
        usable = (
            "?" if r["usable"] is None else ("[green]yes[/]" if r["usable"] else "[red]no[/]: " + "; ".join(r["why"]))
        )
        table.add_row(
            text(r["file"]),
            f"{r['precision']} ({r['typing']})",
            "-" if r["dla_core"] is None else str(r["dla_core"]),
            r["batch"],
            r["tensorrt"],
            f"{r['gpu']} ({r['compute']})",
            usable,
        )
    if not rows:
        console.print(
            text(f"bundle {bundle} has no engine yet; build one with: mind-edge engine build {bundle}"), soft_wrap=True
        )
        return
    console.print(table)
