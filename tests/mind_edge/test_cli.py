"""The CLI through typer's CliRunner: train / info / eval and one-line errors."""

import json

import pytest
from typer.testing import CliRunner

from mind_edge.cli import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny networks: one thread is fastest on busy cores
runner = CliRunner()
TINY = ["--width", "0.25", "--epochs", "1", "--distill-epochs", "1", "--device", "cpu"]


def test_train_info_eval(tmp_path):
    out = tmp_path / "run"
    r = runner.invoke(app, ["train", "--dataset", "digits", "--tasks", "2", "--out", str(out), *TINY])
    assert r.exit_code == 0, r.output
    assert "TAG accuracy" in r.output and "taw" in r.output
    r = runner.invoke(app, ["info", str(out), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert info["checkpoint_ok"] is True and len(info["learned_tasks"]) == 2
    r = runner.invoke(
        app, ["eval", str(out), "--temperature", "3", "--routing", "entropy", "--json", "--device", "cpu"]
    )
    assert r.exit_code == 0, r.output
    ev = json.loads(r.output)
    assert ev["temperature"] == 3 and ev["policy"] == "entropy" and len(ev["tag"]) == 2


def _one_error_line(result):
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert lines and lines[0].startswith("error:"), result.output
    return " ".join(lines)


def test_missing_data_folder_is_one_clear_error(tmp_path):
    r = runner.invoke(
        app,
        ["train", "--dataset", "imagefolder", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), *TINY],
    )
    msg = _one_error_line(r)
    assert "nope" in msg


def test_corrupt_checkpoint_and_bad_options_are_clear_errors(tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, ["train", "--dataset", "digits", "--tasks", "2", "--out", str(out), *TINY]).exit_code == 0
    ck = out / "checkpoint.safetensors"
    ck.write_bytes(ck.read_bytes()[:100])
    msg = _one_error_line(runner.invoke(app, ["eval", str(out), "--device", "cpu"]))
    assert "checkpoint" in msg and "sha256" in msg
    msg = _one_error_line(runner.invoke(app, ["train", "--out", str(tmp_path / "x"), "--device", "tpu"]))
    assert "tpu" in msg
    msg = _one_error_line(runner.invoke(app, ["train", "--out", str(tmp_path / "y"), "--preset", "imagenet"]))
    assert "imagenet" in msg and "fast" in msg
