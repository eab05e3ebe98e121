"""A device install, as the README describes it (issue 13): build the wheel of this tree, install it
with its ``device`` extra into a fresh virtual environment without torch, then predict, verify and
apply a signed task patch, and benchmark there; the torch commands refuse with one line naming
the extra.

Slow (~30 s of pip on an idle 2-core machine) and it needs pip to reach the extra's packages
(onnxruntime, onnx, pynacl, pillow, numpy, typer, rich: from pip's configured indexes, links or
cache); when it cannot, the test is skipped with pip's last line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from patch_helpers import world
from PIL import Image
from tree_helpers import copy_source_tree

pytestmark = [pytest.mark.slow, pytest.mark.needs_packages, pytest.mark.timeout(900)]

NETWORK_TROUBLE = (
    "Could not find a version",
    "No matching distribution",
    "Failed to establish",
    "Temporary failure",
    "Name or service not known",
    "ConnectionError",
    "ReadTimeout",
    "Network is unreachable",
    "ProxyError",
    "SSLError",
)


def _env() -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "MIND_EDGE_DEFAULTS")
    }
    env["COLUMNS"] = "200"
    return env


@pytest.fixture(scope="module")
def device_venv(tmp_path_factory) -> Path:
    if importlib.util.find_spec("build") is None:
        pytest.skip("the 'build' package (dev extra) is not installed")
    base = tmp_path_factory.mktemp("device-install")
    src = copy_source_tree(base / "src")
    p = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(base / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    wheels = list((base / "dist").glob("mind_edge-*.whl"))
    assert len(wheels) == 1, wheels
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # the host's pip installs into the new environment (pip --python): no pip bootstrap in it
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"{wheels[0]}[device]",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(),
    )
    if p.returncode != 0:
        out = p.stdout + p.stderr
        if any(s in out for s in NETWORK_TROUBLE):
            pytest.skip("pip cannot reach the device extra's packages: " + out.strip().splitlines()[-1])
        raise AssertionError(out[-4000:])
    return venv


def _run(venv: Path, *args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv / "bin" / "mind-edge"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
        cwd=cwd,
    )


def _one_error_line(p: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (p.returncode, p.stdout, p.stderr)
    return lines[0]


def test_the_device_install_has_no_torch(device_venv):
    py = str(device_venv / "bin" / "python")
    p = subprocess.run(
        [
            py,
            "-c",
            "import importlib.util as u; print([m for m in ('torch', 'torchvision', 'onnxruntime', "
            "'onnx', 'nacl', 'PIL', 'numpy', 'typer', 'rich') if u.find_spec(m) is None])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert p.stdout.strip() == "['torch', 'torchvision']"
    from mind_edge import __version__

    assert _run(device_venv, "--version").stdout.strip() == f"mind-edge {__version__}"
    profiles = json.loads(_run(device_venv, "devices", "list", "--json").stdout)  # package data shipped
    assert "orin-nano-8gb" in {p["name"] for p in profiles}


def test_torch_commands_name_the_extra(device_venv, tmp_path):
    for args in (
        ["train", "--out", tmp_path / "run"],
        ["demo", "--out", tmp_path / "demo"],
        ["export", tmp_path / "run", "--out", tmp_path / "bundle"],
    ):
        line = _one_error_line(_run(device_venv, *args))
        assert "'torch'" in line and "pip install 'mind-edge[train]'" in line, line
    assert not any(tmp_path.iterdir())


def test_predict_signed_patch_apply_and_bench_on_the_device(device_venv, tmp_path):
    w = world(tmp_path / "host")  # made on the host: a 3-task bundle, a signed patch of task 3 and its key
    device = tmp_path / "device"
    bundle = Path(shutil.copytree(w.base, device / "bundle"))
    shutil.copy(w.p3_signed, device / "t3.mepatch")
    shutil.copy(w.pub, device / "update.pub")
    images = device / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), mode="L").save(images / f"img{i}.png")

    p = _run(device_venv, "predict", bundle, images, "--json")
    assert p.returncode == 0, p.stderr
    before = json.loads(p.stdout)["predictions"]
    assert len(before) == 4 and all(len(r["task_confidence"]) == 3 for r in before)

    p = _run(device_venv, "patch", "apply", bundle, device / "t3.mepatch", "--verify-key", device / "update.pub")
    assert p.returncode == 0, p.stdout + p.stderr
    assert (bundle / "CURRENT").read_text().strip() == "v0002"
    p = _run(device_venv, "predict", bundle, images, "--json")
    assert p.returncode == 0, p.stderr
    assert all(len(r["task_confidence"]) == 4 for r in json.loads(p.stdout)["predictions"])

    p = _run(device_venv, "keygen", device / "keys" / "k")  # pynacl is part of the device extra
    assert p.returncode == 0 and (device / "keys" / "k.pub").is_file(), p.stderr

    p = _run(
        device_venv,
        "bench",
        bundle,
        "--backend",
        "ort",
        "--batch",
        "1,4",
        "--min-seconds",
        "0.05",
        "--min-iters",
        "2",
        "--warmup-seconds",
        "0.01",
        "--no-gemm",
        "--no-isolate",
        "--json",
        device / "bench.json",
    )
    assert p.returncode == 0, p.stdout + p.stderr
    rows = json.loads((device / "bench.json").read_text())["results"]
    assert {r["batch"] for r in rows} == {1, 4} and all(r["p50_ms"] > 0 for r in rows)
