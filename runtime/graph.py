"""The ONNX graph of a MIND network, built from numpy arrays (torch-free: numpy + onnx only).

:class:`NetArrays` is a torch-free description of a trained network: its architecture config
(the ``net`` dict of ``run.json``), every masked conv (float32 weight + int8 owner map), every
per-task BatchNorm set and every task head with its global class ids. :func:`build_graph`
turns it into one ONNX model; :func:`read_arrays` reads a shared-layout model back into the
same arrays, so a device can add a task and rebuild ``model.onnx`` without PyTorch.

The topology is :func:`mind_edge.core.plan.plan_net` of the architecture config, the plan
``mind_edge.nets.MindNet`` is built from: ``resnet32`` = CIFAR ResNet-32 (3 stages x 5 blocks,
DownsampleA shortcut = strided slice + zero channels), ``resnet18`` = 4 stages x 2 blocks
with 1x1 conv + BN shortcuts; a 3x3 stem, global average pooling, one linear head per task.

**Task-stacked graph.** All N sub-networks run side by side in one pass: the activations carry
``N x C`` channels (task ``t`` owns channels ``[t*C, (t+1)*C)``), the stem is one conv with
``N x C_out`` filters and every later conv is a grouped conv with ``group = N``. So the graph
has the same nodes whatever N is; only the stacked constants grow with N.

* ``shared`` layout: each conv weight is stored once with its int8 owner map; the graph derives
  every task's masked weights at once, ``Mul(W, Cast(And(GreaterOrEqual(owner, 0),
  LessOrEqual(owner, t)), float))`` for ``t = 0..N-1`` (a ``[N, 1, 1, 1, 1]`` int8 constant),
  which ONNX Runtime constant-folds at session start, and applies task ``t``'s BN set
  (``BatchNormalization`` over the stacked channels). File size: one dense model + one byte
  per weight + N BN sets + N heads.
* ``folded`` layout: per-task weights with BN folded in (``W * mask_t * scale``, bias
  ``beta - mean * scale``) precomputed: N times larger, no work at session start, the input
  for TensorRT.

DownsampleA shortcuts (``resnet32``: subsample, then zero channels) are 1x1 strided grouped
convolutions with a 0/1 selection weight by default (``shortcut="conv"``; exact, +0.4 % FLOPs):
unlike Slice + Pad they keep ONNX Runtime's blocked NCHWc layout and its fused Conv+Add+Relu
through the whole backbone (measurements in ``benchmarks/LATENCY.md``).

Heads: one batched ``MatMul`` of the pooled features ``[B, N, 1, F]`` with the stacked,
zero-padded head weights ``[N, F, Cmax]`` plus the bias ``[N, Cmax]`` whose padding entries
are :data:`~mind_edge.runtime.routing.PAD_LOGIT`: ``task_logits`` ``[B, N, Cmax]``. The
routing head follows (see :mod:`mind_edge.runtime.routing`). Only ops TensorRT 10 parses,
static shapes apart from the batch, no data-dependent shapes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mind_edge import __version__
from mind_edge.core.plan import ConvPlan, NetPlan, plan_net, scaled_channels
from mind_edge.core.routing import (
    PAD_DISTANCE,
    PAD_LOGIT,
    STATS_VERSION,
    RoutingStats,
    auto_policy,
    check_stats_for,
    check_temperature,
    class_table,
    get_policy,
    plan_taps,
)
from mind_edge.errors import ConfigError, require
from mind_edge.runtime.errors import GraphError

log = logging.getLogger(__name__)

LAYOUTS = ("shared", "folded")
SHORTCUTS = ("conv", "pad")
GRAPH_META_KEY = "mind_edge.graph"
GRAPH_SCHEMA = 1
MIN_OPSET, MAX_OPSET = 13, 20
PROTOBUF_LIMIT = 2**31 - 1


# ----------------------------------------------------------------------------- contract


@dataclass(frozen=True)
class OutputSpec:
    name: str
    dtype: str  # numpy dtype name
    axes: tuple[str, ...]  # symbolic axes: batch, tasks, classes


@dataclass(frozen=True)
class GraphContract:
    """Names, axes, dtypes, opset and tolerance every mind-edge graph honours (README "Artifacts")."""

    input_name: str = "image"
    input_dtype: str = "float32"
    batch_axis: str = "batch"
    outputs: tuple[OutputSpec, ...] = (
        OutputSpec("label", "int64", ("batch",)),
        OutputSpec("task", "int64", ("batch",)),
        OutputSpec("confidence", "float32", ("batch",)),
        OutputSpec("task_confidence", "float32", ("batch", "tasks")),
        OutputSpec("task_logits", "float32", ("batch", "tasks", "classes")),
        # pooled features of every sub-network at the routing taps (a runtime re-routes from them)
        OutputSpec("task_features", "float32", ("batch", "tasks", "features")),
    )
    opset: int = 17
    atol: float = 1e-4  # a float output element passes when |Δ| <= atol ...
    rtol: float = 1e-5  # ... or |Δ| <= rtol * |reference| (Polygraphy's rule): float32 noise grows with |logit|
    layouts: tuple[str, ...] = LAYOUTS
    pad_logit: float = PAD_LOGIT
    #: score policies: task_confidence within score_rtol x the row's largest |score| (and confidence within it).
    #: Scores are sums of z-normalised squared distances: on a barely trained network (tiny feature spread)
    #: float32 rounding of the features moves them by ~1e-3 of the row; a wrong formula moves them by O(1).
    score_rtol: float = 1e-2

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    def output_shapes(self, num_tasks: int, cmax: int, features: int) -> dict[str, list[int]]:
        """Concrete shapes with ``-1`` for the dynamic batch (``features``: channels of all routing taps)."""
        dims = {"batch": -1, "tasks": num_tasks, "classes": cmax, "features": features}
        return {o.name: [dims[a] for a in o.axes] for o in self.outputs}

    def to_json(self, num_tasks: int, cmax: int, features: int) -> list[dict]:
        shapes = self.output_shapes(num_tasks, cmax, features)
        return [{"name": o.name, "shape": shapes[o.name], "dtype": o.dtype, "axes": list(o.axes)} for o in self.outputs]


CONTRACT = GraphContract()


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


# ----------------------------------------------------------------------------- builder


def _onnx():
    return require("onnx", "export", "building and reading ONNX graphs")


class _Builder:
    def __init__(self, onnx_mod) -> None:
        self.onnx = onnx_mod
        self.helper = onnx_mod.helper
        self.nodes: list = []
        self.inits: list = []
        self._const: dict[tuple, str] = {}

    def init(self, name: str, array: np.ndarray) -> str:
        # np.require keeps 0-d arrays scalar (np.ascontiguousarray would make them [1])
        self.inits.append(self.onnx.numpy_helper.from_array(np.require(array, requirements="C"), name))
        return name

    def const(self, values, dtype) -> str:
        arr = np.asarray(values, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._const:
            self._const[key] = self.init(f"const.{len(self._const)}", arr)
        return self._const[key]

    def node(self, op: str, inputs: Sequence[str], output: str, **attrs) -> str:
        self.nodes.append(self.helper.make_node(op, list(inputs), [output], name=output, **attrs))
        return output


def _stack_norm(norm: NormArrays) -> tuple[np.ndarray, ...]:
    return tuple(
        np.concatenate([getattr(s, k) for s in norm.sets]).astype(np.float32) for k in ("gamma", "beta", "mean", "var")
    )


def _folded(layer: LayerArrays, norm: NormArrays, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per task: ``W * mask_t * scale_t`` and ``beta_t - mean_t * scale_t`` (float64, then float32)."""
    w = layer.weight.astype(np.float64)
    owned = layer.owner >= 0
    ws, bs = [], []
    for t in range(n):
        s = norm.sets[t]
        mask = (owned & (layer.owner <= t)).astype(np.float64)
        scale = s.gamma.astype(np.float64) / np.sqrt(s.var.astype(np.float64) + s.eps)
        ws.append(w * mask * scale[:, None, None, None])
        bs.append(s.beta.astype(np.float64) - s.mean.astype(np.float64) * scale)
    return np.concatenate(ws).astype(np.float32), np.concatenate(bs).astype(np.float32)


