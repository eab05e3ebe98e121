"""The benchmark report: result rows (roofline, agreement with ``ort``, noise warnings), the task-count
line, the JSON file and the PNG plot."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mind_edge.errors import ConfigError, require
from mind_edge.fileio import atomic_write_json
from mind_edge.runtime.bench.power import TELEMETRY_FIELDS
from mind_edge.runtime.bench.stats import CV_WARN, linear_fit

EMPTY = (
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "throughput_ips",
    "peak_rss_mb",
    "roofline_fraction",
    *TELEMETRY_FIELDS,
)


def agreement(probe: Mapping[str, Any] | None, ref: Mapping[str, Any] | None) -> dict | None:
    """Label/task agreement and max |Δ task_logits| of a backend's probe outputs with the reference's."""
    if not probe or not ref:
        return None
    a, b = np.asarray(probe["task_logits"], np.float32), np.asarray(ref["task_logits"], np.float32)
    if a.shape != b.shape:
        return None
    return {
        "label": float(np.mean(np.asarray(probe["label"]) == np.asarray(ref["label"]))),
        "task": float(np.mean(np.asarray(probe["task"]) == np.asarray(ref["task"]))),
        "max_abs_task_logits": float(np.abs(a - b).max()),
        "count": int(a.shape[0]),
    }


def result_rows(
    workers: Sequence[dict],
    batches: Sequence[int],
    threads: int,
    peak_gflops: float | None,
    peaks: Mapping[str, float | None] | None = None,
) -> tuple[list[dict], list[str]]:
    """One row per worker result and batch size (``_window`` kept for the telemetry), and the warnings."""
    results, warnings, noisy = [], [], []
    peaks = dict(peaks or {"fp32": peak_gflops})
    ort_probe: dict[int, Any] = {}
    reference: dict[int, int] = {}
    for i, w in enumerate(workers):  # the first ok ort FP32 row of each task count (the default graph) is the reference
        k = w["source"].num_tasks
        if w["backend"] == "ort" and w.get("status") == "ok" and w["source"].precision == "fp32" and k not in ort_probe:
            ort_probe[k] = w.get("probe")
            reference[k] = i
    for i, w in enumerate(workers):
        src = w["source"]
        base = {
            "backend": w["backend"],
            "variant": w.get("variant") or src.variant,
            "tasks": src.num_tasks,
            "status": w["status"],
            "precision": w.get("precision") or src.precision,
        }
        if w["status"] != "ok":
            what = w["backend"] if src.precision == "fp32" else f"{w['backend']} {src.precision}"
            warnings.append(f"{what} ({src.num_tasks} tasks) {w['status']}: {w.get('reason')}")
            for b in sorted(batches):
                results.append({**base, "batch": b, "reason": w.get("reason"), **dict.fromkeys(EMPTY)})
            continue
        flops = int(src.flops.get("per_image", 0)) or None
        is_ref = reference.get(src.num_tasks) == i
        agree = None if is_ref else agreement(w.get("probe"), ort_probe.get(src.num_tasks))
        compute = w.get("compute_precision") or w.get("precision") or "fp32"
        # the peak of the precision the row computes in; no FP16 GEMM peak is measured (FP16 graphs compute
        # in FP32 on ONNX Runtime's CPU provider), so FP16 compute is set against the FP32 peak
        peak_row = peaks.get(compute) if compute in ("bf16", "int8") else peaks.get("fp32", peak_gflops)
        for r in w["rows"]:
            achieved = flops * r["throughput_ips"] / 1e9 if flops else None
            row = {
                **base,
                "mode": r.get("mode"),
                "batch": r["batch"],
                "chunk": r.get("chunk"),
                "p50_ms": r["p50_ms"],
                "p90_ms": r["p90_ms"],
                "p95_ms": r["p95_ms"],
                "p99_ms": r["p99_ms"],
                "mean_ms": r["mean_ms"],
                "std_ms": r["std_ms"],
                "min_ms": r["min_ms"],
                "max_ms": r["max_ms"],
                "cv": r["cv"],
                "noisy": r["noisy"],
                "iterations": r["iterations"],
                "timed_s": r["wall_s"],
                "warmup_iterations": r["warmup_iterations"],
                "throughput_ips": r["throughput_ips"],
                "ms_per_image": r["p50_ms"] / r["batch"],
                "peak_rss_mb": r["peak_rss_mb"],
                "rss_before_open_mb": w.get("rss_before_open_mb"),
                "start_ms": w["start_s"] * 1e3,
                "model_bytes": w["model_bytes"],
                "providers": w.get("providers"),
                "precision": w.get("precision"),
                "compute_precision": compute,
                "threads": threads,
                "notes": w.get("notes", ""),
                "flops_per_image": flops,
                "achieved_gflops": achieved,
                "roofline_peak_gflops": peak_row,
                "roofline_fraction": achieved / peak_row if achieved and peak_row else None,
                "agreement_with_ort": agree,
                "agreement_reference": is_ref,
                **dict.fromkeys(TELEMETRY_FIELDS),  # filled by --monitor
                "_window": r.get("window_monotonic"),  # dropped from the report
            }
            results.append(row)
            if r["noisy"]:
                noisy.append(f"{w['backend']} {row['variant']} t={src.num_tasks} b={r['batch']} ({r['cv']:.0%})")
        if agree is not None and (agree["label"] < 1.0 or agree["task"] < 1.0):
            warnings.append(
                f"{w['backend']} {w.get('variant') or src.variant} ({src.num_tasks} tasks) disagrees with "
                f"ort fp32 on the probe batch: label {agree['label']:.0%}, task {agree['task']:.0%}, "
                f"max |Δ task_logits| {agree['max_abs_task_logits']:.2e}"
            )
    if noisy:
        more = f"; +{len(noisy) - 6} more (each row has cv and noisy in the JSON)" if len(noisy) > 6 else ""
        warnings.append(
            f"noisy timing (coefficient of variation > {CV_WARN:.0%}) in {len(noisy)} of {len(results)} "
            f"rows: {'; '.join(noisy[:6])}{more}. Other processes were probably running: check `uptime`, "
            "quote p50 and repeat on a quiet machine"
        )
    return results, warnings


def linearity(results: Sequence[dict]) -> list[dict]:
    """Per backend, variant and batch: p50 latency vs number of tasks, least-squares line."""
    groups: dict[tuple, list[tuple[int, float]]] = {}
    for r in results:
        if r.get("status") == "ok":
            groups.setdefault((r["backend"], r["variant"], r["batch"]), []).append((r["tasks"], r["p50_ms"]))
    out = []
    for (backend, variant, batch), pts in sorted(groups.items()):
        xs = sorted({t for t, _ in pts})
        if len(xs) < 2:
            continue
        fit = linear_fit([t for t, _ in pts], [v for _, v in pts])
        # two task counts determine a line exactly: R² is 1 by construction, not evidence of linearity
        out.append(
            {
                "backend": backend,
                "variant": variant,
                "batch": batch,
                "tasks": [t for t, _ in sorted(pts)],
                "p50_ms": [v for _, v in sorted(pts)],
                "ms_per_task": fit["slope"],
                "intercept_ms": fit["intercept"],
                "r2": fit["r2"] if len(xs) >= 3 else None,
                "is_fit": len(xs) >= 3,
            }
        )
    return out


def write_json(report: Mapping[str, Any], path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, report)
    return path


def _label(backend: str, variant: str) -> str:
    if backend == "ort":
        return f"ort {variant}"
    return f"{backend}, {variant.split(', ', 1)[1]}" if ", chunks of" in variant else backend


def plot_report(report: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """PNG with three panels: ``ort`` p50 latency vs number of tasks (linear axes: the growth is
    linear), every backend's p50 vs tasks (log scale) and p50 per image vs batch size."""
    require("matplotlib", "train", "plotting benchmark results (--plot)").use("Agg")
    plt = require("matplotlib.pyplot", "train", "plotting benchmark results (--plot)")
    ok = [r for r in report["results"] if r.get("status") == "ok"]
    if not ok:
        raise ConfigError("no successful benchmark row to plot")
    fig, (ax0, ax1, ax2) = plt.subplots(1, 3, figsize=(16, 4.8))
    series: dict[tuple, list[tuple[int, float]]] = {}
    for r in ok:
        series.setdefault((r["backend"], r["variant"], r["batch"]), []).append((r["tasks"], r["p50_ms"]))
    swept = {k: v for k, v in series.items() if len(v) > 1}  # variants measured at one task count only go to panel 3
    for (backend, variant, batch), pts in sorted((swept or series).items()):
        pts.sort()
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        ax1.plot(xs, ys, marker="o", label=f"{_label(backend, variant)} b={batch}")
        if backend == "ort":
            ax0.plot(xs, ys, marker="o", label=f"{_label(backend, variant)} b={batch}")
    ax0.set_title("ort: latency vs tasks (linear axes)")
    ax0.set_ylim(bottom=0)
    ax1.set_yscale("log")
    ax1.set_title("every backend: latency vs tasks")
    for ax in (ax0, ax1):
        ax.set_xlabel("tasks (sub-networks run per image)")
        ax.set_ylabel("p50 latency per batch (ms)")
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    top = max(r["tasks"] for r in ok)
    by_backend: dict[tuple, list[tuple[int, float]]] = {}
    for r in ok:
        if r["tasks"] == top:
            by_backend.setdefault((r["backend"], r["variant"]), []).append((r["batch"], r["p50_ms"] / r["batch"]))
    for (backend, variant), pts in sorted(by_backend.items()):
        pts.sort()
        ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=_label(backend, variant))
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("batch size")
    ax2.set_ylabel("p50 latency per image (ms)")
    ax2.set_title(f"latency per image vs batch ({top} tasks)")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=7)
    ctx = report.get("context", {})
    fig.suptitle(
        f"{report.get('model', {}).get('description', 'model')} — {ctx.get('cpu_model', '')}, "
        f"{ctx.get('threads')} thread(s)",
        fontsize=9,
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
