"""Device profiles: every shipped file loads and validates; broken files fail clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mind_edge.devices import DeviceError, ProfileError, get_profile, list_profiles, load_profile_file, load_profiles
from mind_edge.devices.profiles import _packaged_dir
from mind_edge.errors import MindEdgeError

EXPECTED = {"orin-nano-8gb", "orin-nx-16gb", "agx-orin-64gb", "xavier-nx", "generic-aarch64", "generic-x86-64"}


def test_every_shipped_profile_loads_and_validates():
    profiles = list_profiles()
    assert {p.name for p in profiles} == EXPECTED
    for p in profiles:
        assert Path(p.path).name == f"{p.name}.json"
        assert p.sources and all(s.strip() for s in p.sources)
        assert p.defaults.batch == 1
        if p.is_jetson:
            assert p.gpu is not None and p.power_modes and p.detect.device_tree_model
            assert p.memory_shared and p.defaults.fp16
            assert p.jetpack and p.l4t and p.tensorrt and p.cuda and p.python
            assert 0 < p.defaults.workspace_mb <= 1024
            assert p.l4t_major in (35, 36)
        else:
            assert p.gpu is None and not p.power_modes and p.detect.machines
    # Jetsons first in listings.
    kinds = [p.kind for p in profiles]
    assert kinds == sorted(kinds, key=lambda k: k != "jetson")


def test_profile_files_are_in_the_package_data_folder():
    files = sorted(f.stem for f in _packaged_dir().glob("*.json"))
    assert set(files) == EXPECTED


@pytest.mark.parametrize(
    "name, jetpack, l4t_major, trt, cuda, cc, dla, mem",
    [
        ("orin-nano-8gb", "6.2", 36, "10.3", "12.6", "8.7", 0, 8),
        ("orin-nx-16gb", "6.2", 36, "10.3", "12.6", "8.7", 2, 16),
        ("agx-orin-64gb", "6.2", 36, "10.3", "12.6", "8.7", 2, 64),
        ("xavier-nx", "5.1.2", 35, "8.5.2", "11.4", "7.2", 2, 8),
    ],
)
def test_jetson_profile_numbers(name, jetpack, l4t_major, trt, cuda, cc, dla, mem):
    p = get_profile(name)
    assert (p.jetpack, p.l4t_major, p.cuda, p.gpu.compute_capability, p.dla_cores, p.memory_gb) == (
        jetpack,
        l4t_major,
        cuda,
        cc,
        dla,
        mem,
    )
    assert p.tensorrt.startswith(trt)
    if p.l4t_major == 36:
        assert p.python == "3.10"


def test_power_modes_as_documented():
    nano = get_profile("orin-nano-8gb")
    assert {m.name for m in nano.power_modes} >= {"15W", "7W", "25W", "MAXN_SUPER"}
    assert nano.power_mode("15w").watts == 15 and nano.power_mode(0).name == "15W"
    agx = get_profile("agx-orin-64gb")
    assert [(m.id, m.name) for m in agx.power_modes] == [(0, "MAXN"), (1, "15W"), (2, "30W"), (3, "50W")]
    assert agx.power_mode("MAXN").watts is None
    nx = get_profile("orin-nx-16gb")
    assert {"MAXN", "10W", "15W", "25W"} <= {m.name for m in nx.power_modes}
    xnx = get_profile("xavier-nx")
    assert {m.watts for m in xnx.power_modes} == {10, 15, 20}
    with pytest.raises(DeviceError, match="no power mode 'TURBO'.*nvpmodel"):
        agx.power_mode("TURBO")


def test_safe_defaults():
    nano = get_profile("orin-nano-8gb")
    assert nano.defaults.workspace_mb == 256 and nano.defaults.fp16 and nano.defaults.batch == 1
    assert nano.defaults.threads == nano.cpu_cores == 6
    cpu = get_profile("generic-x86-64")
    assert not cpu.defaults.fp16 and cpu.defaults.threads == 0


def test_get_profile_is_forgiving_about_spelling():
    assert get_profile("ORIN_NANO_8GB").name == "orin-nano-8gb"
    assert get_profile(" generic-x86_64 ").name == "generic-x86-64"


def test_unknown_profile_lists_known_names_and_suggests():
    with pytest.raises(DeviceError) as info:
        get_profile("orin-nano")
    msg = str(info.value)
    assert isinstance(info.value, MindEdgeError)
    assert "unknown device profile 'orin-nano'" in msg
    assert "did you mean 'orin-nano-8gb'" in msg
    for name in EXPECTED:
        assert name in msg
    assert "\n" not in msg


def test_profile_round_trips_to_json():
    p = get_profile("agx-orin-64gb")
    d = json.loads(json.dumps(p.to_dict()))
    assert d["name"] == "agx-orin-64gb" and d["gpu"]["cuda_cores"] == 2048
    assert "path" not in d


# ----------------------------------------------------------------------------- broken profiles


def _copy_profile(tmp_path: Path, name: str = "orin-nano-8gb") -> tuple[Path, dict]:
    src = _packaged_dir() / f"{name}.json"
    dst = tmp_path / f"{name}.json"
    shutil.copy(src, dst)
    return dst, json.loads(dst.read_text())


def test_copied_profile_folder_loads(tmp_path):
    _copy_profile(tmp_path)
    assert [p.name for p in load_profiles(tmp_path)] == ["orin-nano-8gb"]


def test_missing_key_is_named_with_the_file(tmp_path):
    path, data = _copy_profile(tmp_path)
    del data["dla_cores"]
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError) as info:
        load_profiles(tmp_path)
    msg = str(info.value)
    assert str(path) in msg and "missing key 'dla_cores'" in msg and "fix the file" in msg


def test_wrong_types_are_all_reported(tmp_path):
    path, data = _copy_profile(tmp_path)
    data["memory_gb"] = "eight"
    data["gpu"]["cuda_cores"] = "1024"
    data["defaults"]["fp16"] = 1
    data["power_modes"][0]["watts"] = True
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    msg = str(info.value)
    assert "key 'memory_gb' is str 'eight' but must be a number" in msg
    assert "key 'gpu.cuda_cores'" in msg and "integer" in msg
    assert "key 'defaults.fp16'" in msg
    assert "key 'power_modes[0].watts'" in msg


def test_jetson_profile_needs_its_jetson_fields(tmp_path):
    path, data = _copy_profile(tmp_path)
    data["software"]["tensorrt"] = None
    data["gpu"] = None
    data["detect"]["device_tree_model"] = []
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    msg = str(info.value)
    assert "'software.tensorrt' must be set on a jetson profile" in msg
    assert "'gpu' must be set on a jetson profile" in msg
    assert "detect.device_tree_model' is empty" in msg


def test_invalid_json_reports_line_and_column(tmp_path):
    path = tmp_path / "orin-nano-8gb.json"
    path.write_text('{\n  "name": "orin-nano-8gb",\n  "kind": jetson\n}\n')
    with pytest.raises(ProfileError, match=r"not valid JSON \(line 3, column 11"):
        load_profile_file(path)


def test_name_must_match_file_and_keys_must_be_known(tmp_path):
    path, data = _copy_profile(tmp_path)
    data["name"] = "orin-nano"
    data["turbo"] = True
    data["kind"] = "fpga"
    data["schema_version"] = 9
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    msg = str(info.value)
    assert "file is named 'orin-nano-8gb.json'" in msg
    assert "unknown key 'turbo'" in msg
    assert "'kind' is 'fpga', must be one of jetson, cpu" in msg
    assert "this mind-edge reads version 1" in msg


def test_duplicate_ids_and_empty_folder(tmp_path):
    path, data = _copy_profile(tmp_path)
    data["power_modes"][1]["id"] = data["power_modes"][0]["id"]
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="repeats nvpmodel id 0"):
        load_profile_file(path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ProfileError, match="holds no"):
        load_profiles(empty)
    with pytest.raises(ProfileError, match="does not exist"):
        load_profiles(tmp_path / "nope")


def test_to_dict_is_the_file_layout(tmp_path):
    """One schema: what to_dict writes is a valid profile file that loads to the same profile."""
    for p in list_profiles():
        path = tmp_path / f"{p.name}.json"
        path.write_text(json.dumps(p.to_dict()))
        assert load_profile_file(path) == p
    (tmp_path / "neg").mkdir()
    path, data = _copy_profile(tmp_path / "neg")
    data["defaults"]["batch"] = 0
    data["gpu"]["cuda_cores"] = 0
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    assert "key 'defaults.batch' is 0, must be >= 1" in str(info.value)
    assert "key 'gpu.cuda_cores' is 0, must be >= 1" in str(info.value)
