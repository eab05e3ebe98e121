"""Runtime.predict: input kinds, preprocessing identical to training, errors, providers."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image
from runtime_helpers import NAMES

from mind_edge import imageio
from mind_edge.errors import ConfigError
from mind_edge.runtime.bundle import Bundle
from mind_edge.runtime.errors import BackendError, InputError
from mind_edge.runtime.predict import Prediction, Runtime
from mind_edge.runtime.routing import route_numpy
from mind_edge.runtime.runners import OrtRunner, resolve_providers


@pytest.fixture(scope="module")
def rt(rgb_bundle):
    with Runtime(Bundle.load(rgb_bundle), providers=["cpu"], threads=1) as runtime:
        yield runtime


def test_float_uint8_and_files_agree(rt, rgb_images):
    paths, pixels = rgb_images
    x = imageio.normalize(pixels, rt.bundle.input.mean, rt.bundle.input.std)
    p_float = rt.predict(x)
    p_u8 = rt.predict(pixels)
    p_files = rt.predict(paths)
    p_one = rt.predict(pixels[2])  # one HWC image
    p_path = rt.predict(str(paths[2]))
    assert isinstance(p_float, Prediction) and len(p_float) == 4
    for p in (p_u8, p_files):
        np.testing.assert_array_equal(p.label, p_float.label)
        np.testing.assert_array_equal(p.task_logits, p_float.task_logits)
    np.testing.assert_array_equal(p_one.task_logits[0], p_float.task_logits[2])
    np.testing.assert_array_equal(p_path.label, p_float.label[2:3])
    assert p_files.sources == [str(p) for p in paths] and p_float.sources is None
    assert p_float.class_names == [NAMES[v] for v in p_float.label]
    assert p_float.temperature == rt.bundle.temperature
    assert p_float.task_confidence.shape == (4, 3) and p_float.task_logits.shape == (4, 3, 3)
    rec = p_files.records()[0]
    assert set(rec) == {"file", "label", "class_name", "task", "confidence", "task_confidence"}


def test_other_temperature_reroutes_in_numpy(rt):
    x = np.random.default_rng(2).standard_normal((50, 3, 13, 9)).astype(np.float32)
    base = rt.predict(x)
    same = rt.predict(x, temperature=rt.bundle.temperature)
    np.testing.assert_array_equal(same.confidence, base.confidence)
    hot = rt.predict(x, temperature=40.0)
    ref = route_numpy(base.task_logits, rt.bundle.class_table(), 40.0)
    np.testing.assert_array_equal(hot.label, ref.label)
    np.testing.assert_array_equal(hot.task_logits, base.task_logits)
    assert hot.temperature == 40.0
    with pytest.raises(ConfigError, match="temperature"):
        rt.predict(x, temperature=-1.0)


def test_batching_gives_the_same_result(rt):
    x = np.random.default_rng(4).standard_normal((10, 3, 13, 9)).astype(np.float32)
    a, b = rt.predict(x), rt.predict(x, batch_size=3)
    np.testing.assert_array_equal(a.label, b.label)
    np.testing.assert_allclose(a.task_logits, b.task_logits, atol=1e-5)


def test_wrong_inputs_say_expected_and_got(rt, tmp_path):
    with pytest.raises(InputError, match=r"\[B, C, H, W\] = \[B, 3, 13, 9\].*got \[2, 3, 9, 13\]"):
        rt.predict(np.zeros((2, 3, 9, 13), np.float32))
    with pytest.raises(InputError, match=r"got \[2, 1, 13, 9\]"):
        rt.predict(np.zeros((2, 1, 13, 9), np.float32))
    with pytest.raises(InputError, match=r"uint8 images must be \[B, 13, 9, 3\].*got \[13, 9, 1\]"):
        rt.predict(np.zeros((13, 9, 1), np.uint8))
    with pytest.raises(InputError, match=r"got \[2, 32, 32, 3\]"):
        rt.predict(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(InputError, match="dtype int32"):
        rt.predict(np.zeros((1, 3, 13, 9), np.int32))
    with pytest.raises(InputError, match="empty list"):
        rt.predict([])
    with pytest.raises(InputError, match="numpy array or image file paths"):
        rt.predict(42)


def test_files_are_resized_like_training_unless_strict(rt, tmp_path):
    big = tmp_path / "big.png"
    gray = tmp_path / "gray.png"
    px = np.random.default_rng(0).integers(0, 256, (30, 20, 3), dtype=np.uint8)
    Image.fromarray(px).save(big)
    Image.fromarray(px[:13, :9, 0]).save(gray)
    p = rt.predict([big, gray])
    expect = np.stack([imageio.load_image(big, (13, 9), 3), imageio.load_image(gray, (13, 9), 3)])
    np.testing.assert_array_equal(p.task_logits, rt.predict(expect).task_logits)
    with pytest.raises(InputError, match=r"big.png is 30x20 with 3 channel\(s\) but the bundle expects 13x9 with 3"):
        rt.predict([big], strict=True)
    with pytest.raises(InputError, match=r"gray.png is 13x9 with 1 channel\(s\)"):
        rt.predict([gray], strict=True)


def test_grayscale_folded_bundle(gray_bundle, tmp_path):
    b = Bundle.load(gray_bundle)
    assert b.layout == "folded" and b.input.shape == (1, 8, 8) and b.input.channel_order == "L"
    img = tmp_path / "g.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(img)
    with Runtime(b) as rt:
        p = rt.predict([img])
        assert p.label.shape == (1,)
        np.testing.assert_array_equal(
            p.task_logits, rt.predict(np.arange(64, dtype=np.uint8).reshape(8, 8, 1)).task_logits
        )
        probe = b.probe()
        np.testing.assert_allclose(rt.predict(probe["image"]).task_logits, probe["task_logits"], atol=1e-6)


def test_providers(rgb_bundle, caplog):
    available = ["CPUExecutionProvider"]
    assert resolve_providers(None, available) == ["CPUExecutionProvider"]
    assert resolve_providers(None, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert resolve_providers(
        ["tensorrt"], ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    ) == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    with caplog.at_level(logging.WARNING):
        assert resolve_providers(["cuda"], available) == ["CPUExecutionProvider"]
    assert "CUDAExecutionProvider is not available" in caplog.text
    with pytest.raises(ConfigError, match="unknown execution provider 'gpu'"):
        resolve_providers(["gpu"], available)
    rt = Runtime(rgb_bundle, providers=["cuda", "cpu"])  # a path works as well as a Bundle
    assert rt.providers_used[-1] == "CPUExecutionProvider"
    rt.close()
    with pytest.raises(
        ConfigError, match="unknown backend 'tpu'"
    ):  # trt exists since issue 6: tests/runtime/test_trt_*.py
        Runtime(rgb_bundle, backend="tpu")
    with pytest.raises(ConfigError, match="threads"):
        Runtime(rgb_bundle, threads=0)


def test_runner_interface(rgb_bundle):
    runner = OrtRunner(Bundle.load(rgb_bundle).model_path, providers=["cpu"])
    assert runner.name == "ort" and not runner.is_active
    with pytest.raises(BackendError, match="not active"):
        runner.infer({"image": np.zeros((1, 3, 13, 9), np.float32)})
    with runner:
        out = runner.infer({"image": np.zeros((2, 3, 13, 9), np.float32)})
        assert list(out) == ["label", "task", "confidence", "task_confidence", "task_logits", "task_features"]
        assert runner.providers_used == ["CPUExecutionProvider"]
    assert not runner.is_active


def test_broken_model_is_a_backend_error(bundle_copy):
    (bundle_copy / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(BackendError, match="could not load"):
        Runtime(Bundle.load(bundle_copy, verify=False))


def test_sub_batches_equal_the_whole_batch(rgb_bundle):
    """OrtRunner splits a batch into sub-batches (default 8 on the CPU) with the same outputs."""
    path = Bundle.load(rgb_bundle).model_path
    x = np.random.default_rng(11).standard_normal((19, 3, 13, 9)).astype(np.float32)
    with (
        OrtRunner(path, providers=["cpu"], sub_batch=0) as whole,
        OrtRunner(path, providers=["cpu"], sub_batch=5) as split,
        OrtRunner(path, providers=["cpu"]) as auto,
    ):
        assert whole.sub_batch is None and split.sub_batch == 5 and auto.sub_batch == 8  # "auto" on the CPU EP
        assert (whole.variant_for(64), split.variant_for(5), split.variant_for(6)) == (
            "whole batch",
            "whole batch",
            "sub-batches of 5",
        )
        calls = []
        run = split.session.run
        split.session = type(
            "Spy", (), {"run": lambda self, names, feed: calls.append(len(feed["image"])) or run(names, feed)}
        )()
        ref, got, got_auto = whole.infer({"image": x}), split.infer({"image": x}), auto.infer({"image": x})
    assert calls == [5, 5, 5, 4]
    for out in (got, got_auto):
        assert list(out) == list(ref)
        for k in ref:
            assert out[k].shape == ref[k].shape and out[k].dtype == ref[k].dtype
            np.testing.assert_allclose(out[k], ref[k], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(out["label"], ref["label"])
        np.testing.assert_array_equal(out["task"], ref["task"])
    for bad in (-1, 2.5, True, "big"):
        with pytest.raises(ConfigError, match="sub_batch"):
            OrtRunner(path, sub_batch=bad)
