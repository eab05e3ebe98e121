"""MIND training on tiny models: exact freezing, claims, MIP, resume, failures."""

import copy

import pytest
import torch
from learn_helpers import TRAIN_TINY as TINY

from mind_edge.checkpoint import CHECKPOINT, load_run, load_state
from mind_edge.data import load_dataset, make_scenario, task_arrays
from mind_edge.errors import CheckpointError, ConfigError
from mind_edge.nets import FREE, NetConfig, build_model
from mind_edge.run import RunSpec, train_run
from mind_edge.train import TrainConfig, _claim, learn_task

# tiny networks: one intra-op thread is 2x faster than two on a busy 2-core machine (issue 13, item 8)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    train, test, spec = load_dataset("digits", seed=0)
    scenario = make_scenario("digits", train.class_names, 5, order="seed", seed=0)
    return train, test, spec, scenario


def _snapshot(model, task):
    """Everything task ``task`` owns: its weight entries, its BN sets, its head."""
    weights = [(layer.owner == task, layer.weight.detach().clone()) for layer in model.masked_layers()]
    bns = [copy.deepcopy(bn.sets[task].state_dict()) for bn in model.task_batchnorms()]
    head = copy.deepcopy(model.heads[task].state_dict())
    return weights, bns, head


def _assert_bit_identical(model, task, snap):
    weights, bns, head = snap
    for layer, (mask, w) in zip(model.masked_layers(), weights):
        assert torch.equal(layer.owner == task, mask), "owner map of an earlier task changed"
        assert torch.equal(layer.weight.detach()[mask], w[mask]), "a frozen weight moved"
    for bn, sd in zip(model.task_batchnorms(), bns):
        for k, v in bn.sets[task].state_dict().items():
            assert torch.equal(v, sd[k]), f"BN set {task} {k} moved"
    for k, v in model.heads[task].state_dict().items():
        assert torch.equal(v, head[k]), f"head {task} {k} moved"


@pytest.mark.parametrize("method", ["self", "teacher"])
def test_earlier_tasks_are_bit_identical_after_later_tasks(digits, method):
    train, _, spec, scenario = digits
    torch.manual_seed(0)
    model = build_model(NetConfig(in_channels=1, input_size=(8, 8), width=0.25, capacity=5))
    cfg = TrainConfig(**{**TINY.to_json(), "method": method, "weight_decay": 0.5})  # strong AdamW decay
    snaps = {}
    for t in range(3):
        x, y, _ = task_arrays(train, scenario, t)
        learn_task(model, list(scenario.tasks[t]), x, y, spec, cfg, seed=3)
        for s, snap in snaps.items():
            _assert_bit_identical(model, s, snap)
        snaps[t] = _snapshot(model, t)
    # the frozen weights are real, non-zero values (the test would be vacuous otherwise)
    assert all(bool((layer.weight[layer.owner == 0] != 0).any()) for layer in model.masked_layers())


def test_claims_are_disjoint_and_exactly_numel_over_capacity(digits):
    train, _, spec, scenario = digits
    model = build_model(NetConfig(in_channels=1, input_size=(8, 8), width=0.25, capacity=7))
    for t in range(3):
        x, y, _ = task_arrays(train, scenario, t)
        learn_task(model, list(scenario.tasks[t]), x, y, spec, TINY, seed=0)
    for layer in model.masked_layers():
        k = layer.weight.numel() // 7
        counts = torch.bincount(layer.owner.flatten().long() + 1, minlength=8)
        assert counts[1:4].tolist() == [k, k, k]  # tasks 0..2 own exactly numel // capacity
        assert counts[0] == layer.weight.numel() - 3 * k  # the rest is free
        assert counts[4:].sum() == 0
        assert torch.all(layer.weight[layer.owner == FREE] == 0)  # free weights zeroed by the prune


