"""tegrastats parsing: recorded lines of Orin Nano, AGX Orin, Xavier NX (and Nano) into one dataclass."""

from __future__ import annotations

from datetime import datetime

import pytest
from devices_fakes import RECORDINGS, recording

from mind_edge.devices import Rail, TegrastatsParseError, TegrastatsSample, parse_line, parse_lines
from mind_edge.devices.tegrastats import total_power

FILES = sorted(p.name for p in RECORDINGS.glob("*.txt"))


def test_at_least_three_module_types_are_recorded():
    assert {"orin-nano-8gb.txt", "agx-orin-64gb.txt", "xavier-nx.txt"} <= set(FILES)
    assert (RECORDINGS / "README.md").read_text().count("|") > 10  # sources table


@pytest.mark.parametrize("name", FILES)
def test_every_recorded_line_parses_into_the_same_fields(name):
    lines = recording(name)
    samples = [parse_line(line) for line in lines]
    assert len(samples) == len(lines) >= 1
    for s in samples:
        assert isinstance(s, TegrastatsSample)
        assert s.ram_used_mb is not None and s.ram_total_mb and s.ram_used_mb <= s.ram_total_mb
        assert s.swap_total_mb is not None
        assert s.cpu_load_pct and len(s.cpu_load_pct) == len(s.cpu_freq_mhz)
        assert s.gpu_load_pct is not None and 0 <= s.gpu_load_pct <= 100
        assert s.temperatures_c and all(k == k.lower() for k in s.temperatures_c)
        assert all(v > -256 for v in s.temperatures_c.values())
        assert s.rails and all(isinstance(r, Rail) for r in s.rails.values())
        assert s.total_power_mw and s.total_power_mw > 0 and s.total_power_source
        assert s.unparsed == ()  # every token of real output is understood
        assert set(s.to_dict()) >= {"ram_used_mb", "rails_mw", "total_power_mw", "temperatures_c"}


def test_orin_nano_loaded_line():
    s = parse_line(recording("orin-nano-8gb.txt")[0])
    assert s.timestamp == datetime(2024, 11, 15, 8, 38, 9)
    assert (s.ram_used_mb, s.ram_total_mb) == (6185, 7620)
    assert (s.swap_used_mb, s.swap_total_mb, s.swap_cached_mb) == (851, 3810, 1)
    assert s.cpu_load_pct == (15.0, 11.0, 14.0, 13.0, 11.0, 8.0)
    assert s.cpu_freq_mhz == (729,) * 6
    assert s.gpu_load_pct == 63.0 and s.gpu_freq_mhz == (621,)
    assert (s.emc_load_pct, s.emc_freq_mhz) == (43.0, 2133)
    assert s.temperatures_c["cpu"] == 53.968 and s.temperatures_c["tj"] == 53.968
    assert s.temperatures_c["gpu"] == 53.343 and s.temperatures_c["soc0"] == 50.75
    assert s.rails["VDD_IN"] == Rail(12479.0, 12479.0)
    assert s.rails["VDD_CPU_GPU_CV"].current_mw == 4667.0
    assert s.rails["VDD_SOC"].current_mw == 2817.0
    assert (s.total_power_mw, s.total_power_source) == (12479.0, "VDD_IN")
    assert s.engines["NVDEC"].on is False and s.engines["APE"].freq_mhz == (200,)


def test_orin_nano_idle_line_without_emc():
    s = parse_line(recording("orin-nano-8gb.txt")[1])
    assert s.gpu_load_pct == 0.0 and s.gpu_freq_mhz == ()
    assert s.emc_load_pct is None and s.swap_cached_mb == 174
    assert s.cpu_freq_mhz == (1420, 1420, 1420, 1420, 729, 729)
    assert s.total_power_mw == 4824.0


def test_agx_orin_line():
    s = parse_line(recording("agx-orin-64gb.txt")[0])
    assert (s.ram_used_mb, s.ram_total_mb) == (1282, 62795)
    assert len(s.cpu_load_pct) == 12
    assert s.gpu_load_pct == 0.0 and s.engines["GR3D2_FREQ"].load_pct == 0.0
    assert s.engines["VIC_FREQ"].freq_mhz == (729,)
    # CV0/CV1/CV2/GPU print -256C (sensor off) and are dropped; names are lower-cased.
    assert "cv0" not in s.temperatures_c and "gpu" not in s.temperatures_c
    assert s.temperatures_c["tj"] == 42.593 and s.temperatures_c["tboard"] == 32.0
    assert set(s.rails) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"}  # NC dropped
    assert s.rails["VIN_SYS_5V0"] == Rail(4032.0, 4032.0)
    assert s.total_power_mw == 2399.0 + 400.0 + 4032.0
    assert s.total_power_source == "VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0"


