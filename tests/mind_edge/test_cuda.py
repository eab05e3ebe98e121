"""MIND on a CUDA device: the same guarantees as on the CPU (skipped automatically without CUDA).

* frozen weights, BN sets and heads of earlier tasks are bit-identical after later tasks trained
  on the GPU (both variants, strong AdamW decay);
* a run trained on the GPU is a normal CPU artifact: the checkpoint loads on a CPU-only process
  and evaluates to the same predictions there, and its export matches ONNX Runtime;
* a run resumed on the GPU keeps its first task bit-identical and claims a disjoint share for the next.
"""

import numpy as np
import pytest
import torch
from learn_helpers import TRAIN_TINY as TINY

from mind_edge.checkpoint import CHECKPOINT, load_state
from mind_edge.data import load_dataset, make_scenario, task_arrays
from mind_edge.nets import NetConfig, build_model
from mind_edge.run import RunSpec, evaluate_run, train_run
from mind_edge.train import TrainConfig, learn_task

pytestmark = pytest.mark.needs_cuda


def _spec(**kw):
    return RunSpec(dataset="digits", tasks=5, arch="resnet32", width=0.25, train=TINY, device="cuda", **kw)


@pytest.mark.parametrize("method", ["self", "teacher"])
def test_cuda_training_keeps_earlier_tasks_bit_identical(method):
    train, _, spec = load_dataset("digits", seed=0)
    scenario = make_scenario("digits", train.class_names, 5, order="seed", seed=0)
    torch.manual_seed(0)
    model = build_model(NetConfig(in_channels=1, input_size=(8, 8), width=0.25, capacity=5))
    cfg = TrainConfig(**{**TINY.to_json(), "method": method, "weight_decay": 0.5})
    snaps = {}
    for t in range(3):
        x, y, _ = task_arrays(train, scenario, t)
        learn_task(model, list(scenario.tasks[t]), x, y, spec, cfg, seed=3, device="cuda")
        assert next(model.parameters()).is_cuda
        for s, (owners, weights, bns, head) in snaps.items():
            for layer, own, w in zip(model.masked_layers(), owners, weights):
                mask = layer.owner == s
                assert torch.equal(mask, own)
                assert torch.equal(layer.weight.detach()[mask], w[mask]), f"task {s}: a frozen weight moved on CUDA"
            for bn, sd in zip(model.task_batchnorms(), bns):
                for k, v in bn.sets[s].state_dict().items():
                    assert torch.equal(v, sd[k]), f"BN set {s} {k} moved on CUDA"
            for k, v in model.heads[s].state_dict().items():
                assert torch.equal(v, head[k])
        snaps[t] = (
            [(layer.owner == t).clone() for layer in model.masked_layers()],
            [layer.weight.detach().clone() for layer in model.masked_layers()],
            [{k: v.clone() for k, v in bn.sets[t].state_dict().items()} for bn in model.task_batchnorms()],
            {k: v.clone() for k, v in model.heads[t].state_dict().items()},
        )
    assert all(bool((layer.weight[layer.owner == 0] != 0).any()) for layer in model.masked_layers())


def test_cuda_run_loads_and_evaluates_on_cpu_and_exports(tmp_path):
    res = train_run(_spec(), tmp_path / "run", stop_after=2)
    state = load_state(tmp_path / "run" / CHECKPOINT)
    assert all(v.device.type == "cpu" for v in state.values()), "checkpoints are stored as CPU tensors"
    on_gpu = evaluate_run(tmp_path / "run", device="cuda")
    on_cpu = evaluate_run(tmp_path / "run", device="cpu")
    # same predictions up to float reordering: accuracies agree to ~2 of the ~90 test images a task has
    assert len(on_gpu["tag"]) == len(on_cpu["tag"]) == 2
    assert np.allclose(on_gpu["tag"], on_cpu["tag"], atol=0.025)
    assert np.allclose(on_cpu["tag"], res.record.steps[-1].tag_matrix[1][:2], atol=0.025)

    from mind_edge.export.exporter import export_bundle

    out = export_bundle(tmp_path / "run", tmp_path / "bundle")
    assert out.report["passed"] and out.num_tasks == 2


def test_cuda_resume_keeps_the_first_task_bit_identical(tmp_path):
    from mind_edge.checkpoint import load_run

    train_run(_spec(), tmp_path / "part", stop_after=1)
    before, _ = load_run(tmp_path / "part")
    resumed = train_run(_spec(), tmp_path / "part", resume=True, stop_after=2)
    after, _ = load_run(tmp_path / "part")
    assert len(resumed.record.steps) == 2 and after.num_tasks == 2
    for la, lb in zip(before.masked_layers(), after.masked_layers()):
        mine = la.owner == 0
        assert torch.equal(lb.owner == 0, mine) and int(mine.sum()) == la.weight.numel() // 5
        assert torch.equal(la.weight.detach()[mine], lb.weight.detach()[mine])
        assert int((lb.owner == 1).sum()) == la.weight.numel() // 5 and not bool(((lb.owner == 1) & mine).any())
    for ba, bb in zip(before.task_batchnorms(), after.task_batchnorms()):
        for k, v in ba.sets[0].state_dict().items():
            assert torch.equal(v, bb.sets[0].state_dict()[k]), k
