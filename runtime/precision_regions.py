"""Which part of a mind-edge graph changes precision, and how a graph records its precision (torch-free).

The *backbone* (:func:`backbone_nodes`) is every node the FP32 boundary tensor (the input of the
global pooling ``pool``) depends on, except ``route.*`` nodes; everything else stays FP32 in every
precision (the rule is explained in :mod:`mind_edge.runtime.precision`). Shared by the FP16
(:mod:`mind_edge.runtime.precision_fp16`) and INT8 (:mod:`mind_edge.runtime.precision_int8`) builders.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mind_edge.errors import ConfigError, MindEdgeError, require

PRECISIONS = ("fp32", "fp16", "int8")
#: INT8 activation calibration methods (onnxruntime.quantization.CalibrationMethod), the default first
INT8_METHODS = ("minmax", "percentile", "entropy")
ROUTE_PREFIX = "route."
POOL_NODE = "pool"
PRECISION_META_KEY = "mind_edge.precision"  # ONNX metadata of a precision graph


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


# ----------------------------------------------------------------------------- metadata


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


__all__ = [
    "PRECISIONS",
    "ROUTE_PREFIX",
    "POOL_NODE",
    "PRECISION_META_KEY",
    "PrecisionError",
    "check_precision",
    "fp32_boundary",
    "backbone_nodes",
    "fp32_nodes",
    "model_precision",
]
