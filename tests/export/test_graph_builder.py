"""The torch-free graph builder against the PyTorch MindNet it mirrors."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_helpers import make_model

from mind_edge.export.arrays import arrays_from_model, model_from_arrays
from mind_edge.routing import route
from mind_edge.runtime.errors import GraphError
from mind_edge.runtime.graph import (
    CONTRACT,
    build_graph,
    check_arrays,
    expected_bytes,
    plan_net,
    random_arrays,
    read_arrays,
    scaled_channels,
)


def _ort(model_proto):
    return ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _compare(model, proto, x, T):
    sess = _ort(proto)
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"image": x})))
    with torch.no_grad():
        r = route(model.forward_all(torch.from_numpy(x)), [h.classes for h in model.heads], T)
    return got, r


CASES = [
    # arch, tasks, width, channels, size, layout, opset
    ("resnet32", 3, 0.25, 3, (13, 9), "shared", 17),
    ("resnet32", 3, 0.25, 3, (13, 9), "folded", 17),
    ("resnet32", 1, 0.25, 1, (8, 8), "shared", 13),
    ("resnet18", 2, 0.0625, 1, (11, 16), "shared", 18),
    ("resnet18", 2, 0.0625, 3, (9, 7), "folded", 17),
]


@pytest.mark.parametrize("arch,n,width,ch,size,layout,opset", CASES)
def test_graph_matches_torch(arch, n, width, ch, size, layout, opset):
    model = make_model(n, arch=arch, width=width, in_channels=ch, size=size, seed=n)
    arrays = arrays_from_model(model)
    proto = build_graph(arrays, layout=layout, temperature=1.7, opset=opset)
    onnx.checker.check_model(proto, full_check=True)
    x = np.random.default_rng(0).standard_normal((17, ch, *size)).astype(np.float32)
    got, r = _compare(model, proto, x, 1.7)
    assert list(got) == list(CONTRACT.output_names)
    assert got["task_logits"].shape == (17, n, arrays.cmax)
    assert np.abs(got["task_logits"] - r.task_logits.numpy()).max() <= 1e-4
    assert np.abs(got["task_confidence"] - r.task_confidence.numpy()).max() <= 1e-5
    assert np.abs(got["confidence"] - r.confidence.numpy()).max() <= 1e-5
    np.testing.assert_array_equal(got["task"], r.task.numpy())
    np.testing.assert_array_equal(got["label"], r.label.numpy())
    assert got["label"].dtype == np.int64 and got["task"].dtype == np.int64
    # the padding of shorter heads is exactly PAD_LOGIT, as in mind_edge.routing.pad_logits
    for t, h in enumerate(arrays.heads):
        assert (got["task_logits"][:, t, len(h.classes) :] == CONTRACT.pad_logit).all()


def test_dynamic_batch_and_graph_contract():
    model = make_model(2)
    proto = build_graph(arrays_from_model(model), layout="shared", temperature=1.0)
    inp = proto.graph.input[0]
    assert inp.name == "image"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 13, 9]
    outs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output}
    assert outs == {
        "label": ["batch"],
        "task": ["batch"],
        "confidence": ["batch"],
        "task_confidence": ["batch", 2],
        "task_logits": ["batch", 2, 3],
        "task_features": ["batch", 2, sum(model.tap_dims)],
    }
    assert proto.opset_import[0].version == 17
    sess = _ort(proto)
    for b in (1, 5):
        res = sess.run(["label"], {"image": np.zeros((b, 3, 13, 9), np.float32)})
        assert res[0].shape == (b,)


def test_graph_uses_only_tensorrt_friendly_ops():
    import dataclasses

    from mind_edge.core.plan import plan_net
    from mind_edge.core.routing import POLICIES
    from mind_edge.runtime.graph import random_stats

    model = make_model(2, arch="resnet18", width=0.0625)
    arrays = arrays_from_model(model)
    rng = np.random.default_rng(0)
    plan = plan_net(arrays.net)
    arrays = dataclasses.replace(
        arrays, heads=tuple(dataclasses.replace(h, stats=random_stats(plan, len(h.classes), rng)) for h in arrays.heads)
    )
    ops = set()
    for layout in ("shared", "folded"):
        for policy in POLICIES:  # every routing head
            proto = build_graph(arrays, layout=layout, temperature=1.0, policy=policy)
            ops |= {n.op_type for n in proto.graph.node}
            for n in proto.graph.node:
                if n.op_type in ("ArgMax", "ArgMin"):
                    assert {a.name: a.i for a in n.attribute}["select_last_index"] == 0
    # TensorRT 10's ONNX parser supports each of these (onnx-tensorrt operators.md)
    allowed = {
        "Conv",
        "BatchNormalization",
        "Relu",
        "Add",
        "Mul",
        "Div",
        "Slice",
        "Pad",
        "Reshape",
        "GlobalAveragePool",
        "MatMul",
        "Softmax",
        "ReduceMax",
        "ArgMax",
        "Unsqueeze",
        "Squeeze",
        "GatherElements",
        "Gather",
        "Cast",
        "And",
        "GreaterOrEqual",
        "LessOrEqual",
        "Concat",
        "Identity",
        "Sub",
        "Exp",
        "Log",
        "Neg",
        "Max",
        "ReduceSum",
        "ReduceMin",
        "ReduceL2",
        "TopK",
        "ArgMin",
    }
    assert ops <= allowed, ops - allowed


def test_shared_layout_stores_each_weight_once_with_int8_owner():
    model = make_model(4)
    arrays = arrays_from_model(model)
    proto = build_graph(arrays, layout="shared", temperature=1.0)
    inits = {i.name: i for i in proto.graph.initializer}
    for layer in arrays.layers:
        assert inits[f"{layer.name}.weight"].data_type == onnx.TensorProto.FLOAT
        assert list(inits[f"{layer.name}.weight"].dims) == list(layer.weight.shape)
        assert inits[f"{layer.name}.owner"].data_type == onnx.TensorProto.INT8
    float_weights = sum(
        np.prod(i.dims)
        for i in proto.graph.initializer
        if i.data_type == onnx.TensorProto.FLOAT and i.name.endswith(".weight") and len(i.dims) == 4
    )
    assert float_weights == arrays.dense_weight_count()
    size = proto.ByteSize()
    assert expected_bytes(arrays, "shared") <= size <= expected_bytes(arrays, "shared") + 64 * 1024


def test_node_count_does_not_grow_with_tasks():
    net = {"arch": "resnet32", "in_channels": 3, "input_size": [13, 9], "width": 0.125, "capacity": 5}
    counts = {
        len(
            build_graph(
                random_arrays(net, [[2 * t, 2 * t + 1] for t in range(n)]), layout=layout, temperature=1.0
            ).graph.node
        )
        for n in (2, 3, 5)
        for layout in ("shared",)
    }
    assert len(counts) == 1


def test_model_from_arrays_round_trip():
    net = {"arch": "resnet18", "in_channels": 3, "input_size": [9, 7], "width": 0.0625, "capacity": 3}
    arrays = random_arrays(net, [[5, 1], [0, 2, 3]], seed=4)
    model = model_from_arrays(arrays)
    assert arrays_from_model(model).same_as(arrays)
    x = np.random.default_rng(0).standard_normal((6, 3, 9, 7)).astype(np.float32)
    got, r = _compare(model, build_graph(arrays, layout="shared", temperature=2.0), x, 2.0)
    np.testing.assert_array_equal(got["label"], r.label.numpy())
    assert np.abs(got["task_logits"] - r.task_logits.numpy()).max() <= 1e-4


def test_read_arrays_round_trip(tmp_path):
    model = make_model(3, arch="resnet18", width=0.0625, in_channels=1, size=(9, 9))
    arrays = arrays_from_model(model)
    proto = build_graph(arrays, layout="shared", temperature=3.0)
    path = tmp_path / "m.onnx"
    path.write_bytes(proto.SerializeToString())
    back = read_arrays(path)
    assert back.same_as(arrays)
    # rebuilding from the arrays read back gives the same graph, bit for bit
    assert build_graph(back, layout="shared", temperature=3.0).SerializeToString() == proto.SerializeToString()
    # a changed weight is noticed
    back.layers[0].weight[0, 0, 0, 0] += 1.0
    assert not back.same_as(arrays)


def test_read_arrays_refuses_folded_and_foreign_models(tmp_path):
    arrays = arrays_from_model(make_model(2))
    folded = build_graph(arrays, layout="folded", temperature=1.0)
    with pytest.raises(GraphError, match="folded.*--layout shared"):
        read_arrays(folded)
    foreign = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    with pytest.raises(GraphError, match="not built by mind-edge"):
        read_arrays(foreign)
    with pytest.raises(GraphError, match="does not exist"):
        read_arrays(tmp_path / "nope.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all \x00\xff")
    with pytest.raises(GraphError):
        read_arrays(tmp_path / "junk.onnx")


def test_plan_mirrors_nets():
    for arch, width in (("resnet32", 1.0), ("resnet32", 0.3), ("resnet18", 0.5)):
        model = make_model(1, arch=arch, width=width, size=(8, 8))
        plan = plan_net(model.config.to_json())
        names = [c.name for c in plan.convs()]
        assert sorted(names) == sorted(n for n, _ in model.named_masked_layers())
        assert plan.feature_dim == model.feature_dim
        for c in plan.convs():
            layer = dict(model.named_masked_layers())[c.name]
            assert (c.stride, c.padding) == (layer.stride[0], layer.padding[0])
    for w in (0.1, 0.25, 0.333, 1.0, 2.5):  # one scaled_channels (mind_edge.core.plan) for both sides
        for arch, c in (("resnet32", 16), ("resnet18", 64)):
            assert make_model(1, arch=arch, width=w, size=(8, 8)).stem.out_channels == scaled_channels(c, w)


def test_check_arrays_names_the_problem():
    arrays = arrays_from_model(make_model(2))
    bad = type(arrays)(net={**arrays.net, "width": 0.5}, layers=arrays.layers, norms=arrays.norms, heads=arrays.heads)
    with pytest.raises(GraphError, match="expected a float32 weight of shape"):
        check_arrays(bad)
    dup = type(arrays)(
        net=arrays.net, layers=arrays.layers, norms=arrays.norms, heads=(arrays.heads[0], arrays.heads[0])
    )
    with pytest.raises(GraphError, match="disjoint"):
        check_arrays(dup)
    with pytest.raises(GraphError, match="unknown architecture"):
        plan_net({**arrays.net, "arch": "vgg"})


def test_options_are_checked():
    from mind_edge.errors import ConfigError

    arrays = arrays_from_model(make_model(1))
    with pytest.raises(ConfigError, match="layout"):
        build_graph(arrays, layout="dense", temperature=1.0)
    with pytest.raises(ConfigError, match="opset 9"):
        build_graph(arrays, layout="shared", temperature=1.0, opset=9)
    with pytest.raises(ConfigError, match="temperature"):
        build_graph(arrays, layout="shared", temperature=0.0)
