"""Routing policies and routing statistics (issue 10): own data only, frozen, calibrate == training,
torch = numpy = ONNX for every policy on random and trained networks, clear errors without statistics."""

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from mind_edge.calibrate import calibrate_run
from mind_edge.checkpoint import CHECKPOINT, load_run, load_state
from mind_edge.core.routing import DEFAULT_POLICY, POLICIES, class_table, fit_routing_stats, route_numpy, tap_blocks
from mind_edge.data import load_dataset, make_scenario, task_arrays
from mind_edge.errors import ConfigError
from mind_edge.export.arrays import arrays_from_model, model_from_arrays
from mind_edge.nets import NetConfig, build_model
from mind_edge.routing import gather_routing_stats, model_outputs, route, torch_stats
from mind_edge.run import RunSpec, train_run
from mind_edge.runtime.graph import build_graph, random_arrays, read_arrays
from mind_edge.train import TrainConfig, learn_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = TrainConfig(
    epochs=1,
    distill_epochs=1,
    lr=0.005,
    distill_lr=0.01,
    milestones=(),
    distill_milestones=(),
    batch_size=64,
    temperature=1.0,
)


@pytest.fixture(scope="module")
def digits():
    train, test, spec = load_dataset("digits", seed=0)
    scenario = make_scenario("digits", train.class_names, 5, order="seed", seed=0)
    return train, test, spec, scenario


@pytest.fixture(scope="module")
def trained(digits):
    """Three tasks learned, with the statistics of task 0 and 1 snapshotted after their own task."""
    train, _, spec, scenario = digits
    torch.manual_seed(0)
    model = build_model(NetConfig(in_channels=1, input_size=(8, 8), width=0.25, capacity=5))
    snaps = []
    for t in range(3):
        x, y, _ = task_arrays(train, scenario, t)
        learn_task(model, list(scenario.tasks[t]), x, y, spec, TINY, seed=1)
        snaps.append(copy.deepcopy(model.heads[t].routing.state_dict()))
    return model, snaps


def test_tap_blocks_are_the_first_block_and_every_stage_end():
    assert tap_blocks([1] * 5 + [2] + [1] * 4 + [2] + [1] * 4) == [0, 4, 9, 14]  # resnet32
    assert tap_blocks([1, 1, 2, 1, 2, 1, 2, 1]) == [0, 1, 3, 5, 7]  # resnet18


def test_statistics_come_from_the_tasks_own_data_and_stay_frozen(digits, trained):
    train, _, spec, scenario = digits
    model, snaps = trained
    for t, snap in enumerate(snaps):
        for k, v in model.heads[t].routing.state_dict().items():
            assert torch.equal(v, snap[k]), f"routing statistics of task {t} ({k}) moved after later tasks"
        # exactly what task t's own training images give (nothing of another task's data)
        x, y, _ = task_arrays(train, scenario, t)
        again = copy.deepcopy(model)
        stats = gather_routing_stats(again, t, x, y, spec)
        assert stats.same_as(model.heads[t].routing.to_arrays())
        assert stats.count == len(y)
    # the statistics of a ResNet-32 w0.25 task: taps 4+4+8+16 channels twice plus the pooled summaries of
    # 32 channels, well under the tens of kB
    assert model.heads[0].routing.to_arrays().nbytes < 8192


def test_fit_is_deterministic_and_uses_only_given_rows():
    rng = np.random.default_rng(0)
    taps = [rng.standard_normal((60, 5)).astype(np.float32), rng.standard_normal((60, 7)).astype(np.float32)]
    y = rng.integers(0, 3, 60)
    z = rng.standard_normal((60, 3)).astype(np.float32)
    a, b = fit_routing_stats(taps, y, 3, z), fit_routing_stats([t.copy() for t in taps], y.copy(), 3, z.copy())
    assert a.same_as(b)
    c = fit_routing_stats([t[:59] for t in taps], y[:59], 3, z[:59])
    assert not a.same_as(c)
    a.check((5, 7), 3)


def _all_outputs(arrays, x, policy, temperature=2.0):
    """ORT, numpy (re-routed from ORT's task_logits/task_features) and torch outputs of one policy."""
    import onnxruntime as ort

    sess = ort.InferenceSession(
        build_graph(arrays, temperature=temperature, policy=policy).SerializeToString(),
        providers=["CPUExecutionProvider"],
    )
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"image": x})))
    rn = route_numpy(
        got["task_logits"],
        class_table(arrays.task_classes),
        temperature,
        policy,
        stats=arrays.routing_stats(),
        task_features=got["task_features"],
    )
    model = model_from_arrays(arrays)
    with torch.no_grad():
        ref = {k: v.numpy() for k, v in model_outputs(model, torch.from_numpy(x), temperature, policy).items()}
    return got, rn, ref


