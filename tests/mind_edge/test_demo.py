"""The demo runs its whole chain (train → export → validate → predict → benchmark) end to end,
and never removes a folder it did not write (issue 13)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import BLOCK_TORCH, one_error_line
from typer.testing import CliRunner

from mind_edge.cli import app
from mind_edge.demo import DEMO_OUTPUTS
from mind_edge.outputs import check_owned_out, clear_owned_out

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.usefixtures("one_torch_thread")
def test_demo_end_to_end_with_tiny_budget(tmp_path):
    out = tmp_path / "demo"
    r = CliRunner().invoke(
        app,
        [
            "demo",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--distill-epochs",
            "0",
            "--width",
            "0.25",
            "--images-per-class",
            "1",
            "--bench-seconds",
            "0.05",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "mind-edge demo summary" in r.output and "validation passed" in r.output
    assert "TAG accuracy R[k, j]" in r.output  # brackets in titles are text, not rich markup
    assert (out / "run" / "checkpoint.safetensors").is_file()
    assert (out / "bundle" / "model.onnx").is_file() and len(list((out / "images").glob("*.png"))) == 10
    report = json.loads((out / "bench.json").read_text())
    assert {row["backend"] for row in report["results"]} >= {"ort", "torch"}
    assert all(row["p50_ms"] > 0 for row in report["results"])
    assert json.loads((out / "demo.json").read_text())["created_by"] == "mind-edge demo"


def _tree(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_demo_refuses_a_non_empty_out_and_leaves_it_untouched(tmp_path):
    out = tmp_path / "mine"
    (out / "run").mkdir(parents=True)
    (out / "run" / "checkpoint.safetensors").write_bytes(b"a user's checkpoint")
    before = _tree(out)
    line = one_error_line(CliRunner().invoke(app, ["demo", "--out", str(out)]))
    assert "is not empty" in line and "--overwrite" in line
    line = one_error_line(CliRunner().invoke(app, ["demo", "--out", str(out), "--overwrite"]))
    assert "was not written by 'mind-edge demo'" in line
    assert _tree(out) == before
    file_out = tmp_path / "a-file"
    file_out.write_text("x")
    assert "is a file" in one_error_line(CliRunner().invoke(app, ["demo", "--out", str(file_out)]))


def test_overwrite_replaces_only_an_earlier_demos_outputs(tmp_path):
    out = tmp_path / "demo"
    for name in ("run", "bundle", "images"):
        (out / name).mkdir(parents=True)
        (out / name / "x").write_text("old")
    (out / "demo.json").write_text("{}")
    (out / "bench.json").write_text("{}")
    (out / "my-notes.txt").write_text("keep me")
    assert check_owned_out(out, True, marker="demo.json", what="'mind-edge demo'") is True
    clear_owned_out(out, DEMO_OUTPUTS)
    assert _tree(out) == {"my-notes.txt": b"keep me"}
    assert check_owned_out(tmp_path / "new", False, marker="demo.json", what="demo") is False


def test_example_refuses_a_non_empty_out(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "checkpoint.safetensors").write_bytes(b"a user's checkpoint")
    for extra in ([], ["--overwrite"]):
        p = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "on_device_update.py"), "--out", str(out), *extra],
            capture_output=True,
            text=True,
            timeout=120,
        )
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: --out"), p.stderr
    assert _tree(out) == {"checkpoint.safetensors": b"a user's checkpoint"}


def test_demo_refuses_a_bad_out_before_torch_loads(tmp_path):
    """The cheap checks run first: a wrong --out is one line even where PyTorch cannot be imported."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    block = BLOCK_TORCH + (
        f"from mind_edge.cli import main\nsys.argv = ['mind-edge', 'demo', '--out', {str(out)!r}]\nmain()\n"
    )
    p = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, timeout=120)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "is not empty" in lines[0], (p.returncode, p.stderr)
    assert sorted(x.name for x in out.iterdir()) == ["notes.txt"]
