"""The torch-free network arrays contract: what a mind-edge graph is built from and read back into.

:class:`NetArrays` describes a trained network with numpy arrays only: its architecture config (the
``net`` dict of ``run.json``), every masked conv (float32 weight + int8 owner map), every per-task
BatchNorm set and every task head with its global class ids (and, optionally, its routing statistics).
:func:`check_arrays` holds them against the architecture's plan (:func:`mind_edge.core.plan.plan_net`);
:func:`random_arrays` is the one synthetic-network maker. The ONNX form is :mod:`mind_edge.runtime.graph`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mind_edge.core.plan import NetPlan, plan_net
from mind_edge.core.routing import RoutingStats, pack_symmetric, plan_taps
from mind_edge.errors import ConfigError
from mind_edge.runtime.errors import GraphError

# ----------------------------------------------------------------------------- arrays


@dataclass(frozen=True, eq=False)
class LayerArrays:
    """One masked conv: ``name`` is its state_dict prefix, e.g. ``blocks.3.conv1``."""

    name: str
    weight: np.ndarray  # float32 [O, I, k, k]
    owner: np.ndarray  # int8, same shape; -1 free, t owned by task t
    stride: int
    padding: int


@dataclass(frozen=True, eq=False)
class NormSet:
    """One task's BatchNorm (inference statistics and affine parameters), float32 [C] each."""

    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float = 1e-5


@dataclass(frozen=True, eq=False)
class NormArrays:
    """A per-task BatchNorm: ``name`` is its state_dict prefix, e.g. ``blocks.3.bn1``."""

    name: str
    sets: tuple[NormSet, ...]


@dataclass(frozen=True, eq=False)
class HeadArrays:
    """A task's linear head over its classes and the global class ids they stand for."""

    weight: np.ndarray  # float32 [C_t, F]
    bias: np.ndarray  # float32 [C_t]
    classes: tuple[int, ...]
    stats: RoutingStats | None = None  # the task's routing statistics (mind_edge.core.routing)


@dataclass(frozen=True, eq=False)
class NetArrays:
    """A torch-free description of a MIND network (what a graph is built from)."""

    net: Mapping[str, Any]  # NetConfig.to_json(): arch, in_channels, input_size, width, capacity
    layers: tuple[LayerArrays, ...]
    norms: tuple[NormArrays, ...]
    heads: tuple[HeadArrays, ...]

    @property
    def num_tasks(self) -> int:
        return len(self.heads)

    @property
    def cmax(self) -> int:
        return max(len(h.classes) for h in self.heads)

    @property
    def task_classes(self) -> list[list[int]]:
        return [list(h.classes) for h in self.heads]

    def layer(self, name: str) -> LayerArrays:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise GraphError(f"the network arrays have no masked layer {name!r}; layers: {_names(self.layers)}")

    def norm(self, name: str) -> NormArrays:
        for norm in self.norms:
            if norm.name == name:
                return norm
        raise GraphError(f"the network arrays have no BatchNorm {name!r}; norms: {_names(self.norms)}")

    def dense_weight_count(self) -> int:
        return int(sum(layer.weight.size for layer in self.layers))

    def first_tasks(self, k: int) -> NetArrays:
        """The network of the first ``k`` tasks: as it was before task ``k`` was learned.

        Their BN sets and heads; weights owned by later tasks are freed (owner -1, weight 0). Exact
        for MIND runs (every prune zeroes the remaining free weights, so before task ``k`` every
        weight not owned by tasks ``< k`` was 0), and the same network for every task ``< k``
        whatever the freed weights held (a task reads only weights owned by it or earlier tasks).
        ``k == num_tasks`` gives ``self``.
        """
        if not 1 <= k <= self.num_tasks:
            raise ConfigError(f"cannot keep {k} tasks of a network holding {self.num_tasks}; use 1..{self.num_tasks}")
        if k == self.num_tasks:
            return self
        layers = tuple(
            LayerArrays(
                la.name,
                np.where(la.owner >= k, np.float32(0), la.weight).astype(np.float32),
                np.where(la.owner >= k, np.int8(-1), la.owner).astype(np.int8),
                la.stride,
                la.padding,
            )
            for la in self.layers
        )
        norms = tuple(NormArrays(x.name, tuple(x.sets[:k])) for x in self.norms)
        return NetArrays(net=dict(self.net), layers=layers, norms=norms, heads=tuple(self.heads[:k]))

    def same_as(self, other: NetArrays) -> bool:
        """Bit-exact equality of every array, class id and config value."""

        def eq(a: np.ndarray, b: np.ndarray) -> bool:
            return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()

        if dict(self.net) != dict(other.net) or len(self.layers) != len(other.layers):
            return False
        if len(self.norms) != len(other.norms) or len(self.heads) != len(other.heads):
            return False
        mine = {x.name: x for x in self.layers}
        for b in other.layers:
            a = mine.get(b.name)
            if (
                a is None
                or (a.stride, a.padding) != (b.stride, b.padding)
                or not eq(a.weight, b.weight)
                or not eq(a.owner, b.owner)
            ):
                return False
        norms = {x.name: x for x in self.norms}
        for b in other.norms:
            a = norms.get(b.name)
            if a is None or len(a.sets) != len(b.sets):
                return False
            for s, u in zip(a.sets, b.sets):
                if s.eps != u.eps or not all(
                    eq(getattr(s, k), getattr(u, k)) for k in ("gamma", "beta", "mean", "var")
                ):
                    return False
        for a, b in zip(self.heads, other.heads):
            if a.classes != b.classes or not eq(a.weight, b.weight) or not eq(a.bias, b.bias):
                return False
            if (a.stats is None) != (b.stats is None) or (a.stats is not None and not a.stats.same_as(b.stats)):
                return False
        return True

    @property
    def has_stats(self) -> bool:
        """Every task has routing statistics."""
        return all(h.stats is not None for h in self.heads)

    def routing_stats(self) -> list[RoutingStats | None]:
        return [h.stats for h in self.heads]


