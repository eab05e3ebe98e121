"""FP16 and INT8 graphs of a mind-edge network that route like the FP32 one (torch-free).

Everything here needs numpy + onnx (+ ``onnxruntime.quantization`` for INT8), never PyTorch:
the exporter calls it on a host, ``patch apply`` calls it on a device to rebuild a patched
bundle in its own precision.

**What changes precision, what never does.** The *backbone* is every node the FP32 boundary
tensor (the input of the global pooling ``pool``) depends on, except nodes whose name starts with
``route.``. Only the backbone is converted. Everything else — the global pooling, the task heads
whose output is ``task_logits``, and every node and initializer whose name starts with
``route.`` (the routing head: temperature, softmax, max, argmax, class gather, and any routing
statistics) — stays FP32 in every precision. The rule is topological plus the ``route.`` prefix,
not a list of today's ops, so routing nodes added later stay FP32 as well.

**fp16** (:func:`fp16_model`): the shared-layout graph with the backbone's float initializers
(conv weights, BN sets, the shortcut selection weights) in float16, ``Cast(image -> float16)``
at the entry, ``Cast(-> float32)`` on every backbone tensor read outside the backbone (the
pooling input), and the owner maps packed two per byte (4 bits: owners -1..14, i.e. up to 15
tasks; more tasks keep one byte per weight) and unpacked by the graph. File ≈ 2.5 bytes per
weight instead of 5 (FP32 shared). ONNX Runtime's CPU execution provider has no FP16
convolution: it inserts casts and computes in FP32 (with the FP16-rounded weights); TensorRT,
ONNX Runtime's CUDA EP and OpenVINO compute in FP16. The bundle's weights can be read back
exactly (:func:`read_model_arrays`), so a task patch rebuilds the FP16 graph on the device.

**int8** (:func:`int8_model`): QDQ (explicit quantization: ``QuantizeLinear``/``DequantizeLinear``
pairs, the form TensorRT 10/11 and ONNX Runtime consume) made by
``onnxruntime.quantization.quantize_static``: per-channel symmetric int8 weights, asymmetric
uint8 activations (ONNX Runtime's recommendation for x86 with VNNI), MinMax calibration on the
given images. The graph quantized is the *folded* graph (BN folded into each task's weights)
rewritten **per task** (:func:`unstack_tasks`): every task is its own chain of ordinary
convolutions instead of one grouped convolution over the N stacked tasks. Two reasons, both
measured (README, benchmarks/precision.py): ONNX Runtime's int8 grouped convolution runs one
small GEMM per group (16 output channels in ResNet-32's first stage) and is slower than FP32
there, while a plain int8 convolution takes MLAS's fast symmetric indirect-convolution path;
and each activation tensor belongs to exactly one task, so its calibrated scale depends on that
task's sub-network only — adding a task (a patch) leaves every earlier task's quantized chain
bit-identical.

**Masters.** An INT8 bundle keeps the FP32 shared-layout graph as ``master.onnx`` (the FP32
master weights: int8 weights cannot be turned back into them) and its calibration images as
``calibration.npz``; a patch is applied to the master and the graph re-quantized on the device
with the same images (:func:`rebuild_for_patch`). bundle.json records ``precision``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Any

import numpy as np

from mind_edge.errors import ConfigError, MindEdgeError, require
from mind_edge.imageio import normalize
from mind_edge.runtime.bundle import prepare_bundle, write_bundle
from mind_edge.runtime.graph import CONTRACT, NormArrays, NormSet, build_graph, read_arrays

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
ROUTE_PREFIX = "route."
POOL_NODE = "pool"
MASTER_FILE = "master.onnx"
CALIBRATION_FILE = "calibration.npz"
PRECISION_META_KEY = "mind_edge.precision"  # ONNX metadata of a precision graph
PACK_MAX_OWNER = 14  # owners -1..14 fit in 4 bits (stored +1)
DEFAULT_CALIBRATION = 256
CALIBRATION_BATCH = 16


class PrecisionError(MindEdgeError):
    """A precision graph cannot be built or read (unsupported graph form, missing master)."""


def _onnx():
    return require("onnx", "export", "building FP16/INT8 graphs")


def check_precision(precision: str) -> str:
    p = str(precision).strip().lower()
    if p not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return p


# ----------------------------------------------------------------------------- regions


def fp32_boundary(model) -> str:
    """The tensor where the FP32 part begins: the input of the global pooling node ``pool``."""
    for node in model.graph.node:
        if node.name == POOL_NODE and node.op_type == "GlobalAveragePool":
            return node.input[0]
    raise PrecisionError(
        f"the graph has no GlobalAveragePool node named {POOL_NODE!r}; it was not built by this "
        "mind-edge's graph builder — re-export the bundle"
    )


def backbone_nodes(model) -> set[str]:
    """Names of the nodes the FP32 boundary depends on, without ``route.*`` nodes: the part a
    precision conversion may change. Everything else stays FP32."""
    boundary = fp32_boundary(model)
    producer = {out: node for node in model.graph.node for out in node.output}
    seen: set[str] = set()
    stack = [boundary]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        stack.extend(i for i in node.input if i)
    return {n for n in seen if not n.startswith(ROUTE_PREFIX)}


def fp32_nodes(model) -> list[str]:
    """Every node outside the backbone (kept FP32 in every precision)."""
    back = backbone_nodes(model)
    return [n.name for n in model.graph.node if n.name not in back]


# ----------------------------------------------------------------------------- fp16


def _constant_nodes(model, region: set[str]) -> set[str]:
    """Nodes of ``region`` that read only initializers and other such nodes (weight derivations)."""
    inits = {i.name for i in model.graph.initializer}
    const_tensors = set(inits)
    out: set[str] = set()
    for node in model.graph.node:  # graphs are topologically sorted
        if node.name in region and all((not i) or i in const_tensors for i in node.input):
            out.add(node.name)
            const_tensors.update(node.output)
    return out


def to_fp16(model, region: set[str] | None = None):
    """A copy of ``model`` whose ``region`` (default: the backbone) computes in FP16.

    Compute nodes (those that depend on the graph input) run in FP16: their float32
    initializers become float16, a float32 graph input they read gets one ``Cast(-> float16)``,
    a float tensor they read from a weight derivation gets one ``Cast(-> float16)``, and every
    tensor of theirs read outside the region gets one ``Cast(-> float32)``. Weight derivations
    (nodes of the region that read only initializers, e.g. the shared layout's
    ``Mul(W, mask)``) stay FP32 so that every runtime can constant-fold them (ONNX Runtime's
    CPU provider has no FP16 ``Mul``), but their float32 initializers are *stored* as float16
    and cast back (exact). Inputs, outputs and everything outside the region keep their dtypes.
    """
    onnx = _onnx()
    numpy_helper = onnx.numpy_helper

    TP = onnx.TensorProto
    src = onnx.ModelProto()
    src.CopyFrom(model)
    region = backbone_nodes(src) if region is None else set(region)
    consts = _constant_nodes(src, region)
    compute = region - consts
    try:
        inferred = onnx.shape_inference.infer_shapes(src)
    except Exception as exc:  # pragma: no cover - mind-edge graphs are well formed
        raise PrecisionError(f"shape inference failed on the graph: {exc}") from exc
    dtype = {
        v.name: v.type.tensor_type.elem_type
        for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    }
    g = src.graph
    inits = {i.name: i for i in g.initializer}
    dtype.update({name: i.data_type for name, i in inits.items()})
    readers: dict[str, set[str]] = {}
    for node in g.node:
        for i in node.input:
            readers.setdefault(i, set()).add(node.name)
    graph_outputs = {o.name for o in g.output}
    to_half: dict[str, str] = {}  # float32 tensor -> its float16 name, for compute nodes
    to_float: dict[str, str] = {}  # float16 tensor -> its float32 name, for everything else
    pre_nodes = []
    new_inits = []
    for name, init in inits.items():
        users = readers.get(name, set())
        if init.data_type != TP.FLOAT or not users & region:
            continue
        arr = numpy_helper.to_array(init)
        if np.abs(arr).max(initial=0.0) > 65504.0:
            raise PrecisionError(
                f"initializer {name} has values beyond the float16 range (max |w| "
                f"{float(np.abs(arr).max()):.3g}); export this network in fp32"
            )
        half = arr.astype(np.float16)
        if users <= compute:
            init.CopyFrom(numpy_helper.from_array(half, name))
        elif users <= consts:  # stored as float16, cast back for the (FP32) weight derivation
            init.CopyFrom(numpy_helper.from_array(half, name))
            pre_nodes.append(
                onnx.helper.make_node("Cast", [name], [f"{name}.fp32"], name=f"{name}.to_fp32", to=TP.FLOAT)
            )
            to_float[name] = f"{name}.fp32"
        else:  # read by compute nodes and by others: a float16 copy for the compute nodes
            new_inits.append(numpy_helper.from_array(half, f"{name}.fp16"))
            to_half[name] = f"{name}.fp16"
    g.initializer.extend(new_inits)
    # float tensors computed outside the compute region (graph inputs, weight derivations) read by it
    produced_in = {o for node in g.node if node.name in compute for o in node.output}
    casts_in: dict[str, str] = {}
    for node in g.node:
        if node.name not in compute:
            continue
        for i in node.input:
            if i and i not in produced_in and i not in inits and dtype.get(i) == TP.FLOAT:
                casts_in[i] = f"{i}.fp16"
    for name in [i.name for i in g.input]:
        if name in casts_in:
            pre_nodes.append(
                onnx.helper.make_node("Cast", [name], [casts_in[name]], name=f"{name}.to_fp16", to=TP.FLOAT16)
            )
    casts_out = {o: f"{o}.fp32" for o in produced_in if o in graph_outputs or readers.get(o, set()) - compute}
    if graph_outputs & set(casts_out):
        raise PrecisionError(
            f"backbone tensors {sorted(graph_outputs & set(casts_out))} are graph outputs; this graph "
            "cannot be converted"
        )
    nodes = list(pre_nodes)
    for node in g.node:
        n = onnx.NodeProto()
        n.CopyFrom(node)
        if node.name in compute:
            for k, name in enumerate(n.input):
                n.input[k] = to_half.get(name, casts_in.get(name, name))
            if n.op_type == "Cast":
                for a in n.attribute:
                    if a.name == "to" and a.i == TP.FLOAT:
                        a.i = TP.FLOAT16
        else:
            for k, name in enumerate(n.input):
                n.input[k] = to_float.get(name, casts_out.get(name, name))
        nodes.append(n)
        for o in node.output:
            if o in casts_out:
                nodes.append(onnx.helper.make_node("Cast", [o], [casts_out[o]], name=f"{o}.to_fp32", to=TP.FLOAT))
            if o in casts_in:
                nodes.append(onnx.helper.make_node("Cast", [o], [casts_in[o]], name=f"{o}.to_fp16", to=TP.FLOAT16))
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]
    return src


def _packed_name(owner_name: str) -> str:
    return f"{owner_name}.packed4"


def pack_owner_maps(model):
    """A copy of the shared-layout ``model`` with every ``*.owner`` map packed two per byte.

    Owner ``o`` (-1..14) is stored as ``o + 1`` in a nibble; the graph unpacks it (BitShift,
    Sub, Concat, Reshape, Slice, Cast — all constant-folded by ONNX Runtime at session start)
    into the same int8 tensor under the same name, so the rest of the graph is unchanged.
    Maps with an owner above 14 (more than 15 tasks) stay one byte per weight.
    """
    onnx = _onnx()
    numpy_helper = onnx.numpy_helper

    TP = onnx.TensorProto
    helper = onnx.helper
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    keep, new_nodes = [], []
    for init in g.initializer:
        if not (init.name.endswith(".owner") and init.data_type == TP.INT8):
            keep.append(init)
            continue
        own = numpy_helper.to_array(init)
        if own.size == 0 or own.min() < -1 or own.max() > PACK_MAX_OWNER:
            keep.append(init)
            continue
        flat = (own.reshape(-1).astype(np.int16) + 1).astype(np.uint8)
        if flat.size % 2:
            flat = np.concatenate([flat, np.zeros(1, np.uint8)])
        pairs = flat.reshape(-1, 2)
        packed = (pairs[:, 0] | (pairs[:, 1] << 4)).astype(np.uint8)
        p = init.name
        pk = _packed_name(p)
        keep.append(numpy_helper.from_array(packed, pk))
        keep.append(numpy_helper.from_array(np.array([4], np.uint8), f"{p}.unpack.four"))
        keep.append(numpy_helper.from_array(np.array([1], np.int64), f"{p}.unpack.axis1"))
        keep.append(numpy_helper.from_array(np.array([-1], np.int64), f"{p}.unpack.flat"))
        keep.append(numpy_helper.from_array(np.array([0], np.int64), f"{p}.unpack.start"))
        keep.append(numpy_helper.from_array(np.array([own.size], np.int64), f"{p}.unpack.end"))
        keep.append(numpy_helper.from_array(np.array(own.shape, np.int64), f"{p}.unpack.shape"))
        keep.append(numpy_helper.from_array(np.array(1, np.int32), f"{p}.unpack.one"))
        q = f"{p}.unpack"
        new_nodes += [
            helper.make_node("BitShift", [pk, f"{q}.four"], [f"{q}.hi"], name=f"{q}.hi", direction="RIGHT"),
            helper.make_node("BitShift", [f"{q}.hi", f"{q}.four"], [f"{q}.hi16"], name=f"{q}.hi16", direction="LEFT"),
            helper.make_node("Sub", [pk, f"{q}.hi16"], [f"{q}.lo"], name=f"{q}.lo"),
            helper.make_node("Unsqueeze", [f"{q}.lo", f"{q}.axis1"], [f"{q}.lo2"], name=f"{q}.lo2"),
            helper.make_node("Unsqueeze", [f"{q}.hi", f"{q}.axis1"], [f"{q}.hi2"], name=f"{q}.hi2"),
            helper.make_node("Concat", [f"{q}.lo2", f"{q}.hi2"], [f"{q}.pairs"], name=f"{q}.pairs", axis=1),
            helper.make_node("Reshape", [f"{q}.pairs", f"{q}.flat"], [f"{q}.all"], name=f"{q}.all"),
            helper.make_node("Slice", [f"{q}.all", f"{q}.start", f"{q}.end"], [f"{q}.cut"], name=f"{q}.cut"),
            helper.make_node("Cast", [f"{q}.cut"], [f"{q}.i32"], name=f"{q}.i32", to=TP.INT32),
            helper.make_node("Sub", [f"{q}.i32", f"{q}.one"], [f"{q}.signed"], name=f"{q}.signed"),
            helper.make_node("Reshape", [f"{q}.signed", f"{q}.shape"], [f"{q}.shaped"], name=f"{q}.shaped"),
            helper.make_node("Cast", [f"{q}.shaped"], [p], name=f"{q}.int8", to=TP.INT8),
        ]
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(new_nodes + nodes)
    return out


def _unpack(packed: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    lo = packed & 0x0F
    hi = packed >> 4
    flat = np.stack([lo, hi], axis=1).reshape(-1)[: int(np.prod(shape))]
    return (flat.astype(np.int16) - 1).astype(np.int8).reshape(shape)


def fp16_model(arrays, *, temperature: float, opset: int | None = None, policy: str = "auto"):
    """The FP16 shared-layout graph of ``arrays`` routing with ``policy`` (see the module docstring)."""
    onnx = _onnx()

    opset = int(opset or CONTRACT.opset)
    model = build_graph(arrays, layout="shared", temperature=float(temperature), opset=opset, policy=policy)
    model = to_fp16(pack_owner_maps(model))
    _set_precision_meta(
        onnx,
        model,
        {
            "precision": "fp16",
            "layout": "shared",
            "owner_maps": "4-bit packed (<= 15 tasks)",
            "fp32": "pool, heads, task_logits, route.*",
        },
    )
    return model


# ----------------------------------------------------------------------------- reading weights back


def _set_precision_meta(onnx, model, meta: Mapping[str, Any]) -> None:
    props = {p.key: p.value for p in model.metadata_props}
    props[PRECISION_META_KEY] = json.dumps(dict(meta), separators=(",", ":"))
    onnx.helper.set_model_props(model, props)


def model_precision(model) -> str:
    """``fp32``, ``fp16`` or ``int8`` from a graph's metadata (graphs without it are FP32)."""
    for p in model.metadata_props:
        if p.key == PRECISION_META_KEY:
            try:
                return str(json.loads(p.value).get("precision", "fp32"))
            except (json.JSONDecodeError, AttributeError):
                break
    return "fp32"