def _conv_bn(b: _Builder, x: str, plan: ConvPlan, arrays: NetArrays, layout: str, n: int, grouped: bool) -> str:
    layer, norm = arrays.layer(plan.name), arrays.norm(plan.norm)
    k = plan.kernel
    attrs = dict(kernel_shape=[k, k], strides=[plan.stride] * 2, pads=[plan.padding] * 4, group=n if grouped else 1)
    if layout == "folded":
        w, bias = _folded(layer, norm, n)
        return b.node(
            "Conv",
            [x, b.init(f"{plan.name}.weight", w), b.init(f"{plan.name}.bias", bias)],
            f"{plan.name}.out",
            **attrs,
        )
    wname = b.init(f"{plan.name}.weight", layer.weight)
    oname = b.init(f"{plan.name}.owner", layer.owner)
    owned = b.node("GreaterOrEqual", [oname, b.const(0, np.int8)], f"{plan.name}.owned")
    owner5 = b.node("Unsqueeze", [oname, b.const([0], np.int64)], f"{plan.name}.owner5")
    upto = b.node("LessOrEqual", [owner5, b.const(np.arange(n).reshape(n, 1, 1, 1, 1), np.int8)], f"{plan.name}.upto")
    mask = b.node("And", [owned, upto], f"{plan.name}.mask")
    maskf = b.node("Cast", [mask], f"{plan.name}.maskf", to=b.onnx.TensorProto.FLOAT)
    w5 = b.node("Mul", [wname, maskf], f"{plan.name}.w_tasks")
    wt = b.node("Reshape", [w5, b.const([n * plan.out_ch, plan.in_ch, k, k], np.int64)], f"{plan.name}.w_stacked")
    y = b.node("Conv", [x, wt], f"{plan.name}.out", **attrs)
    eps = {s.eps for s in norm.sets}
    if len(eps) != 1:
        raise GraphError(
            f"BatchNorm {plan.norm} uses different eps per task ({sorted(eps)}); the shared layout applies one "
            "BatchNormalization over all tasks — export with --layout folded instead"
        )
    g, be, m, v = _stack_norm(norm)
    p = plan.norm
    return b.node(
        "BatchNormalization",
        [
            y,
            b.init(f"{p}.weight", g),
            b.init(f"{p}.bias", be),
            b.init(f"{p}.running_mean", m),
            b.init(f"{p}.running_var", v),
        ],
        f"{p}.out",
        epsilon=float(eps.pop()),
    )


