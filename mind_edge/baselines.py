"""Reference points for the accuracy benchmark: naive fine-tuning and joint training.

- **fine-tuning** (lower bound): the same network, per-task BN sets and heads, but every
  backbone weight is trained on every task (no owner maps, no distillation), so later tasks
  overwrite what earlier ones learned. Routing is MIND's max-probability rule.
- **joint** (upper bound): one network with one head over all classes trained on the data of
  all tasks at once (not incremental). TAG = accuracy of that head; TAW restricts its argmax
  to the true task's classes; routing = the predicted class belongs to the true task.
"""

from __future__ import annotations

import numpy as np
import torch

from mind_edge.nets import MindNet, NetConfig, build_model
from mind_edge.train import NullReporter, TaskReport, TrainConfig, _make_loader, _run_stage


def _own_every_weight(model: MindNet) -> None:
    """Every weight belongs to every sub-network: owner 0 everywhere."""
    with torch.no_grad():
        for layer in model.masked_layers():
            layer.owner.fill_(0)


def _train_every_weight(model: MindNet, task: int, loader, config: TrainConfig, label: str):
    """One plain training stage of ``task`` (train + distill epochs, no owner masks, no teacher); eval mode after."""
    st = _run_stage(
        model,
        task,
        loader,
        epochs=config.epochs + config.distill_epochs,
        lr=config.lr,
        milestones=config.milestones,
        config=config,
        include_free=False,
        trainable=lambda o: torch.ones_like(o, dtype=torch.bool),
        teacher=None,
        teacher_task=task,
        reporter=NullReporter(),
        label=label,
    )
    model.eval()
    return st


def learn_task_finetune(
    model: MindNet, classes, images, local_labels, spec, config: TrainConfig, *, seed: int, device="cpu"
) -> TaskReport:
    device = torch.device(device)
    task = model.num_tasks
    torch.manual_seed(int(seed) * 1_000_003 + task)
    model.add_task(list(classes))
    model.to(device)
    if task == 0:
        _own_every_weight(model)
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + task * 101 + 2)
    loader = _make_loader(images, local_labels, spec, config.batch_size, gen, device)
    st = _train_every_weight(model, task, loader, config, f"finetune task {task}")
    return TaskReport(task=task, classes=list(classes), train_seconds=st.seconds, train_loss=st.last_loss)


def train_joint(
    net: NetConfig, order: list[int], images, global_labels, spec, config: TrainConfig, *, seed: int, device="cpu"
) -> MindNet:
    """One head over ``order`` (global class ids) trained on all data at once."""
    device = torch.device(device)
    torch.manual_seed(seed)
    model = build_model(NetConfig(**{**net.to_json(), "input_size": tuple(net.input_size), "capacity": 1}))
    model.add_task(list(order))
    _own_every_weight(model)
    model.to(device)
    pos = {c: i for i, c in enumerate(order)}
    local = np.array([pos[int(c)] for c in global_labels], dtype=np.int64)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + 7)
    loader = _make_loader(images, local, spec, config.batch_size, gen, device)
    _train_every_weight(model, 0, loader, config, "joint")
    return model


@torch.no_grad()
def evaluate_joint(model: MindNet, tests, tasks: list[list[int]], spec, device="cpu") -> dict:
    order = model.task_classes(0)
    pos = {c: i for i, c in enumerate(order)}
    tag, taw, rout = [], [], []
    for j, (images, local) in enumerate(tests):
        cols = torch.tensor([pos[c] for c in tasks[j]])
        n_tag = n_taw = n_r = n = 0
        for x, y in _make_loader(images, local, spec, 512, None, torch.device(device), train=False):
            z = model(x, 0).cpu()
            y = y.cpu()
            pred = z.argmax(1)
            truth = cols[y]
            n_tag += int((pred == truth).sum())
            n_taw += int((z[:, cols].argmax(1) == y).sum())
            n_r += int(torch.isin(pred, cols).sum())
            n += len(y)
        tag.append(n_tag / n)
        taw.append(n_taw / n)
        rout.append(n_r / n)
    return {"tag": tag, "taw": taw, "routing": rout}
