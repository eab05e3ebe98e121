"""``mind-edge bench`` across precisions (issue 14): fp32 / fp16 / bf16 / int8 rows of one network,
the roofline against the matching peak, the agreement column, the optional OpenVINO peer, and
the task-count line that is not a fit (issue 13)."""

from __future__ import annotations

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from mind_edge.runtime import bench
from mind_edge.runtime.bench import BenchSpec, TimingConfig

FAST = TimingConfig(warmup_seconds=0.0, min_iters=2, min_seconds=0.02)
HAS_OV = importlib.util.find_spec("openvino") is not None


@pytest.fixture(scope="module")
def prec_sources(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench_prec")
    sources, info = bench.synthetic_sources(
        work,
        arch="resnet32",
        input_shape=(3, 8, 8),
        tasks=(2,),
        width=0.25,
        classes_per_task=2,
        precisions=("fp32", "fp16", "bf16", "int8"),
        calibration_images=8,
    )
    return work, sources, info


def _fake_peaks(monkeypatch):
    fake = {"engine": "fake", "gflops": 10.0, "size": 1, "per_size_gflops": {"1": 10.0}}
    monkeypatch.setattr(bench.peaks, "gemm_peak", lambda threads, **k: {**fake, "threads": threads})
    gflops = {"int8": 40.0, "bf16": 20.0}
    monkeypatch.setattr(
        bench.peaks,
        "precision_peak",
        lambda threads, p, **k: {
            "engine": f"fake {p}",
            "threads": threads,
            "gflops": gflops[p],
            "size": 1,
            "precision": p,
        },
    )
    monkeypatch.setattr(bench.machine, "cpu_has_bf16", lambda: True)


def test_precision_sources_one_network(prec_sources):
    _, sources, info = prec_sources
    assert [(s.precision, s.variant) for s in sources] == [
        ("fp32", "shared"),
        ("fp16", "shared fp16"),
        ("bf16", "shared"),
        ("int8", "int8 per-task QDQ"),
    ]
    assert sources[2].onnx == sources[0].onnx  # bf16 is a compute precision on the FP32 graph
    assert len({s.flops["per_image"] for s in sources}) == 1
    assert "standard-normal" in info["calibration"]


def test_rows_per_precision_roofline_against_matching_peak_and_agreement(prec_sources, monkeypatch):
    work, sources, info = prec_sources
    _fake_peaks(monkeypatch)
    backends = ("ort", "openvino") if HAS_OV else ("ort",)
    spec = BenchSpec(
        backends=backends,
        batches=(1, 2),
        threads=1,
        timing=FAST,
        isolate=False,
        precisions=("fp32", "fp16", "bf16", "int8"),
    )
    report = bench.run_benchmark(spec, sources, workdir=work, model_info=info)
    json.dumps(report)
    ok = [r for r in report["results"] if r["status"] == "ok"]
    ort = {r["precision"]: r for r in ok if r["backend"] == "ort" and r["batch"] == 1}
    assert set(ort) == {"fp32", "fp16", "int8"}
    assert ort["fp32"]["agreement_reference"] and ort["fp32"]["agreement_with_ort"] is None
    assert ort["fp16"]["compute_precision"] == "fp32"  # the CPU EP casts FP16 graphs to FP32
    assert ort["int8"]["compute_precision"] == "int8"
    for p, peak in (("fp32", 10.0), ("fp16", 10.0), ("int8", 40.0)):
        r = ort[p]
        assert r["roofline_peak_gflops"] == peak
        assert r["roofline_fraction"] == pytest.approx(r["flops_per_image"] * r["throughput_ips"] / 1e9 / peak)
    a = ort["fp16"]["agreement_with_ort"]
    assert a["label"] == 1.0 and a["task"] == 1.0 and a["count"] == bench.PROBE_BATCH
    assert 0.0 <= ort["int8"]["agreement_with_ort"]["task"] <= 1.0
    unavailable = [r for r in report["results"] if r["status"] == "unavailable" and r["backend"] == "ort"]
    assert {r["precision"] for r in unavailable} == {"bf16"} and "BF16" in unavailable[0]["reason"]
    assert report["gemm"]["peaks"]["int8"]["peak_gflops"] == 40.0
    if HAS_OV:
        ov = [r for r in ok if r["backend"] == "openvino" and r["batch"] == 1]
        assert {r["precision"] for r in ov} >= {"default", "fp32", "bf16", "int8"}
        for r in ov:
            assert r["agreement_with_ort"] is not None
            peak = {"int8": 40.0, "bf16": 20.0}.get(r["compute_precision"], 10.0)
            assert r["roofline_peak_gflops"] == peak
        fp32 = next(r for r in ov if r["precision"] == "fp32")
        assert fp32["compute_precision"] == "fp32" and fp32["agreement_with_ort"]["label"] == 1.0
        assert report["gemm"]["peaks"]["bf16"]["peak_gflops"] == 20.0


def test_int8_peak_is_measured_with_the_quantized_gemm():
    r = bench.precision_peak(1, "int8", sizes=(64, 128), seconds_per_size=0.0)
    assert r["gflops"] > 0 and "MatMulInteger" in r["engine"] and set(r["per_size_gflops"]) == {"64", "128"}
    assert bench.precision_peak(1, "fp64") is None


def test_two_task_counts_are_a_line_not_a_fit():
    rows = [
        {"status": "ok", "backend": "ort", "variant": "shared", "batch": 1, "tasks": t, "p50_ms": 1.0 + t}
        for t in (1, 2)
    ]
    (fit,) = bench.linearity(rows)
    assert fit["r2"] is None and fit["is_fit"] is False and fit["ms_per_task"] == pytest.approx(1.0)
    rows.append({**rows[0], "tasks": 4, "p50_ms": 5.5})
    (fit,) = bench.linearity(rows)
    assert fit["is_fit"] and 0.9 < fit["r2"] < 1.0


def test_cli_table_has_precision_and_agree_columns(bench_app, tmp_path, monkeypatch):
    _fake_peaks(monkeypatch)
    out = tmp_path / "p.json"
    res = CliRunner().invoke(
        bench_app,
        [
            "bench",
            "--arch",
            "resnet32",
            "--input-shape",
            "3,8,8",
            "--width",
            "0.25",
            "--classes-per-task",
            "2",
            "--tasks",
            "1,2",
            "--batch",
            "1",
            "--min-seconds",
            "0.02",
            "--min-iters",
            "2",
            "--warmup-seconds",
            "0",
            "--threads",
            "1",
            "--no-isolate",
            "--precision",
            "fp32,int8",
            "--json",
            str(out),
        ],
        catch_exceptions=False,
        env={"COLUMNS": "240"},
    )
    assert res.exit_code == 0, res.output
    assert "agree" in res.output and "prec" in res.output and " ref " in res.output
    assert "not a fit" in res.output and "R² 1.000" not in res.output
    assert "roofline (int8 rows): peak 40.0 GOP/s" in res.output
    report = json.loads(out.read_text())
    assert report["settings"]["precisions"] == ["fp32", "int8"]
