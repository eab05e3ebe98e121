"""The native TensorRT runner.

* Everywhere: the runner's I/O handling (tensor API calls, device buffers sized for the profile,
  batches split above the profile's max and zero-padded below its min, int32 -> int64 outputs,
  buffers freed on deactivate) against a fake TensorRT whose "engine" runs the plan's ONNX graph
  with ONNX Runtime on the fake device memory (tests/trt_fakes.py). Results must equal ONNX
  Runtime's exactly.
* ``needs_tensorrt``: the real thing on a GPU (skipped where tensorrt or a GPU is missing).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from trt_fakes import FAKE_GPU, fake_stack, make_plan

from mind_edge.runtime.backends import make_runner
from mind_edge.runtime.bundle import Bundle
from mind_edge.runtime.engine_fingerprint import (
    EngineError,
    EngineFingerprint,
    EngineMismatchError,
    EngineRecord,
    add_record,
)
from mind_edge.runtime.errors import BackendError
from mind_edge.runtime.graph import CONTRACT
from mind_edge.runtime.predict import Runtime
from mind_edge.runtime.runners import OrtRunner
from mind_edge.runtime.trt_runner import CtypesCudartApi, TrtRunner


def install_fake_engine(
    bundle_dir,
    *,
    version="10.3.0",
    profile=((1, 3, 13, 9), (4, 3, 13, 9), (8, 3, 13, 9)),
    precision="fp32",
    plan: bytes | None = None,
) -> EngineRecord:
    b = Bundle.load(bundle_dir)
    data = plan if plan is not None else make_plan(b.model_path.read_bytes(), version=version, profile=profile)
    fp = EngineFingerprint(
        version,
        FAKE_GPU.name,
        FAKE_GPU.compute_capability,
        precision,
        "weak",
        None,
        256,
        b.model_sha256,
        profile[0][0],
        profile[1][0],
        profile[2][0],
    )
    (b.path / fp.plan_name).write_bytes(data)
    rec = EngineRecord(fp.plan_name, hashlib.sha256(data).hexdigest(), len(data), fp, "2026-01-01T00:00:00+00:00", {})
    add_record(b.path, rec)
    return rec


def ort_outputs(bundle_dir, x):
    with OrtRunner(Bundle.load(bundle_dir).model_path, providers=["cpu"]) as r:
        return r.infer({"image": x})


def batch(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, 13, 9)).astype(np.float32)


def test_runner_matches_onnxruntime_and_splits_large_batches(bundle_copy):
    rec = install_fake_engine(bundle_copy)
    trt, cuda = fake_stack("10.3.0")
    x = batch(19)
    runner = TrtRunner(bundle_copy, trt=trt, cuda=cuda, gpu=FAKE_GPU)
    assert runner.name == "trt" and not runner.is_active
    with runner:
        assert (runner.min_batch, runner.max_batch) == (1, 8)
        # one device buffer per I/O tensor, sized for the profile's max batch
        assert (
            len(cuda.memory) == 1 + len(CONTRACT.outputs)
            and cuda.memory[runner.buffers["image"]].__len__() == 8 * 3 * 13 * 9 * 4
        )
        out = runner.infer({"image": x})
        assert runner.context.batches == [8, 8, 3]  # 19 = 8 + 8 + 3 (profile max 8)
        assert runner.providers_used == [f"TensorRT 10.3.0 (fp32, {rec.file}, fake-cuda)"]
    ref = ort_outputs(bundle_copy, x)
    assert list(out) == list(ref)
    for k in ref:
        assert out[k].dtype == ref[k].dtype and out[k].shape == ref[k].shape  # int32 from the engine -> int64
        np.testing.assert_array_equal(out[k], ref[k])
    assert cuda.memory == {} and cuda.streams == set()  # everything freed on deactivate
    assert not runner.is_active


def test_static_batch_engine_pads_small_batches(bundle_copy):
    install_fake_engine(bundle_copy, profile=((4, 3, 13, 9), (4, 3, 13, 9), (4, 3, 13, 9)))  # a DLA-style static batch
    trt, cuda = fake_stack("10.3.0")
    x = batch(6, seed=1)
    with TrtRunner(bundle_copy, trt=trt, cuda=cuda, gpu=FAKE_GPU) as runner:
        out = runner.infer({"image": x})
        one = runner.infer({"image": x[:1]})
        assert runner.context.batches == [4, 4, 4]  # 6 -> 4 + (2 padded to 4); 1 -> padded to 4
    ref = ort_outputs(bundle_copy, x)
    for k in ref:
        np.testing.assert_array_equal(out[k], ref[k])
        np.testing.assert_array_equal(one[k], ref[k][:1])


def test_runtime_predict_with_trt_backend(bundle_copy, rgb_images):
    install_fake_engine(bundle_copy)
    trt, cuda = fake_stack("10.3.0")
    paths, _ = rgb_images
    with Runtime(bundle_copy, runner=TrtRunner(bundle_copy, trt=trt, cuda=cuda, gpu=FAKE_GPU)) as rt:
        pred = rt.predict([str(p) for p in paths], temperature=3.0)
        assert rt.providers_used[0].startswith("TensorRT 10.3.0")
    with Runtime(bundle_copy) as rt:
        ref = rt.predict([str(p) for p in paths], temperature=3.0)
    np.testing.assert_array_equal(pred.label, ref.label)
    assert pred.class_names == ref.class_names and pred.temperature == 3.0


def test_make_runner_trt(bundle_copy):
    b = Bundle.load(bundle_copy)
    r = make_runner("trt", b.model_path, precision="fp16", dla_core=None)
    assert isinstance(r, TrtRunner) and r.bundle_dir == b.path and r.precision == "fp16" and r.dla_core is None
    assert make_runner("ort", b.model_path, precision="fp16").trt_fp16


def test_refusals(bundle_copy):
    install_fake_engine(bundle_copy, version="10.3.0")
    trt, cuda = fake_stack("10.4.0")  # TensorRT was upgraded on this machine
    with pytest.raises(EngineMismatchError, match="'10.3.0' vs '10.4.0' here"):
        TrtRunner(bundle_copy, trt=trt, cuda=cuda, gpu=FAKE_GPU).activate()
    assert cuda.memory == {}
    # a plan whose fingerprint fits but that TensorRT cannot deserialize
    install_fake_engine(bundle_copy, plan=b"garbage")
    trt, cuda = fake_stack("10.3.0")
    with pytest.raises(EngineError, match="could not deserialize.*--force"):
        TrtRunner(bundle_copy, trt=trt, cuda=cuda, gpu=FAKE_GPU).activate()


def test_wrong_input_shape(bundle_copy):
    install_fake_engine(bundle_copy)
    trt, cuda = fake_stack("10.3.0")
    with TrtRunner(bundle_copy, trt=trt, cuda=cuda, gpu=FAKE_GPU) as runner:
        with pytest.raises(BackendError, match=r"takes \[B, 3, 13, 9\] inputs, got \[2, 3, 9, 13\]"):
            runner.infer({"image": np.zeros((2, 3, 9, 13), np.float32)})
        with pytest.raises(BackendError, match="engine's input is 'image'"):
            runner.infer({"x": np.zeros((2, 3, 13, 9), np.float32)})


def test_ctypes_cuda_fallback_reports_a_missing_libcudart(monkeypatch):
    import ctypes

    def no_lib(name, *a, **k):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_lib)
    with pytest.raises(BackendError, match="neither cuda-python.*nor libcudart"):
        CtypesCudartApi()


# ----------------------------------------------------------------------------- real TensorRT (GPU machines)


@pytest.mark.needs_tensorrt
@pytest.mark.parametrize("fp16", [False, True])
def test_real_tensorrt_engine_matches_onnxruntime(bundle_copy, fp16):
    from mind_edge.export.engine import EngineBuildOptions, build_engine

    res = build_engine(bundle_copy, EngineBuildOptions(fp16=fp16, opt_batch=4, max_batch=8, workspace_mb=256))
    x = batch(11, seed=4)
    with TrtRunner(bundle_copy, precision="fp16" if fp16 else "fp32") as runner:
        out = runner.infer({"image": x})
        assert runner.record.file == res.record.file
    ref = ort_outputs(bundle_copy, x)
    tol = 5e-2 if fp16 else 1e-3
    np.testing.assert_allclose(out["task_logits"], ref["task_logits"], atol=tol, rtol=tol)
    agree = float(np.mean(out["label"] == ref["label"]))
    assert agree >= (0.9 if fp16 else 1.0), agree
