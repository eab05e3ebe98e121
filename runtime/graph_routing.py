"""The routing head in the ONNX graph, and the routing statistics it carries (torch-free: numpy + onnx).

One home for routing's ONNX form: which policy a graph computes (:func:`resolve_policy`,
:func:`graph_policy`), the task-selection head :func:`mind_edge.runtime.graph.build_graph` appends
after ``task_logits`` (every node and initializer named ``route.*``), the stacked statistics
initializers it writes and :func:`read_routing_stats` reads back. The formulas and the policies are
:mod:`mind_edge.core.routing`'s (same order of float32 operations as its numpy form).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mind_edge.core.routing import (
    PAD_DISTANCE,
    RoutingStats,
    auto_policy,
    class_table,
    get_policy,
    pooled_space,
)
from mind_edge.errors import ConfigError
from mind_edge.runtime.arrays import HeadArrays, NetArrays
from mind_edge.runtime.errors import GraphError
from mind_edge.runtime.onnx_builder import _Builder, _onnx, _reduce, graph_meta


def resolve_policy(policy: str | None, arrays: NetArrays) -> str:
    """``auto``/``None`` → the default policy when every task has routing statistics, else ``maxprob``."""
    if policy in (None, "auto"):
        return auto_policy([h.stats for h in arrays.heads])
    return get_policy(policy).name


def graph_policy(model_or_path) -> str:
    """The routing policy a mind-edge graph (``ModelProto`` or path) computes (``maxprob`` for graphs older
    than policies)."""
    if isinstance(model_or_path, (str, Path)):
        model_or_path = _onnx().load(str(model_or_path), load_external_data=False)
    return str((graph_meta(model_or_path).get("routing") or {}).get("policy", "maxprob"))


def _by_class(rows: Sequence[np.ndarray], cmax: int) -> np.ndarray:
    """Every task's ``[C_t, F]`` class rows stacked as ``[N, Cmax, F]`` float32, zero beyond a task's classes."""
    out = np.zeros((len(rows), cmax, rows[0].shape[1]), dtype=np.float32)
    for t, r in enumerate(rows):
        out[t, : r.shape[0]] = r
    return out


def _stats_initializers(b: _Builder, arrays: NetArrays, pooled: bool) -> None:
    """The routing statistics as stacked initializers (route.tap{k}.whiten / means / pad, route.score_*;
    layout 3: every task's summaries route.pool.class_means / cov / m4, and with ``pooled`` the metric
    derived from them, route.pool.whiten / means)."""
    n, cmax = arrays.num_tasks, arrays.cmax
    stats = [h.stats for h in arrays.heads]
    if stats[0].layout >= 3:  # the tasks' own summaries: what a patch or another policy re-derives the pool from
        b.init("route.pool.class_means", _by_class([s.pool_means for s in stats], cmax))
        b.init("route.pool.cov", np.stack([s.pool_cov for s in stats]))
        b.init("route.pool.m4", np.stack([s.pool_m4 for s in stats]))
        if pooled:
            whiten, white_means = pooled_space(stats)
            b.init("route.pool.whiten", whiten)
            b.init("route.pool.means", _by_class(white_means, cmax))
    pad = np.full((n, cmax), PAD_DISTANCE, dtype=np.float32)
    for t, s in enumerate(stats):
        pad[t, : s.num_classes] = 0.0
    for k in range(stats[0].num_taps):
        b.init(f"route.tap{k}.whiten", np.stack([s.whiten[k] for s in stats]))
        b.init(f"route.tap{k}.means", _by_class([s.means[k] for s in stats], cmax))
        b.init(f"route.tap{k}.pad", pad)
    b.init("route.score_mean", np.stack([s.score_mean for s in stats]))
    b.init("route.score_std", np.stack([s.score_std for s in stats]))


def _shared_taps(arrays: NetArrays) -> int:
    """Shared-space taps of the tasks' statistics (all tasks share one layout; checked by check_stats_for)."""
    return arrays.heads[0].stats.shared_taps if arrays.heads[0].stats is not None else 0


