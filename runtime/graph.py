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

Where the pieces live: the arrays contract (:class:`NetArrays`, :func:`check_arrays`,
:func:`random_arrays`) is :mod:`mind_edge.runtime.arrays`; the routing head and its statistics
initializers are :mod:`mind_edge.runtime.graph_routing`; the builder plumbing and the graph
metadata are :mod:`mind_edge.runtime.onnx_builder`. This module keeps the graph contract, the
backbone and heads builder, :func:`read_arrays` and the size estimates, and re-exports the
public names of the other three (import them from here or from their home).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mind_edge import __version__
from mind_edge.core.plan import ConvPlan, NetPlan, plan_net, scaled_channels
from mind_edge.core.routing import PAD_LOGIT, STATS_VERSION, check_stats_for, check_temperature, get_policy, plan_taps
from mind_edge.errors import ConfigError
from mind_edge.runtime.arrays import (
    HeadArrays,
    LayerArrays,
    NetArrays,
    NormArrays,
    NormSet,
    check_arrays,
    random_arrays,
    random_stats,
    subnetwork_arrays,
)
from mind_edge.runtime.errors import GraphError
from mind_edge.runtime.graph_routing import (
    _read_stats,
    _routing_head,
    _shared_taps,
    graph_policy,
    read_routing_stats,
    resolve_policy,
    routing_stats_bytes,
)
from mind_edge.runtime.onnx_builder import GRAPH_META_KEY, GRAPH_SCHEMA, _Builder, _onnx, graph_meta

log = logging.getLogger(__name__)

LAYOUTS = ("shared", "folded")
SHORTCUTS = ("conv", "pad")
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


# ----------------------------------------------------------------------------- builder


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
            "stats_version": arrays.heads[0].stats.layout if pol.needs_stats else STATS_VERSION,
            "stats_shared": _shared_taps(arrays) if pol.needs_stats else 0,
            "stats_pool": int(arrays.heads[0].stats.layout >= 3) if pol.needs_stats else 0,
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
    pol = get_policy(resolve_policy(policy, arrays))
    stats = routing_stats_bytes(arrays, pol.needs_pool) if pol.needs_stats else 0
    if layout == "shared":
        return p * 5 + n * bn_ch * 16 + heads + route + stats + (select + n * 4 if select else 0)
    return n * p * 4 + n * bn_ch * 4 + heads + route + stats + n * select


def naive_sizes(arrays: NetArrays, opset: int = CONTRACT.opset) -> tuple[int, int]:
    """``(dense, naive)``: bytes of the largest single dense sub-network graph (folded, one head) and
    of all N of them, i.e. what exporting N separate sub-networks would cost."""
    sizes = [
        build_graph(subnetwork_arrays(arrays, t), layout="folded", temperature=1.0, opset=opset).ByteSize()
        for t in range(arrays.num_tasks)
    ]
    return max(sizes), sum(sizes)


__all__ = [
    "CONTRACT",
    "GraphContract",
    "OutputSpec",
    "LAYOUTS",
    "SHORTCUTS",
    "MIN_OPSET",
    "MAX_OPSET",
    "GRAPH_META_KEY",
    "GRAPH_SCHEMA",
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
