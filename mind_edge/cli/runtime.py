"""``mind-edge predict`` and ``mind-edge bench`` (torch-free), and the one renderer of a bench report.

The PyTorch baselines of ``bench --backend torch`` are imported only inside their own worker
processes (:mod:`mind_edge.runtime.bench`), and only when ``--backend`` asks for them.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from mind_edge.cli.options import BundleArg, JsonOpt
from mind_edge.console import console, err_console
from mind_edge.core.routing import POLICIES
from mind_edge.devices.tegrastats import TegrastatsMonitor, find_tegrastats
from mind_edge.errors import ConfigError
from mind_edge.runtime.bench import (
    IDLE_SECONDS,
    BenchSpec,
    GraphVariant,
    TimingConfig,
    bundle_sources,
    plot_report,
    run_benchmark,
    synthetic_sources,
    write_json,
)
from mind_edge.runtime.bundle import Bundle
from mind_edge.runtime.predict import Runtime
from mind_edge.runtime.runners import PROVIDER_ALIASES, available_providers
from mind_edge.textsafe import markup, text

# ----------------------------------------------------------------------------- predict


def check_providers(requested: list[str]) -> None:
    """Providers named in ``--providers`` must exist here, unless the list includes ``cpu`` (fallback allowed)."""
    available = available_providers()
    missing = [
        p
        for p in requested
        if PROVIDER_ALIASES.get(p.lower(), p) not in available
        and PROVIDER_ALIASES.get(p.lower(), p).endswith("ExecutionProvider")
    ]
    if not missing:
        return
    short = {v: k for k, v in PROVIDER_ALIASES.items() if k != "trt"}
    have = ", ".join(short.get(a, a) for a in available)
    if "CPUExecutionProvider" not in [PROVIDER_ALIASES.get(p.lower(), p) for p in requested]:
        raise ConfigError(
            f"--providers {','.join(requested)}: {', '.join(missing)} is not available in this ONNX Runtime "
            f"(it has: {have}); install an ONNX Runtime build with it (Jetson: NVIDIA's onnxruntime-gpu wheel for "
            f"JetPack), or add cpu to the list (--providers {','.join(requested)},cpu) to fall back to the CPU"
        )
    # with cpu in the list the fallback is allowed: the runner logs a warning naming what is skipped


def predict(
    bundle: BundleArg,
    images: Annotated[
        list[Path],
        typer.Argument(
            help="Image files, folders (every image below them) or quoted glob patterns such as 'shots/*.jpg'."
        ),
    ],
    as_json: JsonOpt = False,
    temperature: Annotated[
        Optional[float], typer.Option(help="Re-route at this temperature (default: the bundle's).")
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            help="Inference backend: ort (ONNX Runtime: CPU, CUDA or TensorRT providers) or trt (the TensorRT "
            "engine built here with 'mind-edge engine build')."
        ),
    ] = "ort",
    providers: Annotated[
        Optional[str],
        typer.Option(
            help="Comma-separated ONNX Runtime providers, e.g. tensorrt or cuda,cpu (default: CUDA if available, "
            "else CPU). A named provider this ONNX Runtime lacks is an error, unless the list ends in cpu (then it "
            "falls back to the CPU and says so)."
        ),
    ] = None,
    threads: Annotated[Optional[int], typer.Option(help="Intra-op threads (default: ONNX Runtime's).")] = None,
    resize: Annotated[
        bool,
        typer.Option(
            help="Resize (bilinear) and convert images whose size or channel count differ from the bundle's, as "
            "ImageFolder training does; by default they are rejected."
        ),
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Images per inference call.")] = 64,
    routing: Annotated[
        Optional[str],
        typer.Option(
            help="Re-route in numpy with another routing policy (" + " | ".join(POLICIES) + "; default: the bundle's)."
        ),
    ] = None,
) -> None:
    """Predict the class (and the task) of images with a bundle, task unknown."""
    b = Bundle.load(bundle)
    prov = [p.strip() for p in providers.split(",") if p.strip()] if providers else None
    if prov and backend == "ort":
        check_providers(prov)
    with Runtime(b, backend=backend, providers=prov, threads=threads) as rt:
        pred = rt.predict(
            [str(p) for p in images], temperature=temperature, batch_size=batch_size, strict=not resize, routing=routing
        )
        used = rt.providers_used
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "bundle": str(bundle),
                    "backend": backend,
                    "providers": used,
                    "temperature": pred.temperature,
                    "routing": pred.policy,
                    "predictions": pred.records(),
                }
            )
        )
        return
    # file and class names are data: never markup, no control characters
    table = Table(
        title=text(f"{bundle} — T={pred.temperature:g}, routing {pred.policy}, {backend} on {', '.join(used)}"),
        title_justify="left",
    )
    for col, just in (
        ("file", "left"),
        ("class", "left"),
        ("label", "right"),
        ("task", "right"),
        ("confidence", "right"),
    ):
        table.add_column(col, justify=just)
    for r in pred.records():
        table.add_row(text(r["file"]), text(r["class_name"]), str(r["label"]), str(r["task"]), f"{r['confidence']:.4f}")
    console.print(table)


# ----------------------------------------------------------------------------- bench

DEFAULT_BACKENDS = "ort"
DEFAULT_MONITOR_INTERVAL_MS = 100


def make_monitor(
    on: bool, path: Optional[Path], interval_ms: Optional[int], idle_seconds: Optional[float]
) -> TegrastatsMonitor | None:
    """The (not started) TegrastatsMonitor of ``--monitor``, or None; raises one-line errors."""
    if not on:
        given = [
            opt
            for opt, v in (
                ("--tegrastats-path", path),
                ("--monitor-interval-ms", interval_ms),
                ("--monitor-idle-seconds", idle_seconds),
            )
            if v is not None
        ]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply with --monitor; add --monitor (Jetson) or drop them")
        return None
    if idle_seconds is not None and not (idle_seconds >= 0 and idle_seconds < float("inf")):
        raise ConfigError(f"--monitor-idle-seconds must be a number of seconds >= 0, got {idle_seconds}")
    if path is None:
        fix = (
            "run on a Jetson, pass --tegrastats-path PATH to a tegrastats-compatible program, or drop --monitor "
            "(power telemetry needs tegrastats)"
        )
    else:
        fix = "fix --tegrastats-path, or drop --monitor"
    exe = find_tegrastats(path, fix=fix)
    return TegrastatsMonitor(
        interval_ms=DEFAULT_MONITOR_INTERVAL_MS if interval_ms is None else interval_ms, tegrastats_path=exe
    )


def _ints(value: str, what: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in value.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{what} must be a comma-separated list of integers, got {value!r}") from None
    if not vals or min(vals) < 1:
        raise ConfigError(f"{what} must list integers >= 1, got {value!r}")
    return vals


def _names(value: str) -> tuple[str, ...]:
    out: list[str] = []
    for v in value.split(","):
        v = v.strip().lower()
        if v and v not in out:
            out.append(v)
    return tuple(out)


def bench(
    bundle: Annotated[
        Optional[Path],
        typer.Argument(help="A bundle folder; without it a randomly initialised --arch model is benchmarked."),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            help="Comma-separated backends: ort, trt, openvino, torch, reference (also torch-loop, torch-stacked, "
            "ort-split)."
        ),
    ] = DEFAULT_BACKENDS,
    batch: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,8,64",
    threads: Annotated[
        Optional[int],
        typer.Option(help="Intra-op threads of every backend and of the GEMM peak (default: all available CPUs)."),
    ] = None,
    warmup_seconds: Annotated[float, typer.Option(help="Time-based warm-up per batch size (at least one call).")] = 0.2,
    min_iters: Annotated[int, typer.Option(help="Timed iterations per batch size, at least.")] = 10,
    min_seconds: Annotated[float, typer.Option(help="Timed seconds per batch size, at least.")] = 3.0,
    tasks: Annotated[
        Optional[str], typer.Option(help="Comma-separated task counts to sweep (default: the bundle's, or 10).")
    ] = None,
    arch: Annotated[
        str, typer.Option(help="Architecture of the random model (no bundle): resnet32 | resnet18.")
    ] = "resnet32",
    input_shape: Annotated[str, typer.Option(help="C,H,W of the random model's input.")] = "3,32,32",
    width: Annotated[float, typer.Option(help="Channel width multiplier of the random model.")] = 1.0,
    classes_per_task: Annotated[int, typer.Option(help="Classes per task of the random model.")] = 10,
    layout: Annotated[
        Optional[str],
        typer.Option(
            help="Graph layout(s) for ort, comma-separated: shared, folded (append /pad for Slice+Pad shortcuts). "
            "Default: the bundle's, or shared."
        ),
    ] = None,
    providers: Annotated[
        Optional[str],
        typer.Option(
            help="ONNX Runtime execution providers, e.g. cpu or cuda,cpu (default: CUDA if present, else CPU)."
        ),
    ] = None,
    precision: Annotated[
        Optional[str],
        typer.Option(
            help="Comma-separated precisions to compare side by side: fp32, fp16, bf16, int8 (ort and openvino: "
            "the graph of that precision of the same network — INT8 calibrated on the bundle's calibration.npz, "
            "else its probe batch, or random inputs for a random model; bf16 is OpenVINO's compute hint; trt: the "
            "engine of that precision)."
        ),
    ] = None,
    json_out: Annotated[
        Optional[Path], typer.Option("--json", help="Write the full report (context, results, fits) as JSON.")
    ] = None,
    plot: Annotated[
        Optional[Path], typer.Option(help="Write a PNG of latency vs tasks and vs batch (needs matplotlib).")
    ] = None,
    isolate: Annotated[
        bool,
        typer.Option(help="Run each backend in a fresh process (clean peak RSS). --no-isolate runs them here."),
    ] = True,
    gemm: Annotated[bool, typer.Option(help="Measure the GEMM peak for the roofline column.")] = True,
    chunk: Annotated[
        Optional[int],
        typer.Option(
            help="Run each batch as consecutive sub-batches of this many images (what "
            "Runtime.predict(batch_size=N) does)."
        ),
    ] = None,
    sub_batch: Annotated[
        Optional[int],
        typer.Option(
            help="ort: images per ONNX Runtime call inside a batch; 0 = the whole batch (default: 8 on the CPU "
            "execution provider, the whole batch on GPU providers)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random model.")] = 0,
    monitor: Annotated[
        bool,
        typer.Option(
            "--monitor",
            help="Jetson: sample tegrastats during every row's timed loop and report mean power (W), energy per "
            "image (mJ), GPU load and max temperature, plus an idle baseline.",
        ),
    ] = False,
    tegrastats_path: Annotated[
        Optional[Path],
        typer.Option(
            help="With --monitor: the tegrastats executable (default: tegrastats on PATH, else /usr/bin/tegrastats)."
        ),
    ] = None,
    monitor_interval_ms: Annotated[
        Optional[int], typer.Option(help="With --monitor: tegrastats sampling interval in ms (default 100).")
    ] = None,
    monitor_idle_seconds: Annotated[
        Optional[float],
        typer.Option(
            help=f"With --monitor: seconds of idle power sampled before the first row (default {IDLE_SECONDS:g})."
        ),
    ] = None,
) -> None:
    """Benchmark latency (p50/p90/p95/p99), throughput, peak RSS and roofline fraction per backend, batch and task count."""  # noqa: E501 - the help line
    tegrastats = make_monitor(monitor, tegrastats_path, monitor_interval_ms, monitor_idle_seconds)  # before any work
    timing = TimingConfig(warmup_seconds=warmup_seconds, min_iters=min_iters, min_seconds=min_seconds)
    precisions = _names(precision) if precision else ("fp32",)
    spec = BenchSpec(
        backends=_names(backend),
        batches=tuple(sorted(set(_ints(batch, "--batch")))),
        threads=threads,
        timing=timing,
        providers=_names(providers) if providers else None,
        precision=precisions[0] if len(precisions) == 1 and precision else None,
        isolate=isolate,
        gemm=gemm,
        chunk=chunk,
        sub_batch=sub_batch,
        precisions=precisions,
    )
    task_list = _ints(tasks, "--tasks") if tasks else None
    variants = [GraphVariant.parse(v) for v in layout.split(",") if v.strip()] if layout else None
    with tempfile.TemporaryDirectory(prefix="mind-edge-bench-") as tmp:
        work = Path(tmp)
        with err_console.status("preparing the model …"):
            if bundle is not None:
                sources, info = bundle_sources(
                    work, bundle, tasks=task_list, variants=variants, backends=spec.backends, precisions=precisions
                )
            else:
                sources, info = synthetic_sources(
                    work,
                    arch=arch,
                    input_shape=_ints(input_shape, "--input-shape"),
                    tasks=task_list or (10,),
                    width=width,
                    classes_per_task=classes_per_task,
                    variants=variants or [GraphVariant()],
                    backends=spec.backends,
                    seed=seed,
                    precisions=precisions,
                )
        with err_console.status("benchmarking …") as status:
            report = run_benchmark(
                spec,
                sources,
                workdir=work,
                model_info=info,
                progress=lambda msg: status.update(f"benchmarking: {markup(msg)}"),
                monitor=tegrastats,
                idle_seconds=IDLE_SECONDS if monitor_idle_seconds is None else monitor_idle_seconds,
            )
    render_bench(report, console)
    if json_out is not None:
        console.print(text(f"JSON: {write_json(report, json_out)}"))
    if plot is not None:
        console.print(text(f"plot: {plot_report(report, plot)}"))


# ----------------------------------------------------------------------------- the bench report


def _fmt(v: Any, spec: str = ".3g", none: str = "—") -> str:
    return none if v is None else format(v, spec)


def _variant_cell(row: Mapping[str, Any]) -> str:
    """The graph variant, and how this batch ran when that adds something (torch's choice, ORT sub-batches)."""
    variant, mode = str(row["variant"]), row.get("mode")
    if not mode or mode in variant:
        return variant
    if variant.startswith("auto") and str(mode).startswith("auto"):
        return str(mode)
    return f"{variant} ({mode})"


def _prec_cell(row: Mapping[str, Any]) -> str:
    """The graph's precision, and what the backend computes in when that differs (fp16→fp32 on a CPU EP)."""
    p, c = row.get("precision"), row.get("compute_precision")
    if p in (None, "default"):
        return str(c or "—")
    return p if not c or c == p else f"{p}→{c}"


def _agree_cell(row: Mapping[str, Any]) -> str:
    """``label% / task%`` agreement with ort fp32 on the probe batch; ``ref`` for the reference row."""
    if row.get("agreement_reference"):
        return "ref"
    a = row.get("agreement_with_ort")
    if not a:
        return "—"
    return f"{100 * a['label']:.0f}/{100 * a['task']:.0f}%"


def render_bench(report: Mapping[str, Any], console) -> None:
    """Print a benchmark report: context, one table row per backend x tasks x batch, fits, warnings.

    The one renderer of a bench report (``bench``, ``demo``, ``deploy`` and the scripts in benchmarks/).
    """
    ctx, gemm, model = report["context"], report["gemm"], report["model"]
    v = ctx["versions"]
    m = markup  # names, paths and reasons are data, never markup

    console.print(f"[bold]{m(model.get('description', 'model'))}[/]")
    vers = ", ".join(f"{k} {v[k]}" for k in ("onnxruntime", "torch", "tensorrt", "numpy") if v.get(k))
    console.print(
        f"{m(ctx['cpu_model'])} · {ctx['available_cpus']} CPU(s) available · {ctx['threads']} thread(s) · "
        f"python {v['python']} · {vers} · load {ctx.get('load_average_start')} → {ctx.get('load_average_end')}",
        highlight=False,
    )
    if gemm.get("peak_gflops"):
        runs = ", ".join(f"{g['gflops']:.1f}" for g in gemm["runs"])
        console.print(
            f"roofline: peak {gemm['peak_gflops']:.1f} GFLOP/s from {gemm['runs'][0]['engine']} with "
            f"{gemm['runs'][0]['threads']} thread(s) (runs: {runs})",
            highlight=False,
        )
    for p, pk in (gemm.get("peaks") or {}).items():
        if pk.get("peak_gflops"):
            pruns = ", ".join(f"{g['gflops']:.1f}" for g in pk["runs"])
            console.print(
                f"roofline ({p} rows): peak {pk['peak_gflops']:.1f} GOP/s from {pk['runs'][0]['engine']} "
                f"(runs: {pruns})",
                highlight=False,
            )
        else:
            console.print(
                f"roofline ({p} rows): no {p} peak could be measured here; the column stays empty", highlight=False
            )
    for k, f in sorted(report["flops"].items(), key=lambda kv: int(kv[0])):
        console.print(
            f"FLOPs per image at {k} task(s): {f['per_image'] / 1e6:.1f} M = {k} sub-network(s) × "
            f"{f['per_task'][0] / 1e6:.1f} M + routing {f['routing']} (the model runs every sub-network; "
            "2 FLOPs per MAC, convs + heads)",
            highlight=False,
        )
    table = Table(
        title="latency per batch (host latency: preprocessed batch in, outputs out)",
        title_justify="left",
        pad_edge=False,
    )
    cols = [
        ("backend", "left"),
        ("variant", "left"),
        ("prec", "left"),
        ("tasks", "right"),
        ("batch", "right"),
        ("p50 ms", "right"),
        ("p90 ms", "right"),
        ("p99 ms", "right"),
        ("ms/img", "right"),
        ("img/s", "right"),
        ("roofline", "right"),
        ("agree", "right"),
        ("peak RSS MB", "right"),
        ("start ms", "right"),
        ("model MB", "right"),
        ("CV", "right"),
    ]
    tele = report.get("telemetry")
    if tele:
        cols += [("W", "right"), ("mJ/img", "right")]
    # a narrow terminal keeps the columns that answer "how fast" (all of them are in the JSON)
    narrow = getattr(console, "width", 200) < 150
    keep = [
        i
        for i, (name, _) in enumerate(cols)
        if not narrow or name not in ("p90 ms", "ms/img", "start ms", "model MB", "CV", "prec")
    ]
    for i in keep:
        table.add_column(cols[i][0], justify=cols[i][1], overflow="fold")
    unavailable: dict[tuple, list[int]] = {}
    for r in report["results"]:
        if r["status"] != "ok":
            unavailable.setdefault((r["backend"], r["status"], r.get("reason") or ""), []).append(r["tasks"])
            continue
        cv = f"{r['cv']:.1%}"
        cells = [
            r["backend"],
            _variant_cell(r),
            _prec_cell(r),
            str(r["tasks"]),
            str(r["batch"]),
            f"{r['p50_ms']:.2f}",
            f"{r['p90_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['ms_per_image']:.3f}",
            f"{r['throughput_ips']:.1f}",
            _fmt(r["roofline_fraction"], ".2f"),
            _agree_cell(r),
            f"{r['peak_rss_mb']:.0f}",
            f"{r['start_ms']:.0f}",
            f"{r['model_bytes'] / 1e6:.2f}",
            f"[yellow]{cv}[/]" if r["noisy"] else cv,
        ]
        if tele:
            cells += [_fmt(r.get("power_w"), ".2f"), _fmt(r.get("energy_mj_per_image"), ".3g")]
        table.add_row(*[cells[i] for i in keep])
    if table.row_count:
        console.print(table)
    if tele:
        idle = tele.get("idle") or {}
        console.print(
            f"power: tegrastats {tele.get('power_rail') or '(no power rail)'} every {tele['interval_ms']} ms; "
            f"W and mJ/img = mean module power over each row's timed loop ({tele['n_samples']} samples in all); "
            f"idle {_fmt(idle.get('power_w'), '.2f')} W over {_fmt(idle.get('seconds'), '.1f')} s "
            f"({idle.get('n_samples', 0)} samples); energy above idle in the JSON",
            highlight=False,
            soft_wrap=True,
        )
    for (name, status, reason), tasks in unavailable.items():
        console.print(
            f"[yellow]{m(name)}: {m(status)}[/] ({', '.join(str(t) for t in sorted(set(tasks)))} task(s)): {m(reason)}",
            highlight=False,
            soft_wrap=True,
        )
    if any(r.get("agreement_with_ort") for r in report["results"] if r["status"] == "ok"):
        console.print(
            "agree: label / task agreement with ort fp32 (the reference row, 'ref') on the probe batch "
            "(an INT8 bundle's first 32 calibration images, a bundle's probe batch, else seeded random inputs); "
            "the export's validation.json holds the "
            "agreement on the test split",
            highlight=False,
            soft_wrap=True,
        )
    _speedups(report, console)
    for fit in report.get("linearity", []):
        if fit.get("r2") is None:
            console.print(
                f"{fit['backend']} {fit['variant']} batch {fit['batch']}: p50 {fit['p50_ms'][0]:.2f} → "
                f"{fit['p50_ms'][-1]:.2f} ms from {fit['tasks'][0]} to {fit['tasks'][-1]} tasks, "
                f"{fit['ms_per_task']:.2f} ms per task (a line through 2 points, not a fit: sweep 3 or more "
                "task counts for R²)",
                highlight=False,
            )
            continue
        console.print(
            f"{fit['backend']} {fit['variant']} batch {fit['batch']}: p50 ≈ {fit['intercept_ms']:.2f} ms + "
            f"{fit['ms_per_task']:.2f} ms × tasks (R² {fit['r2']:.3f}; tasks {fit['tasks']})",
            highlight=False,
        )
    for w in report.get("warnings", []):
        if " unavailable: " in w or " failed: " in w:
            continue  # printed under the table
        console.print(f"[yellow]warning:[/] {m(w)}", highlight=False, soft_wrap=True)


def _speedups(report: Mapping[str, Any], console) -> None:
    ok = [r for r in report["results"] if r["status"] == "ok"]
    ort: dict[tuple, Mapping[str, Any]] = {}
    for r in ok:
        if r["backend"] == "ort":
            ort.setdefault((r["tasks"], r["batch"]), r)  # the first (default) graph variant
    seen = set()
    for r in ok:
        base = ort.get((r["tasks"], r["batch"]))
        if r["backend"] == "ort" or base is None:
            continue
        key = (r["backend"], r["tasks"], r["batch"])
        if key in seen:
            continue
        seen.add(key)
        console.print(
            f"speed-up of ort ({base['variant']}) over {r['backend']} at {r['tasks']} task(s), batch {r['batch']}: "
            f"{r['p50_ms'] / base['p50_ms']:.2f}× (p50 {base['p50_ms']:.2f} vs {r['p50_ms']:.2f} ms)",
            highlight=False,
        )
