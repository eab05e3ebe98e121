"""Accuracy benchmark: MIND (self- and teacher-distillation) vs fine-tuning vs joint training.

    python benchmarks/accuracy.py --dataset digits --tasks 5 --json bench-results/acc-digits.json
    python benchmarks/accuracy.py --dataset fashion-mnist --tasks 5 --epochs 4 --distill-epochs 4 --width 0.5
    python benchmarks/accuracy.py --dataset imagefolder --root /tmp/cifar10-jpg --tasks 5 --epochs 10 ...

Prints a table of TAG, TAW, routing, average incremental TAG and forgetting per method, and
writes the protocol, the hardware and every accuracy matrix to JSON. All methods see the same
scenario (class order), seed, network and epoch budget (fine-tuning and joint training get
``epochs + distill_epochs`` epochs, the total MIND spends per task).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from mind_edge import __version__
from mind_edge.baselines import evaluate_joint, learn_task_finetune, train_joint
from mind_edge.data import load_dataset, make_scenario, task_arrays
from mind_edge.fileio import atomic_write_json
from mind_edge.metrics import DEFINITIONS, empty_matrix, matrix_to_json, summarize
from mind_edge.nets import NetConfig, build_model
from mind_edge.run import RunSpec, train_run
from mind_edge.runtime.bench import cpu_model
from mind_edge.train import evaluate, preset, resolve_device

console = Console()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--root", default=None)
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--tasks", type=int, default=5)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--distill-epochs", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--arch", default="resnet32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default="self,teacher,finetune,joint")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    device = resolve_device(args.device)
    cfg = preset(
        args.preset,
        epochs=args.epochs,
        distill_epochs=args.distill_epochs,
        batch_size=args.batch_size,
        temperature=args.temperature,
    )
    size = (args.image_size, args.image_size) if args.image_size else None
    train_set, test_set, spec = load_dataset(args.dataset, args.root, image_size=size, seed=args.seed)
    scenario = make_scenario(args.dataset, train_set.class_names, args.tasks, seed=args.seed)
    n = scenario.num_tasks()
    net = NetConfig(
        arch=args.arch, in_channels=spec.in_channels, input_size=spec.input_size, width=args.width, capacity=n
    )
    tests = [task_arrays(test_set, scenario, t)[:2] for t in range(n)]
    results = {}
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        console.print(f"[bold]{method}[/] …")
        if method in ("self", "teacher"):
            with tempfile.TemporaryDirectory() as tmp:
                rs = RunSpec(
                    dataset=args.dataset,
                    root=args.root,
                    tasks=n,
                    seed=args.seed,
                    arch=args.arch,
                    width=args.width,
                    image_size=size,
                    train=preset(args.preset, **{**cfg.to_json(), "method": method}),
                    device=str(device),
                )
                run = train_run(rs, Path(tmp) / "run")
            final = run.final
            last = run.record.steps[-1]
            R_tag, R_taw = [list(r) for r in last.tag_matrix], [list(r) for r in last.taw_matrix]
        elif method == "finetune":
            torch.manual_seed(args.seed)
            model = build_model(net)
            R1, R2 = empty_matrix(n), empty_matrix(n)
            for t in range(n):
                x, y, _ = task_arrays(train_set, scenario, t)
                learn_task_finetune(model, list(scenario.tasks[t]), x, y, spec, cfg, seed=args.seed, device=device)
                ev = evaluate(model, tests[: t + 1], spec, temperature=cfg.temperature, device=device)
                R1[t, : t + 1], R2[t, : t + 1] = ev.tag, ev.taw
            final = summarize(R1, R2, ev.routing_overall)
            R_tag, R_taw = matrix_to_json(R1), matrix_to_json(R2)
        elif method == "joint":
            order = [c for task in scenario.tasks for c in task]
            model = train_joint(
                net, order, train_set.images, train_set.labels, spec, cfg, seed=args.seed, device=device
            )
            ev = evaluate_joint(model, tests, [list(t) for t in scenario.tasks], spec, device=device)
            counts = [len(t[1]) for t in tests]
            R1 = np.diag(ev["tag"]) * np.nan
            R1[-1, :] = ev["tag"]
            R2 = np.diag(ev["taw"]) * np.nan
            R2[-1, :] = ev["taw"]
            final = {
                "tag": float(np.mean(ev["tag"])),
                "taw": float(np.mean(ev["taw"])),
                "routing": float(np.dot(ev["routing"], counts) / sum(counts)),
                "avg_incremental_tag": None,
                "forgetting_tag": None,
                "bwt_tag": None,
            }
            R_tag, R_taw = matrix_to_json(R1), matrix_to_json(R2)
        else:
            console.print(f"[red]unknown method {method!r}[/]")
            return 2
        results[method] = {
            "final": final,
            "tag_matrix": R_tag,
            "taw_matrix": R_taw,
            "seconds": round(time.perf_counter() - t0, 1),
        }

    table = Table(
        title=f"accuracy — {args.dataset}/{n} tasks, {args.arch} x{args.width}, "
        f"{cfg.epochs}+{cfg.distill_epochs} epochs, T={cfg.temperature}, seed {args.seed}",
        title_justify="left",
    )
    for col in ("method", "TAG", "TAW", "routing", "avg inc. TAG", "forgetting", "time s"):
        table.add_column(col, justify="right")
    fmt = lambda v: "—" if v is None else f"{v:.3f}"
    for m, r in results.items():
        f = r["final"]
        table.add_row(
            m,
            fmt(f["tag"]),
            fmt(f["taw"]),
            fmt(f["routing"]),
            fmt(f["avg_incremental_tag"]),
            fmt(f["forgetting_tag"]),
            f"{r['seconds']:.0f}",
        )
    console.print(table)
    if args.json:
        atomic_write_json(
            args.json,
            {
                "benchmark": "accuracy",
                "mind_edge": __version__,
                "protocol": {
                    **vars(args),
                    "json": str(args.json),
                    "train": cfg.to_json(),
                    "net": net.to_json(),
                    "class_order": [list(t) for t in scenario.tasks],
                },
                "hardware": {
                    "cpu": cpu_model(),
                    "threads": torch.get_num_threads(),
                    "device": str(device),
                    "torch": torch.__version__,
                    "python": platform.python_version(),
                },
                "definitions": DEFINITIONS,
                "results": results,
            },
        )
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
