"""Bundle.load: schema version, sha256 of every file, missing files, atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from runtime_helpers import CLASSES, NAMES, T

from mind_edge.fileio import sha256_file
from mind_edge.runtime.bundle import BUNDLE_SCHEMA, Bundle, write_bundle
from mind_edge.runtime.errors import BundleError


def test_load_reads_the_contract(rgb_bundle):
    b = Bundle.load(rgb_bundle)
    assert b.layout == "shared" and b.opset == 17 and b.temperature == T
    assert b.input.shape == (3, 13, 9) and b.input.name == "image" and b.input.channel_order == "RGB"
    assert b.input.mean == (0.5, 0.5, 0.5) and b.input.resize == "bilinear"
    assert [list(c) for c in b.task_classes] == CLASSES
    assert b.num_tasks == 3 and b.cmax == 3
    assert b.class_name(9) == "nine" and b.class_name(7) == NAMES[7]
    table = b.class_table()
    assert table.tolist() == [[4, 1, 7], [0, 9, -1], [3, 5, 8]]
    assert b.output_names == ["label", "task", "confidence", "task_confidence", "task_logits", "task_features"]
    outputs = b.record.to_json()["outputs"]
    assert outputs[3]["shape"] == [-1, 3] and outputs[4]["shape"] == [-1, 3, 3]
    probe = b.probe()
    assert probe["image"].shape == (4, 3, 13, 9) and probe["task_logits"].shape == (4, 3, 3)
    assert Bundle.load(rgb_bundle / "bundle.json").path == rgb_bundle  # a file inside the bundle works too


def test_tampered_model_names_the_file_and_both_hashes(bundle_copy):
    model = bundle_copy / "model.onnx"
    recorded = json.loads((bundle_copy / "bundle.json").read_text())["files"]["model.onnx"]["sha256"]
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit, same size
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError) as err:
        Bundle.load(bundle_copy)
    msg = str(err.value)
    assert "model.onnx" in msg and sha256_file(model)[:12] in msg and recorded[:12] in msg
    assert "re-export" in msg and "\n" not in msg
    Bundle.load(bundle_copy, verify=False)  # explicit opt-out still reads the metadata


def test_truncated_file_is_reported(bundle_copy):
    probe = bundle_copy / "probe.npz"
    probe.write_bytes(probe.read_bytes()[:-10])
    with pytest.raises(BundleError, match=r"probe.npz .* bytes but bundle.json records"):
        Bundle.load(bundle_copy)


def test_unknown_schema_version(bundle_copy):
    p = bundle_copy / "bundle.json"
    meta = json.loads(p.read_text())
    meta["schema_version"] = 99
    p.write_text(json.dumps(meta))
    with pytest.raises(
        BundleError, match=rf"schema version 99; this mind-edge .* reads schema version {BUNDLE_SCHEMA}"
    ):
        Bundle.load(bundle_copy)


def test_foreign_or_broken_bundle_json(bundle_copy):
    p = bundle_copy / "bundle.json"
    p.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(BundleError, match="not a mind-edge bundle file"):
        Bundle.load(bundle_copy)
    p.write_text("{ not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.load(bundle_copy)
    p.unlink()
    with pytest.raises(
        BundleError, match=r"has no bundle.json \(the folder holds: model.onnx, probe.npz, validation.json\)"
    ):
        Bundle.load(bundle_copy)


def test_missing_file_lists_what_exists(bundle_copy):
    (bundle_copy / "model.onnx").unlink()
    with pytest.raises(
        BundleError, match=r"missing model.onnx .*the folder holds: bundle.json, probe.npz, validation.json"
    ):
        Bundle.load(bundle_copy)


def test_missing_folder(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        Bundle.load(tmp_path / "nope")


def test_malformed_metadata(bundle_copy):
    p = bundle_copy / "bundle.json"
    meta = json.loads(p.read_text())
    meta["input"]["shape"] = [3, 13, 9]
    p.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="malformed"):
        Bundle.load(bundle_copy)
    del meta["tasks"]
    p.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"lacks the keys \['tasks'\]"):
        Bundle.load(bundle_copy)


def test_write_bundle_is_atomic(tmp_path):
    out = tmp_path / "b"

    def boom(path):
        path.write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_bundle(out, {"model.onnx": b"abc", "probe.npz": boom}, {"layout": "shared"})
    assert list(tmp_path.iterdir()) == []  # no bundle, no temporary folder
    write_bundle(out, {"model.onnx": b"abc"}, {"layout": "shared"})
    meta = json.loads((out / "bundle.json").read_text())
    assert meta["format"] == "mind-edge-bundle" and meta["files"]["model.onnx"]["bytes"] == 3
    with pytest.raises(BundleError, match="not empty"):
        write_bundle(out, {"model.onnx": b"xyz"}, {"layout": "shared"})
    with pytest.raises(RuntimeError):
        write_bundle(out, {"model.onnx": boom}, {"layout": "shared"}, overwrite=True)
    assert (out / "model.onnx").read_bytes() == b"abc"  # the old bundle is untouched
    write_bundle(out, {"model.onnx": b"xyz"}, {"layout": "folded"}, overwrite=True)
    assert (out / "model.onnx").read_bytes() == b"xyz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    np.testing.assert_equal(json.loads((out / "bundle.json").read_text())["layout"], "folded")
