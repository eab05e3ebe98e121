"""FP32 / FP16 / BF16 / INT8 side by side on this machine (issue 14), with OpenVINO as the peer.

    python benchmarks/precision.py [--run RUN_DIR] [--tasks 10] [--batches 1,64] [--threads 2]
                                   [--min-seconds 3] [--min-iters 10] [--calibration 256]
                                   [--samples 1000] [--no-openvino] [--json benchmarks/results/precision.json]

1. **Random weights** (timing does not depend on the weight values): a ResNet-32 (width 1,
   3x32x32, 10 classes per task) with ``--tasks`` tasks; its FP16 graph and its INT8 graph
   (calibrated on 64 standard-normal inputs, the distribution the timing inputs come from).
2. **A trained run** (``--run``): ``mind-edge export --precision fp32|fp16|int8`` of it (INT8
   calibrated on ``--calibration`` training images; validation against the FP32 PyTorch model on
   ``--samples`` test images gives TAG, TAW, routing and label agreement, max |Δ task_logits|), then
   the same benchmark on the INT8 bundle (its own model.onnx; FP32/FP16 rebuilt from its master).

Every row is one ``mind-edge bench`` row (fresh worker process per backend, time-based warm-up,
p50 over >= --min-iters iterations and >= --min-seconds; throughput = images / wall time), all
rows of a model in one run: ONNX Runtime fp32 (the reference), fp16 (computed in FP32 by the CPU
provider), int8 (the per-task QDQ graph), and OpenVINO with its default (BF16 on CPUs with
AVX-512 BF16 / AMX), forced f32 and on the INT8 graph. The roofline column uses the peak of the
precision the row computes in (FP32: ORT SGEMM; INT8: ORT MatMulInteger U8S8; BF16: OpenVINO
MatMul). Prints the tables, the issue's targets and writes the report as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mind_edge.cli.runtime import render_bench as render
from mind_edge.runtime import bench

RESULTS = Path(__file__).resolve().parent / "results"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _row(results, backend, precision, batch, tasks, variant=None):
    for r in results:
        if (r["backend"], r.get("precision"), r["batch"], r["tasks"], r["status"]) == (
            backend,
            precision,
            batch,
            tasks,
            "ok",
        ) and (variant is None or r["variant"] == variant):
            return r
    return None


def summary_rows(report: dict, sizes: dict[str, int] | None = None, accuracy: dict | None = None) -> list[dict]:
    """One line per (backend, precision): size, p50 at each batch, img/s at the largest, speed-ups vs ort fp32."""
    res = report["results"]
    tasks = max(r["tasks"] for r in res)
    batches = sorted({r["batch"] for r in res})
    out = []
    keys = []
    for r in res:
        k = (r["backend"], r.get("precision"), r["variant"])
        if r["status"] == "ok" and k not in keys:
            keys.append(k)
    for backend, precision, variant in keys:
        line = {"backend": backend, "precision": precision, "tasks": tasks}
        if variant.startswith("int8 stacked"):
            line["precision"] = "int8 (stacked)"
        for b in batches:
            r = _row(res, backend, precision, b, tasks, variant)
            ref = _row(res, "ort", "fp32", b, tasks)
            if r is None:
                continue
            line[f"p50_ms_b{b}"] = r["p50_ms"]
            line[f"img_s_b{b}"] = r["throughput_ips"]
            line[f"cv_b{b}"] = r["cv"]
            line[f"roofline_b{b}"] = r["roofline_fraction"]
            line["compute_precision"] = r.get("compute_precision")
            line["model_bytes"] = r["model_bytes"]
            line["variant"] = r["variant"]
            if ref is not None:
                line[f"speedup_p50_b{b}"] = ref["p50_ms"] / r["p50_ms"]
                line[f"speedup_img_s_b{b}"] = r["throughput_ips"] / ref["throughput_ips"]
            a = r.get("agreement_with_ort")
            if a:
                line["probe_agreement"] = {"label": a["label"], "task": a["task"]}
        if sizes and backend == "ort" and precision in sizes:
            line["model_bytes"] = sizes[precision]
        if accuracy and backend == "ort" and precision in accuracy:
            line.update(accuracy[precision])
        out.append(line)
    return out


def stacked_int8_source(work: Path, sources):
    """The random model's INT8 graph quantized *without* splitting the tasks (grouped convolutions)."""
    from dataclasses import replace

    import numpy as np

    from mind_edge.runtime import precision as prec
    from mind_edge.runtime.graph import read_arrays

    base = next(s for s in sources if s.precision == "fp32")
    arrays = read_arrays(base.onnx)
    c, h, w = base.input_shape
    calib = np.random.default_rng(7).standard_normal((64, c, h, w)).astype(np.float32)  # synthetic_sources' draw
    stacked = prec.Int8Options(per_task=False, fp32_features=False)
    model = prec.int8_model(arrays, calib, temperature=base.temperature, options=stacked)
    path = work / "int8-stacked.onnx"
    path.write_bytes(model.SerializeToString())
    return replace(base, onnx=str(path), precision="int8", variant="int8 stacked QDQ (grouped convs)", layout="folded")