def test_mip_claims_largest_magnitude_free_weights_of_the_trained_teacher(digits):
    train, _, spec, scenario = digits
    model = build_model(NetConfig(in_channels=1, input_size=(8, 8), width=0.25, capacity=4))
    x, y, _ = task_arrays(train, scenario, 0)
    learn_task(model, list(scenario.tasks[0]), x, y, spec, TINY, seed=0)
    before = [layer.owner.clone() for layer in model.masked_layers()]
    seen = {}
    x, y, _ = task_arrays(train, scenario, 1)
    learn_task(
        model,
        list(scenario.tasks[1]),
        x,
        y,
        spec,
        TrainConfig(**{**TINY.to_json(), "distill_epochs": 0}),
        seed=0,
        on_teacher=lambda t: seen.setdefault("teacher", copy.deepcopy(t)),
    )
    teacher = seen["teacher"]
    for layer, t_layer, owner0 in zip(model.masked_layers(), teacher.masked_layers(), before):
        free = owner0 == FREE
        k = layer.weight.numel() // 4
        mag = t_layer.weight.detach().abs()[free]
        threshold = torch.sort(mag, descending=True).values[k - 1]
        claimed = layer.owner == 1
        assert int(claimed.sum()) == k
        assert torch.all(t_layer.weight.detach().abs()[claimed] >= threshold)
        assert torch.all(t_layer.weight.detach().abs()[free & ~claimed] <= threshold)
        # values are the teacher's (no distillation epoch ran)
        assert torch.equal(layer.weight.detach()[claimed], t_layer.weight.detach()[claimed])


def test_claim_ranks_by_given_scores_not_by_the_student_weights():
    model = build_model(NetConfig(in_channels=1, input_size=(8, 8), width=0.25, capacity=2), [[0]])
    layer = model.masked_layers()[0]
    n = layer.weight.numel()
    scores = {i: torch.zeros_like(la.weight) for i, la in enumerate(model.masked_layers())}
    # the student's largest weights are at the start; the teacher's scores favour the end
    with torch.no_grad():
        layer.weight.view(-1).copy_(torch.linspace(1.0, 0.0, n))
    scores[0].view(-1).copy_(torch.linspace(0.0, 1.0, n))
    values = {i: la.weight.detach().clone() + 10 for i, la in enumerate(model.masked_layers())}
    _claim(model, 0, scores, values)
    owned = torch.nonzero(layer.owner.view(-1) == 0).squeeze(1)
    assert owned.tolist() == list(range(n - n // 2, n))
    assert torch.all(layer.weight.view(-1)[: n - n // 2] == 0)


def _spec(**kw):
    return RunSpec(dataset="digits", tasks=5, arch="resnet32", width=0.25, train=TINY, device="cpu", **kw)


def test_resume_equals_uninterrupted_run(tmp_path):
    full = train_run(_spec(), tmp_path / "full", stop_after=3)
    part = train_run(_spec(), tmp_path / "part", stop_after=1)
    assert len(part.record.steps) == 1
    resumed = train_run(_spec(), tmp_path / "part", resume=True, stop_after=3)
    a = load_state(tmp_path / "full" / CHECKPOINT)
    b = load_state(tmp_path / "part" / CHECKPOINT)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert full.record.steps[-1].tag_matrix == resumed.record.steps[-1].tag_matrix
    assert full.final == resumed.final


def test_run_directory_contents_and_metrics(tmp_path):
    res = train_run(_spec(), tmp_path / "run", stop_after=2)
    run = tmp_path / "run"
    assert {"checkpoint.safetensors", "run.json", "metrics.csv", "accuracy_tag.png"} <= {p.name for p in run.iterdir()}
    final = res.final
    assert set(final) == {"tag", "taw", "routing", "avg_incremental_tag", "forgetting_tag", "bwt_tag"}
    assert all(0.0 <= v <= 1.0 for k, v in final.items() if k != "bwt_tag")
    R = res.record.steps[-1].tag_matrix
    assert R[0][1] is None and R[1][0] is not None
    lines = (run / "metrics.csv").read_text().splitlines()
    assert lines[0] == "step,task,tag,taw,routing" and len(lines) == 1 + 1 + 2
    model, _ = load_run(run)
    assert model.num_tasks == 2
    # TAW on 2 tasks of digits should be far above chance even after 2+1 epochs
    assert final["taw"] > 0.7


def test_corrupt_truncated_and_foreign_checkpoints_fail_clearly(tmp_path):
    train_run(_spec(), tmp_path / "run", stop_after=1)
    ck = tmp_path / "run" / CHECKPOINT
    good = ck.read_bytes()
    ck.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(CheckpointError, match="sha256"):
        load_run(tmp_path / "run")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_state(ck)
    ck.write_bytes(b"\x00" * 64)  # garbage
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_state(ck)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(ck))  # a valid safetensors file from someone else
    with pytest.raises(CheckpointError, match="not a mind-edge checkpoint"):
        load_state(ck)
    (tmp_path / "run" / "run.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_run(tmp_path / "run")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_run(tmp_path / "nowhere")


def test_output_folder_must_be_empty_unless_resuming(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("1")
    with pytest.raises(ConfigError, match="not empty"):
        train_run(_spec(), tmp_path / "busy", stop_after=1)