def _names(items) -> str:
    names = [x.name for x in items]
    return ", ".join(names[:6]) + (f", … ({len(names)} in all)" if len(names) > 6 else "")


# ----------------------------------------------------------------------------- topology


def check_arrays(arrays: NetArrays) -> NetPlan:
    """Check that ``arrays`` fit the architecture of ``arrays.net``; returns the plan."""
    plan = plan_net(arrays.net)
    n = arrays.num_tasks
    if n < 1:
        raise GraphError("the network has no task head; train at least one task before exporting")
    convs = plan.convs()
    want = {c.name for c in convs}
    have = {layer.name for layer in arrays.layers}
    if want != have:
        raise GraphError(
            f"the masked layers do not fit a {plan.arch}: missing {sorted(want - have)[:4]}, unexpected "
            f"{sorted(have - want)[:4]}; was the net config {dict(arrays.net)} written by another version?"
        )
    norms_want = {c.norm for c in convs}
    norms_have = {x.name for x in arrays.norms}
    if norms_want != norms_have:
        raise GraphError(
            f"the BatchNorms do not fit a {plan.arch}: missing {sorted(norms_want - norms_have)[:4]}, "
            f"unexpected {sorted(norms_have - norms_want)[:4]}"
        )
    for c in convs:
        layer = arrays.layer(c.name)
        shape = (c.out_ch, c.in_ch, c.kernel, c.kernel)
        if layer.weight.dtype != np.float32 or layer.weight.shape != shape:
            raise GraphError(
                f"layer {c.name}: expected a float32 weight of shape {list(shape)}, got "
                f"{layer.weight.dtype} {list(layer.weight.shape)}"
            )
        if layer.owner.dtype != np.int8 or layer.owner.shape != shape:
            raise GraphError(
                f"layer {c.name}: expected an int8 owner map of shape {list(shape)}, got "
                f"{layer.owner.dtype} {list(layer.owner.shape)}"
            )
        if (layer.stride, layer.padding) != (c.stride, c.padding):
            raise GraphError(
                f"layer {c.name}: expected stride {c.stride} padding {c.padding}, got stride "
                f"{layer.stride} padding {layer.padding}"
            )
        norm = arrays.norm(c.norm)
        if len(norm.sets) != n:
            raise GraphError(f"BatchNorm {c.norm} has {len(norm.sets)} task sets but the network has {n} heads")
        for t, s in enumerate(norm.sets):
            for k in ("gamma", "beta", "mean", "var"):
                v = getattr(s, k)
                if v.dtype != np.float32 or v.shape != (c.out_ch,):
                    raise GraphError(
                        f"BatchNorm {c.norm} task {t}: {k} should be float32 [{c.out_ch}], "
                        f"got {v.dtype} {list(v.shape)}"
                    )
            if not (s.eps > 0 and math.isfinite(s.eps)):
                raise GraphError(f"BatchNorm {c.norm} task {t}: eps must be > 0, got {s.eps}")
    seen: dict[int, int] = {}
    for t, head in enumerate(arrays.heads):
        c_t = len(head.classes)
        if c_t < 1 or head.weight.shape != (c_t, plan.feature_dim) or head.bias.shape != (c_t,):
            raise GraphError(
                f"head of task {t}: expected weight [{c_t}, {plan.feature_dim}] and bias [{c_t}] for its "
                f"{c_t} classes, got {list(head.weight.shape)} and {list(head.bias.shape)}"
            )
        if head.weight.dtype != np.float32 or head.bias.dtype != np.float32:
            raise GraphError(
                f"head of task {t}: expected float32 weight and bias, got {head.weight.dtype}/{head.bias.dtype}"
            )
        for c in head.classes:
            if c < 0:
                raise GraphError(f"head of task {t}: global class ids must be >= 0, got {c}")
            if c in seen:
                raise GraphError(f"class {c} belongs to task {seen[c]} and task {t}; tasks must hold disjoint classes")
            seen[c] = t
    return plan