def _shortcut_conv(b: _Builder, x: str, conv1: ConvPlan, layout: str, n: int, p: str) -> str:
    """DownsampleA (``x[:, :, ::s, ::s]`` then zero channels) as a 1x1 strided grouped conv.

    The weight of one task, ``[C_out, C_in, 1, 1]``, has a single 1 at ``[i, i]`` for every
    ``i < C_in`` and 0 elsewhere, so each output is exactly one input value (or 0). The folded
    layout stores it stacked for the N tasks; the shared layout stores one copy and broadcasts
    it with a ``[N, 1, 1, 1, 1]`` constant of ones (ONNX Runtime folds it at session start), so
    its file does not grow with N.
    """
    c_in, c_out, s = conv1.in_ch, conv1.out_ch, conv1.stride
    sel = np.zeros((c_out, c_in, 1, 1), dtype=np.float32)
    sel[np.arange(c_in), np.arange(c_in), 0, 0] = 1.0
    if layout == "folded":
        w = b.init(f"{p}.down_a.select", np.concatenate([sel] * n))
    else:
        one = b.init(f"{p}.down_a.select", sel)
        w5 = b.node("Mul", [one, b.const(np.ones((n, 1, 1, 1, 1)), np.float32)], f"{p}.down_a.select_tasks")
        w = b.node("Reshape", [w5, b.const([n * c_out, c_in, 1, 1], np.int64)], f"{p}.down_a.select_stacked")
    return b.node("Conv", [x, w], f"{p}.down_a", kernel_shape=[1, 1], strides=[s, s], pads=[0, 0, 0, 0], group=n)


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


