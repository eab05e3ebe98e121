"""Latency of the MIND graph on this machine: ONNX Runtime vs PyTorch vs the reference loop vs the roofline.

    python benchmarks/latency.py [--json benchmarks/results/latency-resnet32-10.json]
                                 [--plot benchmarks/results/latency-resnet32-10.png]
                                 [--tasks 1,2,5,10] [--batches 1,8,64] [--threads 2]
                                 [--min-seconds 3] [--min-iters 10] [--warmup-seconds 0.2]
                                 [--no-study] [--no-profile]

One run (one GEMM peak, one machine state) of a randomly initialised ResNet-32 (width 1,
3x32x32, 10 classes per task; latency does not depend on the weight values):

1. **main table** at the largest task count: ``ort`` (the exported shared graph, the default),
   ``torch`` (best eager PyTorch: the faster of ``torch-loop``/``torch-stacked`` per batch),
   ``reference`` (the reference test loop) and ``trt`` (reported as unavailable without
   TensorRT), every batch size;
2. **task sweep**: ``ort``, ``torch`` and ``reference`` at every task count (latency vs N);
3. **layout study** (``--no-study`` skips it) at the largest task count: the ``folded`` layout, the
   shared layout with the literal Slice+Pad shortcuts (``shared/pad``, the graph before this
   work), ``ort-split`` (N separate single-task graphs run one after another), both torch forms,
   ``ort`` running each batch whole (``sub_batch=0``; the default ``ort`` row runs sub-batches of 8
   on the CPU) and ``torch`` with every batch run as sub-batches of 8 images (``chunk``);
4. **ORT session options** (part of the study): ``enable_mem_pattern`` on/off x sub-batches of 8,
   raw ONNX Runtime sessions in fresh processes: peak RSS and p50;
5. **ORT profile** (``--no-profile`` skips it): per-op and per-stage kernel times and conv GFLOP/s
   of the default graph at the smallest and largest batch (``SessionOptions.enable_profiling``).

Every backend runs in its own fresh process (clean peak RSS). Prints the tables and writes the
report as JSON (``results``: one row per backend x variant x tasks x batch) and a PNG.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from mind_edge.cli.runtime import render_bench as render
from mind_edge.core.proc import thread_env
from mind_edge.runtime import bench

RESULTS = Path(__file__).resolve().parent / "results"
STAGES = {
    "stage 1 (16 ch/task, 32x32)": range(0, 5),
    "stage 2 (32 ch/task, 16x16)": range(5, 10),
    "stage 3 (64 ch/task, 8x8)": range(10, 15),
}


SESSION_PROBE = r"""
import json, sys, time, numpy as np, onnxruntime as ort
from mind_edge.runtime.bench import TimingConfig, peak_rss_mb, summarize, time_loop
path, pattern, chunk, threads = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), int(sys.argv[4])
timing = TimingConfig(*json.loads(sys.argv[5]))
o = ort.SessionOptions(); o.intra_op_num_threads = threads; o.inter_op_num_threads = 1; o.enable_mem_pattern = pattern
t0 = time.perf_counter(); s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
out = {"enable_mem_pattern": pattern, "chunk": chunk or None, "start_ms": (time.perf_counter() - t0) * 1e3,
       "rss_after_session_mb": peak_rss_mb(), "rows": []}
for b in json.loads(sys.argv[6]):
    x = np.random.default_rng(b).standard_normal((b, 3, 32, 32)).astype(np.float32)
    c = min(chunk or b, b)
    t = time_loop(lambda: [s.run(None, {"image": x[i:i + c]}) for i in range(0, b, c)], timing)
    st = summarize(t.latencies_s, b, t.wall_s)
    out["rows"].append({"batch": b, "p50_ms": st.p50_ms, "cv": st.cv, "throughput_ips": st.throughput_ips,
                        "peak_rss_mb": peak_rss_mb()})
