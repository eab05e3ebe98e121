"""FLOP counts of MIND networks and of ONNX graphs (torch-free: numpy + onnx only).

Convention (the usual one for CNN rooflines, and the one of ``mind_edge.nets.count_flops``):
one multiply-accumulate = 2 FLOPs, and only convolutions and linear layers (matrix products)
are counted. BatchNorm (folded into the convs at inference), ReLU, residual additions and
pooling are memory-bound element-wise work and are left out.

* :func:`network_flops` counts from the architecture config alone (the layer plan of
  :func:`mind_edge.core.plan.plan_net`, the same one the graph builder and ``MindNet`` use):
  ``per_task[t]`` = sub-network ``t`` (every conv at full size: a masked weight still costs its
  multiply-adds on dense hardware) + task ``t``'s head. **The model at N tasks runs all N
  sub-networks** (task-agnostic inference), so its count is ``sum(per_task) + routing``, i.e.
  about N times one sub-network.
* :func:`graph_flops` counts what an ONNX graph actually executes (Conv, ConvTranspose,
  MatMul, Gemm), from shape inference at a given batch size: for a mind-edge graph that is the
  network count plus the parameter-free shortcut selection convs (see ``runtime/graph.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mind_edge.core.plan import plan_net
from mind_edge.errors import ConfigError, require


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one image through a MIND network of N tasks."""

    convs_per_task: int  # one sub-network's convolutions (the same for every task)
    heads: tuple[int, ...]  # each task's linear head
    routing: int  # the task-selection head: temperature, softmax, max, argmax, gather

    @property
    def num_tasks(self) -> int:
        return len(self.heads)

    @property
    def per_task(self) -> tuple[int, ...]:
        """FLOPs of each sub-network alone (its convolutions + its head)."""
        return tuple(self.convs_per_task + h for h in self.heads)

    @property
    def total(self) -> int:
        """FLOPs of one image through the whole model: every sub-network + routing."""
        return sum(self.per_task) + self.routing

    def to_json(self) -> dict:
        return {
            "convention": "2 FLOPs per multiply-accumulate; convs + linear heads + routing; BN/ReLU/add/pool excluded",
            "per_image": self.total,
            "num_tasks": self.num_tasks,
            "per_task": list(self.per_task),
            "convs_per_task": self.convs_per_task,
            "heads": list(self.heads),
            "routing": self.routing,
            "note": "the model at N tasks runs all N sub-networks: N x one sub-network + routing",
        }


def conv_flops(in_ch: int, out_ch: int, kernel: int | tuple[int, int], out_hw: tuple[int, int], groups: int = 1) -> int:
    """``2 * out_ch * (in_ch / groups) * kh * kw * H_out * W_out`` (bias-free)."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    if in_ch % groups or out_ch % groups:
        raise ConfigError(f"channels {in_ch} -> {out_ch} are not divisible by {groups} groups")
    return 2 * out_ch * (in_ch // groups) * kh * kw * out_hw[0] * out_hw[1]


def routing_flops(num_tasks: int, cmax: int) -> int:
    """The routing head per image, counting one FLOP per element and step.

    Div by T (N*Cmax), softmax (exp, sum, divide: 3*N*Cmax), max over classes (N*Cmax),
    argmax over classes (N*Cmax) and over tasks (N), max over tasks (N): 6*N*Cmax + 2*N.
    Negligible next to the convolutions; counted so the total is the whole graph's work.
    """
    return 6 * num_tasks * cmax + 2 * num_tasks


def network_flops(net: Mapping[str, Any], classes_per_task: Sequence[int]) -> FlopCount:
    """FLOPs of one image through a MIND network of ``net`` (a ``NetConfig.to_json()`` dict)
    with one head per entry of ``classes_per_task`` (its class count)."""
    if not classes_per_task or min(int(c) for c in classes_per_task) < 1:
        raise ConfigError(f"every task needs at least one class, got {list(classes_per_task)}")
    plan = plan_net(net)

    def run(c, hw):
        out = c.out_size(hw)
        return conv_flops(c.in_ch, c.out_ch, c.kernel, out), out

    total, hw = run(plan.stem, plan.input_size)
    for blk in plan.blocks:
        f1, mid = run(blk.conv1, hw)
        f2, out = run(blk.conv2, mid)
        total += f1 + f2
        if blk.down is not None:
            total += run(blk.down, hw)[0]
        hw = out
    heads = tuple(2 * plan.feature_dim * int(c) for c in classes_per_task)
    routing = routing_flops(len(heads), max(int(c) for c in classes_per_task))
    return FlopCount(convs_per_task=total, heads=heads, routing=routing)


def arrays_flops(arrays) -> FlopCount:
    """:func:`network_flops` of :class:`~mind_edge.runtime.graph.NetArrays`."""
    return network_flops(arrays.net, [len(h.classes) for h in arrays.heads])


def graph_flops(model, batch: int = 1) -> int:
    """FLOPs of the matrix work (Conv, ConvTranspose, MatMul, Gemm) an ONNX graph executes for
    one input batch of ``batch``, from ONNX shape inference (dynamic dims set to ``batch``)."""
    onnx = require("onnx", "export", "counting the FLOPs of an ONNX graph")
    model = onnx.ModelProto.FromString(model.SerializeToString())  # private copy: we pin the batch
    for inp in model.graph.input:
        for d in inp.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.dim_value = int(batch)
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes: dict[str, list[int]] = {}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]
        shapes[vi.name] = dims
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    total = 0
    for node in inferred.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            w = shapes.get(node.input[1])
            y = shapes.get(node.output[0])
            if not w or not y or min(w + y) < 0:
                raise ConfigError(f"cannot count FLOPs of {node.name or node.op_type}: unknown shapes {w} / {y}")
            # weight [O, I/g, kh, kw] (Conv) or [I, O/g, kh, kw] (ConvTranspose):
            # MACs = prod(w) * prod(out spatial) * batch
            macs = int(np.prod(w)) * int(np.prod(y[2:])) * y[0]
            if node.op_type == "ConvTranspose":
                x = shapes[node.input[0]]
                macs = int(np.prod(w)) * int(np.prod(x[2:])) * x[0]
            total += 2 * macs
        elif node.op_type in ("MatMul", "Gemm"):
            a, y = shapes.get(node.input[0]), shapes.get(node.output[0])
            if not a or not y or min(a + y) < 0:
                raise ConfigError(f"cannot count FLOPs of {node.name or node.op_type}: unknown shapes {a} / {y}")
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            k = a[-2] if (node.op_type == "Gemm" and trans_a) else a[-1]
            total += 2 * int(np.prod(y)) * k
    return total


__all__ = ["FlopCount", "conv_flops", "routing_flops", "network_flops", "arrays_flops", "graph_flops"]