@pytest.mark.parametrize("policy", list(POLICIES))
def test_torch_numpy_and_onnx_agree_on_a_random_network(policy):
    net = {"arch": "resnet32", "in_channels": 3, "input_size": [13, 9], "width": 0.25, "capacity": 4}
    arrays = random_arrays(net, [[0, 1], [2, 3, 4], [5], [6, 7]], seed=3, stats=True)
    x = np.random.default_rng(1).standard_normal((23, 3, 13, 9)).astype(np.float32)
    got, rn, ref = _all_outputs(arrays, x, policy)
    for k in ("label", "task"):
        assert np.array_equal(got[k], getattr(rn, k)) and np.array_equal(got[k], ref[k]), k
    scale = np.abs(ref["task_confidence"]).max(axis=1, keepdims=True)
    assert np.all(np.abs(got["task_confidence"] - ref["task_confidence"]) <= 1e-4 + 1e-5 * scale)
    assert np.all(np.abs(got["task_confidence"] - rn.task_confidence) <= 1e-4 + 1e-5 * scale)
    np.testing.assert_allclose(got["confidence"], ref["confidence"], atol=1e-5)
    np.testing.assert_allclose(got["task_features"], ref["task_features"], atol=1e-5)


@pytest.mark.parametrize("policy", ["mahalanobis", "lda", "combined", "entropy"])
def test_torch_numpy_and_onnx_agree_on_a_trained_network(digits, trained, policy):
    _, test, spec, _ = digits
    model, _ = trained
    arrays = arrays_from_model(model)
    x = ((test.images[:64].astype(np.float32) / 255 - spec.mean[0]) / spec.std[0]).transpose(0, 3, 1, 2).copy()
    got, rn, ref = _all_outputs(arrays, x, policy, temperature=1.0)
    for k in ("label", "task"):
        assert np.array_equal(got[k], getattr(rn, k)) and np.array_equal(got[k], ref[k]), k
    # the graph carries the statistics a runtime re-routes with, bit for bit
    if POLICIES[policy].needs_stats:
        back = read_arrays(build_graph(arrays, temperature=1.0, policy=policy))
        assert all(a.same_as(b) for a, b in zip(back.routing_stats(), arrays.routing_stats()))


def test_calibrate_on_an_old_run_equals_the_statistics_gathered_in_training(tmp_path):
    spec = RunSpec(dataset="digits", tasks=5, width=0.25, train=TINY, device="cpu")
    run = train_run(spec, tmp_path / "run", stop_after=2).run_dir
    want = load_run(run)[0].routing_stats()
    # make it an old run: no routing buffers in the checkpoint, maxprob in run.json
    old = tmp_path / "old"
    old.mkdir()
    state = {k: v for k, v in load_state(run / CHECKPOINT).items() if ".routing." not in k}
    meta = json.loads((run / "run.json").read_text())
    meta["train"]["routing"] = "maxprob"
    from safetensors.torch import save_file

    save_file(state, str(old / CHECKPOINT), metadata={"format": "mind-edge", "schema": "1"})
    from mind_edge.fileio import sha256_file

    meta["checkpoint_sha256"] = sha256_file(old / CHECKPOINT)
    (old / "run.json").write_text(json.dumps(meta))
    model, _ = load_run(old)
    assert not any(h.routing.ready for h in model.heads)
    with pytest.raises(ConfigError, match="calibrate"):
        from mind_edge.export.exporter import export_bundle

        export_bundle(old, tmp_path / "b", routing="mahalanobis", validate=False)
    res = calibrate_run(old)
    assert res.gathered == [0, 1] and res.policy == DEFAULT_POLICY
    got = load_run(old)[0].routing_stats()
    assert all(a.same_as(b) for a, b in zip(want, got))
    assert json.loads((old / "run.json").read_text())["train"]["routing"] == DEFAULT_POLICY
    # a second calibrate keeps the (frozen) statistics and writes nothing
    before = (old / CHECKPOINT).read_bytes()
    assert calibrate_run(old).gathered == [] and (old / CHECKPOINT).read_bytes() == before


