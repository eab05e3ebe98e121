"""The TensorRT engine builder.

Everywhere: the graph an engine is built from (folded; FP16 casts for strongly typed networks,
checked numerically with ONNX Runtime) and every decision of ``build_engine`` — TensorRT 10 vs
11 path, flags, FP32 routing head, DLA, workspace, batch profile, timing cache, engine.json,
reuse — driven through a fake ``tensorrt`` module handed to it (tests/trt_fakes.py), then the
built "plan" run by the TensorRT runner on the fake's ONNX Runtime-backed engine.

``needs_tensorrt``: a real build (skipped where tensorrt or a GPU is missing).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from trt_fakes import FAKE_GPU, PLAN_MAGIC, fake_stack, fake_tensorrt
from typer.testing import CliRunner

from mind_edge.devices.profiles import get_profile
from mind_edge.errors import ConfigError
from mind_edge.export.engine import (
    DEFAULT_TIMING_CACHE,
    EngineBuildOptions,
    backbone_nodes,
    build_engine,
    engine_graph,
    fp16_graph,
    fp32_boundary,
    resolve_options,
)
from mind_edge.runtime.bundle import Bundle, assemble_bundle
from mind_edge.runtime.engine_fingerprint import ENGINE_JSON, EngineError, read_index
from mind_edge.runtime.graph import build_graph, graph_meta, random_arrays
from mind_edge.runtime.runners import OrtRunner
from mind_edge.runtime.trt_runner import TrtRunner

CLASSES = [[4, 1, 7], [0, 9], [3, 5, 8]]
NAMES = [str(i) for i in range(10)]
NET = {"arch": "resnet32", "in_channels": 3, "input_size": [13, 9], "width": 0.25, "capacity": 4}
HEAD_OPS = {"GlobalAveragePool", "MatMul", "Div", "Softmax", "ReduceMax", "ArgMax", "Gather", "GatherElements"}


def no_jetson():
    return None


def make_bundle(out: Path, layout: str = "shared") -> Path:
    arrays = random_arrays(NET, CLASSES, seed=2)
    return assemble_bundle(
        out, arrays, layout=layout, temperature=1.5, class_names=NAMES, mean=[0.5] * 3, std=[0.25] * 3
    )


@pytest.fixture(scope="module")
def shared_bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("engine") / "shared")


@pytest.fixture
def bundle(tmp_path) -> Path:
    return make_bundle(tmp_path / "b")


def x_batch(n=16, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 13, 9)).astype(np.float32)


def run_model(model, x):
    import onnxruntime as ort

    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, {"image": x})))


# ----------------------------------------------------------------------------- graphs


def test_engine_graph_is_the_folded_graph(shared_bundle, tmp_path):
    b = Bundle.load(shared_bundle)
    folded = engine_graph(b)
    assert graph_meta(folded)["layout"] == "folded"
    assert not any(n.op_type in ("And", "LessOrEqual", "BatchNormalization") for n in folded.graph.node)
    x = x_batch()
    ref = run_model(__import__("onnx").load(b.model_path), x)
    out = run_model(folded, x)
    np.testing.assert_allclose(out["task_logits"], ref["task_logits"], atol=1e-4, rtol=1e-5)
    np.testing.assert_array_equal(out["label"], ref["label"])
    # a folded bundle's model.onnx is used as it is
    fb = Bundle.load(make_bundle(tmp_path / "folded", layout="folded"))
    assert engine_graph(fb).SerializeToString() == fb.model_path.read_bytes()


def test_fp16_graph_keeps_the_routing_head_fp32(shared_bundle):
    import onnx

    folded = engine_graph(Bundle.load(shared_bundle))
    half = fp16_graph(folded)
    onnx.checker.check_model(half, full_check=True)
    boundary = fp32_boundary(folded)
    back = backbone_nodes(folded)
    ops = {n.name: n.op_type for n in folded.graph.node}
    assert not HEAD_OPS & {ops[n] for n in back}  # nothing of the head in the backbone
    assert ops["pool"] == "GlobalAveragePool" and "pool" not in back
    casts = [n for n in half.graph.node if n.op_type == "Cast" and n.name.endswith(("to_fp16", "to_fp32"))]
    pairs = [(c.input[0], c.output[0]) for c in casts]
    assert pairs[0] == ("image", "image.fp16") and (boundary, f"{boundary}.fp32") in pairs
    # every other cast back to FP32 feeds a routing tap (route.*) that reads a backbone tensor
    taps = {i for n in half.graph.node if n.name.startswith("route.") for i in n.input}
    assert all(out in taps for inp, out in pairs[1:] if inp != boundary)
    inferred = onnx.shape_inference.infer_shapes(half)
    types = {
        v.name: v.type.tensor_type.elem_type for v in list(inferred.graph.value_info) + list(inferred.graph.output)
    }
    FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert types[boundary] == FLOAT16 and types[f"{boundary}.fp32"] == FLOAT
    for node in half.graph.node:  # every float tensor of the head/routing part is float32
        if node.name in back or node.name.endswith(".to_fp16"):
            continue
        for o in node.output:
            assert types[o] in (FLOAT, onnx.TensorProto.INT64), (node.name, o, types[o])
    inits = {i.name: i.data_type for i in half.graph.initializer}
    assert inits["heads.weight"] == FLOAT and inits["heads.bias"] == FLOAT and inits["route.temperature"] == FLOAT
    assert inits["stem.weight"] == FLOAT16 and inits["blocks.14.conv2.bias"] == FLOAT16
    # I/O dtypes unchanged; numbers close to fp32, routing identical on these inputs
    assert [i.type.tensor_type.elem_type for i in half.graph.input] == [FLOAT]
    x = x_batch(32, seed=3)
    a, h = run_model(folded, x), run_model(half, x)
    assert float(np.abs(a["task_logits"] - h["task_logits"]).max()) < 0.05
    assert np.mean(a["task"] == h["task"]) >= 0.95 and np.mean(a["label"] == h["label"]) >= 0.95


def test_fp16_graph_rejects_weights_beyond_float16(shared_bundle):
    from onnx import numpy_helper

    folded = engine_graph(Bundle.load(shared_bundle))
    for init in folded.graph.initializer:
        if init.name == "stem.weight":
            arr = numpy_helper.to_array(init).copy()
            arr.flat[0] = 1e6
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    with pytest.raises(EngineError, match="beyond the float16 range.*fp32"):
        fp16_graph(folded)


# ----------------------------------------------------------------------------- build: TensorRT 10 / 11 paths


def builder_of(trt):
    (b,) = trt._builders
    return b, b.networks[0], b.configs[0]


def test_trt10_fp32_build_writes_engine_and_json(bundle):
    trt, cuda = fake_stack("10.3.0")
    res = build_engine(bundle, EngineBuildOptions(), trt=trt, gpu=FAKE_GPU, detect=no_jetson)
    b, net, cfg = builder_of(trt)
    fp = res.fingerprint
    assert (fp.tensorrt_version, fp.gpu_name, fp.compute_capability) == ("10.3.0", FAKE_GPU.name, "8.7")
    assert (fp.precision, fp.typing, fp.dla_core, fp.workspace_mb) == ("fp32", "weak", None, 256)
    assert (fp.min_batch, fp.opt_batch, fp.max_batch) == (1, 8, 32)
    assert net.flags == 0 and not net.strongly_typed
    assert cfg.flags == set() and cfg.pools == {"WORKSPACE": 256 << 20}
    assert cfg.profiles[0].shapes == {"image": ((1, 3, 13, 9), (8, 3, 13, 9), (32, 3, 13, 9))}
    assert not any(layer.precision for layer in net.layers)
    assert res.path == bundle / fp.plan_name and res.path.read_bytes().startswith(PLAN_MAGIC)
    (rec,) = read_index(bundle)
    assert rec == res.record and rec.info["graph"] == "folded graph rebuilt from the shared model.onnx"
    assert rec.info["profile"]["max"] == [32, 3, 13, 9]
    assert json.loads((bundle / ENGINE_JSON).read_text())["engines"][0]["file"] == fp.plan_name
    Bundle.load(bundle)  # the bundle still verifies


def test_trt10_fp16_pins_the_routing_head_to_fp32(bundle):
    trt, _ = fake_stack("10.3.0")
    res = build_engine(bundle, EngineBuildOptions(fp16=True), trt=trt, gpu=FAKE_GPU, detect=no_jetson)
    _, net, cfg = builder_of(trt)
    assert res.fingerprint.typing == "weak" and res.fingerprint.precision == "fp16"
    assert cfg.flags == {"FP16", "OBEY_PRECISION_CONSTRAINTS"}
    assert not net.strongly_typed
    # the parsed graph is the plain fp32 folded graph: precision comes from the flags
    assert not any(layer.type == "CAST" for layer in net.layers)
    pinned = {layer.name for layer in net.layers if layer.precision is not None}
    assert pinned == set(res.pinned_fp32_layers)
    expected = {
        "pool",
        "features",
        "heads.matmul",
        "heads.logits",
        "task_logits",
        "route.scaled",
        "route.probs",
        "task_confidence",
        "confidence",
        "heads.weight_const",
        "heads.bias_const",
        "route.temperature_const",
    }
    assert expected <= pinned
    # every float route.* layer is pinned, also the routing taps that pool intermediate backbone tensors
    route_float = {
        layer.name
        for layer in net.layers
        if layer.name.startswith("route.")
        and any(layer.get_output(k).dtype in (trt.float32, trt.float16) for k in range(layer.num_outputs))
    }
    assert route_float <= pinned
    for layer in net.layers:
        if layer.name in pinned:
            assert layer.precision == trt.float32
            floats = [k for k in range(layer.num_outputs) if layer.get_output(k).dtype in (trt.float32, trt.float16)]
            assert layer.output_types == {k: trt.float32 for k in floats}
        else:
            assert layer.output_types == {}
    # nothing of the backbone is pinned; integer-only routing layers are left alone
    assert not any(name.startswith(("blocks.", "stem")) for name in pinned)
    assert {"task", "route.local_all", "route.local", "route.flat_index", "route.label_col", "label"}.isdisjoint(pinned)


@pytest.mark.parametrize("version,strongly", [("11.0.0", None), ("10.3.0", True)])
def test_strongly_typed_fp16_puts_precision_in_the_graph(bundle, version, strongly):
    import onnx

    trt, cuda = fake_stack(version)
    res = build_engine(
        bundle, EngineBuildOptions(fp16=True, strongly_typed=strongly), trt=trt, gpu=FAKE_GPU, detect=no_jetson
    )
    _, net, cfg = builder_of(trt)
    assert res.fingerprint.typing == "strong" and res.fingerprint.precision == "fp16"
    assert net.flags == 1 << 5 and net.strongly_typed  # NetworkDefinitionCreationFlag.STRONGLY_TYPED
    assert cfg.flags == set()  # no weak-typing flag (TensorRT 11 has none)
    assert res.pinned_fp32_layers == ()
    parsed = onnx.load_from_string(net.onnx_bytes)
    casts = [n for n in parsed.graph.node if n.op_type == "Cast" and n.name.endswith(("to_fp16", "to_fp32"))]
    taps = sum(1 for n in parsed.graph.node if n.name.startswith("route.tap") and n.op_type == "GlobalAveragePool")
    # image -> fp16, the pooling input -> fp32, and one cast back for each routing tap before the last block
    assert 2 <= len(casts) <= 2 + taps
    inits = {i.name: i.data_type for i in parsed.graph.initializer}
    assert inits["stem.weight"] == onnx.TensorProto.FLOAT16 and inits["heads.weight"] == onnx.TensorProto.FLOAT
    # the built "plan" runs through the TensorRT runner: close to fp32 ONNX Runtime, same routing
    x = x_batch(24, seed=5)
    with TrtRunner(bundle, trt=trt, cuda=cuda, gpu=FAKE_GPU) as runner:
        out = runner.infer({"image": x})
    with OrtRunner(bundle / "model.onnx") as ort_runner:
        ref = ort_runner.infer({"image": x})
    assert float(np.abs(out["task_logits"] - ref["task_logits"]).max()) < 0.05
    assert np.mean(out["label"] == ref["label"]) >= 0.95


def test_trt11_strong_fp32_and_refusals(bundle):
    trt, _ = fake_stack("11.1.0")
    res = build_engine(bundle, EngineBuildOptions(), trt=trt, gpu=FAKE_GPU, detect=no_jetson)
    assert (res.fingerprint.typing, res.fingerprint.precision) == ("strong", "fp32")
    with pytest.raises(EngineError, match="strongly typed networks only"):
        build_engine(
            bundle,
            EngineBuildOptions(strongly_typed=False),
            trt=fake_tensorrt("11.1.0"),
            gpu=FAKE_GPU,
            detect=no_jetson,
        )
    with pytest.raises(EngineError, match="TensorRT 8.6.1 is too old"):
        build_engine(bundle, EngineBuildOptions(), trt=fake_tensorrt("8.6.1"), gpu=FAKE_GPU, detect=no_jetson)


def test_round_trip_fp32_equals_onnxruntime(bundle):
    trt, cuda = fake_stack("10.3.0")
    build_engine(bundle, EngineBuildOptions(opt_batch=2, max_batch=4), trt=trt, gpu=FAKE_GPU, detect=no_jetson)
    x = x_batch(9, seed=7)
    with TrtRunner(bundle, trt=trt, cuda=cuda, gpu=FAKE_GPU) as runner:
        out = runner.infer({"image": x})
    with OrtRunner(bundle / "model.onnx") as r:
        ref = r.infer({"image": x})
    np.testing.assert_allclose(out["task_logits"], ref["task_logits"], atol=1e-4, rtol=1e-5)
    np.testing.assert_array_equal(out["label"], ref["label"])
    np.testing.assert_array_equal(out["task"], ref["task"])


# ----------------------------------------------------------------------------- DLA, workspace, caches, reuse


def test_dla_build(bundle):
    trt, _ = fake_stack("10.3.0", dla_cores=2)
    res = build_engine(bundle, EngineBuildOptions(dla_core=1, opt_batch=4), trt=trt, gpu=FAKE_GPU, detect=no_jetson)
    _, net, cfg = builder_of(trt)
    fp = res.fingerprint
    assert (fp.dla_core, fp.precision, fp.typing) == (1, "fp16", "weak")  # --dla implies --fp16
    assert (fp.min_batch, fp.opt_batch, fp.max_batch) == (4, 4, 4)  # static batch on DLA
    assert cfg.default_device_type == "DLA" and cfg.DLA_core == 1
    assert cfg.flags == {"FP16", "OBEY_PRECISION_CONSTRAINTS", "GPU_FALLBACK"}
    assert any("implies --fp16" in n for n in res.notes)
    with pytest.raises(EngineError, match="--dla 2 asked for, but this device has 2 DLA core"):
        build_engine(
            bundle,
            EngineBuildOptions(dla_core=2),
            trt=fake_tensorrt("10.3.0", dla_cores=2),
            gpu=FAKE_GPU,
            detect=no_jetson,
        )
    with pytest.raises(EngineError, match="has 0 DLA core.*Orin Nano has none"):
        build_engine(
            bundle, EngineBuildOptions(dla_core=0), trt=fake_tensorrt("10.3.0"), gpu=FAKE_GPU, detect=no_jetson
        )
    with pytest.raises(EngineError, match="DLA engines are built with TensorRT 10's builder flags"):
        build_engine(
            bundle,
            EngineBuildOptions(dla_core=0),
            trt=fake_tensorrt("11.0.0", dla_cores=2),
            gpu=FAKE_GPU,
            detect=no_jetson,
        )


def test_jetson_profile_defaults_and_explicit_values(bundle):
    orin = get_profile("orin-nano-8gb")

    class Detection:
        profile = orin

    opts, notes = resolve_options(EngineBuildOptions(), detect=lambda: Detection())
    assert opts.workspace_mb == orin.defaults.workspace_mb and opts.opt_batch == max(1, orin.defaults.batch)
    assert any("device profile orin-nano-8gb" in n for n in notes)
    opts, _ = resolve_options(EngineBuildOptions(workspace_mb=64, opt_batch=2, max_batch=3), detect=lambda: Detection())
    assert (opts.workspace_mb, opts.opt_batch, opts.max_batch) == (64, 2, 3)
    # a plain CPU machine, or a detection failure: the small default
    cpu = get_profile("generic-x86-64")

    class CpuDetection:
        profile = cpu

    assert resolve_options(EngineBuildOptions(), detect=lambda: CpuDetection())[0].workspace_mb == 256

    def broken():
        raise OSError("no /proc")

    assert resolve_options(EngineBuildOptions(), detect=broken)[0].workspace_mb == 256
    trt, _ = fake_stack("10.3.0")
    res = build_engine(bundle, EngineBuildOptions(), trt=trt, gpu=FAKE_GPU, detect=lambda: Detection())
    assert res.fingerprint.workspace_mb == orin.defaults.workspace_mb
    assert builder_of(trt)[2].pools["WORKSPACE"] == orin.defaults.workspace_mb << 20
    for bad in (
        EngineBuildOptions(workspace_mb=0),
        EngineBuildOptions(opt_batch=4, max_batch=2),
        EngineBuildOptions(dla_core=-1),
    ):
        with pytest.raises(ConfigError):
            resolve_options(bad, detect=no_jetson)


def test_timing_cache_and_reuse(bundle, tmp_path):
    trt, _ = fake_stack("10.3.0")
    first = build_engine(bundle, EngineBuildOptions(), trt=trt, gpu=FAKE_GPU, detect=no_jetson)
    cache = bundle / DEFAULT_TIMING_CACHE
    assert cache.read_bytes() == b"TIMING:0"  # a fresh cache was created and saved
    assert builder_of(trt)[2].timing_cache_input == b""
    # same fingerprint: reused without building
    trt2, _ = fake_stack("10.3.0")
    again = build_engine(bundle, EngineBuildOptions(), trt=trt2, gpu=FAKE_GPU, detect=no_jetson)
    assert again.reused and again.path == first.path and trt2._builders == []
    # --force rebuilds, reading the saved timing cache
    trt3, _ = fake_stack("10.3.0")
    forced = build_engine(bundle, EngineBuildOptions(force=True), trt=trt3, gpu=FAKE_GPU, detect=no_jetson)
    assert not forced.reused and builder_of(trt3)[2].timing_cache_input == b"TIMING:0"
    # an explicit timing cache file, or none at all
    trt4, _ = fake_stack("10.3.0")
    own = tmp_path / "shared.cache"
    build_engine(bundle, EngineBuildOptions(fp16=True, timing_cache=own), trt=trt4, gpu=FAKE_GPU, detect=no_jetson)
    assert own.is_file()
    trt5, _ = fake_stack("10.3.0")
    build_engine(
        bundle,
        EngineBuildOptions(fp16=True, force=True, use_timing_cache=False),
        trt=trt5,
        gpu=FAKE_GPU,
        detect=no_jetson,
    )
    assert builder_of(trt5)[2].timing_cache is None
    assert len(read_index(bundle)) == 2  # fp32 + fp16


def test_build_failures_are_clear(bundle):
    with pytest.raises(EngineError, match="could not build the fp32 engine.*--workspace \\(now 256 MB\\).*--max-batch"):
        build_engine(
            bundle, EngineBuildOptions(), trt=fake_tensorrt("10.3.0", fail_build=True), gpu=FAKE_GPU, detect=no_jetson
        )
    assert read_index(bundle) == [] and not list(bundle.glob("engine-*.plan"))
    trt = fake_tensorrt("10.3.0")
    trt.OnnxParser = type(
        "BadParser",
        (trt.OnnxParser,),
        {
            "parse": lambda self, data: (
                self.errors.append("In node 3 (importConv): UNSUPPORTED_NODE: Assertion failed") or False
            )
        },
    )
    with pytest.raises(EngineError, match="ONNX parser rejected.*In node 3 \\(importConv\\): UNSUPPORTED_NODE"):
        build_engine(bundle, EngineBuildOptions(), trt=trt, gpu=FAKE_GPU, detect=no_jetson)


def test_patched_bundle_invalidates_its_engines(bundle):
    trt, cuda = fake_stack("10.3.0")
    build_engine(bundle, EngineBuildOptions(), trt=trt, gpu=FAKE_GPU, detect=no_jetson)
    # the same folder now holds another model (what a task patch does): the old engine is refused
    arrays = random_arrays(NET, CLASSES + [[2, 6]], seed=9)
    model = build_graph(arrays, layout="shared", temperature=1.5).SerializeToString()
    from mind_edge.runtime.bundle import write_bundle

    meta = {k: v for k, v in Bundle.load(bundle).record.to_json().items() if k not in ("files",)}
    write_bundle(bundle, {"model.onnx": model}, meta, overwrite=True)
    # whether the swap kept the old engine files or not, the old engine is never used for the new model
    with pytest.raises(EngineError, match="has no TensorRT engine|the bundle changed since the build"):
        TrtRunner(bundle, trt=trt, cuda=cuda, gpu=FAKE_GPU).activate()


def test_stale_engines_of_this_machine_are_removed(bundle):
    import hashlib
    from dataclasses import replace

    from mind_edge.runtime.engine_fingerprint import EngineRecord, add_record

    trt, _ = fake_stack("10.3.0")
    first = build_engine(bundle, EngineBuildOptions(), trt=trt, gpu=FAKE_GPU, detect=no_jetson)
    # an engine for an earlier model, built here, and one of another machine, recorded beside it
    for fp in (
        replace(first.fingerprint, model_sha256="00" * 32),
        replace(first.fingerprint, model_sha256="00" * 32, gpu_name="Other GPU"),
    ):
        (bundle / fp.plan_name).write_bytes(b"old")
        add_record(bundle, EngineRecord(fp.plan_name, hashlib.sha256(b"old").hexdigest(), 3, fp, "2025-01-01", {}))
    res = build_engine(
        bundle, EngineBuildOptions(fp16=True), trt=fake_tensorrt("10.3.0"), gpu=FAKE_GPU, detect=no_jetson
    )
    names = {r.file for r in read_index(bundle)}
    stale = replace(first.fingerprint, model_sha256="00" * 32).plan_name
    assert stale not in names and not (bundle / stale).exists()
    assert {first.record.file, res.record.file} <= names and len(names) == 3  # the other machine's entry stays
    assert any("removed 1 engine(s) built here for an earlier model" in n for n in res.notes)


# ----------------------------------------------------------------------------- CLI


def cli_app() -> typer.Typer:
    from mind_edge.cli import app

    return app


def test_engine_cli_build_and_list(bundle, monkeypatch):
    import mind_edge.export.engine as engine_mod
    import mind_edge.runtime.engine_fingerprint as fp_mod

    trt, _ = fake_stack("10.3.0", dla_cores=0)
    monkeypatch.setattr(engine_mod, "import_tensorrt", lambda *a, **k: trt)
    monkeypatch.setattr(fp_mod, "import_tensorrt", lambda *a, **k: trt)
    monkeypatch.setattr(fp_mod, "query_gpu", lambda device=0: FAKE_GPU)
    monkeypatch.setattr(engine_mod, "device_defaults", lambda detect=None: (None, None, None))
    app = cli_app()
    r = CliRunner().invoke(
        app, ["engine", "build", str(bundle), "--fp16", "--workspace", "128", "--max-batch", "16", "--json"]
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["fingerprint"]["precision"] == "fp16" and out["fingerprint"]["workspace_mb"] == 128
    assert out["fingerprint"]["max_batch"] == 16 and out["pinned_fp32_layers"] >= 12 and not out["reused"]
    r = CliRunner().invoke(app, ["engine", "build", str(bundle), "--fp16", "--workspace", "128", "--max-batch", "16"])
    assert r.exit_code == 0 and "reused" in r.stdout
    r = CliRunner().invoke(app, ["engine", "list", str(bundle), "--json"])
    (row,) = json.loads(r.stdout)["engines"]
    assert row["usable"] is True and row["precision"] == "fp16"
    monkeypatch.setattr(fp_mod, "query_gpu", lambda device=0: type(FAKE_GPU)("NVIDIA H200", "9.0"))
    r = CliRunner().invoke(app, ["engine", "list", str(bundle)], env={"COLUMNS": "250"})
    assert r.exit_code == 0 and "no" in r.stdout and "NVIDIA H200" in r.stdout
    r = CliRunner().invoke(app, ["engine", "build", str(bundle), "--dla", "0"])
    assert r.exit_code == 2 and "DLA core" in r.stderr


@pytest.mark.skipif(__import__("importlib.util").util.find_spec("tensorrt") is not None, reason="tensorrt is installed")
def test_engine_cli_without_tensorrt(bundle):
    r = CliRunner().invoke(cli_app(), ["engine", "build", str(bundle)])
    assert r.exit_code == 2
    assert "needs the 'tensorrt' Python package" in r.stderr and "JetPack" in r.stderr
    r = CliRunner().invoke(cli_app(), ["engine", "list", str(bundle)])
    assert r.exit_code == 0 and "no engine yet" in r.stdout


# ----------------------------------------------------------------------------- real TensorRT (GPU machines)


@pytest.mark.needs_tensorrt
def test_real_tensorrt_build_fp16_and_reuse(bundle):
    res = build_engine(bundle, EngineBuildOptions(fp16=True, opt_batch=4, max_batch=8))
    assert res.path.is_file() and res.record.bytes > 0
    assert res.fingerprint.precision == "fp16"
    if res.fingerprint.typing == "weak":
        assert len(res.pinned_fp32_layers) >= 10
    assert build_engine(bundle, EngineBuildOptions(fp16=True, opt_batch=4, max_batch=8)).reused
