"""``mind-edge bench --monitor``: power and energy per row from a fake tegrastats replaying recorded lines.

No wall-clock asserts: expected energies are computed from each row's own timing fields
(``timed_s``, ``iterations``, ``batch``) and expected powers from the samples the monitor kept.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from devices_fakes import fake_tegrastats, recording
from typer.testing import CliRunner

from mind_edge.devices import DeviceError, TegrastatsMonitor, parse_line
from mind_edge.devices.tegrastats import JETSON_TEGRASTATS, TelemetryResult, find_tegrastats
from mind_edge.runtime import bench

FAST = ["--min-iters", "2", "--warmup-seconds", "0", "--threads", "1", "--no-gemm"]
TINY = ["--arch", "resnet32", "--input-shape", "3,8,8", "--width", "0.25", "--classes-per-task", "2", "--tasks", "1"]
MONITOR = ["--monitor-interval-ms", "20", "--monitor-idle-seconds", "0.2"]
ORIN_IDLE = recording("orin-nano-8gb.txt")[1]  # VDD_IN 4824mW, tj@50.25C, GR3D_FREQ 0%
FIELDS = ("power_w", "energy_mj_per_image", "gpu_load_pct", "max_temp_c")
ON_JETSON = Path(JETSON_TEGRASTATS).exists()


@pytest.fixture(scope="module")
def app(bench_app):
    return bench_app


def _invoke(app, *args, env=None):
    return CliRunner().invoke(app, ["bench", *args], catch_exceptions=False, env={"COLUMNS": "240", **(env or {})})


def _no_benchmark(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("benchmarking started although --monitor cannot work")

    for module, name in (
        (bench, "synthetic_sources"),
        (bench, "bundle_sources"),
        (bench.peaks, "gemm_peak"),
        (bench.worker, "run_worker"),
        (bench.worker, "spawn_worker"),
    ):
        monkeypatch.setattr(module, name, boom)


# ----------------------------------------------------------------------------- functions


def test_find_tegrastats_on_path_explicit_and_missing(tmp_path, monkeypatch):
    folder = tmp_path / "bin"
    folder.mkdir()
    script = fake_tegrastats(folder, [ORIN_IDLE])
    monkeypatch.setenv("PATH", str(folder))
    assert find_tegrastats() == str(script)
    assert find_tegrastats(script) == str(script)
    with pytest.raises(DeviceError, match="not found at") as info:
        find_tegrastats(tmp_path / "nope" / "tegrastats", fix="fix --tegrastats-path")
    assert str(info.value).endswith("; fix --tegrastats-path") and "\n" not in str(info.value)
    script.chmod(0o644)
    with pytest.raises(DeviceError, match="not executable"):
        find_tegrastats(script)
    if ON_JETSON:
        pytest.skip(f"{JETSON_TEGRASTATS} exists here (a Jetson): the missing case cannot be shown")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DeviceError) as info:
        find_tegrastats()
    msg = str(info.value)
    assert "'tegrastats' on PATH" in msg and JETSON_TEGRASTATS in msg and "Jetson" in msg


def test_window_keeps_the_samples_that_arrived_inside_it():
    lines = recording("xavier-nx.txt")
    samples = [parse_line(lines[i % len(lines)], received_s=float(i)) for i in range(10)]
    w = TelemetryResult.window(samples, 2.0, 5.0, duration_s=2.5, interval_ms=1000)
    inside = samples[2:6]
    assert w.n_samples == 4 and w.duration_s == 2.5 and w.interval_ms == 1000
    assert w.mean_power_mw == pytest.approx(sum(s.total_power_mw for s in inside) / 4)
    assert w.energy_mj(5) == pytest.approx(w.mean_power_mw * 2.5 / 5)
    assert TelemetryResult.window(samples, 2.1, 2.9).n_samples == 0
    assert TelemetryResult.window(samples, 2.1, 2.9).mean_power_mw is None
    # tj wins when reported; else the hottest sensor
    assert TelemetryResult.window([parse_line(ORIN_IDLE, received_s=0.0)], 0, 1).max_temperature == ("tj", 50.25)
    xavier = TelemetryResult.from_samples(samples, 1.0)  # no tj; PMIC@100C is a constant placeholder
    assert xavier.max_temperatures_c["pmic"] == 100.0
    name, value = xavier.max_temperature
    assert name != "pmic" and value == max(v for k, v in xavier.max_temperatures_c.items() if k != "pmic")


def test_run_benchmark_varying_power_is_the_mean_of_the_samples_inside_each_timed_loop(tmp_path):
    lines = recording("xavier-nx.txt")  # VDD_IN changes from line to line
    script = fake_tegrastats(tmp_path, lines)
    sources, info = bench.synthetic_sources(
        tmp_path / "work", arch="resnet32", input_shape=(3, 8, 8), tasks=[1], width=0.25, classes_per_task=2
    )
    spec = bench.BenchSpec(
        backends=("ort",),
        batches=(1, 2),
        threads=1,
        isolate=False,
        gemm=False,
        timing=bench.TimingConfig(warmup_seconds=0.05, min_iters=2, min_seconds=0.3),
    )
    mon = TegrastatsMonitor(interval_ms=10, tegrastats_path=script)
    report = bench.run_benchmark(
        spec, sources, workdir=tmp_path / "work", model_info=info, monitor=mon, idle_seconds=0.2
    )
    json.dumps(report)
    all_samples = mon.result.samples
    assert len({s.total_power_mw for s in all_samples}) > 1
    tele = report["telemetry"]
    assert tele["power_rail"] == "VDD_IN" and tele["interval_ms"] == 10 and tele["n_samples"] == len(all_samples)
    rows = [r for r in report["results"] if r["status"] == "ok"]
    assert len(rows) == 2 and len(tele["rows"]) == 2
    for r, t in zip(rows, tele["rows"]):
        assert (t["backend"], t["tasks"], t["batch"]) == (r["backend"], r["tasks"], r["batch"])
        lo, hi = t["window_monotonic"]
        inside = [s.total_power_mw for s in all_samples if lo <= s.received_s <= hi]
        assert t["n_samples"] == len(inside) >= 1
        mean_mw = sum(inside) / len(inside)
        assert r["power_w"] == pytest.approx(mean_mw / 1000, rel=1e-12)
        images = r["iterations"] * r["batch"]
        assert t["images"] == images and t["timed_s"] == r["timed_s"]
        assert r["energy_mj_per_image"] == pytest.approx(mean_mw * r["timed_s"] / images, rel=1e-12)
        idle_mw = tele["idle"]["power_w"] * 1000
        assert t["energy_mj_per_image_above_idle"] == pytest.approx(
            (mean_mw - idle_mw) * r["timed_s"] / images, rel=1e-9, abs=1e-12
        )
        temps = {k: v for k, v in t["max_temperatures_c"].items() if k != "pmic"}
        assert r["max_temp_c"] == max(temps.values()) and t["max_temp_sensor"] != "pmic"  # no tj: the hottest
    # the idle baseline came before the first timed loop
    first = min(t["window_monotonic"][0] for t in tele["rows"])
    idle = [s for s in all_samples if s.received_s < first]
    assert tele["idle"]["n_samples"] >= 1 and len(idle) >= tele["idle"]["n_samples"]
    assert "_window" not in rows[0]


# ----------------------------------------------------------------------------- CLI


def test_cli_monitor_constant_power_in_isolated_workers(app, tmp_path):
    script = fake_tegrastats(tmp_path, [ORIN_IDLE])
    out = tmp_path / "r.json"
    res = _invoke(
        app,
        *TINY,
        *FAST,
        "--min-seconds",
        "0.3",
        "--batch",
        "1,2",
        "--monitor",
        "--tegrastats-path",
        str(script),
        *MONITOR,
        "--json",
        str(out),
    )
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["context"]["isolated_processes"] is True and report["settings"]["monitor"] is True
    rows = [r for r in report["results"] if r["status"] == "ok"]
    assert len(rows) == 2
    for r in rows:
        assert r["power_w"] == 4824.0 / 1000  # every sample reads VDD_IN 4824mW
        images = r["iterations"] * r["batch"]
        assert r["energy_mj_per_image"] == 4824.0 * r["timed_s"] / images
        assert r["gpu_load_pct"] == 0.0 and r["max_temp_c"] == 50.25  # tj
    tele = report["telemetry"]
    assert tele["source"] == "tegrastats" and tele["tegrastats"] == str(script)
    assert tele["power_rail"] == "VDD_IN" and tele["interval_ms"] == 20
    assert tele["idle"]["power_w"] == 4.824 and tele["idle"]["n_samples"] >= 1 and tele["idle"]["seconds"] >= 0.2
    assert [t["batch"] for t in tele["rows"]] == [1, 2]
    for t in tele["rows"]:
        assert t["n_samples"] >= 1 and t["energy_mj_per_image_above_idle"] == 0.0 and t["max_temp_sensor"] == "tj"
        assert t["rail_mean_mw"]["VDD_SOC"] == 1475.0
    assert " W " in res.output and "mJ/img" in res.output and "power: tegrastats VDD_IN every 20 ms" in res.output


def test_cli_without_monitor_has_null_fields_and_no_power_columns(app, tmp_path):
    out = tmp_path / "r.json"
    res = _invoke(
        app,
        *TINY,
        *FAST,
        "--min-seconds",
        "0.02",
        "--batch",
        "1",
        "--backend",
        "ort,trt",
        "--no-isolate",
        "--json",
        str(out),
    )
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["telemetry"] is None and report["settings"]["monitor"] is False
    assert {r["status"] for r in report["results"]} == {"ok", "unavailable"}
    for r in report["results"]:
        assert all(k in r and r[k] is None for k in FIELDS), r
        assert "_window" not in r
    assert "mJ/img" not in res.output and "power:" not in res.output


@pytest.mark.skipif(ON_JETSON, reason=f"{JETSON_TEGRASTATS} exists here (a Jetson)")
def test_cli_monitor_without_tegrastats_is_one_line_exit_2(app, tmp_path, monkeypatch):
    _no_benchmark(monkeypatch)
    empty = tmp_path / "empty"
    empty.mkdir()
    res = _invoke(app, *TINY, *FAST, "--monitor", env={"PATH": str(empty)})
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    line = lines[0]
    assert line.startswith("error:") and "'tegrastats' on PATH" in line and JETSON_TEGRASTATS in line
    assert "--tegrastats-path" in line and "drop --monitor" in line


def test_cli_monitor_bad_path_and_options_without_monitor(app, tmp_path, monkeypatch):
    _no_benchmark(monkeypatch)
    res = _invoke(app, *TINY, *FAST, "--monitor", "--tegrastats-path", str(tmp_path / "missing"))
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "not found at" in lines[0] and "--tegrastats-path" in lines[0]
    res = _invoke(app, *TINY, *FAST, "--monitor-interval-ms", "50")
    assert res.exit_code == 2 and "only apply with --monitor" in res.output
    script = fake_tegrastats(tmp_path, [ORIN_IDLE])
    res = _invoke(app, *TINY, *FAST, "--monitor", "--tegrastats-path", str(script), "--monitor-interval-ms", "0")
    assert res.exit_code == 2 and "interval" in res.output


def test_cli_failing_tegrastats_stops_before_the_first_row(app, tmp_path, monkeypatch):
    script = fake_tegrastats(
        tmp_path, [], exit_code=1, stderr="Error: could not open /sys/kernel/debug: Permission denied"
    )
    calls = []
    monkeypatch.setattr(bench.worker, "run_worker", lambda job: calls.append(job))
    res = _invoke(app, *TINY, *FAST, "--no-isolate", "--monitor", "--tegrastats-path", str(script), *MONITOR)
    assert res.exit_code == 2, res.output
    assert "Permission denied" in res.output and "sudo" in res.output and calls == []


def test_cli_idle_default_matches_the_library():
    from mind_edge.cli import app

    r = CliRunner().invoke(app, ["bench", "--help"], env={"COLUMNS": "200"})
    assert f"(default {bench.IDLE_SECONDS:g})" in r.stdout