def _reduce(b: _Builder, op: str, x: str, axes: list[int], out: str, opset: int, keepdims: int = 0) -> str:
    """Reduce* with ``axes`` as an attribute (opset < 18) or an input (opset >= 18; ReduceSum from 13)."""
    as_input = opset >= 18 or (op == "ReduceSum" and opset >= 13)
    if as_input:
        return b.node(op, [x, b.const(axes, np.int64)], out, keepdims=keepdims)
    return b.node(op, [x], out, axes=axes, keepdims=keepdims)


def _stats_initializers(b: _Builder, arrays: NetArrays) -> None:
    """The routing statistics as stacked initializers (route.tap{k}.whiten / means / pad, route.score_*)."""
    n, cmax = arrays.num_tasks, arrays.cmax
    stats = [h.stats for h in arrays.heads]
    for k in range(stats[0].num_taps):
        f = stats[0].tap_dims[k]
        means = np.zeros((n, cmax, f), dtype=np.float32)
        pad = np.full((n, cmax), PAD_DISTANCE, dtype=np.float32)
        for t, s in enumerate(stats):
            means[t, : s.num_classes] = s.means[k]
            pad[t, : s.num_classes] = 0.0
        b.init(f"route.tap{k}.whiten", np.stack([s.whiten[k] for s in stats]))
        b.init(f"route.tap{k}.means", means)
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
    b.node("Concat", taps, "task_features", axis=2)
    if get_policy(policy).needs_stats:  # a score policy's graph carries (and uses) every task's statistics
        _stats_initializers(b, arrays)
    tname = b.init("route.temperature", np.array(temperature, dtype=np.float32))
    probs = b.node("Softmax", [b.node("Div", [logits, tname], "route.scaled")], "route.probs", axis=2)
    maxprob = _reduce(b, "ReduceMax", probs, [2], "route.maxprob", opset)  # [B, N]
    pol = get_policy(policy)
    if pol.needs_stats:
        # one structure for every score policy: score = w_ml*z_maxlogit + w_en*z_energy - sum_k w_k*z_k
        # (w_k: the own-tap weight for the task's own sub-network's taps, the shared weight for sub-network 0's)
        w_tap, w_ml, w_en, w_shared = pol.weights
        score_mean, score_std = "route.score_mean", "route.score_std"
        col = lambda x, j, name: b.node("Gather", [x, b.const(j, np.int64)], name, axis=1)  # [N]
        k_taps = arrays.heads[0].stats.num_taps if arrays.heads[0].stats is not None else len(taps)
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
        stats0 = arrays.heads[0].stats
        own = stats0.own_taps if stats0 is not None else k_taps
        shared = {}  # sub-network 0's pooled features at tap j, [B, 1, F_j]: the shared space of every task
        for k in range(stats0.num_taps if stats0 is not None else k_taps):
            p = f"route.tap{k}"
            if k < own:
                tap, w = taps[k], w_tap
            else:
                j = k - own
                if j not in shared:
                    shared[j] = b.node(
                        "Slice",
                        [taps[j], b.const([0], np.int64), b.const([1], np.int64), b.const([1], np.int64)],
                        f"route.shared{j}",
                    )
                tap, w = shared[j], w_shared
            norm = b.node(
                "Max",
                [
                    _reduce(b, "ReduceL2", tap, [2], f"{p}.norm", opset, keepdims=1),
                    b.const(np.float32(1e-12), np.float32),
                ],
                f"{p}.norm_floor",
            )
            f = b.node("Unsqueeze", [b.node("Div", [tap, norm], f"{p}.unit"), b.const([2], np.int64)], f"{p}.row")
            g = b.node("MatMul", [f, f"{p}.whiten"], f"{p}.white")  # [B, N or 1, 1, F_k] x [N, F_k, F_k]
            diff = b.node("Sub", [g, f"{p}.means"], f"{p}.diff")  # [B, N, Cmax, F_k]
            d = _reduce(b, "ReduceSum", b.node("Mul", [diff, diff], f"{p}.sq"), [3], f"{p}.d_raw", opset)
            d = b.node("Add", [d, f"{p}.pad"], f"{p}.dist")  # [B, N, Cmax]; padding classes never the minimum
            # ReduceMin keeping the axis, then Squeeze: OpenVINO 2026.4's CPU plugin mis-fuses a ReduceMin with
            # keepdims=0 into the z-score below (task_confidence off by hundreds; test_openvino_routing.py)
            dmin_kd = _reduce(b, "ReduceMin", d, [2], f"{p}.dmin_kd", opset, keepdims=1)  # [B, N, 1]
            dmin = b.node("Squeeze", [dmin_kd, b.const([2], np.int64)], f"{p}.dmin")  # [B, N]
            z = b.node(
                "Div",
                [b.node("Sub", [dmin, col(score_mean, k, f"{p}.mean")], f"{p}.centred"), col(score_std, k, f"{p}.std")],
                f"{p}.z",
            )
            term = b.node("Mul", [z, b.const(np.float32(w), np.float32)], f"{p}.term")
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


