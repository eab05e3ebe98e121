"""Property-based fuzzing (hypothesis) of the readers of files mind-edge is handed (issue 11).

Random mutations of valid files — byte flips, cuts and insertions in a patch; random JSON values
put at random places of a patch header (re-framed with a valid digest, as an attacker can), of
``bundle.json`` and of ``run.json`` — never produce anything but a valid result or the one typed
error (:class:`MindEdgeError`, one line); never another exception, never a hang.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="pip install 'mind-edge[dev]' (hypothesis)")
from hardening_helpers import frame_patch, split_patch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from patch_helpers import world

from mind_edge.errors import MindEdgeError
from mind_edge.runtime.patch import apply_to_arrays, parse_patch

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["../x", "/etc/passwd", "[/bold]", "\x1b[2J", "a\nb"]),
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
)


class _Quiet:
    """The test world without its arrays in hypothesis' failure reports."""

    def __init__(self, inner):
        self.__dict__.update(inner.__dict__)

    def __repr__(self) -> str:
        return "<patch test world>"


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    return _Quiet(world(tmp_path_factory.mktemp("fuzz")))


def _paths(obj, prefix=()):
    """Every (path, value) inside a JSON document."""
    yield prefix, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _mutate(doc, data) -> object:
    """``doc`` with one random place replaced by a random JSON value (or deleted, or a key added)."""
    doc = json.loads(json.dumps(doc))
    paths = [p for p, _ in _paths(doc) if p]
    path = data.draw(st.sampled_from(paths))
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    action = data.draw(st.sampled_from(["replace", "replace", "delete", "add"]))
    if action == "delete":
        del parent[path[-1]]
    elif action == "add" and isinstance(parent, dict):
        parent[data.draw(st.text(max_size=8))] = data.draw(JSON)
    else:
        parent[path[-1]] = data.draw(JSON)
    return doc


def _only_typed_errors(fn):
    try:
        return fn()
    except MindEdgeError:
        return None


@FUZZ
@given(data=st.data())
def test_patch_reader_on_mutated_bytes(w, data):
    raw = bytearray(w.p3_signed.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "cut", "insert", "zero"]))
        i = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if kind == "flip" and raw:
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "cut":
            del raw[i : i + data.draw(st.integers(1, 64))]
        elif kind == "insert":
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=16))
        elif raw:
            raw[i : i + 8] = bytes(len(raw[i : i + 8]))
    _only_typed_errors(lambda: parse_patch(bytes(raw)))


@FUZZ
@given(data=st.data())
def test_patch_header_mutations_with_a_valid_digest(w, data):
    header, body = split_patch(w.p3.read_bytes())
    bad = _mutate(header, data)
    patched = _only_typed_errors(lambda: parse_patch(frame_patch(bad, body)))
    if patched is not None:  # the reader accepted it: applying it to the base is a result or a typed error too
        base = w.full.first_tasks(3)
        _only_typed_errors(lambda: apply_to_arrays(base, patched))


@FUZZ
@given(data=st.data())
def test_patch_payload_mutations(w, data):
    header, body = split_patch(w.p3.read_bytes())
    raw = bytearray(body)
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i : i + data.draw(st.integers(1, 32))] = data.draw(st.binary(max_size=32))
    patched = _only_typed_errors(lambda: parse_patch(frame_patch(header, bytes(raw))))
    if patched is not None:
        _only_typed_errors(lambda: apply_to_arrays(w.full.first_tasks(3), patched))


@pytest.fixture(scope="module")
def bundle_template(w):
    return w.base


@FUZZ
@given(data=st.data())
def test_bundle_json_mutations(bundle_template, data):
    from mind_edge.runtime.bundle import Bundle

    meta = json.loads((bundle_template / "bundle.json").read_text())
    bad = _mutate(meta, data)
    with tempfile.TemporaryDirectory() as tmp:
        b = Path(tmp) / "b"
        shutil.copytree(bundle_template, b)
        (b / "bundle.json").write_text(json.dumps(bad))
        loaded = _only_typed_errors(lambda: Bundle.load(b))
        if loaded is not None:  # what the CLI and the runtime read from it is well-typed
            assert loaded.temperature > 0 and loaded.num_tasks >= 1 and loaded.cmax >= 1
            loaded.class_table()
            [loaded.class_name(c) for cl in loaded.task_classes for c in cl]
            assert all(isinstance(n, str) for n in loaded.output_names)
            json.dumps({"t": loaded.temperature}, allow_nan=False)


@pytest.fixture(scope="module")
def run_template():
    meta = {
        "format": "mind-edge",
        "schema_version": 1,
        "net": {"arch": "resnet32", "in_channels": 1, "input_size": [8, 8], "width": 0.25, "capacity": 5},
        "scenario": {
            "dataset": "digits",
            "order": "seed",
            "seed": 0,
            "tasks": [[0, 1], [2, 3]],
            "class_names": ["a", "b", "c", "d"],
        },
        "data": {
            "dataset": "digits",
            "in_channels": 1,
            "input_size": [8, 8],
            "mean": [0.5],
            "std": [0.25],
            "root": None,
        },
        "train": {
            "method": "self",
            "epochs": 1,
            "distill_epochs": 1,
            "temperature": 1.0,
            "routing": "maxprob",
            "milestones": [],
            "batch_size": 8,
        },
        "seed": 0,
        "learned_tasks": [[0, 1], [2, 3]],
        "steps": [{"step": 1, "tag_matrix": [[0.5, None], [0.4, 0.6]], "taw_matrix": [[0.9, None], [0.8, 0.9]]}],
        "final": {"tag": 0.5, "taw": 0.85, "routing": 0.5},
        "checkpoint_sha256": "0" * 64,
    }
    return meta


@FUZZ
@given(data=st.data())
def test_run_json_mutations_reach_info_as_a_result_or_one_line(run_template, data):
    """read_run_json accepts or refuses; whatever it accepts, 'mind-edge info' renders without a traceback."""
    from typer.testing import CliRunner

    from mind_edge.checkpoint import read_run_json
    from mind_edge.cli import app

    bad = _mutate(run_template, data)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        (run / "run.json").write_text(json.dumps(bad))
        (run / "checkpoint.safetensors").write_bytes(b"x")
        meta = _only_typed_errors(lambda: read_run_json(run))
        r = CliRunner().invoke(app, ["info", str(run)])
        assert r.exit_code in (0, 2), r.output
        assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
        if meta is None:
            assert r.exit_code == 2 and len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1, r.stderr
