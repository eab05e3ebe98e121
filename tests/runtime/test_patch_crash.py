"""Crash safety of `patch apply`: SIGKILL at every named point and at random moments.

After every kill the bundle must load (every file's sha256 verified) and hold either the old
or the new network — never a mixture — and the next apply must work and leave no leftovers.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from patch_helpers import world

from mind_edge.runtime.bundle import Bundle
from mind_edge.runtime.patch import CRASH_ENV, CRASH_POINTS, apply_patch, list_versions, rollback

COMMITTED = {"pointer_replaced", "committed", "root_cleanup", "pruned"}  # points after the rename of CURRENT

APPLY = textwrap.dedent("""
    import sys
    from mind_edge.runtime.patch import apply_patch
    print("ready", flush=True)
    apply_patch(sys.argv[1], sys.argv[2])
    print("done", flush=True)
""")


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    return world(tmp_path_factory.mktemp("patch_crash"))


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _start(bundle, patch, crash_at=None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    if crash_at:
        env[CRASH_ENV] = crash_at
    proc = subprocess.Popen(
        [sys.executable, "-c", APPLY, str(bundle), str(patch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def _state(bundle, old, new) -> str:
    """'old' or 'new' — after checking the bundle loads with every hash verified."""
    b = Bundle.load(bundle)  # raises on any missing / modified file
    sha = _sha(b.model_path)
    assert sha in (old["sha"], new["sha"]), "model.onnx is neither the old nor the new version"
    state = "old" if sha == old["sha"] else "new"
    ref = old if state == "old" else new
    assert b.task_classes == ref["classes"], "bundle.json does not describe its model.onnx"
    return state


def _clean(bundle) -> None:
    """A versioned bundle with no leftovers: CURRENT + versions/<live and previous> only."""
    names = sorted(p.name for p in bundle.iterdir())
    assert names == ["CURRENT", "versions"], names
    vs = sorted(p.name for p in (bundle / "versions").iterdir())
    assert vs == list_versions(bundle) and len(vs) == 2, vs


def _refs(w):
    old = {"sha": _sha(w.base / "model.onnx"), "classes": Bundle.load(w.base).task_classes}
    new = {"sha": _sha(w.ref4 / "model.onnx"), "classes": Bundle.load(w.ref4).task_classes}
    new5 = {"sha": _sha(w.ref5 / "model.onnx"), "classes": Bundle.load(w.ref5).task_classes}
    return old, new, new5


def test_patched_model_is_byte_identical_to_a_fresh_build(w, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(w.base, b)
    apply_patch(b, w.p3)
    assert _sha(Bundle.load(b).model_path) == _sha(w.ref4 / "model.onnx")


PLAIN_POINTS = list(CRASH_POINTS)
VERSIONED_POINTS = [p for p in CRASH_POINTS if p not in ("base_copied", "root_cleanup")]


@pytest.mark.parametrize("versioned,point", [(False, p) for p in PLAIN_POINTS] + [(True, p) for p in VERSIONED_POINTS])
def test_kill_at_each_point(w, tmp_path, versioned, point):
    old, new, new5 = _refs(w)
    bundle = tmp_path / "bundle"
    shutil.copytree(w.base, bundle)
    patch = w.p3
    if versioned:  # crash while going from version v0002 (4 tasks) to v0003 (5 tasks)
        apply_patch(bundle, w.p3)
        old, new, patch = new, new5, w.p4
    proc = _start(bundle, patch, crash_at=point)
    proc.wait(timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    state = _state(bundle, old, new)
    assert state == ("new" if point in COMMITTED else "old"), point
    if state == "old":  # the same update again succeeds and cleans up
        apply_patch(bundle, patch)
    else:  # the update took; roll back and forward once more
        rollback(bundle)
        assert _state(bundle, old, new) == "old"
        apply_patch(bundle, patch)
    assert _state(bundle, old, new) == "new"
    _clean(bundle)


def test_kill_at_random_moments(w, tmp_path):
    old, new, _ = _refs(w)
    # how long the apply itself takes here (after the imports)
    probe = tmp_path / "probe"
    shutil.copytree(w.base, probe)
    proc = _start(probe, w.p3)
    t0 = time.perf_counter()
    proc.wait(timeout=120)
    duration = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr.read()
    rng = np.random.default_rng(0)
    seen = set()
    for i in range(6):
        bundle = tmp_path / f"b{i}"
        shutil.copytree(w.base, bundle)
        proc = _start(bundle, w.p3)
        time.sleep(float(rng.uniform(0.0, 1.1 * duration)))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        state = _state(bundle, old, new)
        seen.add(state)
        if state == "old":
            apply_patch(bundle, w.p3)
        else:
            rollback(bundle)
            apply_patch(bundle, w.p3)
        assert _state(bundle, old, new) == "new"
        _clean(bundle)
    print("random kills hit:", sorted(seen))
    assert seen  # (which states a random kill hits depends on the machine's speed)
