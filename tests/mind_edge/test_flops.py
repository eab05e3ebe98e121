"""FLOP counter: hand-computed small networks, agreement with the torch hook counter and the graph."""

from __future__ import annotations

import pytest

from mind_edge.core.flops import arrays_flops, conv_flops, graph_flops, network_flops, routing_flops
from mind_edge.errors import ConfigError
from mind_edge.runtime.graph import build_graph, random_arrays

# ResNet-32 at width 0.125 (2/4/8 channels) on a 1x4x4 input, worked out by hand (MACs):
#   stem 1->2 at 4x4:                          2*1*9*16            =   288
#   stage 1, 10 convs 2->2 at 4x4:             10 * 2*2*9*16       =  5760
#   stage 2, conv1 2->4 stride 2 (2x2 out):    4*2*9*4             =   288
#            9 convs 4->4 at 2x2:              9 * 4*4*9*4         =  5184
#   stage 3, conv1 4->8 stride 2 (1x1 out):    8*4*9*1             =   288
#            9 convs 8->8 at 1x1:              9 * 8*8*9*1         =  5184
#   total 16,992 MACs = 33,984 FLOPs; a 3-class head over 8 features = 2*8*3 = 48 FLOPs.
TINY = {"arch": "resnet32", "in_channels": 1, "input_size": [4, 4], "width": 0.125, "capacity": 2}
TINY_CONVS = 2 * (288 + 5760 + 288 + 5184 + 288 + 5184)


def test_conv_flops_by_hand():
    assert conv_flops(3, 16, 3, (32, 32)) == 2 * 16 * 3 * 9 * 1024
    assert conv_flops(20, 40, (1, 3), (5, 7), groups=10) == 2 * 40 * 2 * 3 * 35
    with pytest.raises(ConfigError, match="divisible"):
        conv_flops(10, 16, 3, (4, 4), groups=3)


def test_tiny_resnet32_by_hand():
    f = network_flops(TINY, [3, 3])
    assert TINY_CONVS == 33_984
    assert f.convs_per_task == TINY_CONVS
    assert f.per_task == (TINY_CONVS + 48, TINY_CONVS + 48)
    assert f.routing == routing_flops(2, 3) == 6 * 2 * 3 + 2 * 2
    # the model at N tasks runs every sub-network: N x one sub-network + routing
    assert f.total == 2 * (TINY_CONVS + 48) + 40
    j = f.to_json()
    assert j["per_image"] == f.total and j["num_tasks"] == 2 and "all N sub-networks" in j["note"]


def test_heads_of_different_sizes_and_linear_growth_in_tasks():
    one = network_flops(TINY, [5])
    three = network_flops(TINY, [5, 2, 7])
    assert three.per_task == (TINY_CONVS + 2 * 8 * 5, TINY_CONVS + 2 * 8 * 2, TINY_CONVS + 2 * 8 * 7)
    assert three.total - three.routing == 3 * TINY_CONVS + 2 * 8 * 14
    assert one.total == TINY_CONVS + 80 + routing_flops(1, 5)
    with pytest.raises(ConfigError):
        network_flops(TINY, [])


def test_resnet32_cifar_matches_the_known_figure():
    # CIFAR ResNet-32: ~69 M MACs (He et al. count 0.07 GFLOPs as multiply-adds)
    f = network_flops(
        {"arch": "resnet32", "in_channels": 3, "input_size": [32, 32], "width": 1.0, "capacity": 10}, [10] * 10
    )
    assert f.convs_per_task == 137_723_904
    assert f.total == 10 * (137_723_904 + 1_280) + routing_flops(10, 10)


def test_graph_count_is_the_network_plus_the_shortcut_selection_convs():
    arrays = random_arrays(TINY, [[0, 1, 2], [3, 4, 5]])
    # two DownsampleA shortcuts as 1x1 selection convs: 4x2 at 2x2 and 8x4 at 1x1 = 32 + 32 MACs per task
    shortcut = 2 * (4 * 2 * 4 + 8 * 4 * 1)
    heads = 2 * 2 * 3 * 8  # the batched head MatMul
    assert graph_flops(build_graph(arrays, temperature=1.0)) == 2 * TINY_CONVS + 2 * shortcut + heads
    assert graph_flops(build_graph(arrays, temperature=1.0), batch=3) == 3 * (2 * TINY_CONVS + 2 * shortcut + heads)
    assert graph_flops(build_graph(arrays, temperature=1.0, shortcut="pad")) == 2 * TINY_CONVS + heads
    assert arrays_flops(arrays).total == network_flops(TINY, [3, 3]).total


@pytest.mark.parametrize("arch,size", [("resnet32", (9, 7)), ("resnet18", (12, 10))])
def test_agrees_with_the_torch_hook_counter(arch, size):
    pytest.importorskip("torch")
    from mind_edge.nets import NetConfig, build_model, count_flops

    cfg = NetConfig(arch=arch, in_channels=3, input_size=size, width=0.25, capacity=3)
    model = build_model(cfg, [[0, 1], [2, 3, 4], [5]])
    f = network_flops(cfg.to_json(), [2, 3, 1])
    assert [count_flops(model, t) for t in range(3)] == list(f.per_task)
