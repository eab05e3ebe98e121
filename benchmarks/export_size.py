"""Model sizes of the export layouts, export time and fidelity of a 10-task ResNet-32.

    python benchmarks/export_size.py [--out bench-results/export_size.json] [--threads 2]
                                     [--skip-export] [--run RUN_DIR]

1. Sizes (no torch needed): ResNet-32 (width 1, 3x32x32) with 2 and 10 tasks of 10 classes,
   random weights: ``model.onnx`` bytes of the shared layout (weights once + int8 owner maps),
   the folded layout (per-task weights, BN folded), one dense fp32 sub-network, and the naive
   export of N separate sub-networks (N dense files).
2. Export time (torch + onnxruntime): ``export_model`` of a 10-task ResNet-32 with random
   owners and calibrated BN, validation included (checker, ONNX Runtime vs PyTorch on 256
   "test" + 32 random inputs), both layouts, with ``--threads`` intra-op threads for torch
   and ORT — plus its max |Δ| per output and label/task agreement.
3. ``--run RUN_DIR``: the same for a trained run directory through ``export_bundle``.

Prints rich tables and writes everything as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

NET = {"arch": "resnet32", "in_channels": 3, "input_size": [32, 32], "width": 1.0, "capacity": 10}


def sizes(tasks: list[int]) -> list[dict]:
    from mind_edge.runtime.graph import build_graph, naive_sizes, random_arrays

    rows = []
    for n in tasks:
        arrays = random_arrays(NET, [list(range(10 * t, 10 * t + 10)) for t in range(n)], seed=n)
        shared = build_graph(arrays, layout="shared", temperature=1.0).ByteSize()
        folded = build_graph(arrays, layout="folded", temperature=1.0).ByteSize()
        dense, naive = naive_sizes(arrays)
        rows.append(
            {
                "tasks": n,
                "dense_weights": arrays.dense_weight_count(),
                "shared_bytes": shared,
                "folded_bytes": folded,
                "dense_bytes": dense,
                "naive_bytes": naive,
                "shared_vs_dense": shared / dense,
                "folded_vs_dense": folded / dense,
                "naive_vs_dense": naive / dense,
            }
        )
    return rows


def export_timing(threads: int, n_tasks: int = 10) -> list[dict]:
    import numpy as np
    import torch

    from mind_edge.export.exporter import export_model
    from mind_edge.export.synthetic import random_model
    from mind_edge.nets import NetConfig

    torch.set_num_threads(threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    model = random_model(NetConfig.from_json(NET), [list(range(10 * t, 10 * t + 10)) for t in range(n_tasks)], seed=11)
    x = np.random.default_rng(0).standard_normal((256, 3, 32, 32)).astype(np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for layout in ("shared", "folded"):
            t0 = time.perf_counter()
            res = export_model(
                model,
                Path(tmp) / layout,
                class_names=[f"class{i}" for i in range(10 * n_tasks)],
                mean=[0.5071, 0.4866, 0.4409],
                std=[0.2673, 0.2564, 0.2762],
                temperature=6.5,
                layout=layout,
                validation_inputs=x,
                validation_note="256 random 'test' inputs",
            )
            rows.append(
                {
                    "layout": layout,
                    "tasks": n_tasks,
                    "seconds": time.perf_counter() - t0,
                    "validation_seconds": res.report["seconds"],
                    "model_bytes": res.model_bytes,
                    "max_abs_diff": res.report["max_abs_diff"],
                    "max_rel_diff": res.report["max_rel_diff"],
                    "agreement": res.report["agreement"],
                    "inputs": {k: v["count"] for k, v in res.report["inputs"].items()},
                }
            )
    return rows


def run_export(run_dir: str) -> list[dict]:
    from mind_edge.export.exporter import export_bundle

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for layout in ("shared", "folded"):
            t0 = time.perf_counter()
            res = export_bundle(run_dir, Path(tmp) / layout, layout=layout, max_test_samples=10_000)
            rep = res.report
            rows.append(
                {
                    "run": run_dir,
                    "layout": layout,
                    "tasks": res.num_tasks,
                    "seconds": time.perf_counter() - t0,
                    "model_bytes": res.model_bytes,
                    "dense_bytes": res.dense_bytes,
                    "naive_bytes": res.naive_bytes,
                    "max_abs_diff": rep["max_abs_diff"],
                    "max_abs_logit": rep["outputs"]["task_logits"]["test"]["max_abs_ref"],
                    "agreement": rep["agreement"],
                    "inputs": {k: v["count"] for k, v in rep["inputs"].items()},
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench-results/export_size.json")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads of torch and ONNX Runtime")
    ap.add_argument("--skip-export", action="store_true", help="sizes only (no torch needed)")
    ap.add_argument("--run", help="also export this trained run directory and report its fidelity")
    args = ap.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    console = Console()
    result: dict = {
        "context": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "net": NET,
        }
    }
    for mod in ("onnx", "onnxruntime", "numpy", "torch"):
        with contextlib.suppress(ImportError):
            result["context"][mod] = __import__(mod).__version__
    result["sizes"] = sizes([2, 10])
    t = Table(title="ResNet-32 (width 1, 3x32x32), model.onnx bytes", title_justify="left")
    for col in ("tasks", "dense fp32 (1 sub-network)", "shared", "folded", "naive (N dense files)"):
        t.add_column(col, justify="right")
    for r in result["sizes"]:
        t.add_row(
            str(r["tasks"]),
            f"{r['dense_bytes']:,}",
            f"{r['shared_bytes']:,} ({r['shared_vs_dense']:.2f}x)",
            f"{r['folded_bytes']:,} ({r['folded_vs_dense']:.2f}x)",
            f"{r['naive_bytes']:,} ({r['naive_vs_dense']:.2f}x)",
        )
    console.print(t)
    s2, s10 = result["sizes"][0]["shared_bytes"], result["sizes"][-1]["shared_bytes"]
    console.print(f"shared layout growth 2 -> 10 tasks: {s10 - s2:,} bytes (8 BN sets + 8 heads)")
    if not args.skip_export:
        result["export"] = export_timing(args.threads)
        t = Table(
            title=f"export_model, 10-task ResNet-32, {args.threads} threads (validation included)", title_justify="left"
        )
        for col in (
            "layout",
            "seconds",
            "max |Δ| task_logits",
            "max |Δ| task_conf.",
            "max |Δ| confidence",
            "label",
            "task",
        ):
            t.add_column(col, justify="right")
        for r in result["export"]:
            d = r["max_abs_diff"]
            t.add_row(
                r["layout"],
                f"{r['seconds']:.1f}",
                f"{d['task_logits']:.2e}",
                f"{d['task_confidence']:.2e}",
                f"{d['confidence']:.2e}",
                f"{100 * r['agreement']['label']:.1f}%",
                f"{100 * r['agreement']['task']:.1f}%",
            )
        console.print(t)
    if args.run:
        result["run"] = run_export(args.run)
        for r in result["run"]:
            console.print(
                f"{r['run']} {r['layout']}: {r['model_bytes']:,} bytes, {r['seconds']:.1f} s, inputs {r['inputs']}, "
                f"max |Δ| {r['max_abs_diff']}, max |logit| {r['max_abs_logit']:.1f}, agreement {r['agreement']}"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
