"""export_bundle / export_model: bundles, validation against PyTorch, sizes, atomicity."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from export_helpers import make_model

from mind_edge.errors import CheckpointError, ConfigError
from mind_edge.export.errors import ExportValidationError
from mind_edge.export.exporter import export_bundle, export_model
from mind_edge.fileio import sha256_file
from mind_edge.runtime.bundle import Bundle
from mind_edge.runtime.errors import BundleError
from mind_edge.runtime.graph import build_graph, random_arrays
from mind_edge.runtime.predict import Runtime


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("layout", ["shared", "folded"])
def test_export_run_dir(fake_run_dir, tmp_path, layout):
    out = tmp_path / "bundle"
    res = export_bundle(fake_run_dir, out, layout=layout)
    assert res.bundle == out and res.passed
    assert sorted(p.name for p in out.iterdir()) == ["bundle.json", "model.onnx", "probe.npz", "validation.json"]
    rep = json.loads((out / "validation.json").read_text())
    assert rep["passed"] and rep["checker"] == {"ok": True, "full_check": True}
    assert rep["inputs"]["test"]["count"] == 256  # evenly drawn from the 450 digits test images (5 tasks learned)
    assert rep["inputs"]["random"]["count"] == 32
    assert rep["agreement"] == {"label": 1.0, "task": 1.0}
    assert all(v <= 1e-4 for v in rep["max_abs_diff"].values())
    assert rep["size"]["ok"]

    meta = json.loads((out / "bundle.json").read_text())
    assert meta["format"] == "mind-edge-bundle" and meta["schema_version"] == 1
    assert meta["layout"] == layout and meta["opset"] == 17
    assert meta["input"] == {
        **meta["input"],
        "name": "image",
        "shape": [-1, 1, 8, 8],
        "dtype": "float32",
        "channel_order": "L",
        "mean": [0.3053],
        "std": [0.3759],
        "resize": "bilinear",
    }
    assert meta["temperature"] == 2.0  # the run's
    assert [t["index"] for t in meta["tasks"]] == [0, 1, 2, 3, 4]
    assert all(t["class_names"] == [str(c) for c in t["classes"]] for t in meta["tasks"])
    assert [o["name"] for o in meta["outputs"]] == [
        "label",
        "task",
        "confidence",
        "task_confidence",
        "task_logits",
        "task_features",
    ]
    assert meta["outputs"][4]["shape"] == [-1, 5, 2]
    assert meta["source"]["run_fingerprint"] == sha256_file(fake_run_dir / "checkpoint.safetensors")
    assert meta["source"]["net"]["arch"] == "resnet32"
    for name in ("model.onnx", "probe.npz", "validation.json"):
        assert meta["files"][name] == {"sha256": sha256_file(out / name), "bytes": (out / name).stat().st_size}
    assert meta["validation"]["passed"] is True
    assert meta["sizes"]["model_bytes"] == res.model_bytes
    assert res.naive_bytes >= 5 * res.dense_bytes * 0.95
    # the probe reproduces through the runtime
    b = Bundle.load(out)
    probe = b.probe()
    assert probe["image"].shape == (8, 1, 8, 8)
    with Runtime(b, providers=["cpu"]) as rt:
        pred = rt.predict(probe["image"])
    np.testing.assert_array_equal(pred.label, probe["label"])
    np.testing.assert_allclose(pred.task_logits, probe["task_logits"], atol=1e-6)
    assert _leftovers(tmp_path) == []


def test_temperature_override_and_overwrite(fake_run_dir, tmp_path):
    out = tmp_path / "b"
    export_bundle(fake_run_dir, out, temperature=0.5, validate=False)
    meta = json.loads((out / "bundle.json").read_text())
    assert meta["temperature"] == 0.5
    assert json.loads((out / "validation.json").read_text())["skipped"] is True
    with pytest.raises(BundleError, match="not empty.*--overwrite"):
        export_bundle(fake_run_dir, out, validate=False)
    res = export_bundle(fake_run_dir, out, layout="folded", overwrite=True, random_inputs=4, max_test_samples=20)
    assert json.loads((out / "bundle.json").read_text())["layout"] == "folded"
    assert res.report["inputs"]["test"]["count"] == 20
    assert _leftovers(tmp_path) == []


def test_validation_failure_lists_every_failing_output_and_writes_nothing(tmp_path, monkeypatch):
    import mind_edge.export.exporter as exporter

    model = make_model(3)
    real = exporter.build_graph

    def wrong_graph(arrays, **kw):  # a graph whose task-1 head drifted from the PyTorch model
        arrays.heads[1].bias[0] += 8.0
        return real(arrays, **kw)

    monkeypatch.setattr(exporter, "build_graph", wrong_graph)
    out = tmp_path / "b"
    with pytest.raises(ExportValidationError) as err:
        export_model(
            model,
            out,
            class_names=[str(i) for i in range(10)],
            mean=[0, 0, 0],
            std=[1, 1, 1],
            temperature=1.0,
            validation_inputs=np.random.default_rng(1).standard_normal((40, 3, 13, 9)).astype(np.float32),
        )
    msg = str(err.value)
    failing = {f.split(":")[0] for f in err.value.failures}
    assert {"task_logits", "task_confidence", "confidence", "task", "label"} <= failing, failing
    assert "test inputs" in msg and "random inputs" in msg and "Nothing was written" in msg
    assert "\n" not in msg
    assert err.value.report["passed"] is False
    assert not out.exists() and _leftovers(tmp_path) == []


def test_tolerance_failure_is_reported(tmp_path):
    model = make_model(2)
    with pytest.raises(
        ExportValidationError,
        match=r"task_logits: \d+ values outside atol 1e-12 / rtol 0 on test inputs "
        r"\(max \|Δ\| .*, max relative Δ .*, max \|reference\| .*\)",
    ):
        export_model(
            model,
            tmp_path / "b",
            class_names=[str(i) for i in range(10)],
            mean=[0, 0, 0],
            std=[1, 1, 1],
            temperature=1.0,
            atol=1e-12,
            rtol=0.0,
            validation_inputs=np.random.default_rng(1).standard_normal((8, 3, 13, 9)).astype(np.float32),
        )
    assert not (tmp_path / "b").exists()


def test_export_model_arguments_are_checked(tmp_path):
    model = make_model(2)
    kw = dict(class_names=[str(i) for i in range(10)], mean=[0, 0, 0], std=[1, 1, 1], temperature=1.0)
    with pytest.raises(ConfigError, match="layout"):
        export_model(model, tmp_path / "b", layout="sparse", **kw)
    with pytest.raises(ConfigError, match="rtol must be"):
        export_model(model, tmp_path / "b", rtol=-1.0, **kw)
    with pytest.raises(ConfigError, match="mean and std need 3"):
        export_model(model, tmp_path / "b", **{**kw, "mean": [0.5]})
    with pytest.raises(ConfigError, match="validation_inputs must be"):
        export_model(model, tmp_path / "b", validation_inputs=np.zeros((2, 3, 8, 8), np.float32), **kw)
    from mind_edge.export.errors import ExportError

    with pytest.raises(ExportError, match="class names have no entry"):
        export_model(model, tmp_path / "b", **{**kw, "class_names": ["a"]})
    with pytest.raises(CheckpointError, match="does not exist"):
        export_bundle(tmp_path / "no-run", tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_shared_size_grows_only_by_bn_sets_and_heads():
    """ResNet-32 (width 1, 3x32x32): 2 -> 10 tasks adds 8 BN sets and 8 heads, nothing else."""
    net = {"arch": "resnet32", "in_channels": 3, "input_size": [32, 32], "width": 1.0, "capacity": 10}
    classes = [[2 * t, 2 * t + 1] for t in range(10)]
    a2, a10 = random_arrays(net, classes[:2], seed=1), random_arrays(net, classes, seed=1)
    s2 = build_graph(a2, layout="shared", temperature=1.0).ByteSize()
    s10 = build_graph(a10, layout="shared", temperature=1.0).ByteSize()
    bn_channels = sum(x.sets[0].gamma.size for x in a10.norms)
    feat = a10.heads[0].weight.shape[1]
    bn_set_bytes = bn_channels * 4 * 4  # gamma, beta, mean, var in float32
    head_bytes = (feat + 1) * 2 * 4 + 2 * 8  # weight + bias, and the class-table entries (int64)
    growth = s10 - s2
    assert growth >= 8 * (bn_set_bytes + head_bytes)
    assert growth <= 8 * (bn_set_bytes + head_bytes) + 512, (growth, 8 * (bn_set_bytes + head_bytes))
    dense = a10.dense_weight_count() * 4
    assert s10 <= 1.4 * dense
    folded10 = build_graph(a10, layout="folded", temperature=1.0).ByteSize()
    assert folded10 >= 10 * dense


@pytest.fixture(scope="module")
def resnet32_10tasks():
    return make_model(10, width=1.0, size=(32, 32), seed=11, sizes=(10,))


@pytest.mark.parametrize("layout", ["shared", "folded"])
def test_ten_task_resnet32_agrees_and_exports_fast(resnet32_10tasks, tmp_path, layout):
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))  # the budget is for 2 cores
    x = np.random.default_rng(5).standard_normal((32, 3, 32, 32)).astype(np.float32)
    t0 = time.perf_counter()
    try:
        res = export_model(
            resnet32_10tasks,
            tmp_path / "b",
            class_names=[f"c{i}" for i in range(100)],
            mean=[0.5, 0.5, 0.5],
            std=[0.25, 0.25, 0.25],
            temperature=6.5,
            layout=layout,
            validation_inputs=x,
            random_inputs=32,
        )
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - t0
    assert seconds < 60
    rep = res.report
    assert rep["agreement"] == {"label": 1.0, "task": 1.0}
    assert rep["max_abs_diff"]["task_logits"] <= 1e-4
    # routing really varies on these inputs (the agreement is not trivially about one task)
    with Runtime(Bundle.load(res.bundle), providers=["cpu"]) as rt:
        assert len(set(rt.predict(x).task.tolist())) >= 3
    if layout == "shared":
        assert res.model_bytes <= 1.4 * res.dense_bytes
    else:
        assert res.model_bytes >= 9.5 * res.dense_bytes
    assert res.naive_bytes >= 9.9 * res.dense_bytes


def test_tolerance_rule_is_atol_or_rtol_per_element():
    from mind_edge.export.validate import compare

    ref = {
        "task_logits": np.array([[[100.0, 0.5, -1e4]]], np.float32),
        "task_confidence": np.array([[0.5]], np.float32),
        "confidence": np.array([0.5], np.float32),
        "label": np.array([3]),
        "task": np.array([0]),
        "task_features": np.array([[[0.25, 1.5]]], np.float32),
    }
    got = {**ref, "task_logits": np.array([[[100.0005, 0.50005, -1e4]]], np.float32)}
    # 100 -> 100.0005: |Δ| 5e-4 > atol but < 1e-5 * 100; 0.5 -> 0.50005: |Δ| 5e-5 <= atol
    c = compare(ref, got, atol=1e-4, rtol=1e-5)
    assert c["task_logits"]["out_of_tolerance"] == 0
    assert c["task_logits"]["max_abs_diff"] == pytest.approx(5e-4, rel=0.05)
    assert c["task_logits"]["max_abs_ref"] == 1e4
    assert compare(ref, got, atol=1e-4, rtol=0.0)["task_logits"]["out_of_tolerance"] == 1
    assert compare(ref, got, atol=1e-5, rtol=0.0)["task_logits"]["out_of_tolerance"] == 2
    assert c["label"] == {"agreement": 1.0, "mismatches": 0, "first_mismatches": []}
    bad = compare(ref, {**got, "label": np.array([4])})
    assert bad["label"]["mismatches"] == 1 and bad["label"]["first_mismatches"] == [0]


def test_score_policies_compare_scores_relative_to_the_row():
    """Score policies: task_confidence within CONTRACT.score_rtol of the row's largest |score|, confidence within it."""
    from mind_edge.export.validate import compare

    ref = {
        "task_logits": np.zeros((1, 2, 2), np.float32),
        "task_features": np.zeros((1, 2, 3), np.float32),
        "task_confidence": np.array([[-800.0, 2.0]], np.float32),
        "confidence": np.array([0.9], np.float32),
        "label": np.array([3]),
        "task": np.array([1]),
    }
    got = {**ref, "task_confidence": np.array([[-805.0, 5.0]], np.float32), "confidence": np.array([0.905], np.float32)}
    assert compare(ref, got)["task_confidence"]["out_of_tolerance"] == 2  # maxprob graphs: the plain rule
    c = compare(ref, got, scores=True)  # |Δ| 5 and 3 <= 1e-2 * 800; |Δ confidence| 5e-3 <= 1e-2
    assert c["task_confidence"]["out_of_tolerance"] == 0 and c["confidence"]["out_of_tolerance"] == 0
    worse = {
        **got,
        "task_confidence": np.array([[-800.0, 12.0]], np.float32),
        "confidence": np.array([0.92], np.float32),
    }
    c = compare(ref, worse, scores=True)
    assert c["task_confidence"]["out_of_tolerance"] == 1 and c["confidence"]["out_of_tolerance"] == 1