def test_policies_that_need_statistics_name_calibrate():
    z = [torch.zeros(2, 2), torch.zeros(2, 2)]
    with pytest.raises(ConfigError, match="calibrate"):
        route(z, [torch.tensor([0, 1]), torch.tensor([2, 3])], 1.0, "mahalanobis", stats=[None, None])
    with pytest.raises(ConfigError, match="calibrate"):
        route_numpy(np.zeros((2, 2, 2), np.float32), class_table([[0, 1], [2, 3]]), 1.0, "maxlogit")
    net = {"arch": "resnet32", "in_channels": 1, "input_size": [8, 8], "width": 0.25, "capacity": 2}
    with pytest.raises(ConfigError, match="calibrate"):
        build_graph(random_arrays(net, [[0, 1], [2, 3]]), temperature=1.0, policy="combined")
    with pytest.raises(ConfigError, match="unknown routing policy 'nope'; choose one of maxprob"):
        route(z, [torch.tensor([0, 1]), torch.tensor([2, 3])], 1.0, "nope")
    assert torch_stats([None], "cpu") == [None]


def test_shared_space_statistics_are_task_data_seen_by_subnetwork_zero(digits, trained):
    """Layout 2: after the own taps, each task's statistics hold the same taps measured in sub-network 0
    (frozen since task 0) on the task's own images."""
    train, _, spec, scenario = digits
    model, _ = trained
    s0, s1 = model.heads[0].routing.to_arrays(), model.heads[1].routing.to_arrays()
    k = s1.own_taps
    assert s1.shared_taps == k == len(model.tap_blocks) and s1.num_taps == 2 * k
    # task 0's own space is the shared space
    assert all(np.array_equal(s0.whiten[j], s0.whiten[k + j]) for j in range(k))
    x, y, _ = task_arrays(train, scenario, 1)
    from mind_edge.data import BatchLoader  # the loader's normalisation, as gather_routing_stats sees the images

    xb = torch.cat(
        [b for b, _ in BatchLoader(x, y, spec=spec, batch_size=len(y), train=False, generator=None, device="cpu")]
    )
    with torch.no_grad():
        own = [f.numpy() for f in model.tap_features(xb, 1)]
        zero = [f.numpy() for f in model.tap_features(xb, 0)]
        logits = model.heads[1](model.tap_features(xb, 1)[-1]).numpy()
    want = fit_routing_stats(own, y, 2, logits, shared=zero)
    assert want.same_as(s1)
    assert not np.array_equal(s1.means[0], s1.means[k])  # a different space than its own


def _rewrite_checkpoint(run, state) -> None:
    """Replace the run's checkpoint by ``state`` (an older writer's), with run.json's digest to match."""
    from safetensors.torch import save_file

    from mind_edge.fileio import sha256_file

    save_file(state, str(run / CHECKPOINT), metadata={"format": "mind-edge", "schema": "1"})
    meta = json.loads((run / "run.json").read_text())
    meta["checkpoint_sha256"] = sha256_file(run / CHECKPOINT)
    (run / "run.json").write_text(json.dumps(meta))


def test_statistics_of_the_older_layout_are_ignored_with_a_calibrate_hint(tmp_path, caplog):
    from mind_edge.core.routing import check_stats_for, get_policy

    spec = RunSpec(dataset="digits", tasks=5, width=0.25, train=TINY, device="cpu")
    run = train_run(spec, tmp_path / "run", stop_after=1).run_dir
    stats = load_run(run)[0].routing_stats()
    k = stats[0].own_taps
    # layout 1 (before the shared space): own taps only
    old_state = {}
    for name, v in load_state(run / CHECKPOINT).items():
        if (".routing.whiten" in name or ".routing.means" in name) and int(
            name.rsplit("whiten" if "whiten" in name else "means", 1)[1]
        ) >= k:
            continue
        if name.endswith(".routing.score_mean") or name.endswith(".routing.score_std"):
            v = torch.cat([v[:k], v[2 * k :]])
        old_state[name] = v
    _rewrite_checkpoint(run, old_state)
    with caplog.at_level("WARNING"):
        model, _ = load_run(run)
    assert not any(h.routing.ready for h in model.heads) and "older layout" in caplog.text
    # numpy statistics of layout 1: the policies of the own space still route, the shared space names calibrate
    old = [
        type(s)(
            whiten=s.whiten[:k],
            means=s.means[:k],
            score_mean=np.concatenate([s.score_mean[:k], s.score_mean[2 * k :]]),
            score_std=np.concatenate([s.score_std[:k], s.score_std[2 * k :]]),
            count=s.count,
        )
        for s in stats
    ]
    check_stats_for(get_policy("mahalanobis"), old, len(old))
    for policy in ("combined", "shared", "lda"):
        with pytest.raises(ConfigError, match=r"needs .* statistics \(layout [23]\).*\(layout 1\) lack.*calibrate"):
            check_stats_for(get_policy(policy), old, len(old))
    with pytest.raises(ConfigError, match="different layouts"):
        check_stats_for(get_policy("mahalanobis"), [old[0], stats[0]], 2)
    # layout 2 (before the pooled metric): the shared space routes, the pooled metric names calibrate
    two = [dataclasses.replace(s, pool_means=None, pool_cov=None, pool_m4=None) for s in stats]
    check_stats_for(get_policy("shared"), two, len(two))
    for policy in ("combined", "lda"):
        with pytest.raises(ConfigError, match=r"pooled-metric statistics \(layout 3\).*\(layout 2\).*calibrate"):
            check_stats_for(get_policy(policy), two, len(two))
    with pytest.raises(ConfigError, match="different layouts"):
        check_stats_for(get_policy("mahalanobis"), [two[0], stats[0]], 2)


