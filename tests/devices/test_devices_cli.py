"""`mind-edge devices ...` sub-app, driven directly through typer's CliRunner."""

from __future__ import annotations

import json

from devices_fakes import R35_4_1, R36_4_0, arm_cpuinfo, make_root, x86_cpuinfo
from typer.testing import CliRunner

from mind_edge.cli import app
from mind_edge.devices import list_profiles

runner = CliRunner()
NAMES = [p.name for p in list_profiles()]


def test_list_table_contains_every_profile():
    res = runner.invoke(app, ["devices", "list"])
    assert res.exit_code == 0, res.output
    for name in NAMES:
        assert name in res.stdout
    for text in ("JetPack", "TensorRT", "CUDA", "10.3", "8.5.2", "MAXN", "256 MB", "50W"):
        assert text in res.stdout


def test_list_json():
    res = runner.invoke(app, ["devices", "list", "--json"])
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert [d["name"] for d in data] == NAMES
    nano = next(d for d in data if d["name"] == "orin-nano-8gb")
    assert nano["defaults"]["workspace_mb"] == 256 and nano["gpu"]["compute_capability"] == "8.7"


def test_show_table_and_json():
    res = runner.invoke(app, ["devices", "show", "xavier-nx"])
    assert res.exit_code == 0
    for text in ("Jetson Xavier NX", "5.1.2 / 35.4.1", "Volta", "MODE_20W_6CORE", "7.2", "sources"):
        assert text in res.stdout
    res = runner.invoke(app, ["devices", "show", "AGX_Orin_64GB", "--json"])
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert data["name"] == "agx-orin-64gb" and data["dla_cores"] == 2


def test_show_unknown_exits_nonzero_with_one_line_naming_known_profiles():
    res = runner.invoke(app, ["devices", "show", "orin-nano"])
    assert res.exit_code == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: unknown device profile 'orin-nano'")
    assert "did you mean 'orin-nano-8gb'" in lines[0]
    for name in NAMES:
        assert name in lines[0]


def test_detect_fake_orin_nano(tmp_path):
    root = make_root(
        tmp_path,
        release=R36_4_0,
        model="NVIDIA Jetson Orin Nano Developer Kit",
        cpuinfo=arm_cpuinfo(6),
        mem_kb=7802788,
    )
    res = runner.invoke(app, ["devices", "detect", "--root", str(root)])
    assert res.exit_code == 0, res.output
    assert "orin-nano-8gb" in res.stdout and "36.4.0" in res.stdout
    res = runner.invoke(app, ["devices", "detect", "--json", "--root", str(root)])
    data = json.loads(res.stdout)
    assert data["profile"] == "orin-nano-8gb" and data["l4t_version"] == "36.4.0"
    assert data["cpu_count"] == 6 and data["warnings"] == []


def test_detect_shows_warnings(tmp_path):
    root = make_root(tmp_path, release=R35_4_1, model="NVIDIA Jetson Orin Nano Developer Kit", cpuinfo=arm_cpuinfo(6))
    res = runner.invoke(app, ["devices", "detect", "--root", str(root)])
    assert res.exit_code == 0
    assert "warning" in res.stdout and "L4T 35.4.1" in res.stdout


def test_detect_fake_x86(tmp_path):
    res = runner.invoke(
        app, ["devices", "detect", "--json", "--root", str(make_root(tmp_path, cpuinfo=x86_cpuinfo(4)))]
    )
    assert res.exit_code == 0
    assert json.loads(res.stdout)["profile"] == "generic-x86-64"


def test_root_option_is_hidden_and_help_lists_commands():
    res = runner.invoke(app, ["devices", "detect", "--help"])
    assert res.exit_code == 0 and "--json" in res.stdout and "--root" not in res.stdout
    res = runner.invoke(app, ["devices", "--help"])
    assert all(cmd in res.stdout for cmd in ("list", "show", "detect"))
