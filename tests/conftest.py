"""Shared pytest setup for every room.

* Every test starts and ends with the same global RNG state (``random``, ``numpy.random``,
  torch CPU and, when CUDA is already initialised, torch CUDA): a test that seeds or consumes a
  global generator cannot change what the next test sees.
* Tests marked ``needs_cuda`` / ``needs_tensorrt`` are skipped automatically where the hardware
  or package is missing (the markers are declared in pyproject.toml).

torch is optional here: on a device install without PyTorch the runtime tests still run.
"""

from __future__ import annotations

import importlib.util
import os
import random

import numpy as np
import pytest

try:  # optional: the runtime room runs without torch
    import torch
except ImportError:  # pragma: no cover - depends on the install
    torch = None  # type: ignore[assignment]


def _has_cuda() -> bool:
    if torch is not None:
        try:
            return bool(torch.cuda.is_available())
        except Exception:  # noqa: BLE001  # pragma: no cover - a broken driver install may raise anything
            return False
    # Without torch: an NVIDIA device node (desktop GPUs or Jetson's integrated GPU).
    return any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvhost-ctrl-gpu"))


def _has_tensorrt() -> bool:
    return importlib.util.find_spec("tensorrt") is not None and _has_cuda()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cuda = tensorrt = None
    for item in items:
        if "needs_cuda" in item.keywords:
            if cuda is None:
                cuda = _has_cuda()
            if not cuda:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device (none available)"))
        if "needs_tensorrt" in item.keywords:
            if tensorrt is None:
                tensorrt = _has_tensorrt()
            if not tensorrt:
                item.add_marker(pytest.mark.skip(reason="needs the tensorrt package and a GPU"))


@pytest.fixture(autouse=True)
def _restore_rng_state():
    """Save the global RNG states before each test and restore them afterwards."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.get_rng_state() if torch is not None else None
    cuda_state = None
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda_state = torch.cuda.get_rng_state_all()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        if torch is not None:
            torch.set_rng_state(torch_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state_all(cuda_state)


@pytest.fixture(scope="module")
def bench_app():
    """The ``mind-edge`` app, for CliRunner tests of ``bench``."""
    from mind_edge.cli import app

    return app


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks: one intra-op thread is fastest and immune to other jobs on a shared CPU
    (for a whole module: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
