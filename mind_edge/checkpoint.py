"""Run directories: ``checkpoint.safetensors`` + ``run.json`` (+ ``metrics.csv`` and a PNG).

``checkpoint.safetensors`` holds the whole ``state_dict`` (weights, int8 owner maps, every
BN set, every head and its global class ids) with metadata ``{"format": "mind-edge"}``.
``run.json`` carries the schema version, the architecture, the scenario, the
hyper-parameters, the seed, versions, per-step metrics and the checkpoint's sha256.
Nothing is unpickled: a checkpoint a user hands us is read with safetensors only.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mind_edge.errors import CheckpointError, MissingExtraError, require
from mind_edge.fileio import atomic_write, atomic_write_json, atomic_write_text, sha256_file
from mind_edge.metrics import matrix_from_json
from mind_edge.run_record import RunRecord
from mind_edge.schema import Fields, check_int, read_regular_file
from mind_edge.textsafe import clean

log = logging.getLogger(__name__)

RUN_SCHEMA = 1
CHECKPOINT = "checkpoint.safetensors"
RUN_JSON = "run.json"
FORMAT_TAG = "mind-edge"


MAX_RUN_JSON_BYTES = 64 << 20
_RUN_FIX = "the run directory is corrupt or was edited — re-train it or restore run.json"


def read_run_json(run_dir: str | Path) -> RunRecord:
    """``run.json`` of ``run_dir`` as a :class:`~mind_edge.run_record.RunRecord`, checked by :func:`check_run_meta`.

    Unknown extra keys are kept (newer writers add sections; :meth:`RunRecord.to_json`); the keys
    mind-edge reads must have the right types, or one :class:`CheckpointError` line names the field.
    """
    run_dir = Path(run_dir)
    path = run_dir / RUN_JSON
    if not run_dir.is_dir():
        raise CheckpointError(
            f"run directory {run_dir} does not exist; pass the --out folder of a 'mind-edge train' run"
        )
    if not path.exists():
        have = ", ".join(sorted(clean(p.name, limit=80) for p in run_dir.iterdir())[:30]) or "nothing"
        raise CheckpointError(f"{path} is missing (the folder holds: {have}); is {run_dir} a mind-edge run directory?")
    data = read_regular_file(path, max_bytes=MAX_RUN_JSON_BYTES, error=CheckpointError, what="run file")
    try:
        meta = json.loads(data.decode("utf-8"))  # NaN allowed: a metric of an empty set is written as NaN
    except UnicodeDecodeError:
        raise CheckpointError(f"{path} is not UTF-8 text; {_RUN_FIX}") from None
    except (ValueError, RecursionError) as exc:
        msg = str(exc) if isinstance(exc, json.JSONDecodeError) else "too deeply nested"
        raise CheckpointError(f"{path} is not valid JSON ({msg}); the run directory is corrupt") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_TAG:
        raise CheckpointError(f'{path} is not a mind-edge run file (no "format": "{FORMAT_TAG}")')
    version = meta.get("schema_version")
    if version != RUN_SCHEMA:
        shown = (
            version
            if isinstance(version, int) and not isinstance(version, bool)
            else f"of type {type(version).__name__}"
        )
        raise CheckpointError(
            f"{path} has schema version {shown}; this mind-edge reads version {RUN_SCHEMA}. "
            "Upgrade mind-edge or re-train the run"
        )
    check_run_meta(meta, str(path))
    return RunRecord.from_json(meta, run_dir)


def check_run_meta(meta: dict, where: str) -> None:
    """Typed check of the ``run.json`` fields mind-edge reads (extra keys are allowed)."""
    f = Fields(meta, f"{where} is malformed", CheckpointError, hint=_RUN_FIX)
    net = f.sub("net")
    net.str("arch", max_len=64)
    net.int("in_channels", lo=1, hi=3)
    net.ints("input_size", lo=1, hi=1 << 16, min_len=2, max_len=2)
    net.float("width", positive=True)
    net.int("capacity", lo=1, hi=127)
    sc = f.sub("scenario")
    sc.str("dataset", max_len=256)
    sc.str("order", max_len=64)
    sc.int("seed")
    names = sc.strs("class_names", max_len=10_000_000, max_str=4096)

    def class_lists(obj: Fields, key: str) -> None:
        for i, cl in enumerate(obj.list(key, max_len=127)):
            if not isinstance(cl, list):
                raise obj._fail(f"{obj._name(key)}[{i}]", "a list of class ids", cl)
            for c in cl:
                check_int(c, f"{obj._name(key)}[{i}]", obj, lo=0, hi=max(0, len(names) - 1))

    class_lists(sc, "tasks")
    class_lists(f, "learned_tasks")
    if "data" in meta:
        d = f.sub("data")
        d.int("in_channels", lo=1, hi=3)
        d.ints("input_size", lo=1, hi=1 << 16, min_len=2, max_len=2)
        d.floats("mean", min_len=1, max_len=3)
        d.floats("std", positive=True, min_len=1, max_len=3)
        for key in ("dataset", "channel_order", "root", "augment"):
            if d.has(key):
                d.str(key, max_len=4096)
        if d.has("padding"):
            d.int("padding", lo=0, hi=1 << 16)
    tr = f.sub("train")
    tr.str("method", max_len=64)
    tr.raw("routing")  # a policy name today; its type is the routing module's business
    for key in ("epochs", "distill_epochs"):
        tr.int(key, lo=0)
    if "batch_size" in tr.obj:
        tr.int("batch_size", lo=1)
    for key in ("lr", "distill_lr", "gamma", "weight_decay", "beta"):
        if key in tr.obj:
            tr.float(key)
    tr.float("temperature", positive=True)
    for key in ("milestones", "distill_milestones"):
        if key in tr.obj:
            tr.ints(key, lo=0)
    if "seed" in meta:
        f.int("seed")
    if f.has("checkpoint_sha256"):
        f.str("checkpoint_sha256", max_len=64)
    for i, step in enumerate(f.list("steps")):
        sf = f.item(step, f"steps[{i}]")
        for key in ("tag_matrix", "taw_matrix"):
            for r, row in enumerate(sf.list(key, max_len=127)):
                if not isinstance(row, list):
                    raise sf._fail(f"{sf._name(key)}[{r}]", "a list of accuracies", row)
                for v in row:
                    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                        raise sf._fail(f"{sf._name(key)}[{r}]", "numbers or null", v)
        if "step" in sf.obj:
            sf.int("step", lo=-1)
        if sf.has("source"):
            sf.sub("source")
    if f.has("final") or meta.get("steps"):  # the metrics after the last step are shown with every step
        final = f.sub("final")
        for key in ("tag", "taw", "routing", "avg_incremental_tag", "forgetting_tag", "bwt_tag"):  # what is shown
            v = final.obj.get(key, 0.0)  # null: not measurable (a learned task without test data)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise final._fail(final._name(key), "a number or null", v)
    if f.has("spec_key"):
        f.sub("spec_key")
    if f.has("routing_stats"):
        f.sub("routing_stats")


def save_checkpoint(run_dir: str | Path, model) -> str:
    """Write the model's state_dict atomically; returns the file's sha256."""
    save_file = require("safetensors.torch", "train", "saving a checkpoint").save_file
    path = Path(run_dir) / CHECKPOINT
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(
        path, lambda tmp: save_file(state, str(tmp), metadata={"format": FORMAT_TAG, "schema": str(RUN_SCHEMA)})
    )
    return sha256_file(path)


def load_state(path: str | Path, expected_sha256: str | None = None) -> dict:
    """Read a checkpoint's tensors, rejecting corrupt, truncated and foreign files."""
    safetensors = require("safetensors", "train", "reading a checkpoint")
    SafetensorError, safe_open = safetensors.SafetensorError, safetensors.safe_open
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is missing")
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise CheckpointError(
                f"checkpoint {path} is corrupt or was modified: sha256 {actual[:12]}… does not match "
                f"{expected_sha256[:12]}… recorded in run.json"
            )
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("format") != FORMAT_TAG:
                raise CheckpointError(
                    f"{path} is a safetensors file but not a mind-edge checkpoint (metadata {meta!r})"
                )
            return {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open is not a dict: keys() is its API
    except SafetensorError as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: {exc}") from exc
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc}") from exc


