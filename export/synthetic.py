"""Synthetic MindNets for tests and benchmarks: real multi-task structure, no training.

:func:`random_model` gives every masked weight a random owner (some stay free, so the masks
matter), calibrates each task's BN set on random inputs (a train-mode pass with cumulative
statistics, so activations stay at a realistic scale and routing varies between inputs) and
then randomises the BN affine parameters; each head is rescaled to standardised features, so
logits (and the routing) vary from input to input as in a trained network.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mind_edge.nets import build_model


def random_model(config, task_classes: Sequence[Sequence[int]], *, seed: int = 0, calibration_batch: int = 32,
                 head_gain: float = 1.0):
    """A ``MindNet`` of ``config`` (a ``NetConfig``) with one task per entry of ``task_classes``."""
    n = len(task_classes)
    torch.manual_seed(seed)
    model = build_model(config, [list(c) for c in task_classes])
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for layer in model.masked_layers():
            layer.owner.copy_(torch.randint(-1, n, layer.owner.shape, generator=g, dtype=torch.int8))
        x = torch.randn(calibration_batch, config.in_channels, *config.input_size, generator=g)
        for t in range(n):
            for bn in model.task_batchnorms():
                bn.sets[t].momentum = None  # cumulative average: one pass = this batch's statistics
                bn.sets[t].reset_running_stats()
            model.train()
            model(x, t)
            model.eval()
            for bn in model.task_batchnorms():
                s = bn.sets[t]
                s.momentum = 0.1
                s.weight.copy_(torch.rand(s.weight.shape, generator=g) + 0.5)
                s.bias.copy_(torch.randn(s.bias.shape, generator=g) * 0.2)
        for t, h in enumerate(model.heads):  # standardise each head's input, so logits vary between inputs
            f = model.features(x, t)
            mu, sd = f.mean(0), f.std(0) + 1e-3
            h.fc.weight.copy_(h.fc.weight / sd * head_gain)
            h.fc.bias.copy_(-(h.fc.weight @ mu) + torch.randn(h.fc.bias.shape, generator=g) * 0.1)
    return model.eval()