def fp32_view(model):
    """An FP32 shared-layout view of an FP16 shared graph: the initializers
    :func:`~mind_edge.runtime.graph.read_arrays` reads (float16 -> float32, owner maps unpacked)
    and the graph metadata. Exact: every FP16 value is a float32 value."""
    onnx = _onnx()
    numpy_helper = onnx.numpy_helper

    TP = onnx.TensorProto
    view = onnx.ModelProto()
    view.CopyFrom(model)
    inits = []
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        name = init.name
        if name.endswith(".packed4"):
            base = name[: -len(".packed4")]
            shape = next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == f"{base}.unpack.shape")
            inits.append(numpy_helper.from_array(_unpack(arr, [int(v) for v in shape]), base))
        elif init.data_type == TP.FLOAT16:
            target = name[: -len(".fp16")] if name.endswith(".fp16") else name
            if any(i.name == target and i.data_type == TP.FLOAT for i in model.graph.initializer) and target != name:
                continue  # the float32 original is there
            inits.append(numpy_helper.from_array(arr.astype(np.float32), target))
        else:
            inits.append(init)
    del view.graph.initializer[:]
    view.graph.initializer.extend(inits)
    return view


def read_model_arrays(model_or_path, master: str | os.PathLike | None = None):
    """The network arrays of a graph in any precision: FP32 shared graphs directly, FP16 through
    :func:`fp32_view`, INT8 from its FP32 master (``master``, the bundle's ``master.onnx``)."""
    onnx = _onnx()

    model = onnx.load(str(model_or_path)) if isinstance(model_or_path, (str, os.PathLike)) else model_or_path
    p = model_precision(model)
    if p == "fp32":
        return read_arrays(model)
    if p == "fp16":
        return read_arrays(fp32_view(model))
    if master is None or not Path(master).is_file():
        raise PrecisionError(
            f"an INT8 graph cannot be read back into FP32 weights; its FP32 master ({MASTER_FILE}) "
            f"is needed and {'was not given' if master is None else str(master) + ' does not exist'} "
            "— re-export the bundle with this mind-edge"
        )
    return read_arrays(onnx.load(str(master)))


