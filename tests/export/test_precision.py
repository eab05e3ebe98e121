"""FP16 / INT8 exports (issue 14): the routing head stays FP32 (inspected in the graphs), agreement
metrics against the FP32 model, the one-line refusal below the thresholds, the CLI."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from cli_helpers import one_error_line
from typer.testing import CliRunner

from mind_edge.errors import ConfigError
from mind_edge.export.exporter import export_bundle
from mind_edge.export.quantize import PrecisionRefused, PrecisionThresholds, accuracies, agreement, check_thresholds
from mind_edge.export.validate import ort_outputs, ort_session
from mind_edge.runtime import precision as prec
from mind_edge.runtime.bundle import Bundle
from mind_edge.runtime.graph import build_graph, random_arrays

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QDQ = {"QuantizeLinear", "DequantizeLinear"}


def _fp32_part_is_fp32(model) -> None:
    """Every node outside the backbone reads/writes float32 or integer tensors only; every route.*
    initializer is float32 or an integer table; no Q/DQ node touches them."""
    inferred = onnx.shape_inference.infer_shapes(model)
    TP = onnx.TensorProto
    types = {
        v.name: v.type.tensor_type.elem_type for v in list(inferred.graph.value_info) + list(inferred.graph.output)
    }
    types.update({i.name: i.data_type for i in model.graph.initializer})
    back = prec.backbone_nodes(model)
    outside = [n for n in model.graph.node if n.name not in back]
    names = {n.name for n in outside}
    assert {"pool", "task_logits", "route.scaled", "route.probs", "task", "label"} <= names
    for n in outside:
        if n.op_type in QDQ or n.op_type == "Cast" and n.name.endswith(".to_fp32"):
            assert not n.name.startswith(prec.ROUTE_PREFIX)
            continue
        for t in list(n.input) + list(n.output):
            if t in types:
                assert types[t] not in (TP.FLOAT16, TP.INT8, TP.UINT8, TP.BFLOAT16) or n.op_type in ("Cast",), (
                    n.name,
                    t,
                )
    for i in model.graph.initializer:
        if i.name.startswith(prec.ROUTE_PREFIX):
            assert i.data_type in (TP.FLOAT, TP.INT64), i.name
    heads_in = {t for n in outside if n.name.startswith("heads.") for t in n.input}
    qdq_out = {t for n in model.graph.node if n.op_type in QDQ for t in n.output}
    assert not heads_in & qdq_out, "the heads read a dequantized tensor directly"
    route_tensors = {
        t for n in model.graph.node if n.name.startswith(prec.ROUTE_PREFIX) for t in list(n.input) + list(n.output)
    }
    assert not any(set(n.input) & route_tensors for n in model.graph.node if n.op_type in QDQ)


def _arrays(n=3):
    net = {"arch": "resnet32", "in_channels": 3, "input_size": [8, 8], "width": 0.25, "capacity": n}
    return random_arrays(net, [[3 * t, 3 * t + 1, 3 * t + 2] for t in range(n)], seed=1)


def test_fp16_graph_routing_fp32_and_exact_readback():
    arrays = _arrays()
    m = prec.fp16_model(arrays, temperature=2.0)
    onnx.checker.check_model(m, full_check=True)
    _fp32_part_is_fp32(m)
    TP = onnx.TensorProto
    assert any(i.data_type == TP.FLOAT16 for i in m.graph.initializer)
    assert not any(i.name.endswith(".owner") for i in m.graph.initializer), "owner maps should be packed"
    assert prec.model_precision(m) == "fp16"
    back = prec.read_model_arrays(m)
    assert prec.fp16_model(back, temperature=2.0).SerializeToString() == m.SerializeToString()  # idempotent


def test_fp16_file_of_10_task_resnet32_is_at_most_55_percent():
    """The must-show size: FP16 model.onnx <= 55 % of the FP32 shared graph (10-task ResNet-32, 3x32x32)."""
    net = {"arch": "resnet32", "in_channels": 3, "input_size": [32, 32], "width": 1.0, "capacity": 10}
    arrays = random_arrays(net, [list(range(10 * t, 10 * t + 10)) for t in range(10)], seed=0)
    fp32 = build_graph(arrays, layout="shared", temperature=1.0).ByteSize()
    fp16 = prec.fp16_model(arrays, temperature=1.0).ByteSize()
    assert fp16 <= 0.55 * fp32, fp16 / fp32


def test_int8_graph_is_qdq_per_channel_with_fp32_routing():
    arrays = _arrays()
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    m = prec.int8_model(arrays, x, temperature=1.0)
    ops = {n.op_type for n in m.graph.node}
    assert ops >= QDQ
    # per-channel weights: DequantizeLinear of an int8 initializer with one scale per output channel
    inits = {i.name: i for i in m.graph.initializer}
    per_channel = [
        n
        for n in m.graph.node
        if n.op_type == "DequantizeLinear"
        and n.input[0] in inits
        and inits[n.input[0]].data_type == onnx.TensorProto.INT8
        and len(inits[n.input[1]].dims) == 1
    ]
    assert len(per_channel) >= 3 * 31  # every conv of every task
    _fp32_part_is_fp32(m)
    prec.check_fp32_routing(m)


def test_int8_calibration_method_changes_the_activation_scales_and_is_recorded():
    arrays = _arrays()
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)

    def scales(model) -> dict[str, bytes]:
        inits = model.graph.initializer
        return {i.name: onnx.numpy_helper.to_array(i).tobytes() for i in inits if i.name.endswith("_scale")}

    plain = scales(prec.int8_model(arrays, x, temperature=1.0))
    pct = scales(prec.int8_model(arrays, x, temperature=1.0, options=prec.Int8Options(method="percentile")))
    assert pct.keys() == plain.keys() and pct != plain
    assert prec.Int8Options(method="percentile").to_json()["method"] == "percentile"  # what bundle.json records
    with pytest.raises(ConfigError, match="unknown INT8 calibration method 'kl'; choose one of minmax, percentile"):
        prec.int8_model(arrays, x, temperature=1.0, options=prec.Int8Options(method="kl"))


def test_int8_keep_fp32_leaves_those_backbone_layers_unquantized_and_names_a_wrong_prefix():
    arrays = _arrays()
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    keep = ("stem.", "blocks.0.")
    m = prec.int8_model(arrays, x, temperature=1.0, options=prec.Int8Options(keep_fp32=keep))
    producers = {o: n for n in m.graph.node for o in n.output}
    kept = [n for n in m.graph.node if n.op_type == "Conv" and n.name.startswith(keep)]
    assert kept, "the kept layers' convolutions are still there"
    for conv in kept:  # no DequantizeLinear feeds a kept convolution: it computes in FP32 on FP32 weights
        assert all(producers.get(i) is None or producers[i].op_type != "DequantizeLinear" for i in conv.input), (
            conv.name
        )
    others = [n for n in m.graph.node if n.op_type == "Conv" and n.name.startswith("blocks.5.")]
    assert others and all(
        any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in n.input)
        for n in others
    )
    assert prec.Int8Options(keep_fp32=keep).to_json()["keep_fp32"] == list(keep)  # what bundle.json records
    with pytest.raises(Exception, match="no backbone node starts with 'stage1.'"):
        prec.int8_model(arrays, x, temperature=1.0, options=prec.Int8Options(keep_fp32=("stage1.",)))


def test_int8_keeps_sub_network_0_fp32_when_the_routing_head_reads_its_features():
    """shared/lda/combined score every task on sub-network 0's pooled taps: its chain stays FP32
    (its features equal the FP32 graph's), every other task's is quantized; opt-out quantizes it."""
    net = {"arch": "resnet32", "in_channels": 3, "input_size": [8, 8], "width": 0.25, "capacity": 3}
    arrays = random_arrays(net, [[3 * t, 3 * t + 1, 3 * t + 2] for t in range(3)], seed=1, stats=True)
    assert [prec.features_stay_fp32(arrays, p) for p in ("auto", "combined", "lda", "shared")] == [True] * 4
    assert [prec.features_stay_fp32(arrays, p) for p in ("maxprob", "mahalanobis")] == [False] * 2
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    kept = prec.int8_model(arrays, x, temperature=1.0)  # the run's policy: combined
    quantized = prec.int8_model(arrays, x, temperature=1.0, options=prec.Int8Options(fp32_features=False))

    def dequantized_convs(model) -> dict[int, tuple[int, int]]:  # task -> (convs fed by a DequantizeLinear, convs)
        producers = {o: n for n in model.graph.node for o in n.output}
        out: dict[int, tuple[int, int]] = {}
        for n in model.graph.node:
            if n.op_type == "Conv" and ".t" in n.name:
                t = int(n.name.rsplit(".t", 1)[1])
                dq = any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in n.input)
                q, c = out.get(t, (0, 0))
                out[t] = (q + dq, c + 1)
        return out

    k, c = dequantized_convs(kept), 33  # ResNet-32: stem, 30 block convs, 2 shortcut convs per task
    assert k == {0: (0, c), 1: (c, c), 2: (c, c)}
    assert dequantized_convs(quantized) == {0: (c, c), 1: (c, c), 2: (c, c)}
    assert prec.Int8Options().resolve(arrays).to_json()["fp32_features"] is True  # what bundle.json records
    # sub-network 0's pooled features are the FP32 graph's; quantized, they move
    fp32 = ort_outputs(ort_session(build_graph(arrays, layout="folded", temperature=1.0).SerializeToString()), x)
    got = ort_outputs(ort_session(kept.SerializeToString()), x)
    moved = ort_outputs(ort_session(quantized.SerializeToString()), x)
    np.testing.assert_allclose(got["task_features"][:, 0], fp32["task_features"][:, 0], rtol=1e-4, atol=1e-5)
    assert np.abs(moved["task_features"][:, 0] - fp32["task_features"][:, 0]).max() > 1e-3
    with pytest.raises(ConfigError, match="only in the per-task INT8 graph"):
        prec.int8_model(arrays, x, temperature=1.0, options=prec.Int8Options(per_task=False, fp32_features=True))


def test_int8_of_one_task_under_a_feature_policy_quantizes_nothing_and_says_so(caplog):
    net = {"arch": "resnet32", "in_channels": 3, "input_size": [8, 8], "width": 0.25, "capacity": 3}
    arrays = random_arrays(net, [[0, 1, 2]], seed=1, stats=True)
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    with caplog.at_level("WARNING"):
        m = prec.int8_model(arrays, x, temperature=1.0)
    assert not {n.op_type for n in m.graph.node} & QDQ
    assert "nothing quantized" in caplog.text
    q = prec.int8_model(arrays, x, temperature=1.0, options=prec.Int8Options(fp32_features=False))
    assert {n.op_type for n in q.graph.node} >= QDQ


def test_route_prefix_nodes_stay_fp32_wherever_they_are():
    """A routing-statistics node (route.*) reading a backbone tensor stays FP32 in both precisions."""
    arrays = _arrays()
    g = build_graph(arrays, layout="folded", temperature=1.0)
    boundary = prec.fp32_boundary(g)
    stat = onnx.helper.make_node("ReduceMean", [boundary], ["route.stats.mean"], name="route.stats.mean", keepdims=0)
    g.graph.node.append(stat)
    g.graph.output.append(onnx.helper.make_tensor_value_info("route.stats.mean", onnx.TensorProto.FLOAT, None))
    assert "route.stats.mean" not in prec.backbone_nodes(g)
    half = prec.to_fp16(g)
    node = next(n for n in half.graph.node if n.name == "route.stats.mean")
    assert node.input[0].endswith(".fp32")


def test_agreement_and_accuracies():
    ref = {
        "label": np.array([1, 2, 3, 4]),
        "task": np.array([0, 0, 1, 1]),
        "task_logits": np.array([[[1.0, 0.0], [0.0, 0.0]]] * 4, np.float32),
    }
    got = {"label": np.array([1, 2, 3, 5]), "task": np.array([0, 1, 1, 1]), "task_logits": ref["task_logits"] + 0.5}
    a = agreement(ref, got)
    assert a["label"] == 0.75 and a["task"] == 0.75 and a["max_abs_task_logits"] == pytest.approx(0.5)
    acc = accuracies(
        {
            "label": np.array([0, 3]),
            "task": np.array([0, 1]),
            "task_logits": np.array([[[5.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 2.0]]]),
        },
        np.array([0, 3]),
        [[0, 1], [2, 3]],
    )
    assert acc == {"tag": 1.0, "taw": 1.0, "routing": 1.0}


def test_thresholds_refuse_in_one_line():
    rep = {
        "precision": "int8",
        "routing_agreement": 0.95,
        "label_agreement": 0.94,
        "tag": 0.50,
        "tag_fp32": 0.53,
        "tag_drop_points": 3.0,
        "max_abs_task_logits": 1.5,
        "measured_on": "test",
        "inputs": {"test": {"count": 200}},
    }
    with pytest.raises(PrecisionRefused) as exc:
        check_thresholds(rep, PrecisionThresholds())
    msg = str(exc.value)
    assert "\n" not in msg and "95.00% < 99.00%" in msg and "-3.00 points" in msg and "nothing was written" in msg
    rep.update(routing_agreement=0.995, tag_drop_points=0.5)
    check_thresholds(rep, PrecisionThresholds())
    assert rep["passed"]
    with pytest.raises(Exception, match="min-routing-agreement"):
        PrecisionThresholds(min_routing_agreement=99)


@pytest.fixture(scope="module")
def run4(tmp_path_factory):
    """A digits run with MIND's structure (4 of 5 tasks learned, capacity 10, untrained weights)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "mind_edge"))
    from learn_helpers import make_run

    from mind_edge.checkpoint import read_run_json, write_run_json

    run = make_run(tmp_path_factory.mktemp("precision_run") / "run4", seed=2)
    meta = read_run_json(run).to_json()
    meta["train"]["routing"] = "maxprob"  # untrained: no routing statistics
    write_run_json(run, meta)
    return run


@pytest.fixture(scope="module")
def precision_bundles(run4, tmp_path_factory):
    fake_run_dir = run4
    root = tmp_path_factory.mktemp("precision")
    # a random (untrained) network has near-ties between tasks: looser thresholds than a trained one needs
    loose = PrecisionThresholds(min_routing_agreement=0.8, max_tag_drop=10.0)
    out = {
        p: export_bundle(
            fake_run_dir,
            root / p,
            precision=p,
            calibration=64 if p == "int8" else None,
            max_test_samples=120,
            thresholds=loose,
        )
        for p in ("fp32", "fp16", "int8")
    }
    return out


def test_precision_bundles_record_and_validate(precision_bundles):
    fp32 = precision_bundles["fp32"]
    for p in ("fp16", "int8"):
        res = precision_bundles[p]
        b = Bundle.load(res.bundle)
        rec = b.record.precision
        assert rec.precision == p == prec.bundle_precision(b) == res.precision
        rep = res.report["precision"]
        assert rep["measured_on"] == "test" and rep["inputs"]["test"]["count"] == 120
        for k in ("label_agreement", "routing_agreement", "tag", "tag_fp32", "taw", "taw_fp32", "max_abs_task_logits"):
            assert rep[k] is not None, k
        assert rep["tag_fp32"] == pytest.approx(
            fp32.report["precision"]["tag_fp32"] if "precision" in fp32.report else rep["tag_fp32"]
        )
        assert rep["passed"] and rep["routing_agreement"] >= 0.8
        _fp32_part_is_fp32(onnx.load(str(b.model_path)))
        # the bundle's arrays read back equal the run's (fp16 rounded)
        arrays = prec.bundle_arrays(b)
        assert arrays.num_tasks == 4
    fp16 = precision_bundles["fp16"]
    assert fp16.report["precision"]["sizes"]["ratio_to_fp32_shared"] < 1.0  # tiny width: graph structure weighs most
    b8 = Bundle.load(precision_bundles["int8"].bundle)
    assert (b8.path / prec.MASTER_FILE).is_file() and (b8.path / prec.CALIBRATION_FILE).is_file()
    assert b8.record.precision.calibration.images == 64
    assert prec.bundle_calibration(b8).shape == (64, 1, 8, 8)  # digits 8x8, one channel
    assert b8.layout == "folded"
    # the master is exactly the FP32 export's graph
    assert (b8.path / prec.MASTER_FILE).read_bytes() == Bundle.load(
        precision_bundles["fp32"].bundle
    ).model_path.read_bytes()


def test_predict_runs_precision_bundles(precision_bundles):
    from mind_edge.runtime.predict import Runtime

    for p in ("fp16", "int8"):
        b = Bundle.load(precision_bundles[p].bundle)
        probe = b.probe()
        with Runtime(b) as rt:
            np.testing.assert_array_equal(rt.predict(probe["image"]).label, probe["label"])


@pytest.fixture(scope="module")
def app():
    from mind_edge.cli import app

    return app


def test_cli_precision_json_and_refusal(app, run4, tmp_path, monkeypatch):
    fake_run_dir = run4
    r = CliRunner().invoke(
        app,
        [
            "export",
            str(fake_run_dir),
            "--out",
            str(tmp_path / "b16"),
            "--precision",
            "fp16",
            "--samples",
            "60",
            "--min-routing-agreement",
            "0.8",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["precision"] == "fp16" and doc["precision_validation"]["passed"] is True
    line = one_error_line(
        CliRunner().invoke(app, ["export", str(fake_run_dir), "--out", str(tmp_path / "x"), "--precision", "fp64"])
    )
    assert "fp64" in line and "fp32, fp16, int8" in line
    line = one_error_line(
        CliRunner().invoke(app, ["export", str(fake_run_dir), "--out", str(tmp_path / "x"), "--calibration", "10"])
    )
    assert "--calibration applies to --precision int8" in line
    # a graph that routes differently (even heads silenced, odd heads x50) is refused with the numbers, nothing written
    import dataclasses

    real = prec.precision_model

    def wrong(arrays, precision, **kw):
        heads = tuple(
            dataclasses.replace(h, weight=h.weight * (0.0 if t % 2 == 0 else 50.0)) for t, h in enumerate(arrays.heads)
        )
        return real(dataclasses.replace(arrays, heads=heads), precision, **kw)

    monkeypatch.setattr(prec, "precision_model", wrong)
    line = one_error_line(
        CliRunner().invoke(
            app, ["export", str(fake_run_dir), "--out", str(tmp_path / "bad"), "--precision", "fp16", "--samples", "60"]
        )
    )
    assert "fp16 bundle refused: routing agreement" in line and "--min-routing-agreement" in line
    assert "nothing was written" in line and not (tmp_path / "bad").exists()


def test_cli_int8_keep_fp32_is_checked_before_anything_is_written(app, run4, tmp_path):
    out = tmp_path / "b"
    for args, words in (
        (["--precision", "int8", "--int8-keep-fp32", "a b"], "takes node-name prefixes"),
        (["--precision", "int8", "--int8-keep-fp32", "stem.,"], "takes node-name prefixes"),
        (["--precision", "fp16", "--int8-keep-fp32", "stem."], "applies to --precision int8 only"),
        (["--precision", "int8", "--int8-method", "kl"], "unknown INT8 calibration method 'kl'; choose one of minmax"),
        (["--precision", "fp16", "--int8-method", "entropy"], "--int8-method applies to --precision int8 only"),
        (["--int8-quantize-features"], "--int8-quantize-features applies to --precision int8 only"),
    ):
        line = one_error_line(CliRunner().invoke(app, ["export", str(run4), "--out", str(out), *args]))
        assert words in line
        assert not out.exists()