def build_graph(
    arrays: NetArrays,
    *,
    layout: str = "shared",
    temperature: float,
    opset: int = CONTRACT.opset,
    contract: GraphContract = CONTRACT,
    doc: str | None = None,
    shortcut: str = "conv",
    policy: str = "auto",
):
    """Build the ONNX model (``onnx.ModelProto``) of ``arrays`` in ``layout`` at ``temperature``,
    routing with ``policy`` (:mod:`mind_edge.core.routing`; ``auto``: :func:`resolve_policy`).

    ``shortcut`` chooses how the parameter-free DownsampleA shortcuts of ``resnet32`` are
    written: ``conv`` (default) as a 1x1 strided grouped convolution with a 0/1 selection
    weight (exact: every output is one input value), which keeps ONNX Runtime's blocked NCHWc
    layout and its Conv+Add+Relu fusion through the whole backbone; ``pad`` as the literal
    Slice + Pad (ORT then reorders NCHWc <-> NCHW around every later block, about 10 % slower;
    see benchmarks/LATENCY.md).
    """
    onnx = _onnx()
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if shortcut not in SHORTCUTS:
        raise ConfigError(f"unknown shortcut form {shortcut!r}; choose one of {', '.join(SHORTCUTS)}")
    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ConfigError(
            f"opset {opset} is not supported; mind-edge builds opsets {MIN_OPSET}..{MAX_OPSET} "
            f"(TensorRT 10 parses them; {CONTRACT.opset} is the default)"
        )
    temperature = check_temperature(temperature)
    pol = get_policy(resolve_policy(policy, arrays))
    plan = check_arrays(arrays)
    n, cmax = arrays.num_tasks, arrays.cmax
    if pol.needs_stats:
        check_stats_for(pol, [h.stats for h in arrays.heads], n)
    tap_blocks, tap_dims = plan_taps(plan)
    taps: list[str] = []
    b = _Builder(onnx)
    TP = onnx.TensorProto
    h, w = plan.input_size
    # -- backbone: every task side by side, task t in channels [t*C, (t+1)*C)
    x = _conv_bn(b, contract.input_name, plan.stem, arrays, layout, n, grouped=False)
    x = b.node("Relu", [x], "stem.relu")
    for i, blk in enumerate(plan.blocks):
        p = f"blocks.{i}"
        y = b.node("Relu", [_conv_bn(b, x, blk.conv1, arrays, layout, n, grouped=True)], f"{p}.relu1")
        y = _conv_bn(b, y, blk.conv2, arrays, layout, n, grouped=True)
        s = blk.conv1.stride
        h2, w2 = blk.conv1.out_size((h, w))
        if blk.shortcut == "A" and shortcut == "conv":
            sc = _shortcut_conv(b, x, blk.conv1, layout, n, p)
        elif blk.shortcut == "A":
            extra = blk.conv1.out_ch - blk.conv1.in_ch
            sc = b.node(
                "Slice",
                [
                    x,
                    b.const([0, 0], np.int64),
                    b.const([2**62, 2**62], np.int64),
                    b.const([2, 3], np.int64),
                    b.const([s, s], np.int64),
                ],
                f"{p}.down_a.slice",
            )
            if n == 1:
                sc = b.node("Pad", [sc, b.const([0, 0, 0, 0, 0, extra, 0, 0], np.int64)], f"{p}.down_a.pad")
            else:
                sc = b.node("Reshape", [sc, b.const([-1, n, blk.conv1.in_ch, h2, w2], np.int64)], f"{p}.down_a.split")
                sc = b.node("Pad", [sc, b.const([0, 0, 0, 0, 0, 0, 0, extra, 0, 0], np.int64)], f"{p}.down_a.pad")
                sc = b.node("Reshape", [sc, b.const([-1, n * blk.conv1.out_ch, h2, w2], np.int64)], f"{p}.down_a.merge")
        elif blk.shortcut == "B":
            assert blk.down is not None
            sc = _conv_bn(b, x, blk.down, arrays, layout, n, grouped=True)
        else:
            sc = x
        x = b.node("Relu", [b.node("Add", [y, sc], f"{p}.add")], f"{p}.relu2")
        h, w = h2, w2
        if i in tap_blocks:  # routing tap: this block's pooled output per task, [B, N, F_k]
            k = len(taps)
            pool = b.node("GlobalAveragePool", [x], f"route.tap{k}.pool")
            taps.append(b.node("Reshape", [pool, b.const([-1, n, tap_dims[k]], np.int64)], f"route.tap{k}"))
    # -- heads: [B, N, 1, F] x [N, F, Cmax] + [N, Cmax] (padding rows: weight 0, bias PAD_LOGIT)
    f = plan.feature_dim
    pooled = b.node("GlobalAveragePool", [x], "pool")
    feat = b.node("Reshape", [pooled, b.const([-1, n, 1, f], np.int64)], "features")
    hw = np.zeros((n, f, cmax), dtype=np.float32)
    hb = np.full((n, cmax), contract.pad_logit, dtype=np.float32)
    for t, head in enumerate(arrays.heads):
        hw[t, :, : len(head.classes)] = head.weight.T
        hb[t, : len(head.classes)] = head.bias
    mm = b.node("MatMul", [feat, b.init("heads.weight", hw)], "heads.matmul")
    mm = b.node("Reshape", [mm, b.const([-1, n, cmax], np.int64)], "heads.logits")
    logits = b.node("Add", [mm, b.init("heads.bias", hb)], "task_logits")
    # -- routing head (every node and initializer named route.*: kept in FP32 by every precision)
    _routing_head(b, logits, taps, arrays, pol.name, temperature, opset)

    batch = contract.batch_axis
    c_in = plan.in_channels
    H, W = plan.input_size
    inputs = [onnx.helper.make_tensor_value_info(contract.input_name, TP.FLOAT, [batch, c_in, H, W])]
    dims = {"batch": batch, "tasks": n, "classes": cmax, "features": int(sum(tap_dims))}
    dtypes = {"int64": TP.INT64, "float32": TP.FLOAT}
    outputs = [
        onnx.helper.make_tensor_value_info(o.name, dtypes[o.dtype], [dims[a] for a in o.axes]) for o in contract.outputs
    ]
    graph = onnx.helper.make_graph(
        b.nodes,
        f"mind_edge_{plan.arch}_{layout}",
        inputs,
        outputs,
        b.inits,
        doc_string=doc or f"MIND {plan.arch}, {n} tasks, {layout} layout, T={temperature}, routing {pol.name}",
    )
    opset_ids = [onnx.helper.make_opsetid("", int(opset))]
    model = onnx.helper.make_model(
        graph, opset_imports=opset_ids, producer_name="mind-edge", producer_version=__version__
    )
    model.ir_version = onnx.helper.find_min_ir_version_for(opset_ids)
    meta = {
        "schema": GRAPH_SCHEMA,
        "layout": layout,
        "net": dict(arrays.net),
        "num_tasks": n,
        "cmax": cmax,
        "temperature": temperature,
        "routing": {
            "policy": pol.name,
            "version": pol.version,
            "tap_blocks": list(tap_blocks),
            "tap_dims": list(tap_dims),
            "stats": pol.needs_stats,
            "stats_version": STATS_VERSION,
            "stats_shared": _shared_taps(arrays) if pol.needs_stats else 0,
            "stats_count": [h.stats.count if h.stats is not None else 0 for h in arrays.heads],
        },
        "classes": arrays.task_classes,
        "layers": [{"name": x.name, "stride": x.stride, "padding": x.padding} for x in arrays.layers],
        # one eps per norm when the tasks share it (always, for nets.py), so the metadata does not grow with N
        "norms": [
            {"name": x.name, "eps": x.sets[0].eps if len({s.eps for s in x.sets}) == 1 else [s.eps for s in x.sets]}
            for x in arrays.norms
        ],
    }
    onnx.helper.set_model_props(model, {GRAPH_META_KEY: json.dumps(meta, separators=(",", ":"))})
    size = model.ByteSize()
    if size > PROTOBUF_LIMIT:
        raise GraphError(
            f"the {layout} graph of {n} tasks would be {size / 2**30:.2f} GiB, over protobuf's 2 GiB limit for one "
            "ONNX file; use --layout shared (one copy of the weights) or fewer/narrower tasks"
        )
    return model


