"""The package and its CLI import nothing heavy (a device without PyTorch can run them)."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["mind_edge", "mind_edge.cli", "mind_edge.imageio", "mind_edge.metrics"])
def test_import_leaves_torch_out(module):
    code = (
        f"import sys, {module}; heavy = [m for m in ('torch', 'torchvision', 'onnxruntime') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"import {module} pulled in {proc.stdout.strip()} {proc.stderr[-500:]}"