def print_summary(console: Console, title: str, rows: list[dict], batches) -> None:
    t = Table(title=title, title_justify="left")
    for c in (
        "backend",
        "precision",
        "computes",
        "model MB",
        *[f"p50 ms b{b}" for b in batches],
        f"img/s b{max(batches)}",
        *[f"× ort fp32 b{b}" for b in batches],
        "TAG",
        "routing agr.",
        "label agr.",
    ):
        t.add_column(c, justify="left" if c in ("backend", "precision", "computes") else "right")
    for r in rows:
        tag = r.get("tag")
        t.add_row(
            r["backend"],
            str(r["precision"]),
            str(r.get("compute_precision")),
            f"{r['model_bytes'] / 1e6:.2f}" if r.get("model_bytes") else "—",
            *[f"{r[f'p50_ms_b{b}']:.2f}" if f"p50_ms_b{b}" in r else "—" for b in batches],
            f"{r.get(f'img_s_b{max(batches)}', 0):.0f}",
            *[f"{r[f'speedup_p50_b{b}']:.2f}" if f"speedup_p50_b{b}" in r else "—" for b in batches],
            f"{tag:.4f}" if tag is not None else "—",
            f"{100 * r['routing_agreement']:.2f}%" if r.get("routing_agreement") is not None else "—",
            f"{100 * r['label_agreement']:.2f}%" if r.get("label_agreement") is not None else "—",
        )
    console.print(t)


def targets(rows: list[dict], batches, trained: bool) -> list[dict]:
    """The issue's must-show figures for one model."""
    by = {(r["backend"], r["precision"]): r for r in rows}
    i8, f16, ovd = by.get(("ort", "int8")), by.get(("ort", "fp16")), by.get(("openvino", "default"))
    f32 = by.get(("ort", "fp32"))
    out = []

    def add(name, value, threshold, ok):
        out.append({"target": name, "measured": value, "threshold": threshold, "met": ok})

    lo, hi = min(batches), max(batches)
    if i8:
        for b, need in ((hi, 2.0), (lo, 1.5)):
            v = i8.get(f"speedup_p50_b{b}")
            if v is not None:
                add(f"ort int8 speed-up over ort fp32 at batch {b} (p50)", round(v, 2), f">= {need}", v >= need)
        if ovd:
            for b in (lo, hi):
                if f"p50_ms_b{b}" in i8 and f"p50_ms_b{b}" in ovd:
                    v = ovd[f"p50_ms_b{b}"] / i8[f"p50_ms_b{b}"]
                    add(f"ort int8 faster than OpenVINO default at batch {b} (p50 ratio)", round(v, 2), "> 1", v > 1)
    if f16 and f32 and f16.get("model_bytes") and f32.get("model_bytes"):
        v = f16["model_bytes"] / f32["model_bytes"]
        add("fp16 model.onnx size / fp32", round(v, 3), "<= 0.55", v <= 0.55)
    if trained:
        if i8 and i8.get("routing_agreement") is not None:
            add(
                "int8 routing agreement with FP32 (test split)",
                round(i8["routing_agreement"], 4),
                ">= 0.99",
                i8["routing_agreement"] >= 0.99,
            )
            add("int8 TAG drop (points)", round(i8["tag_drop_points"], 2), "<= 1", i8["tag_drop_points"] <= 1.0)
        if f16 and f16.get("routing_agreement") is not None:
            v = min(f16["routing_agreement"], f16["label_agreement"])
            add("fp16 agreement with FP32 (test split, min of label/routing)", round(v, 4), ">= 0.995", v >= 0.995)
    return out