def graph_meta(model) -> dict:
    """The mind-edge metadata of an ONNX model (raises GraphError for foreign models)."""
    for prop in model.metadata_props:
        if prop.key == GRAPH_META_KEY:
            try:
                meta = json.loads(prop.value)
            except json.JSONDecodeError as exc:
                raise GraphError(f"the ONNX model's {GRAPH_META_KEY} metadata is not valid JSON: {exc}") from exc
            if meta.get("schema") != GRAPH_SCHEMA:
                raise GraphError(
                    f"the ONNX model's graph metadata has schema {meta.get('schema')!r}; this mind-edge reads schema "
                    f"{GRAPH_SCHEMA}. Re-export the bundle with this version"
                )
            return meta
    raise GraphError(f"the ONNX model has no {GRAPH_META_KEY} metadata; it was not built by mind-edge")


def read_arrays(model_or_path) -> NetArrays:
    """Read a shared-layout mind-edge ONNX model (path or ``ModelProto``) back into :class:`NetArrays`."""
    onnx = _onnx()
    if isinstance(model_or_path, (str, Path)):
        path = Path(model_or_path)
        try:
            model = onnx.load(str(path))
        except FileNotFoundError as exc:
            raise GraphError(f"ONNX file {path} does not exist") from exc
        except Exception as exc:  # onnx raises DecodeError and friends
            raise GraphError(f"{path} is not a readable ONNX file: {exc}") from exc
        where = str(path)
    else:
        model, where = model_or_path, "the ONNX model"
    meta = graph_meta(model)
    if meta["layout"] != "shared":
        raise GraphError(
            f"{where} has the {meta['layout']!r} layout; only the 'shared' layout stores each weight once with its "
            "owner map and can be read back into network arrays. Re-export with --layout shared"
        )
    inits = {i.name: np.array(onnx.numpy_helper.to_array(i), copy=True) for i in model.graph.initializer}

    def get(name: str) -> np.ndarray:
        if name not in inits:
            raise GraphError(f"{where} lacks the initializer {name!r}; it is not a complete mind-edge shared graph")
        return inits[name]

    n, cmax = int(meta["num_tasks"]), int(meta["cmax"])
    layers = tuple(
        LayerArrays(
            x["name"],
            get(f"{x['name']}.weight").astype(np.float32, copy=False),
            get(f"{x['name']}.owner").astype(np.int8, copy=False),
            int(x["stride"]),
            int(x["padding"]),
        )
        for x in meta["layers"]
    )
    norms = []
    for x in meta["norms"]:
        p = x["name"]
        parts = [get(f"{p}.{k}").reshape(n, -1) for k in ("weight", "bias", "running_mean", "running_var")]
        eps = x["eps"] if isinstance(x["eps"], list) else [x["eps"]] * n
        sets = tuple(NormSet(*(np.ascontiguousarray(a[t]) for a in parts), eps=float(eps[t])) for t in range(n))
        norms.append(NormArrays(p, sets))
    hw, hb = get("heads.weight"), get("heads.bias")
    if hw.shape[0] != n or hb.shape != (n, cmax):
        raise GraphError(
            f"{where}: head tensors {list(hw.shape)}/{list(hb.shape)} do not match {n} tasks x {cmax} classes"
        )
    heads = tuple(
        HeadArrays(
            np.ascontiguousarray(hw[t, :, : len(c)].T), np.ascontiguousarray(hb[t, : len(c)]), tuple(int(v) for v in c)
        )
        for t, c in enumerate(meta["classes"])
    )
    routing = meta.get("routing") or {}
    if routing.get("stats"):
        heads = _read_stats(heads, routing, get, where)
    arrays = NetArrays(net=dict(meta["net"]), layers=layers, norms=tuple(norms), heads=heads)
    check_arrays(arrays)
    return arrays


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
    names |= {"route.score_mean", "route.score_std"}
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name in names}

    def get(name: str) -> np.ndarray:
        if name not in inits:
            raise GraphError(f"the graph lacks the initializer {name!r}; it is not a complete mind-edge graph")
        return inits[name]

    return list(_stats_from_initializers(meta["classes"], routing, get, "the ONNX model"))


