"""The offline end-to-end demo on scikit-learn's digits: train → export → validate → predict → benchmark.

:func:`run_demo` runs the whole chain into one folder and returns a :class:`DemoResult`; it prints
nothing. ``mind-edge demo`` (:mod:`mind_edge.cli.demo`) renders the steps as they finish (through a
:class:`DemoListener`) and the result. Torch side: training and the export's validation need
PyTorch; the prediction step runs the bundle with the torch-free runtime.

What the demo writes into its folder is :data:`DEMO_OUTPUTS`; :data:`DEMO_MARKER` (written first)
marks the folder as the demo's own, so ``overwrite`` replaces only an earlier demo's outputs.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mind_edge.data import load_dataset
from mind_edge.demo_config import DEMO_MARKER, DEMO_OUTPUTS, DemoConfig
from mind_edge.export.exporter import ExportResult, export_bundle
from mind_edge.outputs import clear_owned_out
from mind_edge.run import RunResult, RunSpec, evaluate_run, train_run
from mind_edge.runtime.bench import BenchSpec, TimingConfig, bundle_sources, run_benchmark, write_json
from mind_edge.runtime.predict import Runtime
from mind_edge.train import NullReporter, Reporter
from mind_edge.train import preset as make_preset

#: The scenario: scikit-learn's digits in 5 tasks of 2 classes.
DATASET, TASKS = "digits", 5

STEP_TITLES = (
    "1/4 train MIND (self-distillation) on digits, 5 tasks × 2 classes",
    "2/4 export one shared-weight ONNX graph and validate it against PyTorch",
    "3/4 predict test images from PNG files, task unknown, without PyTorch in the loop",
    "4/4 benchmark the bundle: ONNX Runtime vs the eager PyTorch per-task loop",
)


@dataclass(frozen=True)
class DemoPrediction:
    """One test image of the predict step: its file, its true class and what the bundle said."""

    file: Path
    truth: int
    label: int
    class_name: str
    task: int
    confidence: float

    @property
    def correct(self) -> bool:
        return self.label == self.truth


@dataclass(frozen=True)
class DemoResult:
    """What the demo trained, exported, predicted and measured."""

    out: Path
    run: RunResult  # the training run (its run.json record, final metrics)
    policy: str  # the routing policy the run routes with
    maxprob: Mapping[str, Any]  # the same sub-networks routed by MIND's max-probability rule (evaluate_run)
    export: ExportResult
    predictions: tuple[DemoPrediction, ...]
    providers: tuple[str, ...]  # ONNX Runtime providers of the predict step
    bench: Mapping[str, Any] | None  # the benchmark report (bench.json), None when skipped
    seconds: dict[str, float] = field(default_factory=dict)  # per step
    total_seconds: float = 0.0

    @property
    def correct(self) -> int:
        return sum(p.correct for p in self.predictions)


class DemoListener:
    """Called as the demo's steps start and finish (the CLI renders them); every method does nothing here."""

    def step(self, title: str) -> None:
        """A step starts (one of :data:`STEP_TITLES`)."""

    def trained(self, run: RunResult) -> None:
        """Training finished."""

    def exported(self, export: ExportResult) -> None:
        """The bundle is written and validated."""

    def predicted(self, predictions: tuple[DemoPrediction, ...], providers: tuple[str, ...]) -> None:
        """The test images are predicted."""

    def benchmarked(self, report: Mapping[str, Any]) -> None:
        """The benchmark finished (not called when it is skipped)."""


