"""detect() on fake root filesystems: Orin Nano, AGX Orin, Xavier NX, x86-64 and aarch64 CPUs."""

from __future__ import annotations

import json

import pytest
from devices_fakes import R32_7_1, R35_2_1, R35_4_1, R36_4_0, arm_cpuinfo, make_root, x86_cpuinfo

from mind_edge.devices import DeviceError, detect, parse_nv_tegra_release


@pytest.mark.parametrize(
    "text, version",
    [
        (R36_4_0, "36.4.0"),
        ("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64", "36.4.3"),
        (R35_4_1, "35.4.1"),
        (R32_7_1, "32.7.1"),
        ("# R35 (release), REVISION: 5, GCID: 1", "35.5.0"),
        ("not a release file", None),
    ],
)
def test_parse_nv_tegra_release(text, version):
    assert parse_nv_tegra_release(text) == version


def test_orin_nano_jetpack6(tmp_path):
    root = make_root(
        tmp_path,
        release=R36_4_0,
        model="NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
        compatible=["nvidia,p3768-0000+p3767-0005-super", "nvidia,p3767-0005", "nvidia,tegra234"],
        cpuinfo=arm_cpuinfo(6),
        mem_kb=7802788,
    )
    d = detect(root)
    assert d.profile.name == "orin-nano-8gb"
    assert d.matched_by == "device-tree model"
    assert d.l4t_version == "36.4.0"
    assert d.model == "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"  # NUL stripped
    assert d.cpu_model == "Arm Cortex-A78AE" and d.cpu_count == 6
    assert d.memory_total_mb == 7802788 // 1024
    assert d.machine == "aarch64"
    assert d.warnings == ()
    assert json.loads(json.dumps(d.to_dict()))["profile"] == "orin-nano-8gb"


def test_agx_orin_on_jetpack5_warns_about_versions(tmp_path):
    root = make_root(tmp_path, release=R35_2_1, model="Jetson AGX Orin", cpuinfo=arm_cpuinfo(12), mem_kb=62795 * 1024)
    d = detect(root)
    assert d.profile.name == "agx-orin-64gb"
    assert d.l4t_version == "35.2.1" and d.cpu_count == 12
    assert len(d.warnings) == 1 and "runs L4T 35.2.1" in d.warnings[0]


def test_xavier_nx(tmp_path):
    root = make_root(
        tmp_path,
        release=R35_4_1,
        model="NVIDIA Jetson Xavier NX Developer Kit",
        cpuinfo=arm_cpuinfo(6, implementer="0x4e", part="0x004"),
        mem_kb=7958568,
    )
    d = detect(root)
    assert d.profile.name == "xavier-nx"
    assert d.cpu_model == "NVIDIA Carmel"
    assert d.l4t_version == "35.4.1"
    assert len(d.warnings) == 1 and "not supported by mind-edge" in d.warnings[0]  # JetPack 5 (Python 3.8)


def test_xavier_nx_16gb_variant_is_reported(tmp_path):
    root = make_root(
        tmp_path,
        release=R32_7_1,
        model="NVIDIA Jetson Xavier NX Developer Kit",
        cpuinfo=arm_cpuinfo(6, implementer="0x4e", part="0x004"),
        mem_kb=15_820_000,
    )
    d = detect(root)
    assert d.profile.name == "xavier-nx"
    text = " ".join(d.warnings)
    assert "L4T 32.7.1" in text and "15.1 GiB" in text


def test_orin_nx_8gb_maps_to_orin_nx_with_a_memory_warning(tmp_path):
    root = make_root(
        tmp_path,
        release=R36_4_0,
        model="NVIDIA Jetson Orin NX Engineering Reference Developer Kit",
        cpuinfo=arm_cpuinfo(6),
        mem_kb=7_620_000,
    )
    d = detect(root)
    assert d.profile.name == "orin-nx-16gb"
    assert any("expects 16 GB" in w for w in d.warnings)


def test_compatible_string_is_the_fallback(tmp_path):
    root = make_root(
        tmp_path,
        release=R36_4_0,
        compatible=["nvidia,p3768-0000+p3767-0005", "nvidia,p3767-0005", "nvidia,tegra234"],
        cpuinfo=arm_cpuinfo(6),
    )
    d = detect(root)
    assert d.profile.name == "orin-nano-8gb" and d.matched_by == "device-tree compatible"
    assert d.model is None and d.memory_total_mb is None


def test_x86_cpu(tmp_path):
    root = make_root(tmp_path, cpuinfo=x86_cpuinfo(8), mem_kb=32_000_000)
    d = detect(root)
    assert d.profile.name == "generic-x86-64" and d.matched_by == "machine"
    assert d.machine == "x86_64"
    assert d.cpu_model == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz" and d.cpu_count == 8
    assert d.l4t_version is None and d.model is None and d.warnings == ()


def test_aarch64_cpu_raspberry_pi(tmp_path):
    root = make_root(
        tmp_path, model="Raspberry Pi 4 Model B Rev 1.4", cpuinfo=arm_cpuinfo(4, part="0xd08"), mem_kb=3_880_000
    )
    d = detect(root)
    assert d.profile.name == "generic-aarch64"
    assert d.cpu_model == "Arm Cortex-A72" and d.cpu_count == 4 and d.machine == "aarch64"
    assert d.warnings == ()


def test_machine_override_and_aliases(tmp_path):
    root = make_root(tmp_path)  # nothing to read at all
    assert detect(root, machine="arm64").profile.name == "generic-aarch64"
    assert detect(root, machine="AMD64").profile.name == "generic-x86-64"


def test_unknown_jetson_falls_back_to_cpu_with_a_warning(tmp_path):
    root = make_root(
        tmp_path,
        release="# R38 (release), REVISION: 2.0, GCID: 1, BOARD: generic, EABI: aarch64",
        model="NVIDIA Jetson AGX Thor Developer Kit",
        cpuinfo=arm_cpuinfo(14, part="0xd4f"),
    )
    d = detect(root)
    assert d.profile.name == "generic-aarch64"
    assert d.l4t_version == "38.2.0"
    assert "no profile matches it" in d.warnings[0]


def test_unsupported_machine_is_a_clear_error(tmp_path):
    with pytest.raises(DeviceError) as info:
        detect(make_root(tmp_path), machine="riscv64")
    msg = str(info.value)
    assert "machine 'riscv64'" in msg and "aarch64" in msg and "x86_64" in msg and "mind-edge devices list" in msg


def test_detect_on_this_host_does_not_crash():
    d = detect()
    assert d.profile.name
    assert d.cpu_count and d.cpu_count >= 1