def _fit_routing_buffers(state: dict, own: Mapping[str, Any], run_dir: Path) -> dict:
    """``state`` with every head's routing buffers as the model expects them, or reset (count 0)."""
    heads = sorted({k.split(".routing.")[0] for k in own if ".routing." in k})
    out, stale = dict(state), []
    for head in heads:
        prefix = f"{head}.routing."
        mine = {k: v for k, v in own.items() if k.startswith(prefix)}
        theirs = {k: v for k, v in state.items() if k.startswith(prefix)}
        fits = set(mine) == set(theirs) and all(tuple(mine[k].shape) == tuple(theirs[k].shape) for k in mine)
        if not fits:
            if theirs and int(theirs.get(prefix + "count", 0)):
                stale.append(head)
            for k in theirs:
                out.pop(k)
            out.update(mine)
    if stale:
        log.warning(
            "%s: %s hold routing statistics of an older layout; they are ignored "
            "(run 'mind-edge calibrate' on the run)",
            run_dir,
            ", ".join(stale),
        )
    return out


def load_run(run_dir: str | Path, verify: bool = True):
    """Rebuild the network of a run directory and load its checkpoint: ``(model, RunRecord)``.

    Callers that update the run start the new ``run.json`` from ``record.to_json()``.
    """
    # the torch side, here so that read_run_json and the run tables need no torch (the CLI reads them)
    from mind_edge.nets import build_model  # noqa: PLC0415 - torch side

    run_dir = Path(run_dir)
    meta = read_run_json(run_dir)
    model = build_model(meta.net, [list(cl) for cl in meta.learned_tasks])
    state = load_state(run_dir / CHECKPOINT, meta.checkpoint_sha256 if verify else None)
    own = model.state_dict()
    # A run trained before routing statistics existed has none, and one gathered with an older layout
    # (no shared-space taps) has them in other shapes: such heads load uncalibrated (count 0) and
    # 'mind-edge calibrate' gathers them again; any other missing key is an error.
    state = _fit_routing_buffers(state, own, run_dir)
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {run_dir / CHECKPOINT} does not fit the architecture in run.json: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape) or own[k].dtype != state[k].dtype]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"checkpoint {run_dir / CHECKPOINT} does not fit run.json: {len(bad)} tensors differ, e.g. {k} "
            f"is {tuple(state[k].shape)}/{state[k].dtype}, expected {tuple(own[k].shape)}/{own[k].dtype}"
        )
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, meta


