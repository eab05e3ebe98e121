"""INT8 QDQ graphs of a mind-edge network (torch-free: numpy + onnx + ``onnxruntime.quantization``).

:func:`int8_model` quantizes the folded graph, rewritten one chain per task by :func:`unstack_tasks`,
with ``onnxruntime.quantization.quantize_static`` and checks that the routing head stayed FP32
(:func:`check_fp32_routing`). The why and the numbers: :mod:`mind_edge.runtime.precision`.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mind_edge.core.routing import get_policy
from mind_edge.errors import ConfigError, require
from mind_edge.runtime.graph import CONTRACT, build_graph
from mind_edge.runtime.graph_routing import resolve_policy
from mind_edge.runtime.precision_regions import (
    INT8_METHODS,
    ROUTE_PREFIX,
    PrecisionError,
    _onnx,
    _set_precision_meta,
    backbone_nodes,
    fp32_nodes,
)

CALIBRATION_BATCH = 16
log = logging.getLogger(__name__)


def unstack_tasks(model, num_tasks: int):
    """A copy of the **folded** ``model`` whose backbone runs as ``num_tasks`` separate chains.

    The task-stacked graph carries the N sub-networks side by side (``N x C`` channels, grouped
    convolutions with ``group = N``; the stem is one convolution with ``N x C`` filters on the
    image). Here every backbone node is replicated per task with its slice of the weights
    (output channels ``[t*C, (t+1)*C)``; ``group = 1``): task ``t``'s tensors are named
    ``<tensor>.t<t>``. Each stacked tensor read outside the backbone (the pooling input) is
    rebuilt with one ``Concat`` over the tasks, so pooling, heads and the routing head are
    untouched and every output is identical (exactly: each per-task convolution computes the
    same sums as its group of the grouped one).

    Supported backbone ops: Conv (grouped over N tasks, or ungrouped on the shared image),
    Relu, Add — what ``build_graph`` writes with the default ``shortcut="conv"``. Anything else
    raises :class:`PrecisionError`.
    """
    onnx = _onnx()
    numpy_helper = onnx.numpy_helper

    helper = onnx.helper
    n = int(num_tasks)
    g = model.graph
    back = backbone_nodes(model)
    inits = {i.name: i for i in g.initializer}
    graph_inputs = {i.name for i in g.input}
    readers: dict[str, set[str]] = {}
    for node in g.node:
        for i in node.input:
            readers.setdefault(i, set()).add(node.name)
    stacked: set[str] = set()  # tensors produced in the backbone (available per task)
    new_nodes, new_inits = [], []
    used_inits: set[str] = set()
    sliced: dict[tuple[str, int], str] = {}

    def tname(name: str, t: int) -> str:
        return f"{name}.t{t}"

    def weight_slice(name: str, t: int) -> str:
        key = (name, t)
        if key not in sliced:
            arr = numpy_helper.to_array(inits[name])
            if arr.shape[0] % n:
                raise PrecisionError(f"initializer {name} has {arr.shape[0]} rows, not a multiple of the {n} tasks")
            per = arr.shape[0] // n
            new_inits.append(
                numpy_helper.from_array(np.ascontiguousarray(arr[t * per : (t + 1) * per]), tname(name, t))
            )
            sliced[key] = tname(name, t)
        return sliced[key]

    for node in g.node:
        if node.name not in back:
            new_nodes.append(node)
            used_inits.update(i for i in node.input if i in inits)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            x = node.input[0]
            group = int(attrs.get("group", 1))
            if x in stacked and group == n:
                per_task_input = True
            elif x in graph_inputs and group == 1:
                per_task_input = False
            else:
                raise PrecisionError(
                    f"cannot split convolution {node.name} per task (group {group}, {n} tasks); the "
                    "INT8 export supports graphs built with the default conv shortcuts"
                )
            for t in range(n):
                ins = [tname(x, t) if per_task_input else x]
                ins += [weight_slice(i, t) for i in node.input[1:] if i]
                new_nodes.append(
                    helper.make_node(
                        "Conv", ins, [tname(node.output[0], t)], name=tname(node.name, t), **{**attrs, "group": 1}
                    )
                )
        elif node.op_type in ("Relu", "Add"):
            if not all(i in stacked for i in node.input):
                raise PrecisionError(
                    f"cannot split {node.op_type} node {node.name} per task: it reads a tensor that is "
                    "not a backbone activation"
                )
            for t in range(n):
                new_nodes.append(
                    helper.make_node(
                        node.op_type,
                        [tname(i, t) for i in node.input],
                        [tname(node.output[0], t)],
                        name=tname(node.name, t),
                        **attrs,
                    )
                )
        else:
            raise PrecisionError(
                f"cannot split {node.op_type} node {node.name} per task; the INT8 export supports "
                "graphs built with the default conv shortcuts (--layout folded or shared, no /pad)"
            )
        out = node.output[0]
        stacked.add(out)
        outside = readers.get(out, set()) - back
        if outside:
            new_nodes.append(
                helper.make_node("Concat", [tname(out, t) for t in range(n)], [out], name=f"{out}.concat", axis=1)
            )
    result = onnx.ModelProto()
    result.CopyFrom(model)
    del result.graph.node[:]
    result.graph.node.extend(new_nodes)
    keep = [i for i in g.initializer if i.name in used_inits]
    del result.graph.initializer[:]
    result.graph.initializer.extend(keep + new_inits)
    del result.graph.value_info[:]
    return result


class _HintFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()


class _quiet_quantizer:
    """Drop onnxruntime.quantization's "consider pre-processing" hints (logged on the root
    logger): mind-edge graphs are already shape-inferred and constant-folded."""

    def __enter__(self):
        self.f = _HintFilter()
        logging.getLogger().addFilter(self.f)
        return self

    def __exit__(self, *exc) -> None:
        logging.getLogger().removeFilter(self.f)


class _Reader:
    """``onnxruntime.quantization.CalibrationDataReader`` over a float32 NCHW array."""

    def __init__(self, x: np.ndarray, input_name: str, batch: int = CALIBRATION_BATCH) -> None:
        self.x, self.name, self.batch, self.i = x, input_name, int(batch), 0

    def get_next(self):
        if self.i >= self.x.shape[0]:
            return None
        b = self.x[self.i : self.i + self.batch]
        self.i += self.batch
        return {self.name: b}

    def rewind(self) -> None:
        self.i = 0


def check_int8_method(method: str) -> str:
    """``method`` when it is one of :data:`INT8_METHODS` (one ConfigError line listing them otherwise)."""
    if method not in INT8_METHODS:
        raise ConfigError(f"unknown INT8 calibration method {method!r}; choose one of {', '.join(INT8_METHODS)}")
    return method


@dataclass(frozen=True)
class Int8Options:
    """How :func:`int8_model` quantizes (the defaults are what ``mind-edge export --precision int8`` uses)."""

    per_task: bool = True  # run each task as its own chain (see unstack_tasks)
    per_channel: bool = True
    activation: str = "uint8"  # uint8 (x86 VNNI) | int8 (symmetric; ARM, TensorRT)
    method: str = "minmax"  # minmax | percentile | entropy (onnxruntime.quantization.CalibrationMethod)
    keep_fp32: tuple[str, ...] = ()  # backbone node-name prefixes left in FP32 (e.g. "stem.", "blocks.14.")
    #: sub-network 0's chain left FP32 (see features_stay_fp32); None: decided by the routing policy
    fp32_features: bool | None = None

    def resolve(self, arrays, policy: str = "auto") -> Int8Options:
        """These options with ``fp32_features`` decided (:func:`features_stay_fp32` when it is None)."""
        if self.fp32_features is not None:
            return self
        return replace(self, fp32_features=features_stay_fp32(arrays, policy))

    def to_json(self) -> dict:
        return {
            "per_task": self.per_task,
            "per_channel": self.per_channel,
            "activation": self.activation,
            "weights": "int8 symmetric",
            "method": self.method,
            "format": "QDQ",
            "keep_fp32": list(self.keep_fp32),
            "fp32_features": bool(self.fp32_features),
        }


def features_stay_fp32(arrays, policy: str = "auto") -> bool:
    """Whether the routing head of ``policy`` reads sub-network 0's pooled tap features (the
    shared-space and pooled-metric policies: ``shared``, ``lda``, the default ``combined``).

    Those features decide the route like the routing statistics do, so by the rule that
    everything deciding the route stays FP32, sub-network 0's chain is left unquantized in the
    INT8 graph. Measured on the trained CIFAR-10/5 run (ResNet-32 w1, ``combined``, 1,000 test
    images): routing agreement with FP32 98.4 % -> 99.4 %, for 1/N of the backbone in FP32
    (benchmarks/results/int8-variants.json)."""
    pol = get_policy(resolve_policy(policy, arrays))
    return bool(pol.needs_shared or pol.needs_pool)


def sub_network_0(model, num_tasks: int) -> list[str]:
    """Names of sub-network 0's backbone nodes in a per-task graph (:func:`unstack_tasks` names
    them ``*.t0``; with one task, the whole backbone), without Q/DQ nodes: the chain an INT8 graph
    keeps FP32 when ``fp32_features`` is on (before quantizing, and when pinning it on TensorRT)."""
    back = backbone_nodes(model)
    return [
        m.name
        for m in model.graph.node
        if m.name in back
        and m.op_type not in ("QuantizeLinear", "DequantizeLinear")
        and (num_tasks == 1 or m.name.endswith(".t0"))
    ]


def int8_model(
    arrays,
    calibration: np.ndarray,
    *,
    temperature: float,
    opset: int | None = None,
    options: Int8Options = Int8Options(),
    policy: str = "auto",
):
    """The INT8 QDQ graph of ``arrays`` (routing with ``policy``) calibrated on ``calibration``
    (float32 NCHW, normalised)."""
    onnx = _onnx()

    quant = require("onnxruntime.quantization", "ort", "quantizing a graph to INT8 (onnxruntime.quantization)")

    x = np.ascontiguousarray(calibration, dtype=np.float32)
    if x.ndim != 4 or x.shape[0] < 1:
        raise ConfigError(
            f"INT8 calibration needs at least one image as float32 [B, C, H, W], got shape {list(x.shape)}"
        )
    if options.activation not in ("uint8", "int8"):
        raise ConfigError(f"activation type must be uint8 or int8, got {options.activation!r}")
    methods = {
        "minmax": quant.CalibrationMethod.MinMax,
        "percentile": quant.CalibrationMethod.Percentile,
        "entropy": quant.CalibrationMethod.Entropy,
    }
    check_int8_method(options.method)
    options = options.resolve(arrays, policy)
    n = arrays.num_tasks
    if options.fp32_features and n > 1 and not options.per_task:
        raise ConfigError(
            "sub-network 0 can stay FP32 only in the per-task INT8 graph (per_task=True); pass fp32_features=False "
            "to quantize the task-stacked graph"
        )
    opset = int(opset or CONTRACT.opset)
    model = build_graph(arrays, layout="folded", temperature=float(temperature), opset=opset, policy=policy)
    if options.per_task and n > 1:
        model = unstack_tasks(model, n)
    exclude = fp32_nodes(model)
    kept: list[str] = []  # backbone nodes left FP32 (they read FP32 tensors, see _unquantized_inputs)
    if options.fp32_features:  # sub-network 0's chain (every backbone node when there is one task)
        if n == 1:
            log.warning(
                "a one-task network is all sub-network 0, whose features the routing head reads: the INT8 graph "
                "keeps it FP32 (nothing quantized); --int8-quantize-features quantizes it"
            )
        kept += sub_network_0(model, n)
    if options.keep_fp32:
        backbone = [n.name for n in model.graph.node if n.name not in exclude]
        unmatched = [p for p in options.keep_fp32 if not any(name.startswith(p) for name in backbone)]
        if unmatched:
            prefixes = sorted(
                {
                    name.split(".")[0] + ("." + name.split(".")[1] if name.startswith("blocks.") else "")
                    for name in backbone
                    if "." in name
                }
            )
            raise ConfigError(
                f"--int8-keep-fp32: no backbone node starts with {', '.join(map(repr, unmatched))}; node names start "
                f"with e.g. {', '.join(p + '.' for p in prefixes[:8])}"
            )
        kept += [name for name in backbone if name.startswith(tuple(options.keep_fp32))]
    exclude += kept
    act = quant.QuantType.QUInt8 if options.activation == "uint8" else quant.QuantType.QInt8
    extra = {"WeightSymmetric": True, "ActivationSymmetric": options.activation == "int8"}
    with tempfile.TemporaryDirectory(prefix="mind-edge-int8-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model, str(src))
        with _quiet_quantizer():
            quant.quantize_static(
                str(src),
                str(dst),
                _Reader(x, CONTRACT.input_name),
                quant_format=quant.QuantFormat.QDQ,
                per_channel=options.per_channel,
                activation_type=act,
                weight_type=quant.QuantType.QInt8,
                nodes_to_exclude=exclude,
                op_types_to_quantize=["Conv", "Add", "Relu"],
                calibrate_method=methods[options.method],
                extra_options=extra,
            )
        out = onnx.load(str(dst))
    _unquantized_inputs(out, set(kept))
    check_fp32_routing(out)
    _set_precision_meta(
        onnx,
        out,
        {
            "precision": "int8",
            "layout": "folded",
            **options.to_json(),
            "calibration_images": int(x.shape[0]),
            "fp32": "pool, heads, task_logits, route.*" + (", sub-network 0" if options.fp32_features else ""),
        },
    )
    return out


def _unquantized_inputs(model, kept: set[str]) -> None:
    """Let every node of ``kept`` read the FP32 tensor where the quantizer gave it a
    ``DequantizeLinear(QuantizeLinear(x))`` copy of ``x`` (a tensor it shares with quantized
    nodes, e.g. the image read by every task's stem), then drop Q/DQ nodes nobody reads."""
    producer = {o: node for node in model.graph.node for o in node.output}

    def source(t: str) -> str:
        dq = producer.get(t)
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        return q.input[0] if q is not None and q.op_type == "QuantizeLinear" else t

    for node in model.graph.node:
        if node.name in kept:
            for j, t in enumerate(node.input):
                node.input[j] = source(t)
    outputs = {o.name for o in model.graph.output}
    dropped: set[str] = set()  # the dropped nodes' scales and zero points (route.* statistics stay)
    while True:
        read = {i for node in model.graph.node for i in node.input} | outputs
        dead = [
            node
            for node in model.graph.node
            if node.op_type in ("QuantizeLinear", "DequantizeLinear") and not set(node.output) & read
        ]
        if not dead:
            break
        for node in dead:
            dropped.update(node.input)
            model.graph.node.remove(node)
    read = {i for node in model.graph.node for i in node.input}
    unused = [i for i in model.graph.initializer if i.name in dropped and i.name not in read]
    for i in unused:
        model.graph.initializer.remove(i)


def check_fp32_routing(model) -> None:
    """Raise unless every ``route.*`` initializer is float32 (or an integer table), no Q/DQ node
    touches a ``route.*`` node's tensors, and every node outside the backbone reads no int8 data."""
    onnx = _onnx()
    TP = onnx.TensorProto
    bad = [
        i.name
        for i in model.graph.initializer
        if i.name.startswith(ROUTE_PREFIX) and i.data_type in (TP.FLOAT16, TP.INT8, TP.UINT8, TP.BFLOAT16)
    ]
    qdq = {"QuantizeLinear", "DequantizeLinear"}
    route_tensors = {
        t for n in model.graph.node if n.name.startswith(ROUTE_PREFIX) for t in list(n.input) + list(n.output)
    }
    bad += [n.name for n in model.graph.node if n.op_type in qdq and set(n.input) & route_tensors]
    if bad:
        raise PrecisionError(f"the quantized graph changed the routing head ({', '.join(bad[:5])}); it must stay FP32")


__all__ = [
    "CALIBRATION_BATCH",
    "Int8Options",
    "features_stay_fp32",
    "sub_network_0",
    "unstack_tasks",
    "int8_model",
    "check_fp32_routing",
]