def test_xavier_nx_lines_without_mw_suffix():
    samples = parse_lines("\n".join(recording("xavier-nx.txt")))
    assert len(samples) == 6
    s = samples[0]
    assert s.timestamp is None
    assert (s.ram_used_mb, s.ram_total_mb, s.swap_cached_mb) == (1802, 7772, 0)
    assert s.cpu_load_pct == (100.0,) * 6 and s.cpu_freq_mhz == (1420,) * 6
    assert s.gpu_load_pct == 99.0 and s.emc_load_pct == 0.0 and s.emc_freq_mhz is None
    assert s.temperatures_c == {"ao": 42.5, "gpu": 44.5, "pmic": 100.0, "aux": 43.5, "cpu": 44.5, "thermal": 44.25}
    assert s.rails["VDD_IN"] == Rail(14703.0, 14683.0)
    assert s.rails["VDD_CPU_GPU_CV"] == Rail(10874.0, 10893.0)
    assert s.total_power_mw == 14703.0 and s.total_power_source == "VDD_IN"
    assert samples[3].total_power_mw == 12221.0


def test_jetson_nano_uses_pom_5v_in():
    s = parse_line(recording("jetson-nano.txt")[0])
    assert (s.total_power_mw, s.total_power_source) == (3227.0, "POM_5V_IN")
    assert len(s.cpu_load_pct) == 4


@pytest.mark.parametrize(
    "rails, expected",
    [
        ({"VDD_IN": 5000, "VDD_SOC": 1000, "VDD_CPU_GPU_CV": 900}, (5000, "VDD_IN")),
        ({"POM_5V_IN": 3000, "POM_5V_GPU": 200, "POM_5V_CPU": 400}, (3000, "POM_5V_IN")),
        (
            {"VDD_GPU_SOC": 1000, "VDD_CPU_CV": 2000, "VIN_SYS_5V0": 3000, "VDDQ_VDD2_1V8AO": 900},
            (6000, "VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0"),
        ),
        ({"VIN_SYS_5V0": 4100}, (4100, "VIN_SYS_5V0")),
        ({"GPU": 463, "CPU": 618, "SOC": 2936}, (4017, "sum(GPU+CPU+SOC)")),
        ({}, (None, None)),
    ],
)
def test_total_power_rule(rails, expected):
    assert total_power({k: Rail(v, v) for k, v in rails.items()}) == expected


def test_agx_xavier_jetpack4_rails_are_summed():
    line = (
        "RAM 14700/15692MB (lfb 3x2MB) SWAP 898/8192MB (cached 23MB) CPU [0%@1190,0%@1190,0%@1190,0%@1190,"
        "0%@1190,0%@1190,0%@1190,0%@1190] EMC_FREQ 0% GR3D_FREQ 0% AO@30C GPU@30.5C Tboard@31C Tdiode@32C "
        "AUX@30.5C CPU@31.5C thermal@30.8C PMIC@100C GPU 463/463 CPU 618/618 SOC 2936/2936 CV 0/0 VDDRQ 309/309 "
        "SYS5V 3306/3306"
    )  # published in martinkersner/gtop PR #7 (AGX Xavier, JetPack 4.2)
    s = parse_line(line)
    assert s.temperatures_c["gpu"] == 30.5 and s.rails["GPU"] == Rail(463.0, 463.0)
    assert s.total_power_mw == 463 + 618 + 2936 + 0 + 309 + 3306
    assert s.unparsed == ()


def test_off_cores_negative_rails_and_old_cpu_format():
    s = parse_line(
        "09-01-2025 10:55:25 RAM 1313/30697MB (lfb 37x4MB) SWAP 0/15348MB (cached 0MB) "
        "CPU [0%@729,3%@729,off,off] GR3D_FREQ 0% cpu@43.343C VDD_GPU_SOC 1995mW/1995mW VDD_CPU_CV -398mW/-398mW "
        "VIN_SYS_5V0 2524mW/2524mW"
    )
    assert s.cpu_load_pct == (0.0, 3.0, None, None) and s.cpu_freq_mhz == (729, 729, None, None)
    assert s.cpu_load_mean_pct == 1.5
    assert s.rails["VDD_CPU_CV"].current_mw == -398.0
    old = parse_line(
        "RAM 3468/3983MB (lfb 48x4MB) SWAP 873/8192MB (cached 295MB) cpu [17%,13%,29%,5%]@408 EMC 1%@408 APE 25 "
        "GR3D 3%@76"
    )
    assert old.cpu_load_pct == (17.0, 13.0, 29.0, 5.0) and old.cpu_freq_mhz == (408,) * 4
    assert old.total_power_mw is None and old.gpu_load_pct is None


def test_not_tegrastats_is_rejected_and_skipped():
    with pytest.raises(TegrastatsParseError, match="not a tegrastats line"):
        parse_line("Segmentation fault (core dumped)")
    with pytest.raises(TegrastatsParseError):
        parse_line("")
    lines = ["", "hello world", recording("xavier-nx.txt")[0], "   "]
    assert len(parse_lines(lines)) == 1
