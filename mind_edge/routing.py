"""Task-agnostic routing in torch, and gathering a task's routing statistics.

The policies, their formulas and constants are defined once in :mod:`mind_edge.core.routing`
(read its docstring); this module is their torch form, used by training-time evaluation, the
exporter's validation and the torch latency baselines. It computes every score exactly as the
numpy form and the ONNX head do (float32, the same expanded distance), so they agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mind_edge.core.routing import (
    DEFAULT_POLICY,
    PAD_LOGIT,
    POLICIES,
    RoutingStats,
    auto_policy,
    check_stats_for,
    check_temperature,
    fit_routing_stats,
    get_policy,
    pooled_space,
)
from mind_edge.data import BatchLoader
from mind_edge.errors import ConfigError

__all__ = [
    "DEFAULT_POLICY",
    "PAD_LOGIT",
    "POLICIES",
    "Routed",
    "pad_logits",
    "route",
    "gather_routing_stats",
    "torch_stats",
    "resolve_model_policy",
    "model_outputs",
]


@dataclass
class Routed:
    label: torch.Tensor  # [B] int64 global class id
    task: torch.Tensor  # [B] int64
    confidence: torch.Tensor  # [B] float32
    task_confidence: torch.Tensor  # [B, N]: the policy's per-task score
    task_logits: torch.Tensor  # [B, N, Cmax], padded with PAD_LOGIT


@dataclass
class TorchStats:
    """One task's :class:`RoutingStats` as tensors on the device of the features."""

    whiten: list[torch.Tensor]
    means: list[torch.Tensor]
    score_mean: torch.Tensor
    score_std: torch.Tensor
    stats: RoutingStats  # the numpy statistics (layout checks)
    #: the pooled metric of all the tasks these statistics were converted with (layout 3, every task has them)
    pool_whiten: torch.Tensor | None = None  # [D, D]
    pool_means: torch.Tensor | None = None  # [C, D] this task's class means, whitened


def torch_stats(stats: Sequence[RoutingStats | None], device) -> list[TorchStats | None]:
    """Every task's statistics as tensors on ``device``, with the pooled metric when every task has layout 3."""
    pooled = None
    if stats and all(s is not None and s.layout >= 3 for s in stats):
        whiten, means = pooled_space(stats)
        # copies: the cached pooled metric is read-only
        pooled = (torch.tensor(whiten, device=device), [torch.tensor(m, device=device) for m in means])
    out: list[TorchStats | None] = []
    for t, s in enumerate(stats):
        if s is None:
            out.append(None)
            continue
        out.append(
            TorchStats(
                whiten=[torch.from_numpy(w).to(device) for w in s.whiten],
                means=[torch.from_numpy(m).to(device) for m in s.means],
                score_mean=torch.from_numpy(s.score_mean).to(device),
                score_std=torch.from_numpy(s.score_std).to(device),
                stats=s,
                pool_whiten=pooled[0] if pooled else None,
                pool_means=pooled[1][t] if pooled else None,
            )
        )
    return out


def pad_logits(logits: list[torch.Tensor]) -> torch.Tensor:
    cmax = max(z.shape[1] for z in logits)
    out = logits[0].new_full((logits[0].shape[0], len(logits), cmax), PAD_LOGIT)
    for t, z in enumerate(logits):
        out[:, t, : z.shape[1]] = z
    return out