def _routing_head(
    b: _Builder, logits: str, taps: list[str], arrays: NetArrays, policy: str, temperature: float, opset: int
) -> None:
    """The task-selection head of ``policy``: outputs task, label, confidence, task_confidence, task_features.

    The formulas are those of :mod:`mind_edge.core.routing` (same order of float32 operations as
    its numpy form), so ONNX Runtime, numpy and torch agree.
    """
    n, cmax = arrays.num_tasks, arrays.cmax
    pol = get_policy(policy)
    b.node("Concat", taps, "task_features", axis=2)
    if pol.needs_stats:  # a score policy's graph carries every task's statistics (and uses its policy's)
        _stats_initializers(b, arrays, pol.needs_pool)
    tname = b.init("route.temperature", np.array(temperature, dtype=np.float32))
    probs = b.node("Softmax", [b.node("Div", [logits, tname], "route.scaled")], "route.probs", axis=2)
    maxprob = _reduce(b, "ReduceMax", probs, [2], "route.maxprob", opset)  # [B, N]
    if pol.needs_stats:
        # one structure for every score policy: score = w_ml*z_maxlogit + w_en*z_energy - sum_k w_k*z_k
        # (w_k: the own-tap weight for the task's own sub-network's taps, the shared weight for sub-network 0's)
        w_tap, w_ml, w_en, w_shared, w_pool = pol.weights
        score_mean, score_std = "route.score_mean", "route.score_std"
        col = lambda x, j, name: b.node("Gather", [x, b.const(j, np.int64)], name, axis=1)  # [N]
        stats0 = arrays.heads[0].stats  # every task has statistics of one layout (build_graph checked them)
        k_taps, own = stats0.num_taps, stats0.own_taps
        ml = _reduce(b, "ReduceMax", logits, [2], "route.maxlogit", opset)  # [B, N]
        shifted = b.node(
            "Sub",
            [logits, b.node("Unsqueeze", [ml, b.const([2], np.int64)], "route.maxlogit.col")],
            "route.energy.shifted",
        )
        total = _reduce(b, "ReduceSum", b.node("Exp", [shifted], "route.energy.exp"), [2], "route.energy.sum", opset)
        energy = b.node("Add", [ml, b.node("Log", [total], "route.energy.log")], "route.energy")
        zs = []
        for name, x, j in (("maxlogit", ml, k_taps), ("energy", energy, k_taps + 1)):
            centred = b.node("Sub", [x, col(score_mean, j, f"route.{name}.mean")], f"route.{name}.centred")
            zs.append(b.node("Div", [centred, col(score_std, j, f"route.{name}.std")], f"route.{name}.z"))
        score = b.node(
            "Add",
            [
                b.node("Mul", [zs[0], b.const(np.float32(w_ml), np.float32)], "route.maxlogit.term"),
                b.node("Mul", [zs[1], b.const(np.float32(w_en), np.float32)], "route.energy.term"),
            ],
            "route.logit_score",
        )
        shared: dict[int, str] = {}

        def shared_tap(j: int) -> str:  # sub-network 0's pooled features at tap j, [B, 1, F_j]
            if j not in shared:
                one = b.const([1], np.int64)
                shared[j] = b.node("Slice", [taps[j], b.const([0], np.int64), one, one], f"route.shared{j}")
            return shared[j]

        def unit(tap: str, p: str) -> str:  # tap / max(||tap||, 1e-12) along the channels
            norm = _reduce(b, "ReduceL2", tap, [2], f"{p}.norm", opset, keepdims=1)
            floor = b.node("Max", [norm, b.const(np.float32(1e-12), np.float32)], f"{p}.norm_floor")
            return b.node("Div", [tap, floor], f"{p}.unit")

        def nearest(g: str, p: str) -> str:  # [B, N]: squared distance of g to each task's nearest class mean
            diff = b.node("Sub", [g, f"{p}.means"], f"{p}.diff")  # [B, N, Cmax, F]
            d = _reduce(b, "ReduceSum", b.node("Mul", [diff, diff], f"{p}.sq"), [3], f"{p}.d_raw", opset)
            d = b.node("Add", [d, "route.tap0.pad"], f"{p}.dist")  # [B, N, Cmax]; padding classes never the minimum
            # ReduceMin keeping the axis, then Squeeze: OpenVINO 2026.4's CPU plugin mis-fuses a ReduceMin with
            # keepdims=0 into the z-score after it (task_confidence off by hundreds; test_openvino_routing.py)
            dmin_kd = _reduce(b, "ReduceMin", d, [2], f"{p}.dmin_kd", opset, keepdims=1)  # [B, N, 1]
            return b.node("Squeeze", [dmin_kd, b.const([2], np.int64)], f"{p}.dmin")

        for k in range(k_taps):
            p = f"route.tap{k}"
            tap, w = (taps[k], w_tap) if k < own else (shared_tap(k - own), w_shared)
            if not w:
                continue
            f = b.node("Unsqueeze", [unit(tap, p), b.const([2], np.int64)], f"{p}.row")
            g = b.node("MatMul", [f, f"{p}.whiten"], f"{p}.white")  # [B, N or 1, 1, F_k] x [N, F_k, F_k]
            dmin = nearest(g, p)
            z = b.node(
                "Div",
                [b.node("Sub", [dmin, col(score_mean, k, f"{p}.mean")], f"{p}.centred"), col(score_std, k, f"{p}.std")],
                f"{p}.z",
            )
            term = b.node("Mul", [z, b.const(np.float32(w), np.float32)], f"{p}.term")
            score = b.node("Sub", [score, term], f"{p}.score")
        if w_pool:  # one metric pooled over the tasks, in sub-network 0's concatenated unit features
            p = "route.pool"
            units = [unit(shared_tap(j), f"{p}.tap{j}") for j in range(own)]
            feats = b.node("Concat", units, f"{p}.features", axis=2)  # [B, 1, D]
            f = b.node("Unsqueeze", [feats, b.const([2], np.int64)], f"{p}.row")
            g = b.node("MatMul", [f, f"{p}.whiten"], f"{p}.white")  # [B, 1, 1, D] x [D, D]
            dim = int(stats0.pool_means.shape[1])
            centred = b.node("Sub", [nearest(g, p), b.const(np.float32(dim), np.float32)], f"{p}.centred")
            # the chi-square standardisation of core.routing.pool_chi_square
            z = b.node("Div", [centred, b.const(np.float32(np.sqrt(2.0 * dim)), np.float32)], f"{p}.z")
            term = b.node("Mul", [z, b.const(np.float32(w_pool), np.float32)], f"{p}.term")
            score = b.node("Sub", [score, term], f"{p}.score")
        task_conf = b.node("Identity", [score], "task_confidence")
        task = b.node("ArgMax", [task_conf], "task", axis=1, keepdims=0, select_last_index=0)
        weight = b.node("Softmax", [task_conf], "route.task_prob", axis=1)
        conf_matrix = b.node("Mul", [weight, maxprob], "route.confidence_matrix")
    else:
        task_conf = b.node("Identity", [maxprob], "task_confidence")
        conf_matrix = task_conf
        if policy == "entropy" and n > 1:
            logp = b.node(
                "Log",
                [b.node("Max", [probs, b.const(np.float32(1e-30), np.float32)], "route.probs_floor")],
                "route.logp",
            )
            ent = _reduce(b, "ReduceSum", b.node("Mul", [probs, logp], "route.plogp"), [2], "route.neg_entropy", opset)
            sizes = np.log(np.maximum(np.array([len(h.classes) for h in arrays.heads], np.float32), np.float32(2.0)))
            ent = b.node(
                "Div", [b.node("Neg", [ent], "route.entropy_raw"), b.init("route.entropy_norm", sizes)], "route.entropy"
            )
            # outputs route.top2_values and (appended below) the indices route.top2, read by name
            b.node("TopK", [task_conf, b.const([2], np.int64)], "route.top2_values", axis=1, largest=1, sorted=1)
            b.nodes[-1].output.append("route.top2")
            e2 = b.node("GatherElements", [ent, "route.top2"], "route.top2_entropy", axis=1)
            pick = b.node("ArgMin", [e2], "route.pick", axis=1, keepdims=1, select_last_index=0)
            task_2d = b.node("GatherElements", ["route.top2", pick], "route.task_2d", axis=1)
            task = b.node("Squeeze", [task_2d, b.const([1], np.int64)], "task")
        else:
            task = b.node("ArgMax", [task_conf], "task", axis=1, keepdims=0, select_last_index=0)
    table = class_table(arrays.task_classes, cmax)
    local_all = b.node("ArgMax", [logits], "route.local_all", axis=2, keepdims=0, select_last_index=0)
    task_col = b.node("Unsqueeze", [task, b.const([1], np.int64)], "route.task_col")
    local = b.node("GatherElements", [local_all, task_col], "route.local", axis=1)
    conf_col = b.node("GatherElements", [conf_matrix, task_col], "route.confidence_col", axis=1)
    b.node("Squeeze", [conf_col, b.const([1], np.int64)], "confidence")
    offset = b.node("Mul", [task_col, b.const(cmax, np.int64)], "route.offset")
    flat = b.node("Add", [offset, local], "route.flat_index")
    label_col = b.node("Gather", [b.init("route.class_table", table.reshape(-1)), flat], "route.label_col", axis=0)
    b.node("Squeeze", [label_col, b.const([1], np.int64)], "label")


