"""Engine fingerprints, engine.json and the TensorRT version logic: run everywhere (no TensorRT, no GPU).

The TensorRT module is a fake object handed to the functions under test (tests/trt_fakes.py).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import replace

import pytest
from trt_fakes import FAKE_GPU, fake_tensorrt

from mind_edge.runtime.bundle import Bundle
from mind_edge.runtime.engine_fingerprint import (
    ENGINE_FORMAT,
    ENGINE_JSON,
    ENGINE_SCHEMA,
    EngineError,
    EngineFingerprint,
    EngineMismatchError,
    EngineRecord,
    GpuInfo,
    MachineInfo,
    NoEngineError,
    add_record,
    choose_typing,
    machine_info,
    parse_trt_version,
    read_index,
    select_engine,
)
from mind_edge.runtime.predict import Runtime
from mind_edge.runtime.runners import ORT_TRT_CACHE, OrtRunner, provider_options

ORIN = MachineInfo("10.3.0", "Orin (nvgpu)", "8.7")


def fingerprint(**kw) -> EngineFingerprint:
    base = dict(
        tensorrt_version="10.3.0",
        gpu_name="Orin (nvgpu)",
        compute_capability="8.7",
        precision="fp16",
        typing="weak",
        dla_core=None,
        workspace_mb=256,
        model_sha256="ab" * 32,
        min_batch=1,
        opt_batch=8,
        max_batch=32,
    )
    base.update(kw)
    return EngineFingerprint(**base)


def record_in(folder, fp: EngineFingerprint, data: bytes = b"plan-bytes", created: str = "2026-01-01T00:00:00+00:00"):
    import hashlib

    (folder / fp.plan_name).write_bytes(data)
    rec = EngineRecord(fp.plan_name, hashlib.sha256(data).hexdigest(), len(data), fp, created, {"note": "test"})
    add_record(folder, rec)
    return rec


# ----------------------------------------------------------------------------- versions


def test_parse_trt_version():
    assert parse_trt_version("10.3.0") == (10, 3, 0)
    assert parse_trt_version("10.3.0.30") == (10, 3, 0)
    assert parse_trt_version("11.1") == (11, 1, 0)
    assert parse_trt_version("11.0.0.dev2") == (11, 0, 0)
    with pytest.raises(EngineError, match="cannot read the TensorRT version"):
        parse_trt_version("ten")


def test_choose_typing_by_version():
    # TensorRT 10: builder flags (weak typing) unless a strongly typed network is asked for
    assert choose_typing("10.3.0", fp16=True) == "weak"
    assert choose_typing("10.3.0", fp16=False) == "weak"
    assert choose_typing("10.7.0", fp16=True, strongly_typed=True) == "strong"
    # TensorRT 11 removed weak typing: always strong, precision from the graph
    assert choose_typing("11.0.0", fp16=True) == "strong"
    assert choose_typing("11.2.1.4", fp16=False) == "strong"
    with pytest.raises(EngineError, match="strongly typed networks only"):
        choose_typing("11.0.0", fp16=True, strongly_typed=False)
    with pytest.raises(EngineError, match="TensorRT 8.6.1 is too old.*JetPack 6 ships TensorRT 10.3"):
        choose_typing("8.6.1", fp16=True)


def test_machine_info_from_injected_module_and_gpu():
    trt = fake_tensorrt("10.3.0.30")
    m = machine_info(trt, FAKE_GPU)
    assert m == MachineInfo("10.3.0.30", FAKE_GPU.name, "8.7")
    assert machine_info(trt, lambda: GpuInfo("X", "9.0")).gpu_name == "X"
    assert m.describe() == "TensorRT 10.3.0.30 on 'Fake Orin (nvgpu)' (compute capability 8.7)"
    nover = fake_tensorrt("10.3.0")
    nover.__version__ = ""
    with pytest.raises(EngineError, match="no __version__"):
        machine_info(nover, FAKE_GPU)


# ----------------------------------------------------------------------------- fingerprint


def test_fingerprint_key_covers_every_field():
    fp = fingerprint()
    assert fp.plan_name == f"engine-{fp.key()}.plan" and len(fp.key()) == 16
    assert fingerprint().key() == fp.key()  # deterministic
    changes = dict(
        tensorrt_version="10.4.0",
        gpu_name="AGX",
        compute_capability="8.6",
        precision="fp32",
        typing="strong",
        dla_core=0,
        workspace_mb=512,
        model_sha256="cd" * 32,
        min_batch=2,
        opt_batch=9,
        max_batch=33,
    )
    keys = {replace(fp, **{k: v}).key() for k, v in changes.items()}
    assert len(keys) == len(changes) and fp.key() not in keys
    assert EngineFingerprint.from_json(json.loads(json.dumps(fp.to_json()))) == fp


def test_fingerprint_validation():
    assert fingerprint(precision="int8").precision == "int8"  # an INT8 bundle's QDQ engine (issue 14)
    with pytest.raises(EngineError, match="unknown engine precision 'bf16'"):
        fingerprint(precision="bf16")
    with pytest.raises(EngineError, match="1 <= min <= opt <= max"):
        fingerprint(min_batch=4, opt_batch=2)
    with pytest.raises(EngineError, match="lacks \\['gpu_name'\\]"):
        EngineFingerprint.from_json({k: v for k, v in fingerprint().to_json().items() if k != "gpu_name"})


# ----------------------------------------------------------------------------- engine.json


def test_engine_json_schema(tmp_path):
    fp = fingerprint()
    rec = record_in(tmp_path, fp)
    data = json.loads((tmp_path / ENGINE_JSON).read_text())
    assert data["format"] == ENGINE_FORMAT and data["schema_version"] == ENGINE_SCHEMA
    (entry,) = data["engines"]
    assert set(entry) == {"file", "sha256", "bytes", "fingerprint", "created", "info"}
    assert set(entry["fingerprint"]) == {
        "tensorrt_version",
        "gpu_name",
        "compute_capability",
        "precision",
        "typing",
        "dla_core",
        "workspace_mb",
        "model_sha256",
        "min_batch",
        "opt_batch",
        "max_batch",
    }
    assert entry["file"] == fp.plan_name and entry["bytes"] == len(b"plan-bytes")
    assert read_index(tmp_path) == [rec]
    # a second engine is added, the same file is replaced, and entries whose plan is gone are dropped
    fp32 = replace(fp, precision="fp32")
    record_in(tmp_path, fp32)
    record_in(tmp_path, fp, data=b"rebuilt")
    assert [r.file for r in read_index(tmp_path)] == [fp32.plan_name, fp.plan_name]
    (tmp_path / fp32.plan_name).unlink()
    record_in(tmp_path, replace(fp, workspace_mb=128))
    assert fp32.plan_name not in [r.file for r in read_index(tmp_path)]


def test_engine_json_errors(tmp_path):
    assert read_index(tmp_path) == []
    (tmp_path / ENGINE_JSON).write_text("{nope")
    with pytest.raises(EngineError, match="not readable JSON"):
        read_index(tmp_path)
    (tmp_path / ENGINE_JSON).write_text(json.dumps({"format": "other"}))
    with pytest.raises(EngineError, match="not a mind-edge engine index"):
        read_index(tmp_path)
    (tmp_path / ENGINE_JSON).write_text(json.dumps({"format": ENGINE_FORMAT, "schema_version": 99, "engines": []}))
    with pytest.raises(EngineError, match="schema 99.*reads schema 1"):
        read_index(tmp_path)
    fp = fingerprint()
    entry = {"file": "engine-0000000000000000.plan", "sha256": "00", "bytes": 1, "fingerprint": fp.to_json()}
    (tmp_path / ENGINE_JSON).write_text(json.dumps({"format": ENGINE_FORMAT, "schema_version": 1, "engines": [entry]}))
    with pytest.raises(EngineError, match="does not match its fingerprint key"):
        read_index(tmp_path)


# ----------------------------------------------------------------------------- selection / refusal


def test_select_engine_refuses_another_machine_naming_both(tmp_path):
    with pytest.raises(NoEngineError, match="has no TensorRT engine.*mind-edge engine build"):
        select_engine(tmp_path, ORIN, "ab" * 32)
    fp = fingerprint()
    rec = record_in(tmp_path, fp)
    assert select_engine(tmp_path, ORIN, "ab" * 32) == rec
    here = MachineInfo("10.4.0", "NVIDIA H200", "9.0")
    with pytest.raises(EngineMismatchError) as err:
        select_engine(tmp_path, here, "ab" * 32)
    msg = str(err.value)
    for part in (
        "TensorRT 10.4.0 on 'NVIDIA H200' (compute capability 9.0)",  # this machine
        "for TensorRT 10.3.0 on 'Orin (nvgpu)' (compute capability 8.7)",  # the engine's
        "tensorrt version '10.3.0' vs '10.4.0' here",
        "gpu name 'Orin (nvgpu)' vs 'NVIDIA H200' here",
        "compute capability '8.7' vs '9.0' here",
        "not portable",
        f"mind-edge engine build {tmp_path}",
    ):
        assert part in msg
    # same machine, other model (the bundle was patched): refused too
    with pytest.raises(EngineMismatchError, match="model sha256 ababababab.*the bundle changed since the build"):
        select_engine(tmp_path, ORIN, "cd" * 32)
    # exact version match: 10.3.0 vs 10.3.0.30 is another TensorRT build
    with pytest.raises(EngineMismatchError, match="'10.3.0' vs '10.3.0.30'"):
        select_engine(tmp_path, replace(ORIN, tensorrt_version="10.3.0.30"), "ab" * 32)


def test_select_engine_filters_and_prefers_the_newest(tmp_path):
    old = record_in(tmp_path, fingerprint(precision="fp32"), created="2026-01-01T00:00:00+00:00")
    new = record_in(tmp_path, fingerprint(precision="fp16"), created="2026-02-01T00:00:00+00:00")
    dla = record_in(tmp_path, fingerprint(precision="fp16", dla_core=0), created="2026-01-15T00:00:00+00:00")
    sha = "ab" * 32
    assert select_engine(tmp_path, ORIN, sha) == new
    assert select_engine(tmp_path, ORIN, sha, precision="fp32") == old
    assert select_engine(tmp_path, ORIN, sha, dla_core=0) == dla
    assert select_engine(tmp_path, ORIN, sha, dla_core=None) == new
    with pytest.raises(EngineMismatchError, match="DLA core None vs 1 asked for"):
        select_engine(tmp_path, ORIN, sha, dla_core=1)
    # a plan that changed on disk is refused
    (tmp_path / new.file).write_bytes(b"plan-bytez")
    with pytest.raises(EngineError, match="does not match engine.json.*modified or truncated"):
        select_engine(tmp_path, ORIN, sha)
    (tmp_path / new.file).unlink()
    assert select_engine(tmp_path, ORIN, sha, precision="fp16") == dla  # the missing one is skipped


def test_model_sha256_from_bundle(rgb_bundle):
    b = Bundle.load(rgb_bundle)
    from mind_edge.fileio import sha256_file

    assert b.model_sha256 == sha256_file(b.model_path)


def test_engine_files_do_not_break_bundle_verification(bundle_copy):
    record_in(bundle_copy, fingerprint(model_sha256=Bundle.load(bundle_copy).model_sha256))
    (bundle_copy / "trt-cache").mkdir()
    (bundle_copy / "trt-cache" / "timing.cache").write_bytes(b"x")
    Bundle.load(bundle_copy)  # engines and caches are not part of bundle.json's verified files


# ----------------------------------------------------------------------------- ONNX Runtime providers


def test_provider_options_for_tensorrt_and_cuda(tmp_path):
    opts = provider_options(
        ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        cache_dir=tmp_path / "c",
        fp16=True,
        workspace_mb=128,
        dla_core=1,
    )
    (trt_name, trt), (cuda_name, cuda), cpu = opts
    assert (
        trt_name == "TensorrtExecutionProvider"
        and cuda_name == "CUDAExecutionProvider"
        and cpu == "CPUExecutionProvider"
    )
    assert trt == {
        "device_id": 0,
        "trt_max_workspace_size": 128 << 20,
        "trt_fp16_enable": True,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(tmp_path / "c"),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(tmp_path / "c"),
        "trt_dla_enable": True,
        "trt_dla_core": 1,
    }
    assert cuda == {"device_id": 0, "arena_extend_strategy": "kSameAsRequested", "cudnn_conv_algo_search": "HEURISTIC"}
    plain = provider_options(
        ["TensorrtExecutionProvider"],
        cache_dir=None,
        overrides={"TensorrtExecutionProvider": {"trt_builder_optimization_level": 2}},
    )
    assert plain == [
        (
            "TensorrtExecutionProvider",
            {
                "device_id": 0,
                "trt_max_workspace_size": 256 << 20,
                "trt_fp16_enable": False,
                "trt_builder_optimization_level": 2,
            },
        )
    ]
    assert provider_options(["CPUExecutionProvider"], cache_dir=tmp_path) == ["CPUExecutionProvider"]


def test_ort_runner_caches_live_in_the_bundle(rgb_bundle):
    b = Bundle.load(rgb_bundle)
    r = OrtRunner(b.model_path, providers=["tensorrt", "cpu"], trt_fp16=True)
    assert r.cache_dir == b.path / ORT_TRT_CACHE and r.trt_fp16
    assert OrtRunner(b.model_path, cache_dir=False).cache_dir is None
    with r:  # this ONNX Runtime has no TensorRT EP: it falls back to CPU and creates no cache folder
        assert r.providers_used == ["CPUExecutionProvider"]
    assert not (b.path / "trt-cache").exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_trt_backend_without_tensorrt_names_the_package(rgb_bundle):
    with pytest.raises(EngineError, match="needs the 'tensorrt' Python package.*JetPack.*--backend ort"):
        Runtime(rgb_bundle, backend="trt")


def test_trt_backend_refuses_a_foreign_engine(bundle_copy):
    """Through Runtime: an engine recorded for another GPU is refused before anything is deserialized."""
    from mind_edge.runtime.trt_runner import TrtRunner

    sha = Bundle.load(bundle_copy).model_sha256
    record_in(bundle_copy, fingerprint(model_sha256=sha, gpu_name="Orin (nvgpu)"))
    trt = fake_tensorrt("10.3.0")
    runner = TrtRunner(bundle_copy, trt=trt, gpu=GpuInfo("NVIDIA H200", "9.0"))
    with pytest.raises(EngineMismatchError, match="'Orin \\(nvgpu\\)' vs 'NVIDIA H200' here"):
        Runtime(bundle_copy, runner=runner)
    assert not runner.is_active
    shutil.rmtree(bundle_copy)


def test_trt_modules_import_without_torch_tensorrt_or_cuda():
    import subprocess
    import sys

    code = (
        "import sys, mind_edge.runtime.engine_fingerprint, mind_edge.runtime.trt_runner, mind_edge.devices.deploy; "
        "bad = [m for m in ('torch', 'tensorrt', 'cuda', 'onnx', 'onnxruntime') if m in sys.modules]; "
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_engine_json_is_read_bounded(tmp_path, monkeypatch):
    """engine.json is read through the bounded reader: an oversized or non-regular index is refused
    with one EngineError line (never read into memory, never blocking on a FIFO), garbage bytes too."""
    import os

    import mind_edge.runtime.engine_fingerprint as ef

    index = tmp_path / ENGINE_JSON
    index.write_bytes(b" " * (ef.MAX_ENGINE_JSON_BYTES + 1))
    with pytest.raises(
        EngineError, match=r"engine index .* more than the 1,048,576 this mind-edge reads.*rebuild"
    ) as e:
        read_index(tmp_path)
    assert "\n" not in str(e.value)
    index.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(EngineError, match="not readable JSON.*delete it and rebuild"):
        read_index(tmp_path)
    index.write_text("[" * 100_000)
    with pytest.raises(EngineError, match="not readable JSON"):
        read_index(tmp_path)
    index.unlink()
    os.mkfifo(index)
    with pytest.raises(EngineError, match="not a regular file"):
        read_index(tmp_path)
