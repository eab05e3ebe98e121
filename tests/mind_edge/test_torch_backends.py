"""PyTorch baselines of the benchmark compute the model the ONNX graph computes."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from mind_edge.runtime import bench
from mind_edge.runtime.graph import build_graph, random_arrays
from mind_edge.torch_backends import ReferenceRunner, TorchRunner, open_backend

CLASSES = [[4, 1, 7], [0, 9], [3, 5, 8, 2]]  # class counts 3/2/4 (padded heads)
T = 1.7


@pytest.fixture(scope="module", params=[("resnet32", (11, 9)), ("resnet18", (12, 10))], ids=["resnet32", "resnet18"])
def case(request, tmp_path_factory):
    arch, size = request.param
    net = {
        "arch": arch,
        "in_channels": 3,
        "input_size": list(size),
        "width": 0.25 if arch == "resnet32" else 0.0625,
        "capacity": 3,
    }
    arrays = random_arrays(net, CLASSES, seed=5)
    path = tmp_path_factory.mktemp("tb") / "shared.onnx"
    path.write_bytes(build_graph(arrays, layout="shared", temperature=T).SerializeToString())
    x = np.random.default_rng(1).standard_normal((6, 3, *size)).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    want = dict(zip(names, sess.run(names, {"image": x})))
    return arrays, path, x, want


@pytest.mark.parametrize(
    "make",
    [
        lambda a: TorchRunner(a, temperature=T, threads=1),
        lambda a: TorchRunner(a, temperature=T, threads=1, mode="loop"),
        lambda a: TorchRunner(a, temperature=T, threads=1, mode="stacked"),
        lambda a: TorchRunner(a, temperature=T, threads=1, mode="loop", channels_last=False),
        lambda a: TorchRunner(a, temperature=T, threads=1, mode="stacked", channels_last=True),
        lambda a: ReferenceRunner(a, temperature=T, threads=1),
    ],
    ids=["torch-auto", "torch-loop", "torch-stacked", "torch-loop-nchw", "torch-stacked-cl", "reference"],
)
def test_baselines_agree_with_the_graph(case, make):
    arrays, _, x, want = case
    with make(arrays) as runner:
        got = runner.infer({"image": x})
        assert runner.model_bytes > 0
    assert set(got) == set(want)
    np.testing.assert_array_equal(got["label"], want["label"])
    np.testing.assert_array_equal(got["task"], want["task"])
    assert got["label"].dtype == np.int64 and got["task_logits"].shape == want["task_logits"].shape
    np.testing.assert_allclose(got["task_logits"], want["task_logits"], atol=1e-3, rtol=1e-4)
    np.testing.assert_allclose(got["task_confidence"], want["task_confidence"], atol=1e-4)


def test_open_backend_reports_start_size_and_variant(case):
    _, path, x, want = case
    for name, variant in (
        ("torch", "auto: fastest of loop/stacked per batch"),
        ("torch-loop", "loop, channels_last"),
        ("torch-stacked", "stacked"),
        ("reference", "masks+BN per batch"),
    ):
        opened = open_backend(name, path, temperature=T, threads=1)
        try:
            assert isinstance(opened, bench.Opened) and opened.start_s > 0 and opened.model_bytes > 0
            assert opened.variant == variant and opened.precision == "fp32"
            np.testing.assert_array_equal(opened.runner.infer({"image": x})["label"], want["label"])
        finally:
            opened.runner.deactivate()
    # the folded per-task weights of `torch` are N x the dense weights; the reference keeps one copy + owners
    assert (
        open_backend("torch-loop", path, temperature=T).model_bytes
        > open_backend("reference", path, temperature=T).model_bytes
    )


def test_auto_mode_tunes_once_per_batch_size(case):
    arrays, _, x, want = case
    with TorchRunner(arrays, temperature=T, threads=1) as runner:
        assert runner.variant_for(6) == "auto: fastest of loop/stacked per batch"
        for _ in range(2):
            np.testing.assert_array_equal(runner.infer({"image": x})["label"], want["label"])
        runner.infer({"image": x[:1]})
        assert set(runner.choice) == {6, 1} and set(runner.choice.values()) <= {"loop", "stacked"}
        assert runner.variant_for(6).startswith("auto → ")


def test_unknown_mode_and_backend():
    from mind_edge.errors import ConfigError, MindEdgeError

    arrays = random_arrays(
        {"arch": "resnet32", "in_channels": 1, "input_size": [4, 4], "width": 0.125, "capacity": 1}, [[0]]
    )
    with pytest.raises(ConfigError):
        TorchRunner(arrays, temperature=1.0, mode="compiled")
    with pytest.raises(MindEdgeError):
        open_backend("jit", "nowhere.onnx", temperature=1.0)


def test_bench_worker_opens_the_baselines_through_the_registry_plugin(case, tmp_path):
    """The runtime declares the torch backends; a worker job lists their plugin, which registers the openers."""
    from mind_edge.runtime.backends import TORCH_PLUGIN, ModelSource, get_backend, plugins_for

    assert plugins_for(["ort", "torch", "reference"]) == [TORCH_PLUGIN]
    assert get_backend("torch").open is not None  # this module imported mind_edge.torch_backends
    arrays, path, _, _ = case
    src = ModelSource(
        num_tasks=arrays.num_tasks,
        onnx=str(path),
        layout="shared",
        variant="shared",
        input_shape=(3, *arrays.net["input_size"]),
        temperature=T,
        arrays_onnx=str(path),
    )
    job = {
        "backend": "torch-loop",
        "source": src.to_json(),
        "batches": [2],
        "threads": 1,
        "plugins": [TORCH_PLUGIN],
        "timing": {"warmup_seconds": 0.0, "min_iters": 2, "min_seconds": 0.0},
    }
    res = bench.run_worker(job)
    assert res["status"] == "ok" and res["variant"] == "loop, channels_last" and len(res["rows"]) == 1
    folded = bench.run_worker({**job, "source": {**job["source"], "arrays_onnx": None}})
    assert folded["status"] == "unavailable" and "shared-layout" in folded["reason"]


@pytest.mark.parametrize("make", [TorchRunner, ReferenceRunner], ids=["torch", "reference"])
def test_a_baseline_gives_torch_its_thread_count_back(case, make):
    import torch

    arrays, _, x, _ = case
    before = torch.get_num_threads()
    other = 2 if before == 1 else 1
    try:
        with make(arrays, temperature=T, threads=other) as runner:
            runner.infer({"image": x})
            assert torch.get_num_threads() == other
        assert torch.get_num_threads() == before  # a bench in this process leaves torch as it found it
    finally:
        torch.set_num_threads(before)
