"""Latency harness: statistics, timing loop (fake clock), GEMM peak, workers, torch-free imports.

No test asserts a wall-clock time: timings come from a fake clock or are only checked for shape.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from mind_edge.errors import ConfigError
from mind_edge.runtime import bench
from mind_edge.runtime.bench import (
    CV_WARN,
    BenchSpec,
    GraphVariant,
    TimingConfig,
    cv_warning,
    linear_fit,
    percentile,
    summarize,
    time_loop,
)

TINY = {"arch": "resnet32", "in_channels": 3, "input_size": [8, 8], "width": 0.25, "capacity": 3}
FAST = TimingConfig(warmup_seconds=0.0, min_iters=2, min_seconds=0.0)


# ----------------------------------------------------------------------------- statistics


def test_percentiles_interpolate_between_order_statistics():
    v = [4.0, 1.0, 3.0, 2.0]  # sorted 1 2 3 4; position (n-1)*q/100
    assert percentile(v, 0) == 1.0
    assert percentile(v, 50) == 2.5
    assert percentile(v, 100) == 4.0
    assert percentile(v, 90) == pytest.approx(3.7)
    assert percentile([7.0], 99) == 7.0
    vals = list(np.random.default_rng(0).random(101))
    for q in (50, 90, 95, 99):
        assert percentile(vals, q) == pytest.approx(float(np.percentile(vals, q)))
    with pytest.raises(ConfigError):
        percentile(v, 101)
    with pytest.raises(ConfigError):
        percentile([], 50)


def test_summary_throughput_and_cv_by_hand():
    lat = [0.010, 0.012, 0.011, 0.013, 0.014]  # seconds
    s = summarize(lat, batch=8, wall_s=0.1)
    assert s.iterations == 5 and s.batch == 8
    assert s.p50_ms == pytest.approx(12.0)
    assert s.mean_ms == pytest.approx(12.0)
    assert s.std_ms == pytest.approx(np.sqrt(2.5))  # sample std of 10..14 ms
    assert s.cv == pytest.approx(np.sqrt(2.5) / 12.0)
    assert s.throughput_ips == pytest.approx(5 * 8 / 0.1)  # images / wall time
    assert s.min_ms == pytest.approx(10.0) and s.max_ms == pytest.approx(14.0)
    assert s.p99_ms == pytest.approx(13.96)
    assert s.noisy and cv_warning(s, "ort b=8") is not None
    # without a wall time the throughput uses the sum of the latencies
    assert summarize(lat, batch=2).throughput_ips == pytest.approx(10 / 0.060)
    with pytest.raises(ConfigError):
        summarize([], batch=1)
    with pytest.raises(ConfigError):
        summarize([0.1], batch=0)


def test_cv_warning_only_above_five_percent():
    steady = summarize([0.100, 0.101, 0.099, 0.100], batch=1)
    assert steady.cv < CV_WARN and not steady.noisy
    assert cv_warning(steady) is None
    noisy = summarize([0.1, 0.1, 0.1, 0.2], batch=1)
    msg = cv_warning(noisy, "torch tasks=10 batch=1")
    assert noisy.noisy and msg.startswith("torch tasks=10 batch=1: noisy timing")
    assert "uptime" in msg and f"{noisy.cv:.1%}" in msg
    assert cv_warning(noisy, threshold=1.0) is None
    assert summarize([0.3], batch=1).cv == 0.0


def test_linear_fit():
    fit = linear_fit([1, 2, 5, 10], [3.0, 5.0, 11.0, 21.0])
    assert (
        fit["slope"] == pytest.approx(2.0)
        and fit["intercept"] == pytest.approx(1.0)
        and fit["r2"] == pytest.approx(1.0)
    )
    assert linear_fit([1, 2, 3], [1.0, 3.0, 2.0])["r2"] < 1.0
    with pytest.raises(ConfigError):
        linear_fit([2, 2], [1.0, 2.0])


# ----------------------------------------------------------------------------- timing loop


class FakeClock:
    """Each call of the timed function advances time by the next step."""

    def __init__(self, steps):
        self.t = 0.0
        self.steps = list(steps)
        self.calls = 0

    def __call__(self):
        return self.t

    def work(self):
        self.t += self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1


def test_time_loop_warms_up_by_time_then_meets_iterations_and_seconds():
    clock = FakeClock([0.05])
    t = time_loop(clock.work, TimingConfig(warmup_seconds=0.2, min_iters=3, min_seconds=1.0), clock=clock)
    assert t.warmup_iters == 4 and t.warmup_s == pytest.approx(0.2)
    assert len(t.latencies_s) == 20  # 1 s of 50 ms calls
    assert t.wall_s == pytest.approx(1.0)
    assert all(x == pytest.approx(0.05) for x in t.latencies_s)
    # slow calls: the iteration count rules
    clock = FakeClock([2.0])
    t = time_loop(clock.work, TimingConfig(warmup_seconds=0.0, min_iters=5, min_seconds=1.0), clock=clock)
    assert t.warmup_iters == 1 and len(t.latencies_s) == 5 and t.wall_s == pytest.approx(10.0)


def test_timing_config_validation():
    with pytest.raises(ConfigError, match="min-iters"):
        TimingConfig(min_iters=0)
    with pytest.raises(ConfigError, match="min-seconds"):
        TimingConfig(min_seconds=-1)
    with pytest.raises(ConfigError, match="warmup-seconds"):
        TimingConfig(warmup_seconds=float("nan"))
    with pytest.raises(ConfigError, match="unknown backend"):
        BenchSpec(backends=("ort", "tflite"))
    with pytest.raises(ConfigError, match="batch"):
        BenchSpec(batches=(0,))
    with pytest.raises(ConfigError, match="threads"):
        BenchSpec(threads=0)
    assert GraphVariant.parse("folded/pad") == GraphVariant("folded", "pad")
    assert GraphVariant.parse("shared").name == "shared"
    with pytest.raises(ConfigError, match="graph variant"):
        GraphVariant.parse("dense")


# ----------------------------------------------------------------------------- machine


def test_context_gemm_and_rss():
    ctx = bench.machine_context(threads=1)
    assert ctx["threads"] == 1 and ctx["cpu_model"] and ctx["available_cpus"] >= 1
    assert "onnxruntime" in ctx["versions"] and ctx["versions"]["python"]
    assert bench.peak_rss_mb() >= bench.current_rss_mb() * 0.5 > 0
    g = bench.gemm_peak(1, sizes=(32, 64), seconds_per_size=0.0)
    assert g["gflops"] > 0 and set(g["per_size_gflops"]) == {"32", "64"} and "MatMul" in g["engine"]
    assert bench.gemm_peak(1, sizes=(32,), seconds_per_size=0.0, engine="numpy")["gflops"] > 0
    with pytest.raises(ConfigError):
        bench.gemm_peak(1, engine="cublas")


# ----------------------------------------------------------------------------- sources and workers


@pytest.fixture(scope="module")
def tiny_sources(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench")
    sources, info = bench.synthetic_sources(
        work,
        arch="resnet32",
        input_shape=(3, 8, 8),
        tasks=(1, 3),
        width=0.25,
        classes_per_task=2,
        variants=[GraphVariant("shared"), GraphVariant("folded")],
        backends=("ort", "ort-split"),
    )
    return work, sources, info


def test_synthetic_sources_cover_tasks_and_variants(tiny_sources):
    _, sources, info = tiny_sources
    assert [(s.num_tasks, s.variant) for s in sources] == [(1, "shared"), (1, "folded"), (3, "shared"), (3, "folded")]
    assert info["source"] == "synthetic" and "random_arrays" in info["weights"]
    f1, f3 = sources[0].flops, sources[2].flops
    assert f3["per_image"] - f3["routing"] == 3 * (f1["per_image"] - f1["routing"])  # N sub-networks
    assert all(s.split_dir for s in sources) and all(s.arrays_onnx is None for s in sources)


def test_worker_in_process_rows_probe_and_split_agreement(tiny_sources):
    _, sources, _ = tiny_sources
    src = sources[2]
    job = {"backend": "ort", "source": src.to_json(), "batches": [4, 1], "threads": 1, "timing": FAST.__dict__}
    res = bench.run_worker(job)
    assert res["status"] == "ok" and [r["batch"] for r in res["rows"]] == [1, 4]
    for r in res["rows"]:
        assert r["iterations"] >= 2 and r["p50_ms"] > 0 and r["peak_rss_mb"] > 0
        assert r["p50_ms"] <= r["p90_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert np.asarray(res["probe"]["task_logits"]).shape == (bench.PROBE_BATCH, 3, 2)
    split = bench.run_worker({**job, "backend": "ort-split"})
    agree = bench.agreement(split["probe"], res["probe"])
    assert agree["label"] == 1.0 and agree["task"] == 1.0 and agree["max_abs_task_logits"] < 1e-4


def test_chunked_batches_give_the_same_rows_shape(tiny_sources):
    _, sources, _ = tiny_sources
    job = {
        "backend": "ort",
        "source": sources[2].to_json(),
        "batches": [1, 5],
        "threads": 1,
        "timing": FAST.__dict__,
        "chunk": 2,
    }
    res = bench.run_worker(job)
    assert res["variant"] == "shared, chunks of 2"
    assert [(r["batch"], r["chunk"]) for r in res["rows"]] == [(1, 2), (5, 2)]
    with pytest.raises(ConfigError, match="chunk"):
        BenchSpec(chunk=0)


def test_trt_and_torch_unavailable_rows_are_reasons_not_crashes(tiny_sources, monkeypatch):
    _, sources, _ = tiny_sources
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("tensorrt", "torch") else real(name, *a)
    )
    for name, why in (("trt", "tensorrt"), ("torch", "PyTorch"), ("reference", "PyTorch")):
        res = bench.run_worker(
            {"backend": name, "source": sources[0].to_json(), "batches": [1], "threads": 1, "timing": FAST.__dict__}
        )
        assert res["status"] == "unavailable" and why in res["reason"] and res["rows"] == []


def test_run_benchmark_report_schema(tiny_sources, monkeypatch):
    work, sources, info = tiny_sources
    fake = {"engine": "fake", "gflops": 10.0, "size": 1, "per_size_gflops": {"1": 10.0}}
    monkeypatch.setattr(bench.peaks, "gemm_peak", lambda threads, **k: {**fake, "threads": threads})
    spec = BenchSpec(backends=("ort", "trt"), batches=(1, 2), threads=1, timing=FAST, isolate=False)
    report = bench.run_benchmark(spec, sources, workdir=work, model_info=info)
    json.dumps(report)  # JSON-ready
    assert report["format"] == "mind-edge-bench" and report["schema_version"] == bench.RESULTS_SCHEMA
    ok = [r for r in report["results"] if r["status"] == "ok"]
    assert len(ok) == 2 * 2 * 2  # 2 task counts x 2 variants x 2 batches
    for r in ok:
        for k in (
            "backend",
            "batch",
            "tasks",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "throughput_ips",
            "peak_rss_mb",
            "roofline_fraction",
        ):
            assert r[k] is not None, k
        assert r["roofline_fraction"] == pytest.approx(r["flops_per_image"] * r["throughput_ips"] / 1e9 / 10.0)
    trt = [r for r in report["results"] if r["backend"] == "trt"]
    assert {(r["tasks"], r["batch"]) for r in trt} == {(1, 1), (1, 2), (3, 1), (3, 2)}
    assert all(r["status"] == "unavailable" and r["p50_ms"] is None and r["reason"] for r in trt)
    assert report["gemm"]["peak_gflops"] == 10.0 and len(report["gemm"]["runs"]) == 2
    assert {(f["variant"], f["batch"]) for f in report["linearity"]} == {
        ("shared", 1),
        ("shared", 2),
        ("folded", 1),
        ("folded", 2),
    }
    assert report["flops"]["3"]["num_tasks"] == 3


def test_isolated_worker_process_leaves_torch_out(tiny_sources):
    work, sources, _ = tiny_sources
    job = {"backend": "ort", "source": sources[0].to_json(), "batches": [1], "threads": 1, "timing": FAST.__dict__}
    res = bench.spawn_worker(job)
    assert res["status"] == "ok" and res["rows"][0]["peak_rss_mb"] < 250
    bad = bench.spawn_worker({**job, "source": {**job["source"], "onnx": str(work / "missing.onnx")}})
    assert bad["status"] == "failed" and bad["reason"]


def test_import_is_torch_free():
    code = (
        "import sys, mind_edge.runtime.bench, mind_edge.cli.runtime; "
        "print('torch' in sys.modules, 'onnx' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_profile_reports_ops_and_conv_flops(tiny_sources):
    _, sources, _ = tiny_sources
    import onnx

    from mind_edge.core.flops import graph_flops

    src = sources[2]  # 3 tasks, shared
    p = bench.profile_ort(src.onnx, 2, threads=1, input_shape=src.input_shape, runs=2, stages={"first": range(0, 5)})
    assert p["batch"] == 2 and p["sum_of_node_medians_ms"] > 0
    assert abs(sum(p["ops_share"].values()) - 1.0) < 1e-6
    groups = p["conv_groups"]
    assert "first" in groups and "stem" in groups and p["conv_gflops"] > 0
    # every conv of the graph is counted, whatever ORT fused it into (heads are a MatMul); the kernels'
    # own shapes may be padded to ORT's channel block (12 stem filters -> 16 here), so "executed" >= graph
    conv = sum(g["mflops"] for g in groups.values()) * 1e6
    total = graph_flops(onnx.load(src.onnx), batch=2)
    heads = 2 * 2 * src.num_tasks * 2 * 16  # batch x 2 FLOPs x tasks x classes x features
    assert total - heads <= conv <= 1.02 * (total - heads)