def write_run_json(run_dir: str | Path, meta: Mapping[str, Any]) -> None:
    meta = {
        "format": FORMAT_TAG,
        "schema_version": RUN_SCHEMA,
        **{k: v for k, v in meta.items() if k not in ("format", "schema_version")},
    }
    atomic_write_json(Path(run_dir) / RUN_JSON, meta)


# ----------------------------------------------------------------------------- the run directory's files


def _metrics_csv(steps: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["step", "task", "tag", "taw", "routing"])
    for s in steps:
        for j, (a, b, r) in enumerate(zip(s["tag_row"], s["taw_row"], s["routing_row"])):
            # None: a task whose test data was unavailable when 'mind-edge learn' evaluated (empty cell)
            w.writerow([s["step"], j, *("" if v is None else f"{v:.6f}" for v in (a, b, r))])
    return buf.getvalue()


def plot_matrix(R: np.ndarray, path: Path, title: str) -> Path | None:
    """Heatmap of an accuracy matrix to PNG (skipped with a log line without matplotlib)."""
    try:
        require("matplotlib", "train", "plotting an accuracy matrix").use("Agg")
        plt = require("matplotlib.pyplot", "train", "plotting an accuracy matrix")
    except MissingExtraError:  # pragma: no cover
        log.warning("matplotlib is not installed; skipping %s (pip install 'mind-edge[train]')", path)
        return None
    n = R.shape[0]
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * n, 0.8 + 0.6 * n), dpi=120)
    im = ax.imshow(np.ma.masked_invalid(R), vmin=0, vmax=1, cmap="viridis")
    for k in range(n):
        for j in range(k + 1):
            ax.text(
                j,
                k,
                f"{R[k, j]:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if R[k, j] < 0.6 else "black",
            )
    ax.set_xlabel("evaluated task j")
    ax.set_ylabel("after learning task k")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png")

    atomic_write(path, write)
    plt.close(fig)
    return path


def write_outputs(run_dir: Path, model, meta: dict) -> None:
    meta["checkpoint_sha256"] = save_checkpoint(run_dir, model)
    write_run_json(run_dir, meta)
    atomic_write_text(run_dir / "metrics.csv", _metrics_csv(meta["steps"]))
    if meta["steps"]:
        R = matrix_from_json(meta["steps"][-1]["tag_matrix"])
        plot_matrix(R, run_dir / "accuracy_tag.png", f"TAG accuracy R[k, j] — {meta['scenario']['dataset']}")
