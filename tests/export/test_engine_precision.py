"""TensorRT engines of FP16 / INT8 bundles (issue 14), through the fake tensorrt of tests/trt_fakes.py.

INT8 is explicit quantization: the engine is built from the INT8 bundle's QDQ graph (TensorRT 10:
``BuilderFlag.INT8`` with the routing head pinned to FP32; TensorRT 11: strongly typed, precision
from the Q/DQ nodes). None of this has run on a real GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from trt_fakes import FAKE_GPU, fake_stack

from mind_edge.export.engine import EngineBuildOptions, build_engine, engine_graph
from mind_edge.runtime import precision as prec
from mind_edge.runtime.bundle import Bundle
from mind_edge.runtime.engine_fingerprint import EngineError
from mind_edge.runtime.graph import graph_meta, random_arrays
from mind_edge.runtime.trt_runner import TrtRunner

CLASSES = [[4, 1, 7], [0, 9], [3, 5, 8]]
NAMES = [str(i) for i in range(10)]
NET = {"arch": "resnet32", "in_channels": 3, "input_size": [13, 9], "width": 0.25, "capacity": 4}


def no_jetson():
    return None


def make(out: Path, precision: str, policy: str = "maxprob") -> Path:
    arrays = random_arrays(NET, CLASSES, seed=2, stats=policy != "maxprob")
    images = np.random.default_rng(0).integers(0, 256, (24, 13, 9, 3)).astype(np.uint8)
    return prec.write_precision_bundle(
        out,
        arrays,
        precision,
        temperature=1.5,
        class_names=NAMES,
        mean=[0.5] * 3,
        std=[0.25] * 3,
        calibration_images=images if precision == "int8" else None,
        policy=policy,
    )


def builder_of(trt):
    (b,) = trt._builders
    return b, b.networks[0], b.configs[0]


def test_trt10_int8_from_the_qdq_graph_routing_pinned_fp32(tmp_path):
    bundle = make(tmp_path / "b8", "int8")
    trt, cuda = fake_stack("10.3.0")
    res = build_engine(bundle, EngineBuildOptions(), trt=trt, gpu=FAKE_GPU, detect=no_jetson)
    _, net, cfg = builder_of(trt)
    fp = res.fingerprint
    assert (fp.precision, fp.typing) == ("int8", "weak")
    assert cfg.flags == {"INT8", "OBEY_PRECISION_CONSTRAINTS"}
    assert net.onnx_bytes == Bundle.load(bundle).model_path.read_bytes()  # the QDQ graph as exported
    assert any(layer.type == "QUANTIZELINEAR" for layer in net.layers)
    pinned = set(res.pinned_fp32_layers)
    assert {"pool", "task_logits", "route.probs"} <= pinned
    assert not any(name.startswith(("blocks.", "stem")) for name in pinned)
    assert "INT8 bundle" in " ".join(res.notes) and res.record.info["graph"].startswith("QDQ")
    x = np.random.default_rng(3).standard_normal((6, 3, 13, 9)).astype(np.float32)
    with TrtRunner(bundle, trt=trt, cuda=cuda, gpu=FAKE_GPU) as runner:
        out = runner.infer({"image": x})
    assert out["task_logits"].shape == (6, 3, 3)


def test_trt10_int8_with_fp16_keeps_sub_network_0_fp32_under_a_feature_policy(tmp_path):
    """combined reads sub-network 0's features: the INT8 bundle keeps its chain FP32, and an engine
    built with --fp16 pins it to FP32 with the routing head; the other tasks' layers are not pinned."""
    bundle = make(tmp_path / "b8", "int8", policy="combined")
    assert Bundle.load(bundle).record.precision.int8.fp32_features is True
    trt, _ = fake_stack("10.3.0")
    res = build_engine(bundle, EngineBuildOptions(fp16=True), trt=trt, gpu=FAKE_GPU, detect=no_jetson)
    _, _, cfg = builder_of(trt)
    assert cfg.flags == {"FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS"}
    pinned = set(res.pinned_fp32_layers)
    chain = {n for n in pinned if n.endswith(".t0")}
    assert {"stem.out.t0"} <= chain and len(chain) >= 33  # every conv of sub-network 0, its ReLUs and adds
    assert not any(n.endswith((".t1", ".t2")) for n in pinned)
    assert {"pool", "task_logits", "route.probs"} <= pinned
    assert any("sub-network 0" in note for note in res.notes)


def test_trt11_int8_is_strongly_typed_from_the_graph(tmp_path):
    bundle = make(tmp_path / "b8", "int8")
    trt, _ = fake_stack("11.0.0")
    res = build_engine(bundle, EngineBuildOptions(), trt=trt, gpu=FAKE_GPU, detect=no_jetson)
    _, net, cfg = builder_of(trt)
    assert (res.fingerprint.precision, res.fingerprint.typing) == ("int8", "strong")
    assert cfg.flags == set() and net.strongly_typed and res.pinned_fp32_layers == ()


def test_fp16_bundle_builds_fp16_from_its_weights_and_int8_needs_an_int8_bundle(tmp_path):
    b16 = make(tmp_path / "b16", "fp16")
    folded = engine_graph(Bundle.load(b16))
    assert graph_meta(folded)["layout"] == "folded"
    assert all(i.data_type != onnx.TensorProto.FLOAT16 for i in folded.graph.initializer)
    trt, _ = fake_stack("10.3.0")
    res = build_engine(b16, EngineBuildOptions(), trt=trt, gpu=FAKE_GPU, detect=no_jetson)
    assert res.fingerprint.precision == "fp16" and "FP16 bundle: --fp16 implied" in res.notes
    b32 = make(tmp_path / "b32", "fp32")
    with pytest.raises(EngineError, match="--precision int8"):
        build_engine(b32, EngineBuildOptions(int8=True), trt=fake_stack("10.3.0")[0], gpu=FAKE_GPU, detect=no_jetson)