# ----------------------------------------------------------------------------- int8


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


@dataclass(frozen=True)
class Int8Options:
    """How :func:`int8_model` quantizes (the defaults are what ``mind-edge export --precision int8`` uses)."""

    per_task: bool = True  # run each task as its own chain (see unstack_tasks)
    per_channel: bool = True
    activation: str = "uint8"  # uint8 (x86 VNNI) | int8 (symmetric; ARM, TensorRT)
    method: str = "minmax"  # minmax | percentile | entropy (onnxruntime.quantization.CalibrationMethod)
    keep_fp32: tuple[str, ...] = ()  # backbone node-name prefixes left in FP32 (e.g. "stem.", "blocks.14.")

    def to_json(self) -> dict:
        return {
            "per_task": self.per_task,
            "per_channel": self.per_channel,
            "activation": self.activation,
            "weights": "int8 symmetric",
            "method": self.method,
            "format": "QDQ",
            "keep_fp32": list(self.keep_fp32),
        }


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
    if options.method not in methods:
        raise ConfigError(f"unknown calibration method {options.method!r}; choose {', '.join(methods)}")
    opset = int(opset or CONTRACT.opset)
    model = build_graph(arrays, layout="folded", temperature=float(temperature), opset=opset, policy=policy)
    if options.per_task and arrays.num_tasks > 1:
        model = unstack_tasks(model, arrays.num_tasks)
    exclude = fp32_nodes(model)
    if options.keep_fp32:
        exclude += [
            n.name for n in model.graph.node if n.name.startswith(tuple(options.keep_fp32)) and n.name not in exclude
        ]
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
    check_fp32_routing(out)
    _set_precision_meta(
        onnx,
        out,
        {
            "precision": "int8",
            "layout": "folded",
            **options.to_json(),
            "calibration_images": int(x.shape[0]),
            "fp32": "pool, heads, task_logits, route.*",
        },
    )
    return out


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


