"""TegrastatsMonitor against a fake tegrastats executable that replays recorded lines."""

from __future__ import annotations

import time

import pytest
from devices_fakes import fake_tegrastats, recording

from mind_edge.devices import DeviceError, TegrastatsMonitor, TelemetryResult, parse_lines


def test_constant_power_gives_exact_mean_and_energy_per_image(tmp_path):
    idle = recording("orin-nano-8gb.txt")[1]  # VDD_IN 4824mW
    argv_log = tmp_path / "argv.txt"
    script = fake_tegrastats(tmp_path, [idle], argv_log=argv_log)
    mon = TegrastatsMonitor(interval_ms=20, tegrastats_path=script)
    mon.start()
    assert mon.running
    assert mon.wait_for_samples(5, timeout_s=10)
    time.sleep(0.1)
    result = mon.stop()
    assert not mon.running
    assert argv_log.read_text() == "--interval 20"
    assert result.n_samples >= 5 and result.interval_ms == 20
    assert result.mean_power_mw == 4824.0 and result.peak_power_mw == 4824.0
    assert result.power_source == "VDD_IN"
    assert result.duration_s >= 0.1
    assert result.energy_total_mj == pytest.approx(4824.0 * result.duration_s)
    assert result.energy_mj(100) == pytest.approx(4824.0 * result.duration_s / 100)
    assert result.rail_mean_mw["VDD_SOC"] == 1475.0
    assert result.max_temperatures_c["tj"] == 50.25
    assert result.mean_gpu_load_pct == 0.0
    received = [s.received_s for s in result.samples]
    assert all(a <= b for a, b in zip(received, received[1:]))


def test_varying_power_is_averaged_over_the_samples(tmp_path):
    lines = recording("xavier-nx.txt")
    script = fake_tegrastats(tmp_path, lines)
    with TegrastatsMonitor(interval_ms=10, tegrastats_path=str(script)) as mon:
        assert mon.wait_for_samples(len(lines) + 2, timeout_s=10)
    result = mon.result
    assert isinstance(result, TelemetryResult)
    totals = [s.total_power_mw for s in result.samples]
    recorded = {s.total_power_mw for s in parse_lines(lines)}
    assert set(totals) <= recorded and len(set(totals)) > 1
    assert result.mean_power_mw == pytest.approx(sum(totals) / len(totals))
    assert min(recorded) <= result.mean_power_mw <= max(recorded)
    assert result.peak_power_mw == 14703.0
    assert result.energy_mj(3) == pytest.approx(result.mean_power_mw * result.duration_s / 3)
    assert result.to_dict()["power_source"] == "VDD_IN"


def test_agx_orin_recording_through_the_monitor(tmp_path):
    script = fake_tegrastats(tmp_path, recording("agx-orin-64gb.txt"))
    mon = TegrastatsMonitor(interval_ms=20, tegrastats_path=script).start()
    assert mon.wait_for_samples(2, timeout_s=10)
    result = mon.stop()
    assert result.mean_power_mw == 6831.0
    assert result.power_source == "VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0"


def test_missing_binary_says_it_only_exists_on_jetson(tmp_path):
    with pytest.raises(DeviceError, match="only exists on NVIDIA Jetson") as info:
        TegrastatsMonitor(tegrastats_path=tmp_path / "no" / "tegrastats").start()
    assert "/usr/bin/tegrastats" in str(info.value)
    with pytest.raises(DeviceError, match="only exists on NVIDIA Jetson"):
        TegrastatsMonitor(tegrastats_path="definitely-not-tegrastats-xyz").start()


def test_not_executable(tmp_path):
    script = fake_tegrastats(tmp_path, ["x"])
    script.chmod(0o644)
    with pytest.raises(DeviceError, match="not executable"):
        TegrastatsMonitor(tegrastats_path=script).start()


def test_failing_tegrastats_reports_its_stderr(tmp_path):
    script = fake_tegrastats(
        tmp_path, [], exit_code=3, stderr="Error: could not open /sys/kernel/debug: Permission denied"
    )
    mon = TegrastatsMonitor(interval_ms=20, tegrastats_path=script).start()
    assert mon.wait_for_samples(1, timeout_s=5) is False
    with pytest.raises(DeviceError) as info:
        mon.stop()
    msg = str(info.value)
    assert "status 3" in msg and "Permission denied" in msg and "sudo" in msg


def test_misuse_is_reported(tmp_path):
    with pytest.raises(DeviceError, match="not started"):
        TegrastatsMonitor().stop()
    with pytest.raises(DeviceError, match="positive number of milliseconds"):
        TegrastatsMonitor(interval_ms=0)
    script = fake_tegrastats(tmp_path, [recording("xavier-nx.txt")[0]])
    mon = TegrastatsMonitor(interval_ms=20, tegrastats_path=script).start()
    try:
        with pytest.raises(DeviceError, match="already running"):
            mon.start()
    finally:
        result = mon.stop()
    with pytest.raises(DeviceError, match="positive image count"):
        result.energy_mj(0)


def test_no_power_rails_means_no_energy():
    result = TelemetryResult.from_samples(parse_lines(["RAM 100/3964MB SWAP 0/1982MB CPU [1%@102] GR3D_FREQ 0%"]), 1.0)
    assert result.mean_power_mw is None
    with pytest.raises(DeviceError, match="no power reading.*sudo"):
        result.energy_mj(1)
