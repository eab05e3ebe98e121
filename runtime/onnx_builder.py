"""Small ONNX plumbing shared by the graph builder (:mod:`mind_edge.runtime.graph`) and the routing head
(:mod:`mind_edge.runtime.graph_routing`): the lazy ``onnx`` import, the node/initializer builder, the
opset-aware Reduce* helper and the graph metadata every mind-edge graph carries (torch-free)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from mind_edge.errors import require
from mind_edge.runtime.errors import GraphError

GRAPH_META_KEY = "mind_edge.graph"
GRAPH_SCHEMA = 1


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


def _reduce(b: _Builder, op: str, x: str, axes: list[int], out: str, opset: int, keepdims: int = 0) -> str:
    """Reduce* with ``axes`` as an attribute (opset < 18) or an input (opset >= 18; ReduceSum from 13)."""
    as_input = opset >= 18 or (op == "ReduceSum" and opset >= 13)
    if as_input:
        return b.node(op, [x, b.const(axes, np.int64)], out, keepdims=keepdims)
    return b.node(op, [x], out, axes=axes, keepdims=keepdims)


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


__all__ = ["GRAPH_META_KEY", "GRAPH_SCHEMA", "graph_meta"]