# ----------------------------------------------------------------------------- sizes


def expected_bytes(arrays: NetArrays, layout: str, policy: str = "auto") -> int:
    """Bytes of the initializers a graph of ``arrays`` in ``layout`` routing with ``policy`` stores
    (file size minus structure)."""
    n, cmax = arrays.num_tasks, arrays.cmax
    p = arrays.dense_weight_count()
    bn_ch = sum(x.sets[0].gamma.size for x in arrays.norms)
    heads = n * cmax * (arrays.heads[0].weight.shape[1] + 1) * 4
    route = n * cmax * 8 + 4
    # DownsampleA shortcuts as 1x1 selection convs (build_graph's default shortcut="conv")
    select = sum(blk.conv1.out_ch * blk.conv1.in_ch * 4 for blk in plan_net(arrays.net).blocks if blk.shortcut == "A")
    stats = routing_stats_bytes(arrays) if get_policy(resolve_policy(policy, arrays)).needs_stats else 0
    if layout == "shared":
        return p * 5 + n * bn_ch * 16 + heads + route + stats + (select + n * 4 if select else 0)
    return n * p * 4 + n * bn_ch * 4 + heads + route + stats + n * select


def routing_stats_bytes(arrays: NetArrays) -> int:
    """Bytes of the stacked routing-statistics initializers (0 without statistics)."""
    if not arrays.has_stats:
        return 0
    n, cmax = arrays.num_tasks, arrays.cmax
    dims = arrays.heads[0].stats.tap_dims
    return 4 * n * (sum(f * f + f * cmax + cmax for f in dims) + 2 * (len(dims) + 2))


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


