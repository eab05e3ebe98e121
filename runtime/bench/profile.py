"""Per-operator profile of one ONNX Runtime session (``SessionOptions.enable_profiling``)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from mind_edge.runtime.bench.worker import INPUT_NAME
from mind_edge.runtime.sessions import cpu_session


def _stage(node: str) -> str:
    if node.startswith("stem"):
        return "stem"
    if "down_a" in node:
        return "shortcut convs"
    parts = node.split(".")
    if parts[0] == "blocks" and len(parts) > 1 and parts[1].isdigit():
        return f"blocks {parts[1]}"
    return "other"


def profile_ort(
    onnx_path: str | os.PathLike,
    batch: int,
    *,
    threads: int,
    input_shape: Sequence[int],
    runs: int = 20,
    stages: Mapping[str, Sequence[int]] | None = None,
) -> dict:
    """Per-operator profile of one ONNX Runtime session.

    Runs ``runs`` profiled calls after 3 warm-up calls and reports, per op type and per group of
    nodes, the sum of **per-node median** kernel times (robust to preemption by other processes)
    and, for convolutions, FLOPs from the kernels' own input/output shapes and the GFLOP/s they
    reach. ``stages`` maps a label to block indices (e.g. ResNet-32's three stages).
    """
    with tempfile.TemporaryDirectory(prefix="mind-edge-profile-") as tmp:
        sess = cpu_session(
            Path(onnx_path),
            what="profiling an ONNX graph",
            threads=threads,
            inter_threads=1,
            profile_prefix=Path(tmp) / "ort",
        )
        x = np.random.default_rng(0).standard_normal((batch, *input_shape)).astype(np.float32)
        for _ in range(3 + int(runs)):
            sess.run(None, {INPUT_NAME: x})
        events = json.loads(Path(sess.end_profiling()).read_text(encoding="utf-8"))
    times: dict[str, list[float]] = {}
    ops: dict[str, str] = {}
    flops: dict[str, int] = {}
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        node = e["name"][: -len("_kernel_time")]
        times.setdefault(node, []).append(float(e["dur"]))  # microseconds
        args = e.get("args", {})
        ops[node] = args.get("op_name", "?")
        if ops[node] in ("Conv", "FusedConv") and node not in flops:
            try:
                w = next(iter(args["input_type_shape"][1].values()))
                y = next(iter(args["output_type_shape"][0].values()))
                flops[node] = int(2 * np.prod(w) * np.prod(y[2:]) * y[0])
            except (KeyError, IndexError, StopIteration, TypeError):
                pass
    # the first 3 runs are warm-up: keep the last `runs` samples of every node
    med = {n: float(np.median(v[-int(runs) :])) for n, v in times.items()}
    total = sum(med.values())
    by_op: dict[str, float] = {}
    for n, us in med.items():
        by_op[ops[n]] = by_op.get(ops[n], 0.0) + us
    block_stage = {f"blocks {i}": label for label, blocks in (stages or {}).items() for i in blocks}
    groups: dict[str, dict[str, float]] = {}
    for n, f in flops.items():
        g = _stage(n)
        g = block_stage.get(g, g)
        d = groups.setdefault(g, {"flops": 0, "us": 0.0, "convs": 0})
        d["flops"] += f
        d["us"] += med[n]
        d["convs"] += 1
    conv_us = sum(med[n] for n in flops)
    ranked = sorted(by_op.items(), key=lambda kv: -kv[1])
    return {
        "batch": int(batch),
        "threads": int(threads),
        "runs": int(runs),
        "sum_of_node_medians_ms": total / 1e3,
        "ops_ms": {k: v / 1e3 for k, v in ranked},
        "ops_share": {k: v / total for k, v in ranked} if total else {},
        "conv_gflops": sum(flops.values()) / conv_us / 1e3 if conv_us else None,
        "conv_groups": {
            g: {
                "convs": d["convs"],
                "mflops": d["flops"] / 1e6,
                "ms": d["us"] / 1e3,
                "gflops": d["flops"] / d["us"] / 1e3 if d["us"] else None,
            }
            for g, d in groups.items()
        },
        "nodes": len(med),
        "note": "sum of per-node median kernel times over the profiled runs; FLOPs of each Conv from its kernel's "
        "weight and output shapes as executed (ORT's fused NCHWc convs include BN, bias, ReLU and the residual "
        "Add; channel counts may be padded to ORT's block size)",
    }
