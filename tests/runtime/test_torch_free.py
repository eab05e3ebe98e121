"""The runtime room works without PyTorch: proven in fresh interpreters."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from cli_helpers import BLOCK_TORCH


def _run(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_and_full_predict_leave_torch_out(rgb_bundle, rgb_images):
    paths, _ = rgb_images
    code = f"""
    import json, sys
    import numpy as np
    import mind_edge.runtime
    after_import = "torch" in sys.modules
    from mind_edge.runtime import Bundle, Runtime, route_numpy
    rt = Runtime(Bundle.load({str(rgb_bundle)!r}))
    p = rt.predict({[str(p) for p in paths]!r})
    q = rt.predict(np.zeros((2, 13, 9, 3), np.uint8), temperature=3.0)
    route_numpy(q.task_logits, rt.bundle.class_table(), 2.0)
    print(json.dumps({{"after_import": after_import, "after_predict": "torch" in sys.modules,
                      "n": len(p), "labels": p.label.tolist()}}))
    """
    out = _run(code)
    assert out == {**out, "after_import": False, "after_predict": False, "n": 4}


def test_predict_cli_and_graph_builder_work_with_torch_blocked(rgb_bundle, rgb_images, tmp_path):
    paths, _ = rgb_images
    code = (
        BLOCK_TORCH
        + f"""
import json
import typer
from typer.testing import CliRunner
from mind_edge.cli import app
from mind_edge.runtime.graph import random_arrays, build_graph, read_arrays
from mind_edge.runtime.bundle import assemble_bundle

r = CliRunner().invoke(app, ["predict", {str(rgb_bundle)!r}, {str(paths[0])!r}, "--json"])
net = {{"arch": "resnet18", "in_channels": 1, "input_size": [9, 9], "width": 0.0625, "capacity": 2}}
arrays = random_arrays(net, [[0], [1, 2]])
same = read_arrays(build_graph(arrays, layout="shared", temperature=1.0)).same_as(arrays)
b = assemble_bundle({str(tmp_path / "b")!r}, arrays, layout="folded", temperature=1.0, class_names=["a", "b", "c"],
                    mean=[0.5], std=[0.5])
print(json.dumps({{"exit": r.exit_code, "predictions": len(json.loads(r.stdout)["predictions"]), "round_trip": same}}))
"""
    )
    assert _run(code) == {"exit": 0, "predictions": 1, "round_trip": True}


def test_device_side_commands_run_with_torch_blocked(bundle_copy, rgb_images, tmp_path):
    """The CLI's device-side commands (predict, bench, patch, keygen, engine, devices, deploy) import
    and run in an interpreter where any `import torch` fails, and leave torch out of sys.modules."""
    paths, _ = rgb_images
    b = str(bundle_copy)
    commands = [
        ["predict", b, str(paths[0]), "--json"],
        [
            "bench",
            b,
            "--backend",
            "ort",
            "--batch",
            "1",
            "--min-iters",
            "2",
            "--min-seconds",
            "0.01",
            "--warmup-seconds",
            "0",
            "--no-gemm",
            "--no-isolate",
        ],
        ["keygen", str(tmp_path / "k")],
        ["patch", "trust", b, str(tmp_path / "k.pub"), "--json"],
        ["patch", "inspect", b, "--json"],
        ["engine", "list", b, "--json"],
        ["devices", "list", "--json"],
        ["devices", "detect", "--json"],
        ["deploy", "--help"],
    ]
    code = (
        BLOCK_TORCH
        + f"""
import json
from typer.testing import CliRunner
from mind_edge.cli import app
runs = [(c[:2], CliRunner().invoke(app, c)) for c in {commands!r}]
print(json.dumps({{"failed": [[c, r.exit_code, r.output[-300:]] for c, r in runs if r.exit_code != 0],
                  "torch": "torch" in sys.modules}}))
"""
    )
    assert _run(code) == {"failed": [], "torch": False}
