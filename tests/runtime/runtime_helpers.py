"""Helpers of the runtime tests: torch-free bundles built from random network arrays.

Nothing here imports torch: the bundles come from ``mind_edge.runtime.graph.random_arrays``
and ``assemble_bundle``, as on a device without PyTorch.
"""

from __future__ import annotations

from pathlib import Path

from mind_edge.runtime.bundle import assemble_bundle
from mind_edge.runtime.graph import random_arrays

CLASSES = [[4, 1, 7], [0, 9], [3, 5, 8]]  # 3 tasks, class counts 3/2/3, 2 and 6 unused
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
T = 1.5


def make_bundle(out: Path, *, channels: int = 3, size=(13, 9), layout: str = "shared", seed: int = 2) -> Path:
    net = {"arch": "resnet32", "in_channels": channels, "input_size": list(size), "width": 0.25, "capacity": 4}
    arrays = random_arrays(net, CLASSES, seed=seed)
    return assemble_bundle(
        out,
        arrays,
        layout=layout,
        temperature=T,
        class_names=NAMES,
        mean=[0.5] * channels,
        std=[0.25] * channels,
        source={"note": "random test network"},
    )


def predict_app():
    """The ``mind-edge`` app, for CliRunner tests of ``predict``."""
    from mind_edge.cli import app

    return app


def run_cli(app, *args):
    """Invoke ``app`` through typer's CliRunner with every argument as a string."""
    from typer.testing import CliRunner

    return CliRunner().invoke(app, [str(a) for a in args])
