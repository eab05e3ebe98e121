"""Routing benchmark: every routing policy on the same trained runs.

    python benchmarks/routing.py --dataset digits --seeds 0,1,2
    python benchmarks/routing.py --dataset fashion-mnist --width 0.25 --epochs 1 --batch-size 128
    python benchmarks/routing.py --dataset imagefolder --root /tmp/cifar10-jpg --width 0.25 --epochs 1 --batch-size 128
    python benchmarks/routing.py --dataset imagefolder --root /tmp/cifar10-jpg --preset cifar100 --device cuda

Each run is trained once (``--runs-dir`` keeps them; an existing complete run is reused, an
interrupted one is resumed, one trained before routing statistics existed is calibrated);
the policies only change inference, so every policy is evaluated on the same sub-networks from
one forward pass per test batch. Prints a table per run and the mean over seeds, and writes
JSON (protocol, hardware, per-run and per-policy TAG, TAW, routing accuracy, ECE of the routed
confidence, per-task rows).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from mind_edge import __version__
from mind_edge.calibrate import calibrate_run
from mind_edge.checkpoint import read_run_json
from mind_edge.core.routing import DEFAULT_POLICY, POLICIES
from mind_edge.errors import MindEdgeError
from mind_edge.fileio import atomic_write_json
from mind_edge.run import RunSpec, evaluate_run, parse_policies, train_run
from mind_edge.run_record import RunRecord
from mind_edge.runtime.bench import cpu_model
from mind_edge.train import preset

console = Console()
log_console = Console(stderr=True)


def gpu_model() -> str | None:
    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


def run_name(args, seed: int) -> str:
    data = args.dataset if args.dataset != "imagefolder" else Path(args.root).name
    ep = f"e{args.epochs}" if args.epochs is not None else args.preset
    return f"{data}-{args.tasks}-w{args.width:g}-{ep}-s{seed}"


def ensure_run(args, seed: int, run_dir: Path) -> tuple[RunRecord, float]:
    """Train (or resume, or calibrate) the run of ``seed`` in ``run_dir``; returns its run.json and seconds."""
    t0 = time.perf_counter()
    cfg = preset(args.preset, epochs=args.epochs, distill_epochs=args.distill_epochs, batch_size=args.batch_size)
    spec = RunSpec(
        dataset=args.dataset,
        root=args.root,
        tasks=args.tasks,
        seed=seed,
        width=args.width,
        arch=args.arch,
        train=cfg,
        device=args.device,
    )
    record = read_run_json(run_dir) if (run_dir / "run.json").is_file() else None
    if record is None or record.num_learned < args.tasks:
        log_console.print(f"training {run_dir.name} ({'resume' if record else 'new'})", markup=False)
        train_run(spec, run_dir, resume=record is not None)
    # a no-op for runs trained with statistics, unless --recalibrate
    res = calibrate_run(run_dir, root=args.root, device=args.device, force=args.recalibrate)
    if res.gathered:
        log_console.print(f"calibrated tasks {res.gathered} of {run_dir.name}", markup=False)
    return read_run_json(run_dir), time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--root", default=None)
    ap.add_argument("--tasks", type=int, default=5)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of both stages (default: the preset's)")
    ap.add_argument("--distill-epochs", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--arch", default="resnet32")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--policies", default="all")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--runs-dir", type=Path, default=Path("bench-results/routing-runs"))
    ap.add_argument(
        "--recalibrate",
        action="store_true",
        help="recompute every task's routing statistics of existing runs (after the statistics changed)",
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.distill_epochs is None:
        args.distill_epochs = args.epochs
    if args.threads:
        torch.set_num_threads(args.threads)
    policies = parse_policies(args.policies)
    seeds = [int(s) for s in args.seeds.split(",")]
    load0 = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None
    results = {}
    for seed in seeds:
        run_dir = args.runs_dir / run_name(args, seed)
        record, seconds = ensure_run(args, seed, run_dir)
        t0 = time.perf_counter()
        ev = evaluate_run(run_dir, root=args.root, device=args.device, policies=policies)
        results[str(seed)] = {
            "run_dir": str(run_dir),
            "train": record.train.to_json(),
            "net": record.net.to_json(),
            "train_or_load_seconds": round(seconds, 1),
            "train_seconds": round(
                sum(s.raw.get("train_seconds", 0) + s.raw.get("distill_seconds", 0) for s in record.steps), 1
            ),
            "eval_seconds": round(time.perf_counter() - t0, 1),
            "routing_stats_bytes_per_task": record.routing_stats.get("bytes_per_task"),
            "policies": ev["policies"],
        }
        table = Table(
            title=f"{run_dir.name}: every policy on the same sub-networks (T={ev['temperature']:g})",
            title_justify="left",
        )
        for col in ("policy", "TAG", "TAW", "routing", "ECE"):
            table.add_column(col, justify="left" if col == "policy" else "right")
        for name, v in ev["policies"].items():
            table.add_row(
                name + (" (default)" if name == DEFAULT_POLICY else ""),
                f"{v['tag_mean']:.4f}",
                f"{v['taw_mean']:.4f}",
                f"{v['routing_overall']:.4f}",
                f"{v['ece']:.4f}",
            )
        console.print(table)
    summary = {}
    for name in policies:
        tags = [results[str(s)]["policies"][name]["tag_mean"] for s in seeds]
        summary[name] = {
            "tag_mean": float(np.mean(tags)),
            "tag_min": float(np.min(tags)),
            "taw_mean": float(np.mean([results[str(s)]["policies"][name]["taw_mean"] for s in seeds])),
            "routing_mean": float(np.mean([results[str(s)]["policies"][name]["routing_overall"] for s in seeds])),
            "ece_mean": float(np.mean([results[str(s)]["policies"][name]["ece"] for s in seeds])),
        }
    if len(seeds) > 1:
        table = Table(title=f"mean over seeds {args.seeds}", title_justify="left")
        for col in ("policy", "TAG mean", "TAG min", "TAW", "routing", "ECE"):
            table.add_column(col, justify="left" if col == "policy" else "right")
        for name, v in summary.items():
            table.add_row(
                name,
                f"{v['tag_mean']:.4f}",
                f"{v['tag_min']:.4f}",
                f"{v['taw_mean']:.4f}",
                f"{v['routing_mean']:.4f}",
                f"{v['ece_mean']:.4f}",
            )
        console.print(table)
    doc = {
        "benchmark": "routing",
        "mind_edge": __version__,
        "command": "python benchmarks/routing.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "protocol": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "hardware": {
            "cpu": cpu_model(),
            "gpu": gpu_model(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "loadavg_start": load0,
        },
        "definitions": {
            "tag": "task-agnostic accuracy: mean over tasks of the accuracy with the task unknown (routed)",
            "taw": "task-aware accuracy: mean over tasks with the true task's head",
            "routing": "fraction of all test images routed to their true task",
            "ece": "expected calibration error (15 equal-width bins) of the routed confidence against the "
            "correctness of the routed label, over all test images",
            "policies": {name: p.summary for name, p in POLICIES.items()},
        },
        "runs": results,
        "summary": summary,
        "default_policy": DEFAULT_POLICY,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.json, doc)
        console.print(f"wrote {args.json}", markup=False)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MindEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
