"""Peak RSS of ``mind-edge learn``, with and without ``--memory-budget``.

Two cases, each learned in a fresh process, so its peak RSS (``VmHWM``:
:func:`mind_edge.core.proc.peak_rss_mb`, what ``learn`` reports) is only that learn's:

* ``digits``: ResNet-32 (width 1) on 1x8x8 digits, the 5th task (2 classes, ~270 images) of a
  run holding 4 tasks, capacity 10.
* ``cifar``: ResNet-32 (width 1) on 3x32x32 images, 2 CIFAR-10 classes from the JPEG tree in
  ``../shared/datasets/cifar10-jpg.tar.gz`` (``--per-class`` training images each), batch 256 as
  in the reference's CIFAR preset; the earlier tasks' data is not on the "device".

The base runs hold MIND-structured random networks (``random_arrays(..., owners="mind")``: exact claims of
numel // capacity per task, free weights 0) — peak memory does not depend on the weights'
values — and the new task is learned for real (``--epochs``/``--distill-epochs``).

For each case: no budget; a generous budget (that peak + 300 MB: one trial, batch kept); a
budget of 85 % of that peak (the batch size must shrink, or learn fails before training); a
budget below the process's footprint before training (fails at once).

    .venv/bin/python benchmarks/learn_memory.py                       # table + benchmarks/results/learn_memory.json
    .venv/bin/python benchmarks/learn_memory.py --cases digits --epochs 2
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARBALL = ROOT.parent / "shared" / "datasets" / "cifar10-jpg.tar.gz"


def make_run(
    out: Path, dataset: str, names: list[str], channels: int, size: int, mean, std, batch: int
) -> tuple[Path, list[int]]:
    from mind_edge.checkpoint import save_checkpoint, write_run_json
    from mind_edge.data import make_scenario
    from mind_edge.export.arrays import model_from_arrays
    from mind_edge.runtime.graph import random_arrays
    from mind_edge.train import TrainConfig

    scenario = make_scenario(dataset, tuple(names), 5, order="seed", seed=0)
    classes = [list(t) for t in scenario.tasks[:4]]
    net = {"arch": "resnet32", "in_channels": channels, "input_size": [size, size], "width": 1.0, "capacity": 10}
    model = model_from_arrays(random_arrays(net, classes, seed=0, owners="mind"))
    cfg = TrainConfig(epochs=1, distill_epochs=1, batch_size=batch, temperature=1.0)
    meta = {
        "net": net,
        "scenario": scenario.to_json(),
        "data": {
            "dataset": dataset,
            "in_channels": channels,
            "input_size": [size, size],
            "mean": list(mean),
            "std": list(std),
            "augment": "crop_flip" if channels == 3 else "none",
            "padding": 4 if channels == 3 else 0,
            "channel_order": "RGB" if channels == 3 else "L",
            "root": None,
        },
        "train": cfg.to_json(),
        "seed": 0,
        "learned_tasks": classes,
        "steps": [],
    }
    out.mkdir(parents=True, exist_ok=True)
    meta["checkpoint_sha256"] = save_checkpoint(out, model)
    write_run_json(out, meta)
    return out, list(scenario.tasks[4])


def digits_case(work: Path) -> tuple[Path, Path]:
    import numpy as np
    from PIL import Image

    from mind_edge.data import REFERENCE_SPECS, load_dataset

    spec = REFERENCE_SPECS["digits"]
    run, new = make_run(work / "digits_run", "digits", [str(i) for i in range(10)], 1, 8, spec.mean, spec.std, 64)
    train, test, _ = load_dataset("digits", seed=0)
    folder = work / "digits_new"
    for split, arrays in (("train", train), ("test", test)):
        for c in new:
            d = folder / split / str(c)
            d.mkdir(parents=True, exist_ok=True)
            for i in np.flatnonzero(arrays.labels == c):
                Image.fromarray(arrays.images[i][..., 0], mode="L").save(d / f"{i:04d}.png")
    return run, folder


def cifar_case(work: Path, per_class: int) -> tuple[Path, Path]:
    from mind_edge.data import REFERENCE_SPECS

    spec = REFERENCE_SPECS["cifar10"]
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    run, new = make_run(work / "cifar_run", "cifar10", names, 3, 32, spec.mean, spec.std, 256)
    want = {names[c] for c in new}
    folder = work / "cifar_new"
    counts: dict[tuple[str, str], int] = {}
    limit = {"train": per_class, "test": max(1, per_class // 5)}
    with tarfile.open(TARBALL, "r:gz") as tar:
        for m in tar:
            parts = Path(m.name).parts
            if not m.isfile() or len(parts) < 3 or parts[-2] not in want or parts[-3] not in limit:
                continue
            key = (parts[-3], parts[-2])
            if counts.get(key, 0) >= limit[parts[-3]]:
                continue
            counts[key] = counts.get(key, 0) + 1
            dst = folder / parts[-3] / parts[-2] / parts[-1]
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(tar.extractfile(m).read())
    return run, folder


LEARN = """
import json, sys
from mind_edge.learn import learn, MemoryBudgetError
a = json.loads(sys.argv[1])
try:
    r = learn(a["run"], a["data"], a["out"], epochs=a["epochs"], distill_epochs=a["epochs"], device="cpu",
              memory_budget_mb=a["budget"])
    print(json.dumps({"ok": True, **r.summary()}))
