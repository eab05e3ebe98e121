"""`patch apply` / `rollback` on bundles (torch-free): equivalence, versions, failures, CLI."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from cli_helpers import BLOCK_TORCH, one_error_line
from patch_helpers import CLASSES, T, make_bundle, tree_hash, world
from typer.testing import CliRunner

from mind_edge.runtime.bundle import Bundle
from mind_edge.runtime.errors import BundleError
from mind_edge.runtime.graph import read_arrays
from mind_edge.runtime.patch import PatchError, apply_patch, bundle_status, rollback
from mind_edge.runtime.predict import Runtime


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    return world(tmp_path_factory.mktemp("patch_apply"))


@pytest.fixture(scope="module")
def app():
    from mind_edge.cli import app

    return app


@pytest.fixture
def deployed(w, tmp_path):
    dst = tmp_path / "device" / "bundle"
    shutil.copytree(w.base, dst)
    return dst


def _cli(app, *args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _inputs(n=64, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 1, 8, 8)).astype(np.float32) * 2


def _outputs(bundle, x):
    with Runtime(Bundle.load(bundle)) as rt:
        return rt.infer(x)


def test_patched_bundle_equals_a_fresh_bundle_and_keeps_earlier_tasks(w, deployed):
    x = _inputs()
    before = _outputs(deployed, x)
    res = apply_patch(deployed, w.p3)
    assert (res.version, res.previous, res.task, res.classes) == ("v0002", "v0001", 3, CLASSES[3])
    b = Bundle.load(deployed)
    assert b.version == "v0002" and b.path == deployed / "versions" / "v0002" and b.root == deployed
    assert b.task_classes == tuple(tuple(c) for c in CLASSES[:4]) and b.temperature == T
    assert read_arrays(b.model_path).same_as(w.full.first_tasks(4))  # bit-identical network
    after, ref = _outputs(deployed, x), _outputs(w.ref4, x)
    assert np.array_equal(after["label"], ref["label"]) and np.array_equal(after["task"], ref["task"])  # 100 %
    assert np.array_equal(after["task_logits"], ref["task_logits"])
    # earlier tasks: same logits (cmax grew from 2 to 3: compare the real classes)
    assert np.max(np.abs(after["task_logits"][:, :3, :2] - before["task_logits"])) <= 1e-6
    assert np.max(np.abs(after["task_confidence"][:, :3] - before["task_confidence"])) <= 1e-6
    # (routing of these random networks is degenerate; tests/export/test_patch_create.py compares trained ones)
    # the plain files moved into versions/v0001; the folder holds the pointer and the versions only
    assert sorted(p.name for p in deployed.iterdir()) == ["CURRENT", "versions"]
    assert sorted(p.name for p in (deployed / "versions").iterdir()) == ["v0001", "v0002"]
    assert (deployed / "versions" / "v0001" / "model.onnx").read_bytes() == (w.base / "model.onnx").read_bytes()
    rec = b.record
    assert rec.base_version == "v0001" and [p.task for p in rec.patches] == [3]
    assert rec.to_json()["validation"]["passed"] is True

    res = apply_patch(deployed, w.p4)
    assert res.version == "v0003"
    after5, ref5 = _outputs(deployed, x), _outputs(w.ref5, x)
    assert np.array_equal(after5["label"], ref5["label"]) and np.array_equal(after5["task"], ref5["task"])
    assert np.array_equal(after5["task_logits"], ref5["task_logits"])
    assert sorted(p.name for p in (deployed / "versions").iterdir()) == ["v0002", "v0003"]  # keep=2
    assert [p.task for p in Bundle.load(deployed).record.patches] == [3, 4]

    rb = rollback(deployed)
    assert (rb.version, rb.removed, rb.num_tasks) == ("v0002", "v0003", 4)
    assert np.array_equal(_outputs(deployed, x)["task_logits"], after["task_logits"])
    with pytest.raises(PatchError, match="no longer kept"):
        rollback(deployed)
    assert apply_patch(deployed, w.p4).version == "v0003"  # roll forward again


def test_rollback_to_the_exported_version_and_keep(w, deployed):
    apply_patch(deployed, w.p3, keep=3)
    apply_patch(deployed, w.p4, keep=3)
    assert bundle_status(deployed)["versions"] == ["v0001", "v0002", "v0003"]
    rollback(deployed)
    rollback(deployed)
    b = Bundle.load(deployed)
    assert (b.version, b.num_tasks) == ("v0001", 3)
    assert (b.path / "model.onnx").read_bytes() == (w.base / "model.onnx").read_bytes()
    with pytest.raises(PatchError, match="oldest one kept"):
        rollback(deployed)
    with pytest.raises(PatchError, match="keep must be >= 2"):
        apply_patch(deployed, w.p3, keep=1)


def test_engines_built_for_the_plain_bundle_move_into_its_version(w, deployed):
    """A plain bundle's machine-local files (TensorRT engines, engine.json, trt-cache/) go with the
    model they were built for into versions/v0001: nothing stale stays beside CURRENT, and a
    rollback finds them again; the bundle's own files are untouched by the move."""
    (deployed / "engine-0123abcd.plan").write_bytes(b"plan bytes")
    (deployed / "engine.json").write_text('{"engines": []}')
    (deployed / "trt-cache" / "ort").mkdir(parents=True)
    (deployed / "trt-cache" / "ort" / "x.engine").write_bytes(b"ort cache")
    (deployed / "trt-cache" / "timing.cache").write_bytes(b"timings")
    (deployed / "notes.txt").write_text("the user's own file stays where it is")
    apply_patch(deployed, w.p3)
    top = sorted(p.name for p in deployed.iterdir() if not p.name.startswith("."))
    assert top == ["CURRENT", "notes.txt", "versions"]
    v1 = deployed / "versions" / "v0001"
    assert (v1 / "engine-0123abcd.plan").read_bytes() == b"plan bytes"
    assert (v1 / "engine.json").read_text() == '{"engines": []}'
    assert (v1 / "trt-cache" / "ort" / "x.engine").read_bytes() == b"ort cache"
    assert not any((deployed / "versions" / "v0002").glob("engine*"))
    # the timing cache is valid for any model: the new version starts with a copy, the ORT cache stays behind
    assert (deployed / "versions" / "v0002" / "trt-cache" / "timing.cache").read_bytes() == b"timings"
    assert not (deployed / "versions" / "v0002" / "trt-cache" / "ort").exists()
    rollback(deployed)
    b = Bundle.load(deployed)  # every bundle file's sha256 still verifies after the move
    assert b.path == v1 and (b.path / "engine-0123abcd.plan").exists()


