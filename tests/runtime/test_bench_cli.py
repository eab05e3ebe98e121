"""``mind-edge bench`` through typer's CliRunner on a private Typer app, with tiny settings."""

from __future__ import annotations

import json

import pytest
from runtime_helpers import make_bundle
from typer.testing import CliRunner

FAST = ["--min-seconds", "0.05", "--min-iters", "2", "--warmup-seconds", "0", "--threads", "1"]
TINY = ["--arch", "resnet32", "--input-shape", "3,8,8", "--width", "0.25", "--classes-per-task", "2"]


@pytest.fixture(scope="module")
def app(bench_app):
    return bench_app


def _invoke(app, *args):
    return CliRunner().invoke(app, ["bench", *args], catch_exceptions=False, env={"COLUMNS": "220"})


def test_random_model_json_plot_and_trt_row(app, tmp_path):
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    res = _invoke(
        app,
        *TINY,
        *FAST,
        "--tasks",
        "1,2",
        "--batch",
        "1,2",
        "--backend",
        "ort,trt",
        "--no-isolate",
        "--json",
        str(out),
        "--plot",
        str(png),
    )
    assert res.exit_code == 0, res.output
    assert "trt: unavailable" in res.output and "tensorrt" in res.output
    assert "roofline: peak" in res.output and "sub-network(s)" in res.output
    report = json.loads(out.read_text())
    rows = report["results"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert {(r["tasks"], r["batch"]) for r in ok} == {(1, 1), (1, 2), (2, 1), (2, 2)}
    for r in ok:
        assert {
            "backend",
            "batch",
            "tasks",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "throughput_ips",
            "peak_rss_mb",
            "roofline_fraction",
            "p95_ms",
            "start_ms",
            "model_bytes",
            "cv",
        } <= set(r)
        assert r["backend"] == "ort" and r["roofline_fraction"] > 0 and r["threads"] == 1
    trt = [r for r in rows if r["backend"] == "trt"]
    assert trt and all(r["status"] == "unavailable" and r["p50_ms"] is None for r in trt)
    assert report["context"]["threads"] == 1 and report["settings"]["timing"]["min_iters"] == 2
    assert report["model"]["net"]["input_size"] == [8, 8] and report["flops"]["2"]["num_tasks"] == 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bundle_with_a_task_sweep_in_worker_processes(app, tmp_path):
    bundle = make_bundle(tmp_path / "bundle")
    out = tmp_path / "b.json"
    res = _invoke(app, str(bundle), *FAST, "--tasks", "1,3", "--batch", "2", "--no-gemm", "--json", str(out))
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["model"]["source"] == "bundle" and report["gemm"]["peak_gflops"] is None
    rows = {r["tasks"]: r for r in report["results"]}
    assert set(rows) == {1, 3} and all(r["status"] == "ok" for r in rows.values())
    assert rows[3]["roofline_fraction"] is None and rows[3]["peak_rss_mb"] < 250
    assert report["linearity"][0]["tasks"] == [1, 3]


def test_folded_bundle_cannot_be_resized(app, tmp_path):
    bundle = make_bundle(tmp_path / "folded", layout="folded")
    res = _invoke(app, str(bundle), *FAST, "--tasks", "1", "--no-gemm", "--no-isolate")
    assert res.exit_code == 2 and "folded layout" in res.output and "--layout shared" in res.output
    res = _invoke(app, str(bundle), *FAST, "--batch", "1", "--no-gemm", "--no-isolate", "--backend", "ort,torch")
    assert res.exit_code == 0, res.output
    assert "torch: unavailable" in res.output


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--batch", "0"], "--batch"),
        (["--batch", "one"], "--batch"),
        (["--backend", "tflite"], "unknown backend"),
        (["--min-iters", "0"], "--min-iters"),
        (["--input-shape", "3,32"], "--input-shape"),
        (["--layout", "dense"], "graph variant"),
        (["--arch", "vgg"], "unknown architecture"),
        (["--sub-batch", "-1"], "--sub-batch"),
    ],
)
def test_bad_options_are_one_line_errors(app, args, needle):
    res = _invoke(app, *TINY, *FAST, "--no-gemm", "--no-isolate", *args)
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and needle in res.output


def test_ort_sub_batches_default_on_cpu_and_whole_batch_on_request(app, tmp_path):
    """The ort rows say how each batch ran: sub-batches of 8 by default on the CPU EP, the whole
    batch with --sub-batch 0 (outputs are equal: tests/runtime/test_predict.py)."""
    rows = {}
    for flag in ([], ["--sub-batch", "0"], ["--sub-batch", "3"]):
        out = tmp_path / f"r{len(flag)}{flag[-1] if flag else ''}.json"
        res = _invoke(
            app,
            *TINY,
            *FAST,
            "--tasks",
            "2",
            "--batch",
            "1,8,9",
            "--no-gemm",
            "--no-isolate",
            "--json",
            str(out),
            *flag,
        )
        assert res.exit_code == 0, res.output
        report = json.loads(out.read_text())
        rows[tuple(flag)] = {r["batch"]: r for r in report["results"]}
    auto, whole, three = rows[()], rows[("--sub-batch", "0")], rows[("--sub-batch", "3")]
    assert [auto[b]["mode"] for b in (1, 8, 9)] == ["whole batch", "whole batch", "sub-batches of 8"]
    assert [whole[b]["mode"] for b in (1, 8, 9)] == ["whole batch"] * 3
    assert [three[b]["mode"] for b in (1, 8, 9)] == ["whole batch", "sub-batches of 3", "sub-batches of 3"]
    assert auto[9]["variant"] == "shared" and whole[9]["variant"] == "shared, whole batch"
    assert three[9]["variant"] == "shared, sub-batch 3"


def test_narrow_terminals_keep_the_numbers_whole(app, tmp_path):
    """At 80 columns the table drops p90/ms-per-image/start/size/CV (they stay in the JSON) and
    folds text instead of cutting numbers to '…'; a wide terminal shows every column."""
    from rich.console import Console

    from mind_edge.cli.runtime import render_bench as render

    out = tmp_path / "r.json"
    res = _invoke(
        app,
        *TINY,
        *FAST,
        "--tasks",
        "2",
        "--batch",
        "1,8",
        "--backend",
        "ort",
        "--no-gemm",
        "--no-isolate",
        "--json",
        str(out),
    )
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    narrow, wide = Console(width=80, record=True), Console(width=220, record=True)
    render(report, narrow)
    render(report, wide)
    n, w = narrow.export_text(), wide.export_text()
    for r in report["results"]:
        assert f"{r['p50_ms']:.2f}" in n and f"{r['p50_ms']:.2f}" in w
    assert "…" not in n.split("latency per batch")[1].split("speed-up")[0]
    assert "p90 ms" in w and "start ms" in w and "p90 ms" not in n and "start ms" not in n
