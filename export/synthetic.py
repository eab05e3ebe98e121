"""Synthetic MindNets for tests and benchmarks: real multi-task structure, no training.

:func:`random_model` is :func:`mind_edge.runtime.graph.random_arrays` (the one synthetic-network
maker: random weights, owners, BN sets and heads; some weights stay free, so the masks matter) as a
``MindNet``, with the one thing arrays cannot know: the activations. Each task's BN statistics are
calibrated on random inputs (a train-mode pass with cumulative statistics, so activations stay at a
realistic scale and routing varies between inputs) and each head is rescaled to standardised
features, so logits (and the routing) vary from input to input as in a trained network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mind_edge.export.arrays import model_from_arrays
from mind_edge.runtime.graph import random_arrays


def random_model(
    config, task_classes: Sequence[Sequence[int]], *, seed: int = 0, calibration_batch: int = 32, head_gain: float = 1.0
):
    """A ``MindNet`` of ``config`` (a ``NetConfig``) with one task per entry of ``task_classes``."""
    n = len(task_classes)
    model = model_from_arrays(random_arrays(config.to_json(), task_classes, seed=seed))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        x = torch.randn(calibration_batch, config.in_channels, *config.input_size, generator=g)
        for t in range(n):
            for bn in model.task_batchnorms():
                bn.sets[t].momentum = None  # cumulative average: one pass = this batch's statistics
                bn.sets[t].reset_running_stats()
            model.train()
            model(x, t)
            model.eval()
            for bn in model.task_batchnorms():
                bn.sets[t].momentum = 0.1
        for t, h in enumerate(model.heads):  # standardise each head's input, so logits vary between inputs
            f = model.features(x, t)
            mu, sd = f.mean(0), f.std(0) + 1e-3
            # on standardised features every class row has norm head_gain / sqrt(3), the norm of a row of
            # PyTorch's default Linear init: logits of a realistic scale
            w = h.fc.weight / h.fc.weight.norm(dim=1, keepdim=True) * (head_gain / math.sqrt(3)) / sd
            h.fc.weight.copy_(w)
            h.fc.bias.copy_(-(w @ mu) + torch.randn(h.fc.bias.shape, generator=g) * 0.1)
    return model.eval()
