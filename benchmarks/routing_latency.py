"""What a routing policy costs at inference: the same 10-task ResNet-32 graph with each policy's head.

    .venv/bin/python benchmarks/routing_latency.py            # table + benchmarks/results/routing-latency.json

One random network with MIND's structure and routing statistics (10 tasks x 10 classes,
3x32x32, width 1); one ONNX Runtime CPU session per policy; each session is timed in blocks of
consecutive calls (its weights warm in cache, as when one model serves), the blocks of all
policies alternating over several rounds so load changes hit all of them alike. Reports p50 per
batch size and the overhead over ``maxprob`` (MIND's rule) in the same run, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from mind_edge.runtime.graph import build_graph, random_arrays
from mind_edge.runtime.sessions import cpu_session

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--rounds", type=int, default=200, help="calls per policy at batch 1 (batch 64: / 8)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--policies", default="maxprob,entropy,maxlogit,mahalanobis,shared,lda,combined")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "routing-latency.json")
    args = ap.parse_args(argv)
    import onnxruntime as ort

    net = {"arch": "resnet32", "in_channels": 3, "input_size": [32, 32], "width": 1.0, "capacity": args.tasks}
    classes = [list(range(10 * t, 10 * t + 10)) for t in range(args.tasks)]
    arrays = random_arrays(net, classes, seed=0, stats=True, owners="mind")
    policies = args.policies.split(",")
    sessions = {
        p: cpu_session(build_graph(arrays, temperature=1.0, policy=p), threads=args.threads, inter_threads=1)
        for p in policies
    }
    load0 = os.getloadavg()
    rows = []
    for b in (int(v) for v in args.batches.split(",")):
        x = np.random.default_rng(b).standard_normal((b, 3, 32, 32)).astype(np.float32)
        times = {p: [] for p in policies}
        for s in sessions.values():  # warm-up
            for _ in range(3):
                s.run(None, {"image": x})
        # blocks of consecutive calls per session (a session's weights stay in cache, as when one model
        # serves), the blocks of all policies alternating over the rounds (load changes hit all alike)
        block = 20 if b == 1 else 2
        for _ in range(args.rounds // block if b == 1 else max(3, args.rounds // 16)):
            for p, s in sessions.items():
                s.run(None, {"image": x})  # re-warm after the other sessions ran
                for _ in range(block):
                    t0 = time.perf_counter()
                    s.run(None, {"image": x})
                    times[p].append(time.perf_counter() - t0)
        base = float(np.median(times[policies[0]]))
        for p in policies:
            p50 = float(np.median(times[p]))
            rows.append(
                {
                    "batch": b,
                    "policy": p,
                    "p50_ms": p50 * 1e3,
                    "overhead_vs_" + policies[0]: p50 / base - 1,
                    "iterations": len(times[p]),
                }
            )
    load1 = os.getloadavg()
    table = Table(
        title=f"routing head cost: {args.tasks}-task ResNet-32 3x32x32, ORT CPU, {args.threads} threads "
        f"(load {load0[0]:.1f} -> {load1[0]:.1f})",
        title_justify="left",
    )
    for col in ("batch", "policy", "p50 ms", f"vs {policies[0]}"):
        table.add_column(col, justify="right")
    for r in rows:
        overhead = 100 * r["overhead_vs_" + policies[0]]
        table.add_row(str(r["batch"]), r["policy"], f"{r['p50_ms']:.2f}", f"{overhead:+.1f} %")
    Console().print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "benchmark": "routing-latency",
                "net": net,
                "tasks": args.tasks,
                "threads": args.threads,
                "loadavg": [load0, load1],
                "rows": rows,
                "onnxruntime": ort.__version__,
            },
            indent=1,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