except MemoryBudgetError as e:
    from mind_edge.core.proc import peak_rss_mb
    print(json.dumps({"ok": False, "error": str(e), "peak_rss_mb": peak_rss_mb()}))
"""


def measure(run: Path, data: Path, out: Path, budget: float | None, epochs: int) -> dict:
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    args = {"run": str(run), "data": str(data), "out": str(out), "budget": budget, "epochs": epochs}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", LEARN, json.dumps(args)], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"learn failed: {proc.stderr[-2000:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    res["budget_mb"] = budget
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="digits,cifar")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--per-class", type=int, default=1000, help="CIFAR training images per class")
    ap.add_argument("--work", type=Path, default=Path("/tmp/mind_edge_learn_memory"))
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "learn_memory.json")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    import torch

    rows, results = [], {}
    for case in args.cases.split(","):
        run, data = digits_case(args.work) if case == "digits" else cifar_case(args.work, args.per_class)
        free = measure(run, data, args.work / f"{case}_out", None, args.epochs)
        tight = round(0.85 * free["peak_rss_mb"])
        low = 300.0
        runs = {
            "none": free,
            "peak + 300 MB": measure(
                run, data, args.work / f"{case}_out", float(round(free["peak_rss_mb"]) + 300), args.epochs
            ),
            "85%": measure(run, data, args.work / f"{case}_out", float(tight), args.epochs),
            "too small": measure(run, data, args.work / f"{case}_out", low, args.epochs),
        }
        results[case] = runs
        for name, r in runs.items():
            mem = r.get("memory") or {}
            rows.append(
                [
                    case,
                    name if r["budget_mb"] is None else f"{r['budget_mb']:.0f} MB ({name})",
                    "yes" if r["ok"] else "no: " + r["error"][:60] + "…",
                    str(r.get("batch_size", "-")),
                    f"{r['peak_rss_mb']:.0f}",
                    f"{mem['predicted_peak_mb']:.0f}" if mem else "-",
                    ", ".join(f"{t['batch_size']}:+{t['increment_mb']:.0f}" for t in mem.get("trials", [])) or "-",
                    f"{r['wall_s']:.1f}",
                ]
            )
    head = ["case", "budget", "trained", "batch", "peak RSS MB", "predicted MB", "trials (batch:+MB)", "wall s"]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for line in [head] + rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)))
    doc = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "epochs": args.epochs,
        "cifar_per_class": args.per_class,
        "results": results,
        "note": "MB = 2**20 bytes; peak RSS (VmHWM, mind_edge.core.proc.peak_rss_mb) of a fresh process "
        "running mind_edge.learn.learn",
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
