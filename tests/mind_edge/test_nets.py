import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mind_edge.errors import CapacityError, ConfigError
from mind_edge.nets import FREE, MaskedConv2d, MindNet, NetConfig, build_model, count_flops


def _random_owners(model: MindNet, n_tasks: int, gen: torch.Generator) -> None:
    with torch.no_grad():
        for layer in model.masked_layers():
            layer.owner.copy_(torch.randint(-1, n_tasks, layer.owner.shape, generator=gen, dtype=torch.int8))


def _randomize_bn(model: MindNet, gen: torch.Generator) -> None:
    with torch.no_grad():
        for bn in model.task_batchnorms():
            for s in bn.sets:
                s.weight.copy_(torch.rand(s.weight.shape, generator=gen) + 0.5)
                s.bias.copy_(torch.randn(s.bias.shape, generator=gen))
                s.running_mean.copy_(torch.randn(s.running_mean.shape, generator=gen) * 0.1)
                s.running_var.copy_(torch.rand(s.running_var.shape, generator=gen) + 0.5)


class DenseResNet32(nn.Module):
    """A plain dense network built by hand from W * mask_t and BN set t (no owner logic)."""

    def __init__(self, model: MindNet, t: int):
        super().__init__()
        self.m, self.t = model, t

    def conv(self, layer: MaskedConv2d, x):
        mask = ((layer.owner >= 0) & (layer.owner <= self.t)).float()
        return F.conv2d(x, layer.weight * mask, None, layer.stride, layer.padding)

    def bn(self, tbn, x):
        s = tbn.sets[self.t]
        return F.batch_norm(x, s.running_mean, s.running_var, s.weight, s.bias, False, 0.0, s.eps)

    def forward(self, x):
        m = self.m
        out = F.relu(self.bn(m.stem_bn, self.conv(m.stem, x)))
        for b in m.blocks:
            y = F.relu(self.bn(b.bn1, self.conv(b.conv1, out)))
            y = self.bn(b.bn2, self.conv(b.conv2, y))
            if b.shortcut_kind == "A":
                sc = out[:, :, :: b.down_a.stride, :: b.down_a.stride]
                sc = torch.cat([sc, torch.zeros_like(sc)[:, : b.down_a.extra]], 1)
            elif b.shortcut_kind == "B":
                sc = self.bn(b.down_bn, self.conv(b.down_conv, out))
            else:
                sc = out
            out = F.relu(y + sc)
        feat = out.mean(dim=(2, 3))
        return m.heads[self.t](feat)


@pytest.mark.parametrize("arch,size,ch", [("resnet32", (13, 9), 3), ("resnet18", (11, 17), 1)])
def test_subnetwork_equals_dense_network_from_masked_weights(arch, size, ch):
    gen = torch.Generator().manual_seed(0)
    model = build_model(
        NetConfig(arch=arch, in_channels=ch, input_size=size, width=0.25, capacity=4), [[0, 1], [2, 3, 4], [5]]
    )
    _random_owners(model, 3, gen)
    _randomize_bn(model, gen)
    model.eval()
    x = torch.randn(4, ch, *size, generator=gen)
    for t in range(3):
        expected = DenseResNet32(model, t)(x)
        got = model(x, t)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        assert got.shape == (4, len(model.task_classes(t)))


def test_subnetwork_ignores_free_and_later_weights():
    gen = torch.Generator().manual_seed(1)
    model = build_model(NetConfig(in_channels=1, input_size=(8, 8), width=0.25, capacity=3), [[0], [1], [2]])
    _random_owners(model, 3, gen)
    model.eval()
    x = torch.randn(2, 1, 8, 8, generator=gen)
    before = model(x, 0)
    other = copy.deepcopy(model)
    with torch.no_grad():
        for layer in other.masked_layers():
            noise = torch.randn(layer.weight.shape, generator=gen)
            keep = layer.owner == 0
            layer.weight.copy_(torch.where(keep, layer.weight, noise))
    torch.testing.assert_close(other(x, 0), before, rtol=0, atol=0)
    # ...but task 1 does see the changed weights it owns
    assert not torch.equal(other(x, 1), model(x, 1))


def test_owner_maps_are_int8_buffers_in_state_dict():
    model = build_model(NetConfig(width=0.25, capacity=5), [[0, 1]])
    sd = model.state_dict()
    owners = [k for k in sd if k.endswith(".owner")]
    assert owners and all(sd[k].dtype == torch.int8 for k in owners)
    assert all(int(sd[k].min()) == FREE for k in owners)
    assert any(k.startswith("stem_bn.sets.0.") for k in sd)
    assert "heads.0.classes" in sd


def test_capacity_and_config_errors():
    model = build_model(NetConfig(width=0.25, capacity=2), [[0], [1]])
    with pytest.raises(CapacityError, match="capacity for 2 tasks"):
        model.add_task([2])
    with pytest.raises(ConfigError, match="unknown architecture"):
        NetConfig(arch="vgg")
    with pytest.raises(ConfigError, match="int8"):
        NetConfig(capacity=200)


def test_resnet32_structure_and_flops():
    model = build_model(NetConfig(width=1.0, input_size=(32, 32)), [list(range(10))])
    convs = model.masked_layers()
    assert len(convs) == 31  # stem + 15 blocks x 2 convs, shortcuts parameter-free
    assert model.feature_dim == 64
    n_params = sum(conv.weight.numel() for conv in convs)
    # stem 3*16*9 + stage1 10*16*16*9 + stage2 (16*32 + 9*32*32)*9 + stage3 (32*64 + 9*64*64)*9
    assert n_params == 432 + 23_040 + 87_552 + 350_208
    flops = count_flops(model)
    assert 135e6 < flops < 140e6  # ~69 M multiply-accumulates per 32x32 image
