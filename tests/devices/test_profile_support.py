"""Every device profile either runs what mind-edge needs or says it is unsupported (issue 13)."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from mind_edge.devices.errors import ProfileError
from mind_edge.devices.profiles import _packaged_dir, get_profile, list_profiles, load_profile_file

MIN_PYTHON = (3, 10)  # pyproject's requires-python
MIN_TENSORRT = 10


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in re.findall(r"\d+", text)[:2])


def test_supported_profiles_meet_the_requirements():
    for p in list_profiles():
        if not p.supported:
            assert p.support_note and "UNSUPPORTED" in p.display_name, p.name
            continue
        if p.python:
            assert _version(p.python) >= MIN_PYTHON, f"{p.name}: Python {p.python} < 3.10; mark it unsupported"
        if p.tensorrt:
            assert _version(p.tensorrt)[0] >= MIN_TENSORRT, f"{p.name}: TensorRT {p.tensorrt}; mark it unsupported"


def test_xavier_nx_is_marked_unsupported_with_the_reason():
    p = get_profile("xavier-nx")
    assert not p.supported and "Python 3.8" in p.support_note and "TensorRT 8.5" in p.support_note
    assert p.to_dict()["supported"] is False
    assert get_profile("orin-nano-8gb").supported


def test_unsupported_needs_a_note(tmp_path):
    src = _packaged_dir() / "orin-nano-8gb.json"
    dst = tmp_path / "orin-nano-8gb.json"
    shutil.copy(src, dst)
    data = json.loads(dst.read_text())
    data["supported"] = False
    dst.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="support_note"):
        load_profile_file(dst)