def naive_sizes(arrays: NetArrays, opset: int = CONTRACT.opset) -> tuple[int, int]:
    """``(dense, naive)``: bytes of the largest single dense sub-network graph (folded, one head) and
    of all N of them, i.e. what exporting N separate sub-networks would cost."""
    sizes = [
        build_graph(subnetwork_arrays(arrays, t), layout="folded", temperature=1.0, opset=opset).ByteSize()
        for t in range(arrays.num_tasks)
    ]
    return max(sizes), sum(sizes)


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
    """Plausible random routing statistics (whitening of a random covariance, means, score spreads)."""
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
    return RoutingStats(
        whiten=tuple(whiten),
        means=tuple(means),
        score_mean=(rng.standard_normal(k) * 2 + 10).astype(np.float32),
        score_std=(rng.random(k) * 3 + 0.5).astype(np.float32),
        count=int(rng.integers(10, 1000)),
        shared_taps=len(net_dims),
    )


__all__ = [
    "CONTRACT",
    "GraphContract",
    "OutputSpec",
    "LAYOUTS",
    "LayerArrays",
    "NormSet",
    "NormArrays",
    "HeadArrays",
    "NetArrays",
    "NetPlan",
    "plan_net",
    "check_arrays",
    "build_graph",
    "read_arrays",
    "graph_meta",
    "expected_bytes",
    "subnetwork_arrays",
    "naive_sizes",
    "random_arrays",
    "random_stats",
    "resolve_policy",
    "graph_policy",
    "read_routing_stats",
    "routing_stats_bytes",
    "scaled_channels",
]