def test_rollback_of_a_plain_bundle_is_refused(deployed):
    with pytest.raises(PatchError, match="never been patched"):
        rollback(deployed)


FAILURES = {
    "tampered": ("tampered", "corrupt or was tampered with"),
    "truncated": ("truncated", "is truncated"),
    "unsigned": ("unsigned", "not signed but a signature is required"),
    "wrong key": ("wrong_key", "signed with key .* not with the key"),
    "other base": ("other_base", "made for another base bundle"),
    "duplicate": ("duplicate", "already applied"),
    "out of order": ("out_of_order", "adds task 4 but bundle .* holds 3 tasks"),
}


@pytest.mark.parametrize(
    "case,versioned", [(c, v) for c in FAILURES for v in (False, True) if not (c == "out of order" and v)]
)
def test_failures_give_one_error_line_and_leave_the_bundle_byte_identical(w, deployed, app, tmp_path, case, versioned):
    kind, message = FAILURES[case]
    if versioned:  # a bundle already updated once: the checks run against versions/v0002
        apply_patch(deployed, w.p3)
    patch, extra = w.p3_signed, []
    if kind == "tampered":
        data = bytearray(w.p3_signed.read_bytes())
        data[len(data) // 2] ^= 0x10
        patch = tmp_path / "tampered.mepatch"
        patch.write_bytes(bytes(data))
    elif kind == "truncated":
        patch = tmp_path / "truncated.mepatch"
        patch.write_bytes(w.p3_signed.read_bytes()[:-100])
    elif kind == "unsigned":
        patch, extra = w.p3, ["--verify-key", w.pub]
    elif kind == "wrong_key":
        extra = ["--verify-key", w.other_pub]
    elif kind == "other_base":
        other = world(tmp_path / "other", seed=5)  # same architecture and classes, other weights
        patch = other.p4 if versioned else other.p3
    elif kind == "duplicate":
        if not versioned:
            apply_patch(deployed, w.p3)
        patch = w.p3
    elif kind == "out_of_order":
        patch = w.p4
    before = tree_hash(deployed.parent)
    result = _cli(app, "patch", "apply", deployed, patch, *extra)
    if kind == "duplicate":  # "nothing to do" has its own exit code (3), so an update agent can tell it from a failure
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert result.exit_code == 3 and len(lines) == 1 and lines[0].startswith("nothing to do: "), result.stderr
        line = lines[0]
    else:
        line = one_error_line(result)
    assert re.search(message, line), line
    assert tree_hash(deployed.parent) == before


def test_folded_bundles_and_concurrent_updates_are_refused(w, tmp_path):
    from mind_edge.runtime.bundle import assemble_bundle

    folded = assemble_bundle(
        tmp_path / "folded",
        w.full.first_tasks(3),
        layout="folded",
        temperature=T,
        class_names=[str(i) for i in range(10)],
        mean=[0.5],
        std=[0.25],
    )
    with pytest.raises(PatchError, match="'folded' layout"):
        apply_patch(folded, w.p3)
    plain = make_bundle(tmp_path / "plain", w.full.first_tasks(3))
    fd = os.open(plain, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(BundleError, match="being updated by another process"):
            apply_patch(plain, w.p3)
    finally:
        os.close(fd)
    assert apply_patch(plain, w.p3).version == "v0002"


def test_a_corrupt_pointer_is_a_clear_error(w, deployed):
    apply_patch(deployed, w.p3)
    with pytest.raises(BundleError, match="is one version of the bundle"):
        apply_patch(deployed / "versions" / "v0002", w.p4)
    (deployed / "CURRENT").write_text("../../etc\n")
    with pytest.raises(BundleError, match="not a version name"):
        Bundle.load(deployed)
    (deployed / "CURRENT").write_text("v0009\n")
    with pytest.raises(BundleError, match="points to version v0009 but .* does not exist"):
        Bundle.load(deployed)


def test_cli_keygen_apply_inspect_rollback(w, deployed, app, tmp_path):
    r = _cli(app, "keygen", tmp_path / "k")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "k").is_file() and (tmp_path / "k.pub").is_file()
    one_error_line(_cli(app, "keygen", tmp_path / "k"))  # exists
    r = _cli(app, "patch", "inspect", w.p3_signed, "--verify-key", w.pub, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["task"] == 3 and doc["signed"] and doc["signature_verified_with"] == doc["signature"]["key_id"]
    r = _cli(app, "patch", "inspect", w.p3_signed)
    assert r.exit_code == 0 and "not checked" in r.output
    r = _cli(app, "patch", "apply", deployed, w.p3_signed, "--verify-key", w.pub, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["version"] == "v0002" and doc["signed_by"] and doc["max_abs_diff"] <= 1e-6
    r = _cli(app, "patch", "inspect", deployed, "--json")
    st = json.loads(r.stdout)
    assert st["version"] == "v0002" and st["num_tasks"] == 4 and st["patches"][0]["signed_by"] == doc["signed_by"]
    r = _cli(app, "patch", "rollback", deployed)
    assert r.exit_code == 0 and "v0001" in r.output
    assert "never been patched" in one_error_line(_cli(app, "patch", "rollback", w.base))
    one_error_line(_cli(app, "patch", "inspect", tmp_path / "missing.mepatch"))


def test_apply_and_rollback_run_without_torch(w, deployed):
    code = BLOCK_TORCH + textwrap.dedent(f"""
    import json
    import mind_edge.runtime
    from mind_edge.runtime.patch import apply_patch, rollback
    from mind_edge.runtime.predict import Runtime
    from typer.testing import CliRunner
    from mind_edge.cli import app
    r = CliRunner().invoke(app, ["patch", "apply", {str(deployed)!r}, {str(w.p3_signed)!r},
                                 "--verify-key", {str(w.pub)!r}])
    n = Runtime({str(deployed)!r}).bundle.num_tasks
    rollback({str(deployed)!r})
    apply_patch({str(deployed)!r}, {str(w.p3)!r})
    print(json.dumps({{"exit": r.exit_code, "tasks": n, "torch": "torch" in sys.modules}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"exit": 0, "tasks": 4, "torch": False}


def test_a_pooled_policy_patch_is_held_to_the_routing_contract_scores():
    """With a pooled metric, earlier tasks' scores move when a task joins (by design); validation instead
    recomputes every score from the new statistics and refuses a head that does not compute them."""
    from types import SimpleNamespace

    import onnxruntime as ort

    from mind_edge.runtime.graph import build_graph, random_arrays
    from mind_edge.runtime.patch import _pooled_score_problems

    net = {"arch": "resnet32", "in_channels": 3, "input_size": [11, 7], "width": 0.25, "capacity": 3}
    new = random_arrays(net, [[0, 1], [2, 3], [4]], seed=4, stats=True)
    model = build_graph(new, temperature=1.5, policy="combined").SerializeToString()
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).standard_normal((9, 3, 11, 7)).astype(np.float32)
    out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {sess.get_inputs()[0].name: x})))
    bundle = SimpleNamespace(policy="combined", temperature=1.5)
    assert _pooled_score_problems(bundle, new, out) == []
    # the scores of the two tasks before the patch: the head without the new task's statistics in the pool
    old = build_graph(new.first_tasks(2), temperature=1.5, policy="combined").SerializeToString()
    old_sess = ort.InferenceSession(old, providers=["CPUExecutionProvider"])
    before = old_sess.run(["task_confidence"], {old_sess.get_inputs()[0].name: x})[0]
    assert not np.allclose(before, out["task_confidence"][:, :2])  # they moved, by design
    out["task_confidence"] = out["task_confidence"].copy()
    out["task_confidence"][3, 1] += 0.5
    (problem,) = _pooled_score_problems(bundle, new, out)
    assert "differs from the routing contract's scores by up to 0.5" in problem
