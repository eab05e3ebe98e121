"""``mind-edge patch create``: the task patch of one learned task of a run (README "Artifacts").

The run's network is read into torch-free arrays; the base (the network before task ``T``)
is the run truncated to tasks ``< T`` — exact for MIND, where every prune leaves the free
weights at zero — or, with ``base=BUNDLE``, the network of a deployed bundle, which must
agree with the run on every earlier task. The patch file itself is written by
:func:`mind_edge.runtime.patch.build_patch` (see that module for the format).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from mind_edge.checkpoint import CHECKPOINT, load_run
from mind_edge.errors import ConfigError
from mind_edge.export.arrays import arrays_from_model
from mind_edge.fileio import atomic_write_bytes, sha256_file
from mind_edge.runtime.bundle import Bundle
from mind_edge.runtime.graph import build_graph
from mind_edge.runtime.patch import PatchError, build_patch, parse_patch
from mind_edge.runtime.precision import bundle_arrays, bundle_precision, round_like_bundle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PatchResult:
    path: Path
    task: int
    classes: list[int]
    class_names: list[str]
    sha256: str
    patch_bytes: int
    model_bytes: int  # model.onnx (shared layout) of the network with the patch's task
    base_model_bytes: int  # model.onnx of the base network
    claimed_weights: int
    dense_weights: int
    signed: bool
    encodings: dict

    @property
    def ratio(self) -> float:
        """Patch size / size of the patched bundle's model.onnx."""
        return self.patch_bytes / self.model_bytes

    def summary(self) -> dict:
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}
        d["ratio_to_model"] = round(self.ratio, 4)
        d["ratio_to_base_model"] = round(self.patch_bytes / self.base_model_bytes, 4)
        return d


def create_patch(
    run_dir: str | Path,
    out: str | Path,
    *,
    task: int | None = None,
    sign_key: str | Path | None = None,
    base: str | Path | None = None,
    overwrite: bool = False,
) -> PatchResult:
    """Write the patch of task ``task`` (default: the run's last task) of ``run_dir`` to ``out``."""
    run_dir, out = Path(run_dir), Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"patch file {out} exists; choose another --out or pass --overwrite")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name such as task4.mepatch")
    model, record = load_run(run_dir)
    n = model.num_tasks
    t = n - 1 if task is None else int(task)
    if not 0 <= t < n:
        raise ConfigError(f"run {run_dir} holds tasks 0..{n - 1}; --task {t} does not exist")
    if t == 0:
        raise ConfigError(
            "task 0 cannot be a patch: the base bundle would hold no task. Export the run with "
            "'mind-edge export' instead"
        )
    arrays = arrays_from_model(model)
    new = arrays.first_tasks(t + 1)
    expected_base = arrays.first_tasks(t)
    if base is not None:
        b = Bundle.load(base)
        # -- precision hook (issue 14): an FP16 base stores float16 weights, an INT8 base its FP32 master
        base_arrays = bundle_arrays(b)
        if not base_arrays.has_stats:  # the bundle's policy uses no routing statistics: its graph carries none
            expected_base, new = without_stats(expected_base), without_stats(new)
        expected_base = round_like_bundle(expected_base, bundle_precision(b))
        new = round_like_bundle(new, bundle_precision(b))  # the new task's weights as that precision stores them
        if base_arrays.num_tasks != t:
            raise PatchError(
                f"base bundle {base} holds {base_arrays.num_tasks} tasks; the patch of task {t} needs "
                f"a base of tasks 0..{t - 1}"
            )
        if not base_arrays.same_as(expected_base):
            raise PatchError(
                f"base bundle {base} was not exported from the first {t} tasks of run {run_dir} (its "
                "weights, owner maps, BN sets or heads differ); create the patch from the run the bundle "
                "came from"
            )
    else:
        base_arrays = expected_base
    names_all = record.scenario.class_names
    classes = list(new.heads[t].classes)
    try:
        names = [str(names_all[c]) for c in classes]
    except IndexError:
        raise ConfigError(
            f"run.json of {run_dir} names {len(names_all)} classes; task {t} predicts {classes}"
        ) from None
    sources = {st.step: st.source for st in record.steps}
    learned_from = sources.get(t) or {"kind": record.scenario.dataset}
    kept = ("kind", "class_names", "train_images")
    source = {
        "run_dir": run_dir.name,
        "run_fingerprint": sha256_file(run_dir / CHECKPOINT),
        "learned_from": {k: learned_from.get(k) for k in kept if k in learned_from},
    }
    data = build_patch(base_arrays, new, t, names, sign_key=sign_key, source=source)
    atomic_write_bytes(out, data)
    p = parse_patch(data, out)
    temperature = record.train.temperature
    model_bytes = build_graph(new, layout="shared", temperature=temperature).ByteSize()
    base_bytes = build_graph(base_arrays, layout="shared", temperature=temperature).ByteSize()
    s = p.summary()
    log.info(
        "wrote patch %s: task %d, %d bytes (%.1f %% of model.onnx)", out, t, len(data), 100 * len(data) / model_bytes
    )
    return PatchResult(
        path=out,
        task=t,
        classes=classes,
        class_names=names,
        sha256=p.sha256,
        patch_bytes=len(data),
        model_bytes=model_bytes,
        base_model_bytes=base_bytes,
        claimed_weights=s["claimed_weights"],
        dense_weights=new.dense_weight_count(),
        signed=p.signed,
        encodings=s["encodings"],
    )


def without_stats(arrays):
    """``arrays`` with no routing statistics (what the graph of a policy that uses none carries)."""
    return dataclasses.replace(arrays, heads=tuple(dataclasses.replace(h, stats=None) for h in arrays.heads))
