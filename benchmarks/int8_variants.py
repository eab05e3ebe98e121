"""INT8 graph variants of one INT8 bundle side by side: speed against its FP32 master, routing agreement.

    .venv/bin/python benchmarks/int8_variants.py BUNDLE --run RUN   # table + benchmarks/results/int8-variants.json

``BUNDLE`` is an INT8 bundle (``mind-edge export RUN --precision int8``): its ``master.onnx`` (the
FP32 shared graph, the reference row) and ``calibration.npz`` (the images every variant is
calibrated on) are used; ``RUN`` is the run it came from, whose test split gives the routing
agreement (``--samples`` images, task chosen by each variant vs by the FP32 master).

Variants (each quantized by ``mind_edge.runtime.precision.int8_model``, torch-free):

* ``per-task`` — the export's layout (one chain of plain convolutions per task), every task quantized;
* ``per-task + sub-net 0 fp32`` — the export's default under a feature-reading policy
  (``precision.int8.fp32_features``);
* ``stacked`` — the task-stacked graph, grouped convolutions (group = N) quantized;
* ``hybrid-K`` — exploration, not an export option: per-task chains for the stem and blocks < K,
  the stacked grouped convolutions after (built by restricting which nodes ``unstack_tasks`` splits);
* ``per-tensor`` — per-tensor instead of per-channel weight scales;
* ``s8 activations`` — symmetric int8 activations instead of uint8.

Timing: one ONNX Runtime CPU session per variant; in every round each session runs a block of
consecutive calls per batch size (40 at batch 1, 4 at batch 64) and the round's median is kept;
rounds alternate over the sessions so load changes hit all alike. Reported: the minimum and the
median of the per-round medians, and the median of the per-round speed-ups over the FP32 master,
with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("per-task", "per-task + sub-net 0 fp32", "stacked", "hybrid-5", "hybrid-10", "per-tensor", "s8 activations")


def build(variant: str, arrays, calib: np.ndarray, temperature: float, policy: str):
    import mind_edge.runtime.precision_int8 as pi

    opts = {
        "per-task": pi.Int8Options(fp32_features=False),
        "per-task + sub-net 0 fp32": pi.Int8Options(fp32_features=True),
        "stacked": pi.Int8Options(per_task=False, fp32_features=False),
        "per-tensor": pi.Int8Options(per_channel=False, fp32_features=False),
        "s8 activations": pi.Int8Options(activation="int8", fp32_features=False),
    }
    if variant in opts:
        return pi.int8_model(arrays, calib, temperature=temperature, policy=policy, options=opts[variant])
    k = int(variant.split("-")[1])  # hybrid-K: split only the stem and blocks < K per task
    whole = pi.backbone_nodes

    def first_blocks(model) -> set[str]:
        return {
            n for n in whole(model) if n.startswith("stem") or (n.startswith("blocks.") and int(n.split(".")[1]) < k)
        }

    pi.backbone_nodes = first_blocks
    try:
        return pi.int8_model(
            arrays, calib, temperature=temperature, policy=policy, options=pi.Int8Options(fp32_features=False)
        )
    finally:
        pi.backbone_nodes = whole


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "int8-variants.json")
    args = ap.parse_args(argv)

    from mind_edge.checkpoint import read_run_json
    from mind_edge.export.exporter import run_test_inputs
    from mind_edge.runtime import precision as prec
    from mind_edge.runtime.bundle import Bundle
    from mind_edge.runtime.sessions import cpu_session

    console = Console(width=160)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        console.print(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}", markup=False)
        return 2
    bundle = Bundle.load(args.bundle)
    if prec.bundle_precision(bundle) != "int8":
        console.print(f"{args.bundle} is not an INT8 bundle (precision {prec.bundle_precision(bundle)})", markup=False)
        return 2
    arrays, calib, policy = prec.bundle_arrays(bundle), prec.bundle_calibration(bundle), prec.bundle_policy(bundle)
    master = (bundle.path / prec.MASTER_FILE).read_bytes()
    x_test, note = run_test_inputs(read_run_json(args.run), bundle.num_tasks, args.samples)
    if x_test is None:
        console.print(f"no test images: {note}", markup=False)
        return 2
    shape = tuple(bundle.input.shape)
    graphs = {"fp32 (master)": master}
    for v in variants:
        t0 = time.perf_counter()
        graphs[v] = build(v, arrays, calib, bundle.temperature, policy).SerializeToString()
        console.print(f"built {v} in {time.perf_counter() - t0:.1f} s", markup=False)
    sessions = {k: cpu_session(g, threads=args.threads, inter_threads=1) for k, g in graphs.items()}

    def tasks(sess) -> np.ndarray:
        return np.concatenate(
            [sess.run(["task"], {"image": x_test[i : i + 100]})[0] for i in range(0, len(x_test), 100)]
        )

    ref_tasks = tasks(sessions["fp32 (master)"])
    agree = {k: float((tasks(s) == ref_tasks).mean()) for k, s in sessions.items()}
    xs = {b: np.random.default_rng(b).standard_normal((b, *shape)).astype(np.float32) for b in (1, 64)}
    for s in sessions.values():
        for x in xs.values():
            for _ in range(3):
                s.run(None, {"image": x})
    load0 = os.getloadavg()
    per_round = {(k, b): [] for k in sessions for b in xs}
    for _ in range(args.rounds):
        for k, s in sessions.items():
            for b, x in xs.items():
                ts = []
                for _ in range(40 if b == 1 else 4):
                    t = time.perf_counter()
                    s.run(None, {"image": x})
                    ts.append(time.perf_counter() - t)
                per_round[(k, b)].append(float(np.median(ts)) * 1e3)
    load1 = os.getloadavg()
    rows = []
    for k in sessions:
        row = {"variant": k, "routing_agreement": agree[k], "bytes": len(graphs[k])}
        for b in xs:
            r, ref = np.array(per_round[(k, b)]), np.array(per_round[("fp32 (master)", b)])
            row[f"b{b}"] = {
                "p50_ms_min": float(r.min()),
                "p50_ms_median": float(np.median(r)),
                "speedup_vs_fp32": float(np.median(ref / r)),
            }
        rows.append(row)
    t = Table(title=escape(f"INT8 variants of {args.bundle} ({bundle.num_tasks} tasks, routing {policy})"))
    for c in ("variant", "MB", "p50 ms b1 (min / med)", "p50 ms b64 (min / med)", "× fp32 b1 / b64", "routing agr."):
        t.add_column(c, justify="left" if c == "variant" else "right")
    for r in rows:
        t.add_row(
            r["variant"],
            f"{r['bytes'] / 1e6:.2f}",
            f"{r['b1']['p50_ms_min']:.2f} / {r['b1']['p50_ms_median']:.2f}",
            f"{r['b64']['p50_ms_min']:.1f} / {r['b64']['p50_ms_median']:.1f}",
            f"{r['b1']['speedup_vs_fp32']:.2f} / {r['b64']['speedup_vs_fp32']:.2f}",
            f"{100 * r['routing_agreement']:.1f}%",
        )
    console.print(t)
    console.print(
        f"load average {list(np.round(load0, 2))} → {list(np.round(load1, 2))}; agreement on {note}", markup=False
    )
    doc = {
        "command": "python benchmarks/int8_variants.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_average_start": list(load0),
        "load_average_end": list(load1),
        "threads": args.threads,
        "rounds": args.rounds,
        "agreement_on": note,
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    console.print(f"JSON: {args.json}", markup=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