print(json.dumps(out))
"""


def session_options_study(onnx_path: str, threads: int, timing: bench.TimingConfig, batches) -> list[dict]:
    """Raw ORT sessions (fresh process each): enable_mem_pattern on/off x whole batch / sub-batches of 8."""
    rows = []
    for pattern, chunk in ((1, 0), (0, 0), (1, 8), (0, 8)):
        args = [
            sys.executable,
            "-c",
            SESSION_PROBE,
            onnx_path,
            str(pattern),
            str(chunk),
            str(threads),
            json.dumps([timing.warmup_seconds, timing.min_iters, timing.min_seconds]),
            json.dumps(list(batches)),
        ]
        proc = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **thread_env(threads)})
        if proc.returncode == 0:
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        else:
            rows.append({"enable_mem_pattern": bool(pattern), "chunk": chunk or None, "error": proc.stderr[-500:]})
    return rows


TARGETS = (  # issue 4: ResNet-32, 10 tasks, 3x32x32 on the 2-core development CPU
    ("ort roofline fraction at batch 64", ">=", 0.75),
    ("ort roofline fraction at batch 1", ">=", 0.50),
    ("ort speed-up over torch at batch 1", ">=", 4.0),
    ("ort speed-up over torch at batch 64", ">=", 2.0),
    ("ort speed-up over reference at batch 1", None, None),
    ("ort speed-up over reference at batch 64", None, None),
    ("ort peak RSS (MB, any batch)", "<", 250.0),
    ("ort latency linear in tasks (min R^2 of the fits)", ">=", 0.99),
)


def _rows(report: dict, backend: str, variant: str | None = None) -> dict[tuple[int, int], dict]:
    """First ok row per (tasks, batch) of ``backend`` (and ``variant`` when given)."""
    out: dict[tuple[int, int], dict] = {}
    for r in report["results"]:
        if r["status"] == "ok" and r["backend"] == backend and (variant is None or r["variant"] == variant):
            out.setdefault((r["tasks"], r["batch"]), r)
    return out


def check_targets(report: dict) -> list[dict]:
    """The issue's targets, measured on this run's rows (the default ``ort`` row at the top task count)."""
    top = max(r["tasks"] for r in report["results"])
    ort, torch_, ref = _rows(report, "ort", "shared"), _rows(report, "torch"), _rows(report, "reference")
    batches = sorted(b for t, b in ort if t == top)
    lo, hi = min(batches), max(batches)

    def ratio(base, other, b):
        return other[(top, b)]["p50_ms"] / base[(top, b)]["p50_ms"] if (top, b) in other and (top, b) in base else None

    fits = [f["r2"] for f in report.get("linearity", []) if f["backend"] == "ort"]
    values = [
        ort[(top, hi)]["roofline_fraction"],
        ort[(top, lo)]["roofline_fraction"],
        ratio(ort, torch_, lo),
        ratio(ort, torch_, hi),
        ratio(ort, ref, lo),
        ratio(ort, ref, hi),
        max(ort[(top, b)]["peak_rss_mb"] for b in batches),
        min(fits) if fits else None,
    ]
    out = []
    for (name, op, target), v in zip(TARGETS, values):
        name = name.replace("batch 64", f"batch {hi}").replace("batch 1", f"batch {lo}")
        ok = None if op is None or v is None else (v >= target if op == ">=" else v < target)
        out.append({"target": name, "op": op, "value": v, "threshold": target, "met": ok, "tasks": top})
    return out


def write_markdown(report: dict, path: Path) -> Path:
    """benchmarks/LATENCY.md: the run's context, the main table, the sweep, the study and the targets."""
    from mind_edge.fileio import atomic_write_text

    ctx, gemm = report["context"], report["gemm"]
    v = ctx["versions"]
    top = max(r["tasks"] for r in report["results"])
    L = [
        "# Latency: ResNet-32, 3x32x32, 10 classes per task",
        "",
        f"Generated by `{report['command']}` on {report.get('created', '?')} ({report['seconds']:.0f} s). "
        "Host latency: a preprocessed float32 batch in, every output out; p50 over >= "
        f"{report['settings']['timing']['min_iters']} iterations and >= "
        f"{report['settings']['timing']['min_seconds']} s "
        "after a time-based warm-up; each backend in a fresh process.",
        "",
        f"- CPU: {ctx['cpu_model']}, {ctx['available_cpus']} CPU(s) available, {ctx['threads']} thread(s); "
        f"load average {ctx.get('load_average_start')} → {ctx.get('load_average_end')}",
        f"- versions: python {v.get('python')}, onnxruntime {v.get('onnxruntime')}, torch {v.get('torch')}, "
        f"numpy {v.get('numpy')}, tensorrt {v.get('tensorrt') or 'not installed'}",
        f"- roofline: GEMM peak {gemm['peak_gflops']:.1f} GFLOP/s (ONNX Runtime MLAS SGEMM, same threads, best of the "
        "runs before and after the backends); FLOPs per image = N sub-networks × "
        f"{report['flops'][str(top)]['per_task'][0] / 1e6:.1f} MFLOP + routing",
        "",
    ]
    L += ["## Targets (issue 4)", "", "| target | measured | threshold | met |", "|---|---|---|---|"]
    for t in report["targets"]:
        val = "—" if t["value"] is None else f"{t['value']:.3g}"
        thr = "(reported)" if t["op"] is None else f"{t['op']} {t['threshold']:g}"
        met = "—" if t["met"] is None else ("yes" if t["met"] else "**no**")
        L.append(f"| {t['target']} ({t['tasks']} tasks) | {val} | {thr} | {met} |")

    def table(rows, title):
        L.extend(
            [
                "",
                f"## {title}",
                "",
                "| backend | variant / mode | tasks | batch | p50 ms | p90 ms | p99 ms | img/s | roofline "
                "| peak RSS MB | start ms | CV |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|",
            ]
        )
        for r in rows:
            mode = r["variant"] + (f" ({r['mode']})" if r.get("mode") and r["mode"] not in r["variant"] else "")
            L.append(
                f"| {r['backend']} | {mode} | {r['tasks']} | {r['batch']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
                f"{r['p99_ms']:.2f} | {r['throughput_ips']:.0f} | {r['roofline_fraction']:.2f} | "
                f"{r['peak_rss_mb']:.0f} | {r['start_ms']:.0f} | {r['cv']:.1%} |"
            )

    ok = [r for r in report["results"] if r["status"] == "ok"]
    n_sweep = len({r["tasks"] for r in ok})
    main: list[dict] = []
    seen = set()
    for r in ok:  # the first ort/torch/reference row per batch at the top task count (the main table)
        key = (r["backend"], r["batch"])
        if r["tasks"] == top and r["backend"] in ("ort", "torch", "reference") and key not in seen:
            seen.add(key)
            main.append(r)
    table(main, f"Main table: {top} tasks")
    unavailable = sorted({f"{r['backend']}: {r.get('reason')}" for r in report["results"] if r["status"] != "ok"})
    if unavailable:
        L.extend([""] + [f"- unavailable — {u}" for u in unavailable])
    if n_sweep > 1:
        L.extend(
            [
                "",
                "## Latency vs number of tasks (p50 ms; least-squares line)",
                "",
                "| backend | batch | "
                + " | ".join(f"{k} tasks" for k in sorted({r["tasks"] for r in ok}))
                + " | ms per task | intercept ms | R² |",
                "|---|---|" + "---|" * (n_sweep + 3),
            ]
        )
        for f in report.get("linearity", []):
            L.append(
                f"| {f['backend']} | {f['batch']} | "
                + " | ".join(f"{p:.2f}" for p in f["p50_ms"])
                + f" | {f['ms_per_task']:.3f} | {f['intercept_ms']:.2f} | {f['r2']:.4f} |"
            )
    study = [r for r in ok if r["tasks"] == top and r not in main]
    if study:
        table(study, f"Layout and execution study ({top} tasks)")
    sess = report.get("session_options", {}).get("runs", [])
    if sess:
        L.extend(
            [
                "",
                "## ONNX Runtime session options (raw sessions, fresh process each)",
                "",
                "| enable_mem_pattern | sub-batches | start ms | "
                + " | ".join(f"b{x['batch']} p50 ms / peak RSS MB" for x in sess[0].get("rows", []))
                + " |",
                "|---|---|---|" + "---|" * len(sess[0].get("rows", [])),
            ]
        )
        for r in sess:
            if "rows" in r:
                L.append(
                    f"| {r['enable_mem_pattern']} | {r['chunk'] or 'whole batch'} | {r['start_ms']:.0f} | "
                    + " | ".join(f"{x['p50_ms']:.1f} / {x['peak_rss_mb']:.0f}" for x in r["rows"])
                    + " |"
                )
    for p in report.get("profile", {}).get("runs", []):
        L.extend(
            [
                "",
                f"## ORT profile, batch {p['batch']} (sum of node medians {p['sum_of_node_medians_ms']:.2f} ms, "
                f"conv {p['conv_gflops']:.1f} GFLOP/s)",
                "",
                "| op | share |",
                "|---|---|",
            ]
            + [f"| {k} | {v:.1%} |" for k, v in list(p["ops_share"].items())[:6]]
        )
        L.extend(
            ["", "| stage | convs | MFLOP | ms | GFLOP/s |", "|---|---|---|---|---|"]
            + [
                f"| {g} | {d['convs']} | {d['mflops']:.1f} | {d['ms']:.3f} | {d['gflops']:.1f} |"
                for g, d in p["conv_groups"].items()
            ]
        )
    if report.get("warnings"):
        L.extend(["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]])
    return atomic_write_text(path, "\n".join(L) + "\n")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=RESULTS / "latency-resnet32-10.json")
    ap.add_argument("--plot", type=Path, default=RESULTS / "latency-resnet32-10.png")
    ap.add_argument(
        "--markdown",
        type=Path,
        default=RESULTS.parent / "LATENCY.md",
        help="tables and the issue's targets as Markdown",
    )
    ap.add_argument("--tasks", default="1,2,5,10")
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--threads", type=int, default=None, help="default: every available CPU")
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--min-iters", type=int, default=10)
    ap.add_argument("--warmup-seconds", type=float, default=0.2)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--no-study", action="store_true", help="skip the layout study")
    ap.add_argument("--no-profile", action="store_true", help="skip the ORT per-op profile")
    ap.add_argument("--sweep-backends", default="ort,torch,reference")
    ap.add_argument("--main-backends", default="ort,torch,reference,trt")
    args = ap.parse_args(argv)

    console = Console()
    tasks = sorted(set(_ints(args.tasks)))
    top = max(tasks)
    timing = bench.TimingConfig(
        warmup_seconds=args.warmup_seconds, min_iters=args.min_iters, min_seconds=args.min_seconds
    )
    main_backends = [b for b in args.main_backends.split(",") if b]
    sweep_backends = [b for b in args.sweep_backends.split(",") if b]
    study = not args.no_study
    variants = [bench.GraphVariant("shared")] + (
        [bench.GraphVariant("folded"), bench.GraphVariant("shared", "pad")] if study else []
    )
    backends = tuple(
        dict.fromkeys(main_backends + sweep_backends + (["ort-split", "torch-loop", "torch-stacked"] if study else []))
    )
    spec = bench.BenchSpec(backends=backends, batches=_ints(args.batches), threads=args.threads, timing=timing)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mind-edge-latency-") as tmp:
        work = Path(tmp)
        console.print(
            f"[bold]preparing ResNet-32 width {args.width:g}, tasks {tasks} …[/] (load {bench.load_average()})"
        )
        sources, info = bench.synthetic_sources(
            work,
            arch="resnet32",
            input_shape=(3, 32, 32),
            tasks=tasks,
            width=args.width,
            classes_per_task=10,
            variants=variants,
            backends=backends,
        )
        by = {(s.num_tasks, s.variant): s for s in sources}
        jobs: list[tuple[str, bench.ModelSource]] = []
        for k in tasks:  # the sweep, task count by task count (the main table is its last step)
            names = sweep_backends + ([b for b in main_backends if b not in sweep_backends] if k == top else [])
            jobs += [(b, by[(k, "shared")]) for b in names]
        if study:
            shared = by[(top, "shared")]
            jobs += [("ort", by[(top, v.name)]) for v in variants[1:]] + [("ort-split", shared)]
            jobs += [("torch-loop", shared), ("torch-stacked", shared)]
            jobs += [("ort", shared, {"sub_batch": 0}), ("torch", shared, {"chunk": 8})]
        report = bench.run_benchmark(
            spec,
            sources,
            workdir=work,
            model_info=info,
            jobs=jobs,
            progress=lambda m: console.print(f"  {time.perf_counter() - t0:6.0f} s  {m}", highlight=False),
        )
        if study:
            console.print("  ORT session options (enable_mem_pattern x sub-batches) …")
            report["session_options"] = {
                "note": "raw onnxruntime sessions, fresh process each, same graph (shared, top task count)",
                "runs": session_options_study(by[(top, "shared")].onnx, spec.n_threads, timing, spec.batches),
            }
        if not args.no_profile:
            profiles = []
            for b in (min(spec.batches), max(spec.batches)):
                console.print(f"  profiling ort at batch {b} …")
                profiles.append(
                    bench.profile_ort(
                        by[(top, "shared")].onnx,
                        b,
                        threads=spec.n_threads,
                        input_shape=(3, 32, 32),
                        runs=10 if b > 8 else 50,
                        stages=STAGES,
                    )
                )
            report["profile"] = {"variant": "shared", "tasks": top, "runs": profiles}
    report["command"] = "python benchmarks/latency.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report["seconds"] = time.perf_counter() - t0
    report["targets"] = check_targets(report)
    render(report, console)
    for p in report.get("profile", {}).get("runs", []):
        ops = ", ".join(f"{k} {v:.1%}" for k, v in list(p["ops_share"].items())[:4])
        console.print(
            f"profile batch {p['batch']}: sum of node medians {p['sum_of_node_medians_ms']:.2f} ms; {ops}; "
            f"conv {p['conv_gflops']:.1f} GFLOP/s",
            highlight=False,
        )
        for g, d in p["conv_groups"].items():
            console.print(
                f"    {g:30s} {d['convs']:2d} convs {d['mflops']:9.1f} MFLOP {d['ms']:8.3f} ms "
                f"{d['gflops']:6.1f} GFLOP/s",
                highlight=False,
            )
    for r in report.get("session_options", {}).get("runs", []):
        if "rows" in r:
            console.print(
                f"session enable_mem_pattern={r['enable_mem_pattern']} chunk={r['chunk']}: start "
                f"{r['start_ms']:.0f} ms; "
                + "; ".join(
                    f"b{x['batch']} p50 {x['p50_ms']:.1f} ms peak RSS {x['peak_rss_mb']:.0f} MB" for x in r["rows"]
                ),
                highlight=False,
            )
    for t in report["targets"]:
        verdict = "—" if t["met"] is None else ("met" if t["met"] else "NOT met")
        console.print(
            f"target: {t['target']}: {t['value'] if t['value'] is None else round(t['value'], 3)} "
            f"{'' if t['op'] is None else t['op'] + ' ' + format(t['threshold'], 'g')} → {verdict}",
            highlight=False,
        )
    console.print(f"JSON: {bench.write_json(report, args.json)}")
    console.print(f"Markdown: {write_markdown(report, args.markdown)}")
    console.print(f"plot: {bench.plot_report(report, args.plot)}")
    console.print(f"total {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
