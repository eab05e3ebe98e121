"""MindNet (torch) → :class:`~mind_edge.runtime.graph.NetArrays` (numpy), the graph builder's input."""

from __future__ import annotations

import numpy as np
import torch

from mind_edge.export.errors import ExportError
from mind_edge.nets import MindNet, NetConfig, TaskBatchNorm2d, build_model
from mind_edge.runtime.graph import HeadArrays, LayerArrays, NetArrays, NormArrays, NormSet, check_arrays


def _np(t, dtype) -> np.ndarray:
    return np.array(t.detach().cpu().numpy(), dtype=dtype, copy=True, order="C")


def arrays_from_model(model) -> NetArrays:
    """Copy a ``MindNet``'s weights, owner maps, BN sets and heads (with their routing statistics) into numpy
    arrays."""
    if not isinstance(model, MindNet):
        raise ExportError(f"export needs a mind_edge.nets.MindNet, got {type(model).__name__}")
    if model.num_tasks < 1:
        raise ExportError("the model has no learned task; train at least one task before exporting")
    layers = []
    for name, m in model.named_masked_layers():
        if m.stride[0] != m.stride[1] or m.padding[0] != m.padding[1]:
            raise ExportError(f"layer {name} has anisotropic stride/padding {m.stride}/{m.padding}; not supported")
        layers.append(
            LayerArrays(name, _np(m.weight, np.float32), _np(m.owner, np.int8), int(m.stride[0]), int(m.padding[0]))
        )
    norms = []
    for name, m in model.named_modules():
        if isinstance(m, TaskBatchNorm2d):
            sets = []
            for t, s in enumerate(m.sets):
                if s.running_mean is None or s.running_var is None or s.weight is None:
                    raise ExportError(f"BatchNorm {name} task {t} has no running statistics or affine parameters")
                sets.append(
                    NormSet(
                        _np(s.weight, np.float32),
                        _np(s.bias, np.float32),
                        _np(s.running_mean, np.float32),
                        _np(s.running_var, np.float32),
                        float(s.eps),
                    )
                )
            norms.append(NormArrays(name, tuple(sets)))
    heads = tuple(
        HeadArrays(
            _np(h.fc.weight, np.float32),
            _np(h.fc.bias, np.float32),
            tuple(int(c) for c in h.classes.tolist()),
            h.routing.to_arrays(),
        )
        for h in model.heads
    )
    arrays = NetArrays(net=model.config.to_json(), layers=tuple(layers), norms=tuple(norms), heads=heads)
    check_arrays(arrays)
    return arrays


def model_from_arrays(arrays: NetArrays):
    """A ``MindNet`` (eval mode, CPU) holding exactly ``arrays`` — the inverse of :func:`arrays_from_model`.

    Lets a host evaluate a network that only exists as arrays (e.g. a bundle read back with
    :func:`~mind_edge.runtime.graph.read_arrays`, or synthetic arrays for benchmarks).
    """
    check_arrays(arrays)
    model = build_model(NetConfig.from_json(dict(arrays.net)), arrays.task_classes)
    layers = dict(model.named_masked_layers())
    norms = {name: m for name, m in model.named_modules() if isinstance(m, TaskBatchNorm2d)}
    with torch.no_grad():
        for la in arrays.layers:
            layers[la.name].weight.copy_(torch.from_numpy(la.weight))
            layers[la.name].owner.copy_(torch.from_numpy(la.owner))
        for na in arrays.norms:
            for bn, s in zip(norms[na.name].sets, na.sets):
                bn.weight.copy_(torch.from_numpy(s.gamma))
                bn.bias.copy_(torch.from_numpy(s.beta))
                bn.running_mean.copy_(torch.from_numpy(s.mean))
                bn.running_var.copy_(torch.from_numpy(s.var))
                bn.eps = float(s.eps)
        for head, ha in zip(model.heads, arrays.heads):
            head.fc.weight.copy_(torch.from_numpy(ha.weight))
            head.fc.bias.copy_(torch.from_numpy(ha.bias))
            if ha.stats is not None:
                head.routing.load_arrays(ha.stats)
    return model.eval()