def print_targets(console: Console, title: str, rows: list[dict]) -> None:
    t = Table(title=title, title_justify="left")
    for c in ("target", "measured", "threshold", "met"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["target"], str(r["measured"]), r["threshold"], "yes" if r["met"] else "[bold red]no[/]")
    console.print(t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, help="a trained run directory (e.g. CIFAR-10/5) to export and benchmark too")
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--min-iters", type=int, default=10)
    ap.add_argument("--warmup-seconds", type=float, default=0.5)
    ap.add_argument("--calibration", type=int, default=256)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--no-openvino", action="store_true")
    ap.add_argument(
        "--int8-stacked",
        action="store_true",
        help="also time the INT8 graph quantized as the task-stacked grouped convolutions (why per-task chains)",
    )
    ap.add_argument("--no-random", action="store_true", help="skip the random-weights model")
    ap.add_argument("--json", type=Path, default=RESULTS / "precision.json")
    args = ap.parse_args()

    console = Console(width=200)
    batches = _ints(args.batches)
    backends = ("ort",) if args.no_openvino else ("ort", "openvino")
    timing = bench.TimingConfig(
        warmup_seconds=args.warmup_seconds, min_iters=args.min_iters, min_seconds=args.min_seconds
    )
    spec = bench.BenchSpec(
        backends=backends,
        batches=batches,
        threads=args.threads,
        timing=timing,
        precisions=("fp32", "fp16", "bf16", "int8"),
    )
    t0 = time.perf_counter()
    load0 = bench.load_average()
    doc: dict = {
        "command": "python benchmarks/precision.py " + " ".join(sys.argv[1:]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_average_start": load0,
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="mind-edge-precision-") as tmp:
        work = Path(tmp)
        if not args.no_random:
            w = work / "random"
            w.mkdir()
            sources, info = bench.synthetic_sources(
                w, arch="resnet32", input_shape=(3, 32, 32), tasks=(args.tasks,), precisions=spec.precisions
            )
            if args.int8_stacked:
                sources.append(stacked_int8_source(w, sources))
            report = bench.run_benchmark(
                spec,
                sources,
                workdir=w,
                model_info=info,
                progress=lambda m: console.print(f"[dim]{m}[/]", highlight=False),
            )
            render(report, console)
            sizes = {
                s.precision: Path(s.onnx).stat().st_size
                for s in sources
                if s.precision != "bf16" and "stacked" not in s.variant
            }
            rows = summary_rows(report, sizes)
            print_summary(console, f"random weights: {info['description']}", rows, batches)
            tg = targets(rows, batches, trained=False)
            print_targets(console, "targets (random weights, per-process bench rows)", tg)
            doc["models"]["random"] = {"info": info, "summary": rows, "targets": tg, "report": report}

        if args.run is not None:
            from mind_edge.export.exporter import export_bundle
            from mind_edge.export.quantize import PrecisionThresholds

            w = work / "trained"
            w.mkdir()
            accuracy, sizes, exports = {}, {}, {}
            loose = PrecisionThresholds(min_routing_agreement=0.0, max_tag_drop=100.0)  # measure, do not refuse
            for p in ("fp32", "fp16", "int8"):
                console.print(f"[dim]export --precision {p} …[/]")
                res = export_bundle(
                    args.run,
                    w / p,
                    precision=p,
                    max_test_samples=args.samples,
                    thresholds=loose,
                    calibration=args.calibration if p == "int8" else None,
                )
                exports[p] = res.bundle
                sizes[p] = res.model_bytes
                rep = res.report.get("precision")
                if rep:
                    accuracy[p] = {
                        k: rep.get(k)
                        for k in (
                            "tag",
                            "tag_fp32",
                            "taw",
                            "taw_fp32",
                            "routing_agreement",
                            "label_agreement",
                            "tag_drop_points",
                            "max_abs_task_logits",
                        )
                    }
                    accuracy[p]["test_images"] = rep["inputs"].get("test", {}).get("count")
            if "fp16" in accuracy:
                accuracy["fp32"] = {
                    "tag": accuracy["fp16"]["tag_fp32"],
                    "taw": accuracy["fp16"]["taw_fp32"],
                    "routing_agreement": 1.0,
                    "label_agreement": 1.0,
                }
            (w / "bench").mkdir()
            sources, info = bench.bundle_sources(
                w / "bench", exports["int8"], backends=backends, precisions=("fp32", "fp16", "bf16", "int8")
            )
            report = bench.run_benchmark(
                spec,
                sources,
                workdir=w / "bench",
                model_info=info,
                progress=lambda m: console.print(f"[dim]{m}[/]", highlight=False),
            )
            render(report, console)
            rows = summary_rows(report, sizes, accuracy)
            print_summary(console, f"trained run {args.run}: {info['description']}", rows, batches)
            tg = targets(rows, batches, trained=True)
            print_targets(console, "targets (trained run)", tg)
            doc["models"]["trained"] = {
                "run": str(args.run),
                "info": info,
                "summary": rows,
                "targets": tg,
                "accuracy": accuracy,
                "report": report,
            }
    doc["load_average_end"] = bench.load_average()
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    doc["cpu"] = bench.cpu_model()
    doc["threads"] = spec.n_threads
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    console.print(f"load average {load0} → {doc['load_average_end']}; {doc['seconds']} s; JSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
