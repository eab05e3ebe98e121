"""Helpers of the export tests: small MindNets with real multi-task structure, no training
(``mind_edge.export.synthetic.random_model``: random owners, per-task BN calibrated on random data)."""

from __future__ import annotations

import numpy as np

from mind_edge.export.synthetic import random_model
from mind_edge.nets import MindNet, NetConfig


def task_classes(n_tasks: int, sizes: tuple[int, ...] = (3, 2)) -> list[list[int]]:
    """Disjoint, shuffled global class ids; class counts per task cycle through ``sizes``."""
    counts = [sizes[t % len(sizes)] for t in range(n_tasks)]
    perm = np.random.default_rng(7).permutation(sum(counts))
    out, start = [], 0
    for c in counts:
        out.append([int(v) for v in perm[start : start + c]])
        start += c
    return out


def make_model(
    n_tasks: int = 3,
    *,
    arch: str = "resnet32",
    width: float = 0.25,
    in_channels: int = 3,
    size: tuple[int, int] = (13, 9),
    seed: int = 0,
    sizes: tuple[int, ...] = (3, 2),
    capacity: int | None = None,
    classes: list[list[int]] | None = None,
) -> MindNet:
    config = NetConfig(
        arch=arch, in_channels=in_channels, input_size=size, width=width, capacity=capacity or max(n_tasks, 2)
    )
    return random_model(config, classes or task_classes(n_tasks, sizes), seed=seed)
