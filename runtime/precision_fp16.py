"""FP16 graphs of a mind-edge network, and their exact FP32 read-back (torch-free: numpy + onnx).

:func:`fp16_model` = the shared-layout graph, its backbone converted by :func:`to_fp16` and its owner
maps packed two per byte by :func:`pack_owner_maps`; :func:`fp32_view` undoes both exactly, so a
patch can rebuild the FP16 graph on a device. The why and the numbers: :mod:`mind_edge.runtime.precision`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mind_edge.runtime.graph import CONTRACT, build_graph
from mind_edge.runtime.precision_regions import PrecisionError, _onnx, _set_precision_meta, backbone_nodes

PACK_MAX_OWNER = 14  # owners -1..14 fit in 4 bits (stored +1)


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


__all__ = ["PACK_MAX_OWNER", "to_fp16", "pack_owner_maps", "fp16_model", "fp32_view"]