def _read_stats(heads: tuple[HeadArrays, ...], routing: Mapping[str, Any], get, where: str) -> tuple[HeadArrays, ...]:
    """Heads with the routing statistics stored in the graph's route.* initializers."""
    stats = _stats_from_initializers([h.classes for h in heads], routing, get, where)
    return tuple(dataclasses.replace(h, stats=st) for h, st in zip(heads, stats))


def _stats_from_initializers(
    classes: Sequence[Sequence[int]], routing: Mapping[str, Any], get, where: str
) -> list[RoutingStats]:
    net_dims = [int(f) for f in routing.get("tap_dims", [])]
    counts = [int(c) for c in routing.get("stats_count", [])]
    n = len(classes)
    if len(counts) != n or not net_dims:
        raise GraphError(f"{where}: the routing metadata does not describe {n} tasks' statistics; re-export the bundle")
    shared = int(routing.get("stats_shared", 0))  # graphs of statistics layout 1 have no shared-space taps
    if shared not in (0, len(net_dims)):
        raise GraphError(f"{where}: the routing metadata names {shared} shared-space taps for {len(net_dims)} taps")
    dims = net_dims + (net_dims if shared else [])
    pooled = bool(routing.get("stats_pool", 0))  # layout 3
    if pooled and not shared:
        raise GraphError(f"{where}: the routing metadata names pooled-metric summaries without shared-space taps")
    pool = [get(f"route.pool.{x}") for x in ("class_means", "cov", "m4")] if pooled else None
    whiten = [get(f"route.tap{k}.whiten") for k in range(len(dims))]
    means = [get(f"route.tap{k}.means") for k in range(len(dims))]
    score_mean, score_std = get("route.score_mean"), get("route.score_std")
    out = []
    for t, cl in enumerate(classes):
        c = len(cl)
        try:
            stats = RoutingStats(
                whiten=tuple(np.ascontiguousarray(w[t], dtype=np.float32) for w in whiten),
                means=tuple(np.ascontiguousarray(m[t, :c], dtype=np.float32) for m in means),
                score_mean=np.ascontiguousarray(score_mean[t], dtype=np.float32),
                score_std=np.ascontiguousarray(score_std[t], dtype=np.float32),
                count=counts[t],
                shared_taps=shared,
                pool_means=np.ascontiguousarray(pool[0][t, :c], dtype=np.float32) if pool else None,
                pool_cov=np.ascontiguousarray(pool[1][t], dtype=np.float32) if pool else None,
                pool_m4=np.ascontiguousarray(pool[2][t], dtype=np.float32) if pool else None,
            )
            stats.check(net_dims, c, where=f"task {t}")
        except (IndexError, ValueError, ConfigError) as exc:
            raise GraphError(
                f"{where}: routing statistics of task {t} are malformed ({exc}); re-export the bundle"
            ) from exc
        out.append(stats)
    return out