def subnetwork_arrays(arrays: NetArrays, task: int) -> NetArrays:
    """Sub-network ``task`` alone as a dense single-task network (weights ``W * mask_task``).

    Exporting this for every task is the naive alternative to one shared graph.
    """
    layers = []
    for layer in arrays.layers:
        mask = (layer.owner >= 0) & (layer.owner <= task)
        layers.append(
            LayerArrays(
                layer.name,
                layer.weight * mask.astype(np.float32),
                np.where(mask, 0, -1).astype(np.int8),
                layer.stride,
                layer.padding,
            )
        )
    norms = tuple(NormArrays(x.name, (x.sets[task],)) for x in arrays.norms)
    return NetArrays(net=dict(arrays.net), layers=tuple(layers), norms=norms, heads=(arrays.heads[task],))


# ----------------------------------------------------------------------------- synthetic


def random_arrays(
    net: Mapping[str, Any],
    task_classes: Sequence[Sequence[int]],
    *,
    seed: int = 0,
    free_fraction: float = 0.1,
    stats: bool = False,
    owners: str = "uniform",
) -> NetArrays:
    """A random network of ``net`` (Kaiming-normal weights, random owners and BN sets, random heads).

    The one synthetic-network maker (torch-free; tests, benchmarks, devices; ``export.synthetic``
    starts from it). BN statistics keep activations at a moderate scale. ``owners``:

    * ``"uniform"``: the owner of every weight is drawn uniformly from the tasks (a
      ``free_fraction`` stays free);
    * ``"mind"``: MIND's structure, as after a real run: every task claims exactly
      ``numel // capacity`` of the still-free weights of every layer and the free weights are 0,
      so :meth:`NetArrays.first_tasks` gives the exact network before any task
      (``free_fraction`` is not used).
    """
    if owners not in ("uniform", "mind"):
        raise ConfigError(f"unknown owner structure {owners!r}; use 'uniform' or 'mind'")
    plan = plan_net(net)
    rng = np.random.default_rng(seed)
    n = len(task_classes)
    if owners == "mind":
        if n > int(net["capacity"]):
            raise ConfigError(f"{n} tasks do not fit capacity {net['capacity']}")
        free_fraction = 0.0
    layers, norms = [], []
    for c in plan.convs():
        shape = (c.out_ch, c.in_ch, c.kernel, c.kernel)
        std = math.sqrt(2.0 / (c.out_ch * c.kernel * c.kernel))
        w = (rng.standard_normal(shape) * std).astype(np.float32)
        owner = rng.integers(0, n, size=shape).astype(np.int8)
        owner[rng.random(shape) < free_fraction] = -1
        layers.append(LayerArrays(c.name, w, owner, c.stride, c.padding))
        sets = tuple(
            NormSet(
                gamma=(rng.random(c.out_ch) * 0.5 + 0.25).astype(np.float32),
                beta=(rng.standard_normal(c.out_ch) * 0.1).astype(np.float32),
                mean=(rng.standard_normal(c.out_ch) * 0.1).astype(np.float32),
                var=(rng.random(c.out_ch) + 0.5).astype(np.float32),
            )
            for _ in range(n)
        )
        norms.append(NormArrays(c.norm, sets))
    heads = tuple(
        HeadArrays(
            (rng.standard_normal((len(cl), plan.feature_dim)) * (8.0 / math.sqrt(plan.feature_dim))).astype(np.float32),
            (rng.standard_normal(len(cl)) * 0.5).astype(np.float32),
            tuple(int(v) for v in cl),
        )
        for cl in task_classes
    )
    if stats:
        heads = tuple(dataclasses.replace(h, stats=random_stats(plan, len(h.classes), rng)) for h in heads)
    if owners == "mind":
        layers = _mind_owners(layers, n, int(net["capacity"]), np.random.default_rng(seed + 1))
    return NetArrays(net=dict(net), layers=tuple(layers), norms=tuple(norms), heads=heads)


