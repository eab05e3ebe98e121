"""`mind-edge predict` through typer's CliRunner: table, JSON, and one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_helpers import one_error_line
from PIL import Image
from runtime_helpers import predict_app, run_cli


@pytest.fixture(scope="module")
def app():
    return predict_app()


_run = run_cli


def test_table(app, rgb_bundle, rgb_images, monkeypatch):
    paths, _ = rgb_images
    monkeypatch.chdir(paths[0].parent)  # short relative names: the table is 80 columns wide here
    r = _run(app, "predict", rgb_bundle, "img0.png", "img1.png")
    assert r.exit_code == 0, r.output
    assert "img0.png" in r.output and "img1.png" in r.output
    assert "confidence" in r.output and "CPUExecutionProvider" in r.output


def test_json_and_temperature(app, rgb_bundle, rgb_images):
    paths, _ = rgb_images
    r = _run(app, "predict", rgb_bundle, *paths, "--json", "--temperature", "7", "--providers", "cpu", "--threads", "1")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["temperature"] == 7.0 and doc["providers"] == ["CPUExecutionProvider"] and doc["backend"] == "ort"
    preds = doc["predictions"]
    assert [p["file"] for p in preds] == [str(p) for p in paths]
    assert all(set(p) == {"file", "label", "class_name", "task", "confidence", "task_confidence"} for p in preds)
    assert all(len(p["task_confidence"]) == 3 for p in preds)


def test_tampered_model(app, bundle_copy, rgb_images):
    m = bundle_copy / "model.onnx"
    data = bytearray(m.read_bytes())
    data[100] ^= 0xFF
    m.write_bytes(bytes(data))
    line = one_error_line(_run(app, "predict", bundle_copy, rgb_images[0][0]))
    assert "model.onnx" in line and "does not match bundle.json" in line


def test_unknown_schema(app, bundle_copy, rgb_images):
    p = bundle_copy / "bundle.json"
    p.write_text(p.read_text().replace('"schema_version": 1', '"schema_version": 2'))
    line = one_error_line(_run(app, "predict", bundle_copy, rgb_images[0][0]))
    assert "schema version 2" in line and "reads schema version 1" in line


def test_missing_file(app, bundle_copy, rgb_images):
    (bundle_copy / "probe.npz").unlink()
    line = one_error_line(_run(app, "predict", bundle_copy, rgb_images[0][0]))
    assert "missing probe.npz" in line and "the folder holds: bundle.json, model.onnx, validation.json" in line


def test_wrong_size_and_channels(app, rgb_bundle, tmp_path):
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(big)
    gray = tmp_path / "gray.png"
    Image.fromarray(np.zeros((13, 9), np.uint8)).save(gray)
    line = one_error_line(_run(app, "predict", rgb_bundle, big))
    assert "32x32" in line and "expects 13x9" in line
    line = one_error_line(_run(app, "predict", rgb_bundle, gray))
    assert "1 channel(s)" in line and "with 3 (RGB)" in line
    assert _run(app, "predict", rgb_bundle, big, gray, "--resize").exit_code == 0  # converted like training


def test_unreadable_image_and_bad_options(app, rgb_bundle, tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    line = one_error_line(_run(app, "predict", rgb_bundle, junk))
    assert "junk.png" in line
    line = one_error_line(_run(app, "predict", rgb_bundle, tmp_path / "missing.png"))
    assert "missing.png" in line and "does not exist" in line
    line = one_error_line(_run(app, "predict", rgb_bundle, junk, "--backend", "tensorflow"))
    assert "unknown backend" in line
    line = one_error_line(_run(app, "predict", tmp_path / "nope", junk))
    assert "does not exist" in line