def read_routing_stats(model_or_path) -> list[RoutingStats | None]:
    """Every task's routing statistics carried by a mind-edge graph of any layout (``None`` each when the
    graph's policy uses none)."""
    onnx = _onnx()
    model = onnx.load(str(model_or_path)) if isinstance(model_or_path, (str, Path)) else model_or_path
    meta = graph_meta(model)
    routing = meta.get("routing") or {}
    if not routing.get("stats"):
        return [None] * int(meta["num_tasks"])
    n_taps = len(routing.get("tap_dims", [])) * (2 if routing.get("stats_shared") else 1)
    names = {f"route.tap{k}.{x}" for k in range(n_taps) for x in ("whiten", "means")}
    names |= {"route.score_mean", "route.score_std", "route.pool.class_means", "route.pool.cov", "route.pool.m4"}
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name in names}

    def get(name: str) -> np.ndarray:
        if name not in inits:
            raise GraphError(f"the graph lacks the initializer {name!r}; it is not a complete mind-edge graph")
        return inits[name]

    return list(_stats_from_initializers(meta["classes"], routing, get, "the ONNX model"))


def routing_stats_bytes(arrays: NetArrays, pooled: bool = False) -> int:
    """Bytes of the stacked routing-statistics initializers (0 without statistics); ``pooled``: with the
    pooled metric derived for a policy that uses it."""
    if not arrays.has_stats:
        return 0
    n, cmax = arrays.num_tasks, arrays.cmax
    stats = arrays.heads[0].stats
    dims = stats.tap_dims
    pool = derived = 0
    if stats.pool_means is not None:
        d = stats.pool_means.shape[1]
        pool = stats.pool_cov.size + 1 + cmax * d
        derived = 4 * (d * d + n * cmax * d) if pooled else 0
    return 4 * n * (sum(f * f + f * cmax + cmax for f in dims) + 2 * (len(dims) + 2) + pool) + derived


__all__ = ["resolve_policy", "graph_policy", "read_routing_stats", "routing_stats_bytes"]