def _mind_owners(layers: Sequence[LayerArrays], n: int, capacity: int, rng: np.random.Generator) -> list[LayerArrays]:
    """``layers`` with MIND's owners: task by task, ``numel // capacity`` of the free weights; free weights 0."""
    out = []
    for la in layers:
        owner = np.full(la.owner.size, -1, dtype=np.int8)
        k = la.owner.size // capacity
        for t in range(n):
            owner[rng.choice(np.flatnonzero(owner == -1), size=k, replace=False)] = t
        owner = owner.reshape(la.owner.shape)
        out.append(
            LayerArrays(
                la.name, np.where(owner >= 0, la.weight, np.float32(0)).astype(np.float32), owner, la.stride, la.padding
            )
        )
    return out


def random_stats(plan: NetPlan, num_classes: int, rng: np.random.Generator) -> RoutingStats:
    """Plausible random routing statistics of layout 3 (whitening of a random covariance, means, score spreads,
    pooled-metric summaries)."""
    _, net_dims = plan_taps(plan)
    dims = tuple(net_dims) * 2  # layout 2: own taps, then the shared-space taps
    whiten, means = [], []
    for f in dims:
        a = rng.standard_normal((f, f)) / math.sqrt(f)
        cov = a @ a.T + 0.05 * np.eye(f)
        w = np.linalg.cholesky(np.linalg.inv(cov))
        whiten.append(w.astype(np.float32))
        means.append((rng.standard_normal((num_classes, f)) / math.sqrt(f) @ w).astype(np.float32))
    k = len(dims) + 2
    d = int(sum(net_dims))  # layout 3: the pooled metric's summaries of unit taps (residual variance ~ 1 per tap)
    a = rng.standard_normal((d, d)) / math.sqrt(d)
    cov = (a @ a.T + 0.05 * np.eye(d)) * (len(net_dims) / d)
    return RoutingStats(
        whiten=tuple(whiten),
        means=tuple(means),
        score_mean=(rng.standard_normal(k) * 2 + 10).astype(np.float32),
        score_std=(rng.random(k) * 3 + 0.5).astype(np.float32),
        count=int(rng.integers(10, 1000)),
        shared_taps=len(net_dims),
        pool_means=(rng.standard_normal((num_classes, d)) / math.sqrt(d)).astype(np.float32),
        pool_cov=pack_symmetric(cov).astype(np.float32),
        pool_m4=np.array([np.trace(cov) ** 2 * 1.2], dtype=np.float32),
    )


__all__ = [
    "LayerArrays",
    "NormSet",
    "NormArrays",
    "HeadArrays",
    "NetArrays",
    "check_arrays",
    "subnetwork_arrays",
    "random_arrays",
    "random_stats",
]
