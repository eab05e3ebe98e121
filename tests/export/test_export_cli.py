"""`mind-edge export` through typer's CliRunner, and a trained digits run end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import one_error_line
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def app():
    from mind_edge.cli import app

    return app


def _run(app, *args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_export_json_then_predict(app, fake_run_dir, tmp_path):
    out = tmp_path / "bundle"
    r = _run(
        app,
        "export",
        fake_run_dir,
        "--out",
        out,
        "--layout",
        "folded",
        "--temperature",
        "3",
        "--samples",
        "40",
        "--json",
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["layout"] == "folded" and doc["temperature"] == 3.0 and doc["num_tasks"] == 5
    assert doc["validation"]["passed"] is True
    assert doc["validation"]["agreement"] == {"label": 1.0, "task": 1.0}
    assert doc["model_bytes"] == (out / "model.onnx").stat().st_size
    # digits images as files -> predict
    from PIL import Image

    from mind_edge.data import load_dataset

    _, test, _ = load_dataset("digits")
    files = []
    for i in range(3):
        f = tmp_path / f"d{i}.png"
        Image.fromarray(test.images[i, :, :, 0]).save(f)
        files.append(f)
    r = _run(app, "predict", out, *files, "--json")
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout)["predictions"]) == 3


def test_export_table(app, fake_run_dir, tmp_path):
    r = _run(app, "export", fake_run_dir, "-o", tmp_path / "b", "--samples", "0")
    assert r.exit_code == 0, r.output
    assert "passed" in r.output and "max |Δ|" in r.output and "shared layout" in r.output
    assert "warning" in r.output and "run test data unavailable" in r.output


def test_export_errors_are_one_line(app, fake_run_dir, tmp_path):
    line = one_error_line(_run(app, "export", tmp_path / "missing-run", "--out", tmp_path / "b"))
    assert "does not exist" in line
    line = one_error_line(_run(app, "export", fake_run_dir, "--out", tmp_path / "b", "--layout", "sparse"))
    assert "unknown layout 'sparse'" in line
    line = one_error_line(_run(app, "export", fake_run_dir, "--out", tmp_path / "b", "--opset", "11"))
    assert "opset 11 is not supported" in line
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    line = one_error_line(_run(app, "export", fake_run_dir, "--out", tmp_path / "full", "--no-validate"))
    assert "not empty" in line and "--overwrite" in line
    line = one_error_line(
        _run(app, "export", fake_run_dir, "--out", tmp_path / "b", "--atol", "1e-12", "--rtol", "0", "--samples", "8")
    )
    assert "export validation failed" in line and "task_logits" in line
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_trained_digits_run_exports_faithfully(tmp_path_factory):
    """A really trained run (digits, 5 tasks; a few epochs of a narrow net to stay fast) through the whole path."""
    from mind_edge.export.exporter import export_bundle
    from mind_edge.run import RunSpec, train_run
    from mind_edge.runtime.bundle import Bundle
    from mind_edge.runtime.predict import Runtime
    from mind_edge.train import preset

    base = tmp_path_factory.mktemp("trained")
    spec = RunSpec(
        dataset="digits",
        tasks=5,
        seed=0,
        width=0.125,
        device="cpu",
        train=preset("fast", epochs=4, distill_epochs=2, batch_size=128),
    )
    train_run(spec, base / "run")
    for layout in ("shared", "folded"):
        res = export_bundle(base / "run", base / layout, layout=layout, max_test_samples=450)
        rep = res.report
        assert rep["inputs"]["test"]["count"] == 450
        assert rep["passed"] and rep["agreement"] == {"label": 1.0, "task": 1.0}
        assert rep["max_abs_diff"]["task_logits"] <= 1e-4
        with Runtime(Bundle.load(res.bundle)) as rt:
            probe = Bundle.load(res.bundle).probe()
            np.testing.assert_array_equal(rt.predict(probe["image"]).label, probe["label"])


def test_routing_options_of_export_and_predict(app, fake_run_dir, tmp_path):
    """export --routing: a typo fails before loading; a score policy on an uncalibrated run names calibrate;
    predict --routing re-routes (maxprob on a maxprob bundle is a no-op) or refuses without statistics."""
    r = _run(app, "export", fake_run_dir, "--out", tmp_path / "b0", "--routing", "nope")
    assert r.exit_code == 2 and "choose one of maxprob" in one_error_line(r)
    assert not (tmp_path / "b0").exists()
    r = _run(app, "export", fake_run_dir, "--out", tmp_path / "b1", "--routing", "combined", "--no-validate")
    assert r.exit_code == 2 and "mind-edge calibrate" in one_error_line(r)
    assert not (tmp_path / "b1").exists()
    out = tmp_path / "b2"
    assert _run(app, "export", fake_run_dir, "--out", out, "--samples", "8", "--json").exit_code == 0
    from PIL import Image

    img = tmp_path / "x.png"
    Image.fromarray(np.full((8, 8), 128, np.uint8), mode="L").save(img)
    r = _run(app, "predict", out, img, "--json", "--routing", "entropy")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["routing"] == "entropy"
    r = _run(app, "predict", out, img, "--routing", "mahalanobis")
    assert r.exit_code == 2 and "export it with --routing mahalanobis" in one_error_line(r)
