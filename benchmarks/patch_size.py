"""Task patch size vs bundle size, and the two position encodings (torch-free, synthetic networks).

Networks come from ``random_arrays(..., owners="mind")`` (MIND's structure: every task claims exactly
numel // capacity of the free weights; sizes do not depend on the values). For each
configuration the patch of task ``T`` (a base of ``T`` tasks) is built and compared with the
shared-layout model.onnx of the patched network; the positions are encoded both ways
(bitmap over the free weights vs gaps between claimed indices) to show which is smaller.

    .venv/bin/python benchmarks/patch_size.py      # table + benchmarks/results/patch_size.json
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mind_edge.runtime.graph import build_graph, random_arrays
from mind_edge.runtime.patch import build_patch

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = [  # (name, arch, channels, size, width, capacity, task)
    ("digits r32 w0.25", "resnet32", 1, 8, 0.25, 10, 4),
    ("digits r32 w1", "resnet32", 1, 8, 1.0, 10, 4),
    ("cifar r32 w1, task 1", "resnet32", 3, 32, 1.0, 10, 1),
    ("cifar r32 w1, task 4", "resnet32", 3, 32, 1.0, 10, 4),
    ("cifar r32 w1, task 9", "resnet32", 3, 32, 1.0, 10, 9),
    ("64px r18 w1, task 4", "resnet18", 3, 64, 1.0, 10, 4),
    ("cifar r32 w1, cap 50, task 4", "resnet32", 3, 32, 1.0, 50, 4),
]


def main() -> None:
    rows, out = [], []
    for name, arch, ch, size, width, cap, task in CONFIGS:
        net = {"arch": arch, "in_channels": ch, "input_size": [size, size], "width": width, "capacity": cap}
        # with routing statistics, as every task learned now carries them (the patch and the graph hold them)
        full = random_arrays(net, [[2 * i, 2 * i + 1] for i in range(task + 1)], seed=0, stats=True, owners="mind")
        base = full.first_tasks(task)
        patch = build_patch(base, full, task, ["a", "b"])
        model = len(build_graph(full, layout="shared", temperature=1.0).SerializeToString())
        bitmap = delta = 0
        for la, lb in zip(full.layers, base.layers):
            claimed = np.flatnonzero(la.owner.reshape(-1) == task)
            free = int((lb.owner == -1).sum())
            bitmap += -(-free // 8)
            gaps = np.diff(claimed, prepend=-1)
            delta += claimed.size * (1 if gaps.max() < 256 else 2 if gaps.max() < 65536 else 4)
        values = sum(int((la.owner == task).sum()) for la in full.layers) * 4
        rec = {
            "config": name,
            "net": net,
            "task": task,
            "patch_bytes": len(patch),
            "model_bytes": model,
            "ratio": round(len(patch) / model, 4),
            "values_bytes": values,
            "bitmap_bytes": bitmap,
            "delta_bytes": delta,
            "dense_weights": full.dense_weight_count(),
        }
        out.append(rec)
        rows.append(
            [
                name,
                f"{len(patch):,}",
                f"{model:,}",
                f"{100 * rec['ratio']:.1f} %",
                f"{values:,}",
                f"{bitmap:,}",
                f"{delta:,}",
            ]
        )
    head = ["network", "patch B", "model.onnx B", "patch/model", "values B", "bitmap B", "deltas B"]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for line in [head] + rows:
        print("  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(line, widths))))
    path = ROOT / "benchmarks" / "results" / "patch_size.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