def run_demo(cfg: DemoConfig, *, reporter: Reporter | None = None, listener: DemoListener | None = None) -> DemoResult:
    """Train → export → validate → predict → benchmark into ``cfg.out`` (see the module docstring)."""
    replace_previous = cfg.check()
    listener = listener or DemoListener()
    out = Path(cfg.out)
    if replace_previous:
        clear_owned_out(out, DEMO_OUTPUTS)
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).write_text(json.dumps({"created_by": "mind-edge demo", "outputs": list(DEMO_OUTPUTS)}) + "\n")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()

    listener.step(STEP_TITLES[0])
    train_cfg = make_preset("fast", epochs=cfg.epochs, distill_epochs=cfg.distill_epochs)
    spec = RunSpec(dataset=DATASET, tasks=TASKS, seed=cfg.seed, width=cfg.width, train=train_cfg, device=cfg.device)
    reporter = reporter or NullReporter()
    # a reporter that is a context manager (a progress bar: RichReporter) is live during training only
    with reporter if isinstance(reporter, AbstractContextManager) else nullcontext(reporter) as rep:
        run = train_run(spec, out / "run", reporter=rep)
    seconds["train"] = time.perf_counter() - t0
    listener.trained(run)
    policy = run.record.train.routing
    # the same sub-networks routed by MIND's max-probability rule, for comparison (inference only)
    maxprob = evaluate_run(out / "run", device=cfg.device, policies=[policy, "maxprob"])["policies"]["maxprob"]

    listener.step(STEP_TITLES[1])
    t1 = time.perf_counter()
    exp = export_bundle(out / "run", out / "bundle", layout="shared")
    seconds["export + validate"] = time.perf_counter() - t1
    listener.exported(exp)

    listener.step(STEP_TITLES[2])
    images, truth = _write_test_images(out / "images", cfg.seed, cfg.images_per_class)
    t2 = time.perf_counter()
    with Runtime(exp.bundle) as rt:
        pred = rt.predict([str(p) for p in images])
        providers = tuple(rt.providers_used)
    seconds["predict"] = time.perf_counter() - t2
    predictions = tuple(
        DemoPrediction(
            file=Path(rec["file"]),
            truth=y,
            label=int(rec["label"]),
            class_name=str(rec["class_name"]),
            task=int(rec["task"]),
            confidence=float(rec["confidence"]),
        )
        for rec, y in zip(pred.records(), truth)
    )
    listener.predicted(predictions, providers)

    report = None
    if cfg.bench_seconds > 0:
        listener.step(STEP_TITLES[3])
        t3 = time.perf_counter()
        report = _benchmark(exp.bundle, cfg.bench_seconds)
        write_json(report, out / "bench.json")
        seconds["benchmark"] = time.perf_counter() - t3
        listener.benchmarked(report)
    return DemoResult(
        out=out,
        run=run,
        policy=policy,
        maxprob=maxprob,
        export=exp,
        predictions=predictions,
        providers=providers,
        bench=report,
        seconds=seconds,
        total_seconds=time.perf_counter() - t0,
    )


def _write_test_images(folder: Path, seed: int, per_class: int) -> tuple[list[Path], list[int]]:
    """The first ``per_class`` test images of every digit as PNG files; their paths and classes."""
    _, test_set, _ = load_dataset(DATASET, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths, truth = [], []
    for c in range(len(test_set.class_names)):
        for k, i in enumerate(np.flatnonzero(test_set.labels == c)[:per_class]):
            p = folder / f"digit{c}_{k}.png"
            Image.fromarray(test_set.images[i][..., 0], mode="L").save(p)
            paths.append(p)
            truth.append(c)
    return paths, truth


def _benchmark(bundle: Path, seconds: float) -> dict:
    """ONNX Runtime vs the eager PyTorch per-task loop at batch 1 and 8, in this process."""
    spec = BenchSpec(
        backends=("ort", "torch"),
        batches=(1, 8),
        isolate=False,
        timing=TimingConfig(warmup_seconds=0.2, min_iters=10, min_seconds=seconds),
    )
    with tempfile.TemporaryDirectory(prefix="mind-edge-demo-bench-") as tmp:
        sources, info = bundle_sources(Path(tmp), bundle, backends=spec.backends)
        return run_benchmark(spec, sources, workdir=Path(tmp), model_info=info)


__all__ = [
    "DEMO_MARKER",
    "DEMO_OUTPUTS",
    "STEP_TITLES",
    "DemoConfig",
    "DemoListener",
    "DemoPrediction",
    "DemoResult",
    "run_demo",
]