def _unit(f: torch.Tensor) -> torch.Tensor:
    f = f.float()
    return f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _nearest(g: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    diff = g[:, None, :] - means[None, :, :]  # [B, C, F]: the contract's difference form
    return (diff * diff).sum(dim=2).min(dim=1).values


def _tap_distance(f: torch.Tensor, s: TorchStats, k: int) -> torch.Tensor:
    """Squared Mahalanobis distance to the nearest class mean (the difference form of the contract)."""
    return _nearest(_unit(f) @ s.whiten[k], s.means[k])


def _logit_scores(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m = z.max(dim=1).values
    energy = m + torch.log(torch.exp(z - m[:, None]).sum(dim=1))
    return m, energy


def route(
    logits: list[torch.Tensor],
    classes: list[torch.Tensor],
    temperature: float,
    policy: str = "maxprob",
    *,
    taps: list[list[torch.Tensor]] | None = None,
    stats: Sequence[TorchStats | None] | None = None,
) -> Routed:
    """Route a batch given every task's logits (and, for feature policies, its tap features)."""
    p = get_policy(policy)
    temperature = check_temperature(temperature)
    padded = pad_logits(logits)  # [B, N, C]
    probs = torch.softmax(padded / temperature, dim=2)
    maxprob, _ = probs.max(dim=2)  # [B, N]
    rows = torch.arange(padded.shape[0], device=padded.device)
    if p.needs_stats:
        check_stats_for(
            p, [s.stats if s is not None else None for s in stats] if stats is not None else None, len(logits)
        )
        n_taps, own = len(stats[0].whiten), stats[0].stats.own_taps
        w_tap, w_ml, w_en, w_shared, w_pool = p.weights
        if (w_tap or w_shared or w_pool) and taps is None:
            raise ConfigError(f"routing policy {policy!r} needs the tap features of every sub-network")
        if w_pool and stats[0].pool_whiten is None:
            raise ConfigError("the pooled metric was not derived: convert every task's statistics with torch_stats")
        g0 = torch.cat([_unit(f) for f in taps[0]], dim=1) @ stats[0].pool_whiten if w_pool else None
        score = torch.zeros_like(maxprob)
        for t, (z, s) in enumerate(zip(logits, stats)):
            ml, energy = _logit_scores(z.float())
            z_ml = (ml - s.score_mean[n_taps]) / s.score_std[n_taps]
            z_en = (energy - s.score_mean[n_taps + 1]) / s.score_std[n_taps + 1]
            col = z_ml * w_ml + z_en * w_en
            for k in range(n_taps):
                w = w_tap if k < own else w_shared
                if w:  # own taps: sub-network t's features; shared-space taps: sub-network 0's
                    f = taps[t][k] if k < own else taps[0][k - own]
                    col = col - ((_tap_distance(f, s, k) - s.score_mean[k]) / s.score_std[k]) * w
            if w_pool:  # one metric pooled over the tasks, in sub-network 0's features
                dim = g0.shape[1]
                col = col - ((_nearest(g0, s.pool_means) - dim) / math.sqrt(2.0 * dim)) * w_pool
            score[:, t] = col
        task = torch.argmax(score, dim=1)
        confidence = torch.softmax(score, dim=1)[rows, task] * maxprob[rows, task]
    else:
        score = maxprob
        task = torch.argmax(maxprob, dim=1)
        if policy == "entropy" and len(logits) > 1:
            top2 = torch.topk(maxprob, 2, dim=1).indices  # [B, 2]
            sizes = torch.tensor([z.shape[1] for z in logits], dtype=probs.dtype, device=probs.device)
            ent = -(probs * torch.log(probs.clamp_min(1e-30))).sum(dim=2) / torch.log(sizes.clamp_min(2))
            e2 = torch.gather(ent, 1, top2)
            task = torch.gather(top2, 1, torch.argmin(e2, dim=1, keepdim=True)).squeeze(1)
        confidence = maxprob[rows, task]
    chosen = padded[rows, task]  # [B, C]
    local = torch.argmax(chosen, dim=1)
    cmax = padded.shape[2]
    table = torch.stack([torch.cat([c, c.new_full((cmax - c.numel(),), -1)]) for c in classes]).to(
        local.device
    )  # [N, Cmax]
    label = table[task, local]
    return Routed(label, task, confidence, score, padded)


@torch.no_grad()
def gather_routing_stats(
    model,
    task: int,
    images: np.ndarray,
    local_labels: np.ndarray,
    spec,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> RoutingStats:
    """Gather task ``task``'s routing statistics from its own training images and store them in its head:
    measured in its own sub-network and in sub-network 0's (the shared space, with its pooled-metric
    summaries; layout 3).

    Eval mode, no augmentation, the images in their stored order: deterministic, so
    ``mind-edge calibrate`` on a run equals what training gathered (on the same device).
    """
    was = model.training
    model.eval()
    device = torch.device(device)
    taps: list[list[np.ndarray]] = [[] for _ in model.tap_blocks]
    shared: list[list[np.ndarray]] = [[] for _ in model.tap_blocks]
    logits = []
    for x, _ in BatchLoader(
        images, local_labels, spec=spec, batch_size=batch_size, train=False, generator=None, device=device
    ):
        pooled = model.tap_features(x, task)
        # the shared space: sub-network 0 (frozen since task 0) on the same images
        pooled0 = pooled if task == 0 else model.tap_features(x, 0)
        for k, (f, f0) in enumerate(zip(pooled, pooled0)):
            taps[k].append(f.float().cpu().numpy())
            shared[k].append(f0.float().cpu().numpy())
        logits.append(model.heads[task](pooled[-1]).float().cpu().numpy())
    head = model.heads[task]
    stats = fit_routing_stats(
        [np.concatenate(f) for f in taps],
        np.asarray(local_labels),
        len(head.classes),
        np.concatenate(logits),
        shared=[np.concatenate(f) for f in shared],
    )
    head.routing.load_arrays(stats)
    model.train(was)
    return stats


def resolve_model_policy(model, policy: str | None) -> str:
    """``auto``/``None`` → the default policy when every task of ``model`` has routing statistics,
    else ``maxprob`` (the same rule as :func:`mind_edge.runtime.graph.resolve_policy`)."""
    if policy in (None, "auto"):
        return auto_policy(model.routing_stats())
    return get_policy(policy).name


def model_outputs(
    model,
    x: torch.Tensor,
    temperature: float,
    policy: str | None = "auto",
    stats: Sequence[TorchStats | None] | None = None,
) -> dict[str, torch.Tensor]:
    """The graph contract's outputs computed by the PyTorch model (label, task, confidence,
    task_confidence, task_logits, task_features) for a batch ``x``."""
    policy = resolve_model_policy(model, policy)
    logits, taps = model.forward_all_taps(x)
    if stats is None and get_policy(policy).needs_stats:
        stats = torch_stats(model.routing_stats(), x.device)
    r = route(logits, [h.classes for h in model.heads], temperature, policy, taps=taps, stats=stats)
    feats = torch.stack([torch.cat(t, dim=1) for t in taps], dim=1)  # [B, N, sum F_k]
    return {
        "label": r.label,
        "task": r.task,
        "confidence": r.confidence,
        "task_confidence": r.task_confidence,
        "task_logits": r.task_logits,
        "task_features": feats,
    }