def test_a_checkpoint_of_layout_2_loads_uncalibrated_with_a_calibrate_hint(tmp_path, caplog):
    spec = RunSpec(dataset="digits", tasks=5, width=0.25, train=TINY, device="cpu")
    run = train_run(spec, tmp_path / "run", stop_after=1).run_dir
    _rewrite_checkpoint(run, {k: v for k, v in load_state(run / CHECKPOINT).items() if ".routing.pool_" not in k})
    with caplog.at_level("WARNING"):
        model, _ = load_run(run)
    assert not any(h.routing.ready for h in model.heads)
    assert "older layout" in caplog.text and "mind-edge calibrate" in caplog.text


def test_the_pooled_metric_is_a_linear_discriminant_of_every_tasks_own_features(digits, trained):
    """Layout 3: each task keeps its class means and within-class covariance of sub-network 0's unit taps;
    pooled_space equals Ledoit-Wolf on all the tasks' residuals together (what LDA on the features would fit)."""
    from mind_edge.core.routing import _shrunk_covariance, _whitening, pooled_space, unit_concat, unpack_symmetric

    train, _, spec, scenario = digits
    model, _ = trained
    from mind_edge.data import BatchLoader

    residuals, centers = [], []
    for t in range(model.num_tasks):
        x, y, _ = task_arrays(train, scenario, t)
        xb = torch.cat(
            [b for b, _ in BatchLoader(x, y, spec=spec, batch_size=len(y), train=False, generator=None, device="cpu")]
        )
        with torch.no_grad():
            f = unit_concat([a.numpy() for a in model.tap_features(xb, 0)]).astype(np.float64)
        c = np.stack([f[y == k].mean(axis=0) for k in range(len(scenario.tasks[t]))])
        s = model.heads[t].routing.to_arrays()
        np.testing.assert_allclose(s.pool_means, c, atol=1e-6)
        r = f - c[y]
        np.testing.assert_allclose(unpack_symmetric(s.pool_cov.astype(np.float64)), r.T @ r / len(y), atol=1e-7)
        residuals.append(r)
        centers.append(c)
    want = _whitening(_shrunk_covariance(np.concatenate(residuals)))
    stats = model.routing_stats()
    whiten, means = pooled_space(stats)
    np.testing.assert_allclose(whiten, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())
    for m, c in zip(means, centers):
        np.testing.assert_allclose(m, c @ want, rtol=2e-3, atol=2e-3 * np.abs(c @ want).max())
    # one task's summaries: the pool over tasks 0..1 is not the pool over 0..2 (derived, never stored)
    assert not np.allclose(pooled_space(stats[:2])[0], whiten)


def test_the_pooled_metric_is_derived_once_per_set_of_summaries():
    """Routing a stream batch by batch re-derives nothing; other summaries give another metric."""
    from mind_edge.core import routing as R

    net = {"arch": "resnet32", "in_channels": 1, "input_size": [8, 8], "width": 0.25, "capacity": 3}
    stats = random_arrays(net, [[0, 1], [2, 3], [4]], seed=5, stats=True).routing_stats()
    first = R.pooled_space(stats)
    again = R.pooled_space([dataclasses.replace(s) for s in stats])  # equal content, other objects
    assert again[0] is first[0] and not first[0].flags.writeable
    assert np.array_equal(R._pooled_space(stats)[0], first[0])
    other = R.pooled_space(stats[:2])
    assert other[0] is not first[0] and not np.array_equal(other[0], first[0])