# ----------------------------------------------------------------------------- one entry point


def calibration_inputs(images_uint8: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised float32 NCHW calibration inputs from stored uint8 NHWC images."""
    return normalize(np.asarray(images_uint8, dtype=np.uint8), list(mean), list(std))


def precision_model(
    arrays,
    precision: str,
    *,
    temperature: float,
    opset: int | None = None,
    calibration: np.ndarray | None = None,
    int8: Int8Options = Int8Options(),
    layout: str = "shared",
    policy: str = "auto",
):
    """The graph of ``arrays`` in ``precision`` (``fp32`` in ``layout``), routing with ``policy``."""
    precision = check_precision(precision)
    if precision == "fp32":
        return build_graph(
            arrays, layout=layout, temperature=float(temperature), policy=policy, **({"opset": opset} if opset else {})
        )
    if precision == "fp16":
        return fp16_model(arrays, temperature=temperature, opset=opset, policy=policy)
    if calibration is None:
        raise ConfigError("an INT8 graph needs calibration images")
    return int8_model(arrays, calibration, temperature=temperature, opset=opset, options=int8, policy=policy)


def bundle_policy(bundle) -> str:
    """The routing policy a bundle's graph was built with (``auto`` for bundles that do not record it)."""
    return bundle.record.routing_policy or "auto"


def npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
    return buf.getvalue()


def bundle_precision(bundle) -> str:
    """The precision a bundle records (``fp32`` for bundles written before precisions existed)."""
    return bundle.record.precision.precision


def bundle_arrays(bundle):
    """The FP32 network arrays of a bundle in any precision (INT8: from ``master.onnx``)."""
    return read_model_arrays(bundle.model_path, master=bundle.path / MASTER_FILE)


def bundle_calibration(bundle) -> np.ndarray | None:
    """The normalised calibration inputs an INT8 bundle stores (``calibration.npz``), or None."""
    path = bundle.path / CALIBRATION_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        images = z["images"]
    return calibration_inputs(images, bundle.input.mean, bundle.input.std)


def int8_options(bundle) -> Int8Options:
    q = bundle.record.precision.int8
    return Int8Options(
        per_task=q.per_task, per_channel=q.per_channel, activation=q.activation, method=q.method, keep_fp32=q.keep_fp32
    )


def rebuild_for_patch(bundle, new_arrays) -> tuple[bytes, dict[str, bytes]]:
    """The model and extra files of a patched version of a precision bundle (torch-free).

    ``new_arrays`` is the patched FP32 network (earlier tasks unchanged). FP16: the FP16 graph
    of it (earlier tasks' weights were FP16 values already, so they round to themselves). INT8:
    ``master.onnx`` = the FP32 shared graph of ``new_arrays``; ``model.onnx`` = it quantized
    again with the bundle's own calibration images and options — each task's chain is
    calibrated on its own tensors, so earlier tasks' chains come out bit-identical, and the
    result equals quantizing a fresh export of the same network with the same images.
    """
    p = bundle_precision(bundle)
    policy = bundle_policy(bundle)
    if p == "fp16":
        return fp16_model(
            new_arrays, temperature=bundle.temperature, opset=bundle.opset, policy=policy
        ).SerializeToString(), {}
    if p != "int8":
        raise PrecisionError(f"bundle {bundle.path} has precision {p!r}; nothing to rebuild")
    calib = bundle_calibration(bundle)
    if calib is None:
        raise PrecisionError(
            f"INT8 bundle {bundle.path} has no {CALIBRATION_FILE}; a patch cannot be re-quantized "
            "without calibration images — re-export the bundle with this mind-edge"
        )
    master = build_graph(new_arrays, layout="shared", temperature=bundle.temperature, opset=bundle.opset, policy=policy)
    model = int8_model(
        new_arrays,
        calib,
        temperature=bundle.temperature,
        opset=bundle.opset,
        options=int8_options(bundle),
        policy=policy,
    )
    files = {MASTER_FILE: master.SerializeToString(), CALIBRATION_FILE: (bundle.path / CALIBRATION_FILE).read_bytes()}
    return model.SerializeToString(), files


def write_precision_bundle(
    out_dir,
    arrays,
    precision: str,
    *,
    temperature: float,
    class_names,
    mean,
    std,
    calibration_images: np.ndarray | None = None,
    opset: int | None = None,
    policy: str = "auto",
    overwrite: bool = False,
    source: Mapping[str, Any] | None = None,
):
    """Write an FP16/INT8 bundle of ``arrays`` torch-free (no validation against PyTorch: the
    exporter does that; for tests, benchmarks and devices that hold only arrays).
    ``calibration_images``: uint8 NHWC (INT8)."""
    precision = check_precision(precision)
    files: dict[str, bytes] = {}
    record: dict[str, Any] = {"precision": precision, "fp32": "pool, heads, task_logits and every route.* node"}
    calib = None
    if precision == "int8":
        if calibration_images is None:
            raise ConfigError("an INT8 bundle needs calibration images (uint8 NHWC)")
        calib = calibration_inputs(calibration_images, mean, std)
        opts = Int8Options()
        record.update(
            int8=opts.to_json(),
            master=MASTER_FILE,
            calibration={
                "images": int(len(calibration_images)),
                "file": CALIBRATION_FILE,
                "method": opts.method,
                "source": "given",
            },
        )
        files[MASTER_FILE] = build_graph(
            arrays,
            layout="shared",
            temperature=float(temperature),
            policy=policy,
            **({"opset": opset} if opset else {}),
        ).SerializeToString()
        files[CALIBRATION_FILE] = npz_bytes({"images": np.ascontiguousarray(calibration_images, dtype=np.uint8)})
    model = precision_model(arrays, precision, temperature=temperature, opset=opset, calibration=calib, policy=policy)
    data = model.SerializeToString()
    record["model_bytes"] = len(data)
    bundle_files, meta = prepare_bundle(
        arrays,
        layout="folded" if precision == "int8" else "shared",
        temperature=float(temperature),
        class_names=class_names,
        mean=list(mean),
        std=list(std),
        opset=opset,
        model_bytes=data,
        source=source,
        extra={"precision": record} if precision != "fp32" else None,
    )
    return write_bundle(out_dir, {**bundle_files, **files}, meta, overwrite=overwrite)


def round_like_bundle(arrays, precision: str):
    """``arrays`` as a ``precision`` bundle stores them: FP16 rounds every conv weight and BN set
    to float16 values (what :func:`read_model_arrays` reads back from an FP16 graph); FP32 and
    INT8 (whose FP32 master is exact) are returned as they are. Heads and routing statistics are
    FP32 in every precision."""
    if check_precision(precision) != "fp16":
        return arrays
    r = lambda a: np.asarray(a, np.float32).astype(np.float16).astype(np.float32)
    layers = tuple(dc_replace(x, weight=r(x.weight)) for x in arrays.layers)
    norms = tuple(
        NormArrays(x.name, tuple(NormSet(r(s.gamma), r(s.beta), r(s.mean), r(s.var), eps=s.eps) for s in x.sets))
        for x in arrays.norms
    )
    return dc_replace(arrays, layers=layers, norms=norms)


@dataclass(frozen=True)
class PatchHook:
    """What ``patch apply`` does differently for an FP16/INT8 bundle (called from runtime/patch.py).

    ``base_arrays()`` — the FP32 network the patch applies to (FP16: the exact read-back of the
    FP16 weights; INT8: ``master.onnx``); ``rebuild(new)`` — ``(model bytes, extra files, extra
    bundle.json keys)`` of the patched version in the bundle's own precision (INT8 re-quantized
    torch-free with the bundle's calibration images, see :func:`rebuild_for_patch`)."""

    bundle: Any
    precision: str

    @property
    def layout(self) -> str:
        return "folded" if self.precision == "int8" else "shared"

    def base_arrays(self):
        return bundle_arrays(self.bundle)

    def rebuild(self, new_arrays) -> tuple[bytes, dict[str, bytes], dict]:
        model_bytes, files = rebuild_for_patch(self.bundle, new_arrays)
        record = self.bundle.record.precision.to_json()
        record["model_bytes"] = len(model_bytes)
        record["rebuilt_by"] = "patch apply (mind_edge.runtime.precision.rebuild_for_patch)"
        record.pop("validation", None)  # measured against the FP32 model at export; the patch has its own report
        return model_bytes, files, {"precision": record}


def patch_hook(bundle) -> PatchHook | None:
    """The :class:`PatchHook` of an FP16/INT8 bundle, None for FP32 bundles (patched as before)."""
    p = bundle_precision(bundle)
    return None if p == "fp32" else PatchHook(bundle, p)


__all__ = [
    "write_precision_bundle",
    "round_like_bundle",
    "PatchHook",
    "patch_hook",
    "PRECISIONS",
    "MASTER_FILE",
    "CALIBRATION_FILE",
    "ROUTE_PREFIX",
    "PrecisionError",
    "Int8Options",
    "check_precision",
    "fp32_boundary",
    "backbone_nodes",
    "fp32_nodes",
    "to_fp16",
    "pack_owner_maps",
    "fp16_model",
    "fp32_view",
    "read_model_arrays",
    "unstack_tasks",
    "int8_model",
    "check_fp32_routing",
    "precision_model",
    "model_precision",
    "bundle_precision",
    "bundle_arrays",
    "bundle_calibration",
    "rebuild_for_patch",
    "calibration_inputs",
    "npz_bytes",
]
