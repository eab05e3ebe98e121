"""The OpenVINO peer computes every routing policy's head like ONNX Runtime (issue 14's peer in the
same table; OpenVINO's CPU plugin once mis-fused a ReduceMin with keepdims=0 into the z-scores)."""

import numpy as np
import pytest

from mind_edge.core.routing import POLICIES
from mind_edge.runtime.graph import build_graph, random_arrays
from mind_edge.runtime.sessions import ort_session

ov = pytest.importorskip("openvino")

NET = {"arch": "resnet32", "in_channels": 3, "input_size": [32, 32], "width": 0.25, "capacity": 5}


@pytest.fixture(scope="module")
def arrays():
    return random_arrays(NET, [[0, 1], [2, 3, 4], [5, 6]], stats=True)


@pytest.mark.parametrize("policy", list(POLICIES))
def test_openvino_routes_like_onnx_runtime(arrays, policy):
    model = build_graph(arrays, temperature=2.0, policy=policy)
    x = np.random.default_rng(1).standard_normal((6, 3, 32, 32)).astype(np.float32)
    sess = ort_session(model.SerializeToString())
    want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"image": x}), strict=True))
    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(model.SerializeToString(), b""), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    res = compiled({"image": x})
    got = {name: res[out] for out in compiled.outputs for name in out.get_names()}
    np.testing.assert_array_equal(got["task"], want["task"])
    np.testing.assert_array_equal(got["label"], want["label"])
    scale = max(1.0, float(np.abs(want["task_confidence"]).max()))
    np.testing.assert_allclose(got["task_confidence"], want["task_confidence"], rtol=0, atol=1e-4 * scale)
