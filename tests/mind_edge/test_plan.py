"""The one network plan (mind_edge.core.plan) against the MindNet built from it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mind_edge.core.plan import NetConfig, plan_net, scaled_channels
from mind_edge.nets import MaskedConv2d, TaskBatchNorm2d, build_model

# arch, width, in_channels, input size, convs in the plan, feature dim computed by hand
CASES = [
    ("resnet32", 0.3, 3, (13, 9), 31, 4 * round(16 * 0.3)),
    ("resnet32", 0.37, 1, (7, 11), 31, 4 * round(16 * 0.37)),
    ("resnet32", 1.3, 3, (9, 9), 31, 4 * round(16 * 1.3)),
    ("resnet18", 0.07, 1, (11, 17), 20, round(512 * 0.07)),
    ("resnet18", 0.155, 3, (9, 13), 20, round(512 * 0.155)),
]


@pytest.mark.parametrize("arch,width,ch,size,n_convs,feature_dim", CASES)
def test_mindnet_conv_shapes_equal_the_plan(arch, width, ch, size, n_convs, feature_dim):
    config = NetConfig(arch=arch, in_channels=ch, input_size=size, width=width, capacity=3)
    plan = plan_net(config.to_json())
    assert plan == plan_net(config)
    model = build_model(config, [[0, 1], [2]])
    layers = dict(model.named_masked_layers())
    assert [c.name for c in plan.convs()] == list(layers)
    assert len(plan.convs()) == n_convs
    assert plan.feature_dim == model.feature_dim == feature_dim
    norms = {n: m for n, m in model.named_modules() if isinstance(m, TaskBatchNorm2d)}
    assert sorted(c.norm for c in plan.convs()) == sorted(norms)
    # spatial sizes: the plan's out_size against what the module really produces
    seen: dict[str, tuple[int, int]] = {}
    hooks = [
        m.register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, tuple(o.shape[2:])))
        for n, m in layers.items()
    ]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(2, ch, *size), 1)
    for h in hooks:
        h.remove()
    hw = tuple(size)
    expected = {"stem": plan.stem.out_size(hw)}
    hw = expected["stem"]
    for blk in plan.blocks:
        if blk.down is not None:
            expected[blk.down.name] = blk.down.out_size(hw)
        expected[blk.conv1.name] = blk.conv1.out_size(hw)
        expected[blk.conv2.name] = hw = blk.conv2.out_size(expected[blk.conv1.name])
    assert seen == expected
    for c in plan.convs():
        layer = layers[c.name]
        assert isinstance(layer, MaskedConv2d)
        assert tuple(layer.weight.shape) == c.weight_shape == (c.out_ch, c.in_ch, c.kernel, c.kernel)
        assert layer.owner.shape == layer.weight.shape
        assert (layer.stride[0], layer.padding[0]) == (c.stride, c.padding)
        assert norms[c.norm].num_features == c.out_ch
    if arch == "resnet32":
        assert {b.shortcut for b in plan.blocks} == {"identity", "A"}
        assert plan.stem.out_ch == scaled_channels(16, width) == max(1, round(16 * width))
    else:
        assert {b.shortcut for b in plan.blocks} == {"identity", "B"}
        assert plan.stem.out_ch == scaled_channels(64, width) == max(1, round(64 * width))


def test_plan_module_is_torch_free():
    code = "import sys, mind_edge.core.plan; print('torch' in sys.modules, 'mind_edge.nets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]
