"""`import mind_edge.devices` must not pull in torch (a Jetson install has no PyTorch)."""

from __future__ import annotations

import subprocess
import sys


def test_devices_import_is_torch_free():
    code = (
        "import sys\n"
        "import mind_edge.devices, mind_edge.devices.profiles, mind_edge.devices.tegrastats, mind_edge.cli.devices\n"
        "mind_edge.devices.list_profiles()\n"
        "bad = sorted(m for m in ('torch', 'torchvision', 'onnx', 'onnxruntime', 'tensorrt') if m in sys.modules)\n"
        "print(','.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"heavy modules imported: {proc.stdout.strip()} {proc.stderr[-2000:]}"
